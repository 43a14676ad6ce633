//! `mlp summarize` through the real binary on run folders made by hand: nested grids, entries that
//! are not runs, names that would break Markdown, and runs shorter than the report's.

mod common;

use std::fs;
use std::path::Path;

use common::{mlp, stderr, stdout};

const HEADER: &str = "name,status,loss,layer,lr,weight_decay,momentum,batch_size,max_epoch,seed,steps,train_loss,train_acc,test_loss,test_acc,train_time_s,epochs";

/// A finished run folder `dir/name` of `epochs` epochs (of 600 steps) with test accuracy `acc`.
fn run(dir: &Path, folder: &str, name: &str, epochs: usize, acc: f64) {
    let run = dir.join(folder);
    fs::create_dir_all(&run).unwrap();
    fs::write(run.join("config.json"), "{}").unwrap();
    let row = format!(
        "\"{name}\",completed,ce,\"linear,fc1,784,10,0.01\",0.01,0.0005,0.9,100,{epochs},2019,{},0.3,0.9,0.3,{acc},1.5,{epochs}",
        epochs * 600
    );
    fs::write(run.join("summary.csv"), format!("{HEADER}\n{row}\n")).unwrap();
}

#[test]
fn runs_are_found_at_any_depth_and_other_entries_skipped_with_a_note() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    run(d, "runs/grid/epochs-1/A", "A", 1, 0.9);
    run(d, "runs/B", "B", 2, 0.8);
    fs::write(
        d.join("runs/grid/epochs-1/grid-commands.txt"),
        "mlp train\n",
    )
    .unwrap();
    fs::create_dir_all(d.join("runs/grid/epochs-1/C")).unwrap();
    fs::write(d.join("runs/grid/epochs-1/C/config.json"), "{}").unwrap();

    let out = mlp(d, &["summarize", "runs"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let table = stdout(&out);
    assert!(
        table.contains("| A | completed | 1 |") && table.contains("| B | completed | 2 |"),
        "{table}"
    );

    let out = mlp(
        d,
        &[
            "summarize",
            "runs/grid/epochs-1/A",
            "runs/grid/epochs-1/C",
            "runs/grid/epochs-1/grid-commands.txt",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let notes = stderr(&out);
    assert!(
        notes.contains("note: skipped runs/grid/epochs-1/grid-commands.txt: not a run folder"),
        "{notes}"
    );
    assert!(
        notes.contains("note: skipped runs/grid/epochs-1/C: a run with no summary.csv yet"),
        "{notes}"
    );
    assert!(stdout(&out).contains("| A |"));
}

#[test]
fn names_with_pipes_stay_in_their_cell_and_short_runs_are_marked() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    run(d, "runs/piped", "lr|0.1", 1, 0.9);
    run(d, "runs/MLP1_ReLU_CE", "MLP1_ReLU_CE", 2, 0.2);
    let out = mlp(d, &["summarize", "runs", "--report"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let table = stdout(&out);
    let header_cells = table.lines().next().unwrap().matches(" | ").count();
    let piped = table
        .lines()
        .find(|l| l.contains("lr\\|0.1"))
        .expect("escaped name");
    assert_eq!(
        piped.replace("\\|", "").matches(" | ").count(),
        header_cells,
        "{piped}"
    );
    let mlp1 = table
        .lines()
        .find(|l| l.starts_with("| MLP1_ReLU_CE |"))
        .unwrap();
    assert!(
        mlp1.contains(" | 2 | ") && mlp1.ends_with(" -78.05 * |"),
        "{mlp1}"
    );
    assert!(
        table.contains("other than the report's 50 epochs"),
        "{table}"
    );
}

#[test]
fn summaries_from_an_older_mlp_stack_with_new_ones() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    run(d, "runs/new", "new", 3, 0.9);
    let old = d.join("runs/old");
    fs::create_dir_all(&old).unwrap();
    fs::write(old.join("config.json"), "{}").unwrap();
    let old_header = HEADER.strip_suffix(",epochs").unwrap();
    let old_row = "old,completed,ce,\"linear,fc1,784,10,0.01\",0.01,0.0005,0.9,100,4,2019,2400,0.3,0.9,0.3,0.9,1.5";
    fs::write(
        old.join("summary.csv"),
        format!("{old_header}\n{old_row}\n"),
    )
    .unwrap();
    let out = mlp(d, &["summarize", "runs", "--csv", "all.csv"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("| old | completed | 4 |"),
        "max_epoch of a completed old run"
    );
    let (header, rows) = common::read_csv(&d.join("all.csv"));
    assert_eq!(header.join(","), HEADER);
    let epochs: Vec<&str> = rows.iter().map(|r| r[16].as_str()).collect();
    assert_eq!(epochs, ["3", ""], "{rows:?}");
}
