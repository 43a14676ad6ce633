//! Checkpoints through the binary: saved at the end, bit-identical on reload, and a resumed run gives
//! exactly the numbers of an uninterrupted one.

mod common;

use std::fs;
use std::path::Path;

use common::{mlp, read_csv, stderr, write_toy_dataset};
use mlp::checkpoint::Checkpoint;

const SPEC: &str = "linear,fc1,16,12,0.1; sigmoid,s; linear,fc2,12,4,0.1";

fn train(dir: &Path, out: &str, extra: &[&str]) {
    let args = [
        "train",
        "-q",
        "--data",
        "data",
        "--layer",
        SPEC,
        "--batch-size",
        "30",
        "--seed",
        "5",
        "--grad-norms",
        "--disp-freq",
        "4",
        "--out",
        out,
    ];
    let result = mlp(dir, &[&args[..], extra].concat());
    assert!(result.status.success(), "{extra:?}: {}", stderr(&result));
}

/// Every column but the clock.
fn numbers(path: &Path) -> Vec<Vec<String>> {
    let (header, rows) = read_csv(path);
    let time = header.iter().position(|h| h == "time_s");
    rows.into_iter()
        .map(|r| {
            r.into_iter()
                .enumerate()
                .filter(|(i, _)| Some(*i) != time)
                .map(|(_, c)| c)
                .collect()
        })
        .collect()
}

fn summary_numbers(path: &Path) -> Vec<String> {
    let (header, rows) = read_csv(path);
    let skip = ["train_time_s"];
    header
        .iter()
        .zip(&rows[0])
        .filter(|(h, _)| !skip.contains(&h.as_str()))
        .map(|(_, v)| v.clone())
        .collect()
}

fn toy() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    fs::create_dir(dir.path().join("data")).unwrap();
    write_toy_dataset(&dir.path().join("data"), 300, 50, 4);
    dir
}

#[test]
fn resuming_gives_the_numbers_of_an_uninterrupted_run() {
    let dir = toy();
    let d = dir.path();
    train(d, "whole", &["--max-epoch", "4"]);
    train(d, "parts", &["--max-epoch", "2"]);
    train(d, "ignored", &["--max-epoch", "1"]); // another folder: must not matter
    let out = mlp(d, &["train", "-q", "--resume", "parts", "--max-epoch", "4"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        numbers(&d.join("parts/metrics.csv")),
        numbers(&d.join("whole/metrics.csv"))
    );
    assert_eq!(
        numbers(&d.join("parts/grad_norms.csv")),
        numbers(&d.join("whole/grad_norms.csv"))
    );
    assert_eq!(
        summary_numbers(&d.join("parts/summary.csv")),
        summary_numbers(&d.join("whole/summary.csv"))
    );
    // The final checkpoints hold the same parameters and velocities, bit for bit.
    let a = Checkpoint::load(&d.join("whole/model.ckpt")).unwrap();
    let b = Checkpoint::load(&d.join("parts/model.ckpt")).unwrap();
    assert_eq!(a.data, b.data);
    assert_eq!((b.header.epoch, b.header.step), (4, 40));
}

#[test]
fn resuming_drops_rows_computed_after_the_last_checkpoint() {
    let dir = toy();
    let d = dir.path();
    train(d, "whole", &["--max-epoch", "4"]);
    // A run that went on to epoch 3 after its last checkpoint at epoch 2, as a run interrupted in
    // epoch 3 would: its metrics hold rows the checkpoint does not cover.
    train(d, "at2", &["--max-epoch", "2"]);
    train(d, "cut", &["--max-epoch", "3"]);
    fs::copy(d.join("at2/model.ckpt"), d.join("cut/model.ckpt")).unwrap();
    let out = mlp(d, &["train", "-q", "--resume", "cut", "--max-epoch", "4"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        numbers(&d.join("cut/metrics.csv")),
        numbers(&d.join("whole/metrics.csv"))
    );
    assert_eq!(
        numbers(&d.join("cut/grad_norms.csv")),
        numbers(&d.join("whole/grad_norms.csv"))
    );
}

#[test]
fn a_checkpoint_reloads_bit_identical() {
    let dir = toy();
    let d = dir.path();
    train(d, "r", &["--max-epoch", "1"]);
    let bytes = fs::read(d.join("r/model.ckpt")).unwrap();
    let ckpt = Checkpoint::decode(&bytes).unwrap();
    assert_eq!(ckpt.encode(), bytes);
    let canonical = SPEC.parse::<mlp::NetSpec>().unwrap().to_string();
    assert_eq!(ckpt.header.spec, canonical);
    let names: Vec<&str> = ckpt
        .header
        .tensors
        .iter()
        .map(|t| t.name.as_str())
        .collect();
    assert_eq!(names, ["fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"]);
    assert_eq!(ckpt.header.tensors[0].shape, [16, 12]);
}

#[test]
fn bad_resumes_are_clear_errors() {
    let dir = toy();
    let d = dir.path();
    train(d, "r", &["--max-epoch", "2"]);
    let resume = |extra: &[&str]| mlp(d, &[&["train", "-q", "--resume", "r"][..], extra].concat());
    let check = |out: std::process::Output, code: i32, expected: &str| {
        common::assert_output_error(&out, code, expected, "resume");
    };
    check(
        resume(&[]),
        2,
        "error: --resume: r has trained 2 of 2 epochs already; give --max-epoch above 2",
    );
    let good = fs::read(d.join("r/model.ckpt")).unwrap();
    fs::write(d.join("r/model.ckpt"), &good[..good.len() / 2]).unwrap();
    check(
        resume(&["--max-epoch", "3"]),
        1,
        "error: r/model.ckpt: checksum mismatch: the file is truncated or damaged",
    );
    let mut other_version = good.clone();
    other_version[8] = 9;
    fs::write(d.join("r/model.ckpt"), &other_version).unwrap();
    check(
        resume(&["--max-epoch", "3"]),
        1,
        "error: r/model.ckpt: checkpoint format version 9; this mlp reads version 1",
    );
    // A checkpoint of another network.
    train(d, "other", &["--max-epoch", "1", "--seed", "6"]);
    fs::copy(d.join("other/model.ckpt"), d.join("r/model.ckpt")).unwrap();
    check(
        resume(&["--max-epoch", "3"]),
        2,
        "error: --resume: r: the checkpoint (spec",
    );
    fs::remove_file(d.join("r/model.ckpt")).unwrap();
    check(
        resume(&["--max-epoch", "3"]),
        1,
        "error: r: the run has no model.ckpt; a run saves it at the end of its first epoch",
    );
    check(
        mlp(d, &["train", "--resume", "nowhere"]),
        2,
        "error: --resume: nowhere is not a run folder (no config.json)",
    );
}

/// A run killed while writing a row leaves a partial last line: `plot` and `summarize` read it as
/// absent, and `--resume` drops it (saying so) and gives the numbers of an uninterrupted run.
#[test]
fn a_torn_last_row_is_dropped_and_the_run_resumes_exactly() {
    let dir = toy();
    let d = dir.path();
    train(d, "whole", &["--max-epoch", "3"]);
    train(d, "torn", &["--max-epoch", "2"]);
    let metrics = d.join("torn/metrics.csv");
    let mut bytes = fs::read(&metrics).unwrap();
    bytes.extend_from_slice(b"21,3,train,0.01,1.23");
    fs::write(&metrics, bytes).unwrap();
    let plot = mlp(d, &["plot", "torn", "--out", "torn.png"]);
    assert!(plot.status.success(), "plot: {}", stderr(&plot));
    let out = mlp(d, &["train", "-q", "--resume", "torn", "--max-epoch", "3"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("dropped a partial last row"),
        "{}",
        stderr(&out)
    );
    assert_eq!(numbers(&metrics), numbers(&d.join("whole/metrics.csv")));
}

/// The speed flags change no number: a run resumed with another thread count and other kernels
/// continues exactly as one uninterrupted run on one thread.
#[test]
fn threads_and_kernels_change_no_number_even_across_a_resume() {
    let dir = toy();
    let d = dir.path();
    train(d, "one", &["--max-epoch", "3", "--threads", "1"]);
    train(d, "mixed", &["--max-epoch", "1", "--threads", "3"]);
    let out = mlp(
        d,
        &[
            "train",
            "-q",
            "--resume",
            "mixed",
            "--max-epoch",
            "3",
            "--threads",
            "2",
            "--kernels",
            "portable",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        numbers(&d.join("mixed/metrics.csv")),
        numbers(&d.join("one/metrics.csv"))
    );
    let a = Checkpoint::load(&d.join("one/model.ckpt")).unwrap();
    let b = Checkpoint::load(&d.join("mixed/model.ckpt")).unwrap();
    assert_eq!(a.data, b.data);
}

/// A second training on a run folder in use is refused, naming the process that holds it, and
/// touches none of its files.
#[test]
fn a_run_folder_in_use_is_refused() {
    use std::process::{Command, Stdio};
    let dir = toy();
    let d = dir.path();
    let mut first = Command::new(env!("CARGO_BIN_EXE_mlp"))
        .current_dir(d)
        .args([
            "train",
            "-q",
            "--data",
            "data",
            "--layer",
            SPEC,
            "--batch-size",
            "1",
        ])
        .args(["--max-epoch", "1000", "--out", "busy"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let lock = d.join("busy/run.lock");
    let pid = first.id().to_string();
    let start = std::time::Instant::now();
    while fs::read_to_string(&lock)
        .map(|s| s.trim() != pid)
        .unwrap_or(true)
    {
        assert!(
            start.elapsed().as_secs() < 30,
            "the first training never took the lock"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    for extra in [&["--overwrite"][..], &["--resume", "busy"][..]] {
        let mut args = vec![
            "train", "-q", "--data", "data", "--layer", SPEC, "--out", "busy",
        ];
        if extra[0] == "--resume" {
            args = vec!["train", "-q"];
        }
        args.extend_from_slice(extra);
        let out = mlp(d, &args);
        assert_eq!(out.status.code(), Some(1), "{extra:?}: {}", stderr(&out));
        assert!(
            stderr(&out).contains(&format!("run folder in use by process {pid}")),
            "{extra:?}: {}",
            stderr(&out)
        );
    }
    first.kill().unwrap();
    first.wait().unwrap();
    // The kernel released the lock with the process.
    train(d, "busy", &["--max-epoch", "1", "--overwrite"]);
}
