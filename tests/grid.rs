//! The reproduction pipeline end to end on a small grid: scripts/grid.sh, then summarize, then plot.

mod common;

use std::fs;
use std::process::Command;

use common::{mlp, read_csv, stderr, write_toy_dataset};

#[test]
fn a_two_network_grid_runs_through_summarize_and_plot() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("toy");
    fs::create_dir(&data).unwrap();
    write_toy_dataset(&data, 400, 60, 4);
    let grid = dir.path().join("grid.tsv");
    fs::write(
        &grid,
        "# name\tloss\tspec\nToy_ReLU_CE\tce\tlinear,fc1,16,12,0.1; relu,r; linear,fc2,12,4,0.1\n\
         Toy_Sig_MSE\tmse\tlinear,fc1,16,12,0.1; sigmoid,s; linear,fc2,12,4,0.1; sigmoid,s2\n",
    )
    .unwrap();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/grid.sh");
    let out_dir = dir.path().join("runs");
    let run_grid = || {
        Command::new("bash")
            .arg(script)
            .args([
                "--epochs",
                "1",
                "-j",
                "2",
                "--grid",
                grid.to_str().unwrap(),
                "--out",
                out_dir.to_str().unwrap(),
            ])
            .args([
                "--",
                "--data",
                data.to_str().unwrap(),
                "--batch-size",
                "20",
                "--disp-freq",
                "5",
            ])
            .env("MLP", env!("CARGO_BIN_EXE_mlp"))
            .output()
            .unwrap()
    };
    let first = run_grid();
    assert!(first.status.success(), "{}", stderr(&first));
    let commands = fs::read_to_string(out_dir.join("grid-commands.txt")).unwrap();
    assert_eq!(commands.lines().count(), 2, "{commands}");
    // A second pass finds both finished and runs nothing.
    let again = run_grid();
    assert!(again.status.success());
    assert!(
        stderr(&again).contains("skip Toy_ReLU_CE: finished"),
        "{}",
        stderr(&again)
    );
    assert_eq!(
        fs::read_to_string(out_dir.join("grid-commands.txt")).unwrap(),
        ""
    );
    // A run that was interrupted (its summary says so) or killed (no summary) is run again.
    let summary = out_dir.join("Toy_ReLU_CE/summary.csv");
    let text = fs::read_to_string(&summary).unwrap();
    let interrupted = text.replace("Toy_ReLU_CE,completed,", "Toy_ReLU_CE,interrupted,");
    assert_ne!(interrupted, text);
    fs::write(&summary, interrupted).unwrap();
    fs::remove_file(out_dir.join("Toy_Sig_MSE/summary.csv")).unwrap();
    let resumed = run_grid();
    assert!(resumed.status.success(), "{}", stderr(&resumed));
    let commands = fs::read_to_string(out_dir.join("grid-commands.txt")).unwrap();
    assert_eq!(commands.lines().count(), 2, "{commands}");
    let rerun = fs::read_to_string(&summary).unwrap();
    assert!(rerun.contains("Toy_ReLU_CE,completed,"), "{rerun}");
    // Rerun from scratch with the same seed: the same numbers up to the training time (the column
    // before the last).
    let without_time = |t: &str| {
        t.lines()
            .map(|l| {
                let fields: Vec<&str> = l.rsplitn(3, ',').collect();
                format!("{},{}", fields[2], fields[0])
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(without_time(&rerun), without_time(&text));

    // summarize: the table's numbers are the runs' own.
    let table_csv = dir.path().join("table.csv");
    let out = mlp(
        dir.path(),
        &[
            "summarize",
            out_dir.to_str().unwrap(),
            "--csv",
            table_csv.to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let markdown = String::from_utf8(out.stdout).unwrap();
    assert!(markdown.starts_with(
        "| Network | Status | Epochs | Train Loss | Train Acc | Test Loss | Test Acc | Train Time |"
    ));
    let (header, rows) = read_csv(&table_csv);
    assert_eq!(rows.len(), 2);
    let col = |name: &str| header.iter().position(|h| h == name).unwrap();
    for row in &rows {
        let name = &row[col("name")];
        let (_, metrics) = read_csv(&out_dir.join(name).join("metrics.csv"));
        let train: Vec<f64> = metrics
            .iter()
            .filter(|r| r[2] == "train")
            .map(|r| r[4].parse().unwrap())
            .collect();
        assert_eq!(train.len(), 20, "400 images in batches of 20");
        let mean = train.iter().sum::<f64>() / train.len() as f64;
        let summary_train_loss: f64 = row[col("train_loss")].parse().unwrap();
        assert!(
            (summary_train_loss - mean).abs() < 1e-12,
            "{name}: {summary_train_loss} vs {mean}"
        );
        let last_test = metrics.iter().rfind(|r| r[2] == "test").unwrap();
        assert_eq!(row[col("test_loss")], last_test[4]);
        assert_eq!(row[col("test_acc")], last_test[5]);
        let test_acc: f64 = last_test[5].parse().unwrap();
        assert!(
            markdown.contains(&format!("| {name} | completed |")),
            "{markdown}"
        );
        assert!(
            markdown.contains(&format!("{:.3}%", 100.0 * test_acc)),
            "{markdown}"
        );
    }

    // plot: valid images of the requested size.
    let png = dir.path().join("curves.png");
    let runs: Vec<String> = ["Toy_ReLU_CE", "Toy_Sig_MSE"]
        .iter()
        .map(|n| out_dir.join(n).display().to_string())
        .collect();
    let out = mlp(
        dir.path(),
        &[
            "plot",
            &runs[0],
            &runs[1],
            "--out",
            png.to_str().unwrap(),
            "--size",
            "800x400",
            "--smooth",
            "5",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let bytes = fs::read(&png).unwrap();
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
    assert_eq!(&bytes[12..16], b"IHDR");
    let width = u32::from_be_bytes(bytes[16..20].try_into().unwrap());
    let height = u32::from_be_bytes(bytes[20..24].try_into().unwrap());
    assert_eq!((width, height), (800, 400));

    let svg = dir.path().join("norms.svg");
    let out = mlp(
        dir.path(),
        &[
            "plot",
            "--grad-norms",
            &runs[1],
            "--out",
            svg.to_str().unwrap(),
            "--size",
            "640x480",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let text = fs::read_to_string(&svg).unwrap();
    assert!(
        text.contains("<svg") && text.contains("width=\"640\"") && text.contains("height=\"480\""),
        "{}",
        &text[..200]
    );
    assert!(text.trim_end().ends_with("</svg>"));
    assert!(
        text.contains("fc1") && text.contains("fc2"),
        "the legend names the layers"
    );

    let fig4 = dir.path().join("sigmoid.png");
    let out = mlp(
        dir.path(),
        &["plot", "--sigmoid", "--out", fig4.to_str().unwrap()],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(&fs::read(&fig4).unwrap()[..4], b"\x89PNG");
}

#[test]
fn plot_and_summarize_refuse_bad_input_in_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let cases: Vec<(Vec<&str>, i32, &str)> = vec![
        (
            vec!["summarize", "nowhere"],
            1,
            "error: nowhere: No such file or directory",
        ),
        (vec!["summarize", "."], 1, "error: .: holds no summary.csv"),
        (
            vec!["plot", ".", "--out", "x.png"],
            1,
            "error: .: not a run folder (no config.json)",
        ),
        (
            vec!["plot", "--sigmoid", "--out", "x.jpg"],
            2,
            "error: --out: x.jpg must end in .png or .svg",
        ),
        (
            vec!["plot", "--sigmoid", "--out", "x.png", "--size", "10x10"],
            2,
            "error: --size: \"10x10\" is not WIDTHxHEIGHT",
        ),
        (
            vec!["plot", "--grad-norms", ".", "--out", "x.png"],
            1,
            "error: .: not a run folder (no config.json)",
        ),
    ];
    for (args, code, expected) in cases {
        common::assert_error(dir.path(), &args, code, expected);
    }
}

/// Grid fields are data, never shell code: a loss field with a command in it, a name that leaves
/// `--out` and a short row are each reported by line and nothing runs; a run that fails is named
/// and makes the script exit non-zero while the others finish.
#[test]
fn grid_rows_are_checked_and_never_run_as_shell_code() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("toy");
    fs::create_dir(&data).unwrap();
    write_toy_dataset(&data, 200, 40, 4);
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/grid.sh");
    let out_dir = dir.path().join("runs");
    let marker = dir.path().join("injected");
    let run = |rows: String| {
        let grid = dir.path().join("grid.tsv");
        fs::write(&grid, rows).unwrap();
        Command::new("bash")
            .arg(script)
            .args(["--epochs", "1", "--grid", grid.to_str().unwrap()])
            .args(["--out", out_dir.to_str().unwrap(), "--", "--data"])
            .arg(&data)
            .args(["--batch-size", "20"])
            .env("MLP", env!("CARGO_BIN_EXE_mlp"))
            .output()
            .unwrap()
    };
    let spec = "linear,fc1,16,4,0.1";
    let out = run(format!(
        "ok\tce\t{spec}\nevil\tce; touch {}; echo\t{spec}\n../victim\tce\t{spec}\nshort\tmse\n",
        marker.display()
    ));
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(!marker.exists(), "a grid field ran as shell code");
    assert!(
        !out_dir.join("ok").exists(),
        "a run started before the rows were checked"
    );
    for expected in [
        ":2 (evil): unknown loss",
        ":3: the name '../victim' must be one folder name",
        ":4 (short): expected 3 tab-separated fields",
        "3 bad row(s)",
    ] {
        assert!(err.contains(expected), "{expected:?} not in:\n{err}");
    }
    let out = run(format!("ok\tce\t{spec}\nwrong\tce\tlinear,fc1,16,5,0.1\n"));
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains(":2 (wrong) failed with exit status 2"),
        "{err}"
    );
    assert!(err.contains("1 of 2 run(s) failed"), "{err}");
    assert!(out_dir.join("ok").join("summary.csv").exists());
}

/// Without MLP set, grid.sh builds with cargo and runs the binary under CARGO_TARGET_DIR when set.
#[test]
fn grid_finds_mlp_under_cargo_target_dir() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // A cargo that builds nothing, so that the test checks only where the script looks.
    fs::create_dir(d.join("bin")).unwrap();
    fs::write(d.join("bin/cargo"), "#!/bin/sh\nexit 0\n").unwrap();
    let mut perms = fs::metadata(d.join("bin/cargo")).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o755);
    fs::set_permissions(d.join("bin/cargo"), perms).unwrap();
    fs::write(d.join("grid.tsv"), "Toy\tce\tlinear,fc1,16,4,0.1\n").unwrap();
    let path = format!(
        "{}:{}",
        d.join("bin").display(),
        std::env::var("PATH").unwrap()
    );
    let out = Command::new("bash")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/grid.sh"))
        .args(["--list", "--grid", "grid.tsv", "--out", "runs"])
        .current_dir(d)
        .env_remove("MLP")
        .env("PATH", path)
        .env("CARGO_TARGET_DIR", d.join("elsewhere"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let commands = fs::read_to_string(d.join("runs/grid-commands.txt")).unwrap();
    let expected = format!("'{}/elsewhere/release/mlp' 'train'", d.display());
    assert!(commands.starts_with(&expected), "{commands}");
}
