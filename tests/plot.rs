//! `mlp plot` through the real binary on run folders made by hand: values no chart can show, many
//! runs, folders that are not runs, and outputs that cannot be written.

mod common;

use std::fs;
use std::os::unix::fs::FileTypeExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{assert_error, stderr};

/// A run folder holding `rows` train rows whose loss is `loss(step)`, and a test row every 100 steps.
fn fake_run(dir: &Path, name: &str, rows: usize, loss: &dyn Fn(usize) -> String) {
    let run = dir.join(name);
    fs::create_dir_all(&run).unwrap();
    fs::write(run.join("config.json"), "{}").unwrap();
    let mut csv = String::from("step,epoch,split,lr,loss,acc,time_s\n");
    for step in 1..=rows {
        let l = loss(step);
        csv += &format!("{step},1,train,0.01,{l},0.5,0.1\n");
        if step % 100 == 0 {
            csv += &format!("{step},1,test,0.01,{l},0.6,0.1\n");
        }
    }
    fs::write(run.join("metrics.csv"), csv).unwrap();
}

/// `mlp ARGS` in `cwd`, killed (and the test failed) if it takes over a minute.
fn mlp_within_a_minute(cwd: &Path, args: &[&str]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_mlp"))
        .args(args)
        .current_dir(cwd)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > Duration::from_secs(60) {
            child.kill().unwrap();
            panic!("mlp {args:?} still running after a minute");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

#[test]
fn values_no_chart_can_show_are_left_out_with_a_note() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let odd = |step: usize| match step {
        100 => "1.79e308".to_string(),
        150 => "inf".to_string(),
        160 => "NaN".to_string(),
        _ => format!("{}", 2.0 / step as f64),
    };
    fake_run(d, "diverged", 300, &odd);
    for args in [
        vec!["plot", "diverged", "--out", "a.png"],
        vec!["plot", "diverged", "--log-loss", "--out", "a.svg"],
        vec!["plot", "diverged", "--smooth", "1", "--out", "b.png"],
        vec![
            "plot",
            "diverged",
            "--smooth",
            "18446744073709551615",
            "--out",
            "c.png",
        ],
    ] {
        let out = mlp_within_a_minute(d, &args);
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
        assert!(
            stderr(&out).starts_with("note: "),
            "{args:?}: {}",
            stderr(&out)
        );
        let image = args.last().unwrap();
        assert!(fs::metadata(d.join(image)).unwrap().len() > 1000, "{image}");
    }
}

#[test]
fn many_runs_get_their_own_colours_and_a_legend_beside_the_charts() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let names: Vec<String> = (0..15)
        .map(|k| format!("a_rather_long_run_name_{k:02}"))
        .collect();
    for (k, name) in names.iter().enumerate() {
        fake_run(d, name, 200, &|s| format!("{}", (k + 1) as f64 / s as f64));
    }
    let mut args = vec!["plot", "--log-loss", "--out", "all.svg"];
    args.extend(names.iter().map(String::as_str));
    let out = mlp_within_a_minute(d, &args);
    assert!(out.status.success(), "{}", stderr(&out));
    let svg = fs::read_to_string(d.join("all.svg")).unwrap();
    assert!(
        svg.contains("loss (log scale)"),
        "the y label says the scale"
    );
    // The test curves are drawn with 2-pixel strokes: one colour per run.
    let mut colours: Vec<&str> = svg
        .split("<polyline")
        .skip(1)
        .filter(|p| p.contains("stroke-width=\"2\""))
        .filter_map(|p| p.split("stroke=\"").nth(1)?.split('"').next())
        .collect();
    colours.sort();
    colours.dedup();
    assert!(
        colours.len() >= 15,
        "{} colours: {colours:?}",
        colours.len()
    );
    // Every name is in the one legend, and the title (all the names) is wrapped to fit the width.
    for name in &names {
        assert!(svg.contains(name.as_str()), "{name} in the legend");
    }
    let width: f64 = 1400.0;
    for text in svg.split("<text").skip(1) {
        let x: f64 = text
            .split("x=\"")
            .nth(1)
            .unwrap()
            .split('"')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        assert!(
            (0.0..width).contains(&x),
            "text starts inside the image: {text}"
        );
    }
}

#[test]
fn plot_says_what_is_wrong_with_its_folders_and_output() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    fake_run(d, "run", 100, &|_| "1.0".into());
    fs::create_dir(d.join("empty")).unwrap();
    fs::create_dir(d.join("started")).unwrap();
    fs::write(d.join("started/config.json"), "{}").unwrap();
    let cases: &[(&[&str], i32, &str)] = &[
        (
            &["plot", "empty", "--out", "x.png"],
            1,
            "error: empty: not a run folder (no config.json)",
        ),
        (
            &["plot", "started", "--out", "x.png"],
            1,
            "error: started: the run has no metrics.csv",
        ),
        (
            &["plot", "--grad-norms", "run", "--out", "x.png"],
            1,
            "error: run: the run has no grad_norms.csv; train with --grad-norms",
        ),
        (
            &["plot", "run", "--out", "missing/x.png"],
            1,
            "error: missing/x.png: No such file or directory",
        ),
        (
            &["plot", "run", "--out", "empty"],
            2,
            "error: --out: empty must end in .png or .svg",
        ),
        (
            &["plot", "run", "--out", "run/metrics.csv/x.svg"],
            1,
            "error: run/metrics.csv/x.svg:",
        ),
    ];
    for (args, code, expected) in cases {
        assert_error(d, args, *code, expected);
    }
    fs::create_dir(d.join("dir.png")).unwrap();
    assert_error(
        d,
        &["plot", "run", "--out", "dir.png"],
        1,
        "error: dir.png: is a folder",
    );
    let left: Vec<_> = fs::read_dir(d)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(
        !left.iter().any(|n| n.to_string_lossy().ends_with(".tmp")),
        "{left:?}"
    );
}

#[test]
fn a_run_without_rows_is_named_and_nothing_is_replaced_but_files() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    fake_run(d, "empty", 0, &|_| "1.0".into());
    assert_error(
        d,
        &["plot", "empty", "--out", "x.png"],
        1,
        "error: empty/metrics.csv: holds no rows yet",
    );
    // A device or FIFO at --out is refused, never renamed over.
    fake_run(d, "run", 100, &|_| "1.0".into());
    let fifo = d.join("fifo.png");
    assert!(
        Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    assert_error(
        d,
        &["plot", "run", "--out", "fifo.png"],
        1,
        "error: fifo.png: is not a regular file",
    );
    assert!(fs::symlink_metadata(&fifo).unwrap().file_type().is_fifo());
    std::os::unix::fs::symlink("/dev/null", d.join("null.png")).unwrap();
    assert_error(
        d,
        &["plot", "run", "--out", "null.png"],
        1,
        "error: null.png: is not a regular file",
    );
    assert!(
        fs::symlink_metadata(d.join("null.png"))
            .unwrap()
            .file_type()
            .is_symlink()
    );
}
