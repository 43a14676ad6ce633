//! The real binary, end to end: on the bundled MNIST and on small data sets written by the tests.

mod common;

use std::fs;

use common::{
    TRAIN_HERE, mlp, mnist_dir, read_csv, stderr, stdout, write_mnist_subset, write_toy_dataset,
};

const HEADER: [&str; 7] = ["step", "epoch", "split", "lr", "loss", "acc", "time_s"];

#[test]
fn one_epoch_of_the_default_network_on_mnist() {
    let dir = tempfile::tempdir().unwrap();
    let out = mlp(
        dir.path(),
        &[
            "train",
            "--max-epoch",
            "1",
            "--data",
            mnist_dir().to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    // The default name and folder follow the report.
    let run = dir.path().join("runs/MLP1_ReLU_CE");
    let (header, rows) = read_csv(&run.join("metrics.csv"));
    assert_eq!(header, HEADER);
    let train_rows = rows.iter().filter(|r| r[2] == "train").count();
    let test_rows: Vec<_> = rows.iter().filter(|r| r[2] == "test").collect();
    assert_eq!((train_rows, test_rows.len()), (600, 1));
    assert!(
        rows.iter().all(|r| r.iter().all(|cell| !cell.is_empty())),
        "no empty cells"
    );
    assert_eq!(
        (test_rows[0][0].as_str(), test_rows[0][1].as_str()),
        ("600", "1")
    );
    let test_acc: f64 = test_rows[0][5].parse().unwrap();
    assert!(test_acc >= 0.90, "test accuracy after one epoch {test_acc}");

    let (sheader, summary) = read_csv(&run.join("summary.csv"));
    assert_eq!(summary.len(), 1);
    let col = |name: &str| summary[0][sheader.iter().position(|h| h == name).unwrap()].clone();
    assert_eq!(col("name"), "MLP1_ReLU_CE");
    assert_eq!(col("status"), "completed");
    assert_eq!(col("test_acc"), test_rows[0][5]);
    let config = fs::read_to_string(run.join("config.json")).unwrap();
    assert!(
        config
            .contains("\"layer\": \"linear,fc1,784,256,0.01; relu,relu1; linear,fc2,256,10,0.01\""),
        "{config}"
    );
    assert!(config.contains("\"status\": \"completed\""), "{config}");
    assert!(
        stdout(&out).starts_with("MLP1_ReLU_CE: train loss "),
        "{}",
        stdout(&out)
    );
    assert!(
        stderr(&out).contains("[epoch 1/1] Testing, total mean loss"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn the_same_seed_twice_gives_identical_columns() {
    let dir = tempfile::tempdir().unwrap();
    let data = mnist_dir();
    let run = |name: &str| {
        let spec = "linear,fc1,784,64,0.01; sigmoid,s1; linear,fc2,64,10,0.01";
        let args = [
            "train",
            "-q",
            "--max-epoch",
            "1",
            "--seed",
            "5",
            "--layer",
            spec,
            "--name",
            name,
        ];
        let out = mlp(
            dir.path(),
            &[&args[..], &["--data", data.to_str().unwrap()]].concat(),
        );
        assert!(out.status.success(), "{}", stderr(&out));
        let (_, rows) = read_csv(&dir.path().join("runs").join(name).join("metrics.csv"));
        rows.into_iter()
            .map(|r| (r[0].clone(), r[2].clone(), r[4].clone(), r[5].clone()))
            .collect::<Vec<_>>()
    };
    let (a, b) = (run("a"), run("b"));
    assert_eq!(a.len(), 601);
    assert_eq!(a, b);
}

/// Every network of the report's Table 3 trains for an epoch and learns something; sizes are the
/// report's, the data is MNIST's first 6,000 training images to keep the suite short.
#[test]
fn every_table_3_network_trains_one_epoch() {
    let specs = [
        ("AffNet_MSE", "mse", "linear,fc,784,10,0.01"),
        ("AffNet_CE", "ce", "linear,fc,784,10,0.01"),
        (
            "MLP1_ReLU_CE",
            "ce",
            "linear,fc1,784,256,0.01; relu,relu1; linear,fc2,256,10,0.01",
        ),
        (
            "MLP1_Sigmoid_CE",
            "ce",
            "linear,fc1,784,256,0.01; sigmoid,sg1; linear,fc2,256,10,0.01",
        ),
        (
            "MLP1_Sigmoid_MSE",
            "mse",
            "linear,fc1,784,256,0.01; sigmoid,sg1; linear,fc2,256,10,0.01",
        ),
        (
            "MLP1_ReLU_ReLU_MSE",
            "mse",
            "linear,fc1,784,256,0.01; relu,relu1; linear,fc2,256,10,0.01; relu,relu2",
        ),
        (
            "MLP1_ReLU_Sig_MSE",
            "mse",
            "linear,fc1,784,256,0.01; relu,relu1; linear,fc2,256,10,0.01; sigmoid,sg1",
        ),
        (
            "MLP1_Sig_Sig_MSE",
            "mse",
            "linear,fc1,784,256,0.01; sigmoid,sg1; linear,fc2,256,10,0.01; sigmoid,sg2",
        ),
        (
            "MLP2_ReLU_CE",
            "ce",
            "linear,fc1,784,500,0.01; relu,relu1; linear,fc2,500,256,0.01; relu,relu2;\nlinear,fc3,256,10,0.01",
        ),
        (
            "MLP2_Sig_CE",
            "ce",
            "linear,fc1,784,500,0.01; sigmoid,sg1; linear,fc2,500,256,0.01; sigmoid,sg2;\nlinear,fc3,256,10,0.01",
        ),
        (
            "MLP2_Sig_MSE",
            "mse",
            "linear,fc1,784,500,0.01; sigmoid,sg1; linear,fc2,500,256,0.01; sigmoid,sg2;\nlinear,fc3,256,10,0.01",
        ),
        (
            "MLP2_ReLU_ReLU_MSE",
            "mse",
            "linear,fc1,784,500,0.01; relu,relu1; linear,fc2,500,256,0.01; relu,relu2;\nlinear,fc3,256,10,0.01; relu,relu3",
        ),
        (
            "MLP2_ReLU_Sig_MSE",
            "mse",
            "linear,fc1,784,500,0.01; relu,relu1; linear,fc2,500,256,0.01; relu,relu2;\nlinear,fc3,256,10,0.01; sigmoid, sg1",
        ),
        (
            "MLP2_Sig_Sig_MSE",
            "mse",
            "linear,fc1,784,500,0.01; sigmoid,sg1; linear,fc2,500,256,0.01; sigmoid,sg2;\nlinear,fc3,256,10,0.01; sigmoid,sg3",
        ),
        (
            "MLP2_Sig_Sig_MSE_ENH",
            "mse",
            "linear,fc1,784,500,1; sigmoid,sg1; linear,fc2,500,256,0.1; sigmoid,sg2;\nlinear,fc3,256,10,0.01; sigmoid,sg3",
        ),
    ];
    let dir = tempfile::tempdir().unwrap();
    let small = dir.path().join("mnist-6k");
    write_mnist_subset(&small, 6000);
    for (name, loss, spec) in specs {
        let args = [
            "train",
            "-q",
            "--max-epoch",
            "1",
            "--loss",
            loss,
            "--layer",
            spec,
            "--name",
            name,
            "--data",
        ];
        let out = mlp(
            dir.path(),
            &[&args[..], &[small.to_str().unwrap()]].concat(),
        );
        assert!(out.status.success(), "{name}: {}", stderr(&out));
        let (header, rows) = read_csv(&dir.path().join("runs").join(name).join("summary.csv"));
        let test_loss: f64 = rows[0][header.iter().position(|h| h == "test_loss").unwrap()]
            .parse()
            .unwrap();
        assert!(test_loss.is_finite(), "{name}: test loss {test_loss}");
    }
}

#[test]
fn console_windows_are_the_mean_of_the_csv_rows() {
    let dir = tempfile::tempdir().unwrap();
    write_toy_dataset(dir.path(), 1000, 100, 4);
    let spec = "linear,fc1,16,8,0.1; relu,r; linear,fc2,8,4,0.1";
    let out = mlp(
        dir.path(),
        &[
            "train",
            "--data",
            ".",
            "--layer",
            spec,
            "--batch-size",
            "30",
            "--max-epoch",
            "2",
            "--disp-freq",
            "7",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let (_, rows) = read_csv(&dir.path().join("runs/MLP1_ReLU_CE/metrics.csv"));
    let train: Vec<(f64, f64)> = rows
        .iter()
        .filter(|r| r[2] == "train")
        .map(|r| (r[4].parse().unwrap(), r[5].parse().unwrap()))
        .collect();
    // 1000 / 30: 34 iterations per epoch, windows at iterations 7, 14, ..., 28 of each epoch.
    assert_eq!(train.len(), 68);
    let log = stderr(&out);
    let lines: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("Training iter"))
        .collect();
    assert_eq!(lines.len(), 8, "{log}");
    for (k, line) in lines.iter().enumerate() {
        let (epoch, window) = (k / 4, k % 4);
        let first = epoch * 34 + window * 7;
        let rows = &train[first..first + 7];
        let loss = rows.iter().map(|r| r.0).sum::<f64>() / 7.0;
        let acc = rows.iter().map(|r| r.1).sum::<f64>() / 7.0;
        let expected = format!(
            "[epoch {}/2] Training iter {}/34, batch loss {loss:.4}, batch acc {acc:.4}",
            epoch + 1,
            (window + 1) * 7
        );
        assert_eq!(*line, expected);
    }
}

#[test]
fn the_reports_single_dash_layer_flag_works() {
    let dir = tempfile::tempdir().unwrap();
    write_toy_dataset(dir.path(), 100, 20, 4);
    let out = mlp(
        dir.path(),
        &[
            "train",
            "-q",
            "--data",
            ".",
            "--max-epoch",
            "1",
            "-layer",
            "linear,fc,16,4,0.01",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(dir.path().join("runs/AffNet_CE/summary.csv").exists());
}

#[test]
fn a_finished_run_is_not_overwritten_without_overwrite() {
    let dir = tempfile::tempdir().unwrap();
    write_toy_dataset(dir.path(), 100, 20, 4);
    let args = [
        &TRAIN_HERE[..],
        &["--layer", "linear,fc,16,4,0.01", "--out", "r"],
    ]
    .concat();
    assert!(mlp(dir.path(), &args).status.success());
    let before = fs::read(dir.path().join("r/metrics.csv")).unwrap();
    let again = mlp(dir.path(), &args);
    assert_eq!(again.status.code(), Some(1));
    assert_eq!(
        stderr(&again),
        "error: r: already holds a finished run (summary.csv, metrics.csv); pass --overwrite to replace it, or --name/--out to train elsewhere\n"
    );
    assert_eq!(fs::read(dir.path().join("r/metrics.csv")).unwrap(), before);
    let forced = mlp(dir.path(), &[&args[..], &["--overwrite"]].concat());
    assert!(forced.status.success(), "{}", stderr(&forced));
}

#[test]
fn help_shows_examples_and_exits_zero() {
    let dir = tempfile::tempdir().unwrap();
    let out = mlp(dir.path(), &["train", "--help"]);
    assert_eq!(out.status.code(), Some(0));
    let help = stdout(&out);
    assert!(
        help.contains("Examples:")
            && help.contains("--layer <SPEC>")
            && help.contains("linear,NAME,IN,OUT,STD"),
        "{help}"
    );
}

#[test]
fn a_diverging_run_stops_with_status_diverged_and_keeps_its_rows() {
    let dir = tempfile::tempdir().unwrap();
    write_toy_dataset(dir.path(), 300, 40, 4);
    let spec = "linear,fc1,16,32,1; relu,r; linear,fc2,32,4,1";
    let args = [
        "train",
        "--data",
        ".",
        "--layer",
        spec,
        "--lr",
        "1000",
        "--batch-size",
        "10",
        "--out",
        "d",
    ];
    let out = mlp(dir.path(), &args);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(3), "{err}");
    let last = err.lines().last().unwrap();
    assert!(last.starts_with("diverged at step "), "{last}");
    assert!(last.contains("first non-finite value: fc"), "{last}");
    let (_, rows) = read_csv(&dir.path().join("d/metrics.csv"));
    let stopped_at: usize = last["diverged at step ".len()..]
        .split(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(
        rows.len(),
        stopped_at,
        "one row per iteration up to the one that diverged"
    );
    assert!(!rows.last().unwrap()[4].parse::<f64>().unwrap().is_finite());
    let (header, summary) = read_csv(&dir.path().join("d/summary.csv"));
    assert_eq!(
        summary[0][header.iter().position(|h| h == "status").unwrap()],
        "diverged"
    );
    let config = fs::read_to_string(dir.path().join("d/config.json")).unwrap();
    assert!(config.contains("\"status\": \"diverged\""), "{config}");

    // --allow-nan trains on to the end.
    let out = mlp(
        dir.path(),
        &[
            &args[..],
            &["--allow-nan", "--overwrite", "--max-epoch", "2", "-q"],
        ]
        .concat(),
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let (_, rows) = read_csv(&dir.path().join("d/metrics.csv"));
    assert_eq!(rows.len(), 2 * 30 + 2);
}

/// Starts `mlp train` of the default network on MNIST into `dir/run`, a row every iteration, with
/// `extra` flags, and returns once its metrics.csv has `rows` lines.
fn start_training(dir: &std::path::Path, extra: &[&str], rows: usize) -> std::process::Child {
    use std::process::{Command, Stdio};
    use std::time::{Duration, Instant};
    let child = Command::new(env!("CARGO_BIN_EXE_mlp"))
        .args(["train", "--out", "run", "--disp-freq", "1"])
        .args(extra)
        .arg("--data")
        .arg(mnist_dir())
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let metrics = dir.join("run/metrics.csv");
    let deadline = Instant::now() + Duration::from_secs(120);
    while fs::read_to_string(&metrics).map_or(0, |t| t.lines().count()) < rows {
        assert!(Instant::now() < deadline, "no rows within two minutes");
        std::thread::sleep(Duration::from_millis(20));
    }
    child
}

/// Sends `signal` to a training run once its metrics file has rows, and checks what it leaves.
fn interrupt_with(signal: &str, code: i32) {
    use std::process::Command;
    let dir = tempfile::tempdir().unwrap();
    let child = start_training(dir.path(), &[], 20);
    let metrics = dir.path().join("run/metrics.csv");
    let pid = child.id().to_string();
    assert!(
        Command::new("kill")
            .args([signal, &pid])
            .status()
            .unwrap()
            .success()
    );
    let out = child.wait_with_output().unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(code), "{err}");
    let last = err.lines().last().unwrap();
    assert!(last.starts_with("interrupted after step "), "{last}");
    let (header, rows) = read_csv(&metrics);
    assert_eq!(header, HEADER);
    assert!(
        rows.iter()
            .all(|r| r.len() == 7 && r.iter().all(|c| !c.is_empty()))
    );
    let stopped_at: usize = last["interrupted after step ".len()..]
        .split(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(
        rows.iter().filter(|r| r[2] == "train").count(),
        stopped_at,
        "every completed iteration has its row"
    );
    // Stopped inside the first epoch: no checkpoint yet, and the line says so.
    assert!(
        last.ends_with("; no epoch had ended, so there is no checkpoint to resume from"),
        "{last}"
    );
    let (sheader, summary) = read_csv(&dir.path().join("run/summary.csv"));
    let column = |name: &str| &summary[0][sheader.iter().position(|h| h == name).unwrap()];
    assert_eq!(column("status"), "interrupted");
    assert_eq!(column("epochs"), "0", "no whole epoch done");
    // The summary line says where the run stopped, out of how many steps.
    let line = common::stdout(&out);
    let whereabouts = format!("| interrupted at epoch 1, step {stopped_at} of 30,000 in ");
    assert!(line.contains(&whereabouts), "{line}");
    assert!(!line.contains("Interrupted"), "{line}");
}

#[test]
fn ctrl_c_stops_after_the_iteration_and_keeps_every_row() {
    interrupt_with("-INT", 130);
}

#[test]
fn sigterm_stops_the_same_way_with_exit_143() {
    interrupt_with("-TERM", 143);
}

#[test]
fn grad_norms_are_written_for_every_linear_layer() {
    let dir = tempfile::tempdir().unwrap();
    write_toy_dataset(dir.path(), 200, 20, 4);
    let spec = "linear,first,16,8,0.1; sigmoid,s; linear,second,8,4,0.1";
    let args = [
        "train",
        "-q",
        "--data",
        ".",
        "--layer",
        spec,
        "--batch-size",
        "20",
        "--disp-freq",
        "5",
        "--grad-norms",
    ];
    let out = mlp(
        dir.path(),
        &[&args[..], &["--max-epoch", "2", "--out", "g"]].concat(),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let (header, rows) = read_csv(&dir.path().join("g/grad_norms.csv"));
    assert_eq!(header, ["step", "epoch", "layer", "grad_norm"]);
    // 10 iterations per epoch, a record every 5: steps 5, 10, 15, 20, two layers each.
    let steps_layers: Vec<(String, String)> =
        rows.iter().map(|r| (r[0].clone(), r[2].clone())).collect();
    let want: Vec<(String, String)> = [5, 10, 15, 20]
        .iter()
        .flat_map(|s| {
            [
                (s.to_string(), "first".to_string()),
                (s.to_string(), "second".to_string()),
            ]
        })
        .collect();
    assert_eq!(steps_layers, want);
    assert!(rows.iter().all(|r| r[3].parse::<f64>().unwrap() > 0.0));
}

/// With every core busy several times over, SIGTERM still stops a two-thread run within seconds:
/// no thread waits by spinning for another to get CPU time.
#[test]
fn sigterm_is_honoured_on_an_overloaded_machine() {
    use std::process::Command;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::{Duration, Instant};
    let dir = tempfile::tempdir().unwrap();
    let done = Arc::new(AtomicBool::new(false));
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let hogs: Vec<_> = (0..4 * cores)
        .map(|_| {
            let done = done.clone();
            std::thread::spawn(move || {
                let mut x = 0u64;
                while !done.load(Ordering::Relaxed) {
                    x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
                }
            })
        })
        .collect();
    let mut child = start_training(dir.path(), &["-q", "--threads", "2"], 5);
    let sent = Instant::now();
    let kill = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    assert!(kill.unwrap().success());
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if sent.elapsed() > Duration::from_secs(10) {
            let _ = child.kill();
            break child.wait().unwrap();
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let took = sent.elapsed();
    done.store(true, Ordering::Relaxed);
    hogs.into_iter().for_each(|h| h.join().unwrap());
    assert_eq!(status.code(), Some(143), "stopped by SIGTERM, not killed");
    assert!(took < Duration::from_secs(5), "took {took:?} to stop");
}

/// Stopped after an epoch has ended, the last line says how to continue the run.
#[test]
fn an_interrupted_run_with_a_checkpoint_says_how_to_continue() {
    use std::time::{Duration, Instant};
    let dir = tempfile::tempdir().unwrap();
    let child = start_training(dir.path(), &[], 1);
    let deadline = Instant::now() + Duration::from_secs(120);
    while !dir.path().join("run/model.ckpt").exists() {
        assert!(
            Instant::now() < deadline,
            "no checkpoint within two minutes"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let kill = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status();
    assert!(kill.unwrap().success());
    let out = child.wait_with_output().unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(130), "{err}");
    let last = err.lines().last().unwrap();
    assert!(
        last.ends_with("; continue with: mlp train --resume run"),
        "{last}"
    );
}
