//! `mlp summarize`: the `summary.csv` of many runs as one table, Markdown in the shape of the report's
//! Table 3 (one row per network) and CSV (the summaries stacked), optionally beside the report's numbers.

use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::reference;
use crate::run_folder::SUMMARY_FILE;

/// One run's summary: its header and values as written, and the numbers the table shows.
#[derive(Debug, Clone)]
pub struct RunSummary {
    pub folder: PathBuf,
    pub header: Vec<String>,
    pub values: Vec<String>,
}

impl RunSummary {
    /// The value of column `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        let i = self.header.iter().position(|h| h == name)?;
        self.values.get(i).map(String::as_str)
    }

    fn number(&self, name: &str) -> Result<f64> {
        let text = self.get(name).unwrap_or("");
        text.parse().map_err(|_| {
            Error::data(
                self.folder.join(SUMMARY_FILE),
                format!("column {name} holds \"{text}\", not a number"),
            )
        })
    }

    pub fn name(&self) -> &str {
        self.get("name").unwrap_or("?")
    }

    /// Whole epochs trained: the `epochs` column, or for a summary written before it existed,
    /// `max_epoch` when the run completed.
    pub fn epochs(&self) -> Option<usize> {
        if let Some(e) = self.get("epochs").and_then(|e| e.parse().ok()) {
            return Some(e);
        }
        match self.get("status") {
            Some("completed") => self.get("max_epoch")?.parse().ok(),
            _ => None,
        }
    }
}

/// How deep `summarize` looks for runs below a folder that is not one (`runs/grid/epochs-1/NAME`).
pub const MAX_DEPTH: usize = 4;

/// Reads `path/summary.csv` for each run folder given, and for any other folder every run folder
/// below it (up to [`MAX_DEPTH`] levels). Entries that are not runs (a file, a folder without a
/// summary) are skipped, each with a note on stderr; it is an error only when no run is found at all.
/// Runs named as in the report's Table 3 come first, in its order; the others follow by name.
pub fn collect(paths: &[PathBuf]) -> Result<Vec<RunSummary>> {
    let mut runs = Vec::new();
    let mut skipped = Vec::new();
    for path in paths {
        fs::metadata(path).map_err(|e| Error::io(path, e))?;
        find_runs(path, MAX_DEPTH, &mut runs, &mut skipped)?;
    }
    for (path, why) in &skipped {
        eprintln!(
            "note: skipped {}: {why}",
            crate::error::shown(&path.display().to_string())
        );
    }
    if runs.is_empty() {
        let path = paths.first().map_or(Path::new("."), PathBuf::as_path);
        return Err(Error::data(
            path,
            "holds no summary.csv, nor do its subfolders (is it a run folder?)",
        ));
    }
    let rank = |r: &RunSummary| {
        reference::TABLE_3
            .iter()
            .position(|t| t.name == r.name())
            .unwrap_or(usize::MAX)
    };
    runs.sort_by(|a, b| rank(a).cmp(&rank(b)).then_with(|| a.name().cmp(b.name())));
    Ok(runs)
}

/// Adds the run at `path`, or the runs below it; what is neither goes to `skipped` with the reason.
fn find_runs(
    path: &Path,
    depth: usize,
    runs: &mut Vec<RunSummary>,
    skipped: &mut Vec<(PathBuf, &'static str)>,
) -> Result<()> {
    if path.join(SUMMARY_FILE).is_file() {
        runs.push(read(path)?);
        return Ok(());
    }
    if !path.is_dir() {
        skipped.push((path.to_path_buf(), "not a run folder"));
        return Ok(());
    }
    if crate::run_folder::is_run(path) {
        skipped.push((path.to_path_buf(), "a run with no summary.csv yet"));
        return Ok(());
    }
    if depth == 0 {
        return Ok(());
    }
    let mut entries: Vec<PathBuf> = fs::read_dir(path)
        .map_err(|e| Error::io(path, e))?
        .map(|e| e.map(|e| e.path()).map_err(|e| Error::io(path, e)))
        .collect::<Result<_>>()?;
    entries.sort();
    for entry in entries.iter().filter(|e| e.is_dir()) {
        find_runs(entry, depth - 1, runs, skipped)?;
    }
    Ok(())
}

fn read(folder: &Path) -> Result<RunSummary> {
    let path = folder.join(SUMMARY_FILE);
    let mut reader = crate::output::csv_reader(&path)?;
    let header: Vec<String> = reader
        .headers()
        .map_err(|e| Error::data(&path, e.to_string()))?
        .iter()
        .map(String::from)
        .collect();
    let record = reader
        .records()
        .next()
        .ok_or_else(|| Error::data(&path, "has a header but no row"))?
        .map_err(|e| Error::data(&path, e.to_string()))?;
    Ok(RunSummary {
        folder: folder.to_path_buf(),
        header,
        values: record.iter().map(String::from).collect(),
    })
}

/// The summaries stacked under one header: every column any of them has, in the order first seen
/// (a summary written by an older mlp lacks the newer columns; its cells there are empty).
pub fn to_csv(runs: &[RunSummary]) -> Result<String> {
    let mut header: Vec<&str> = Vec::new();
    for column in runs.iter().flat_map(|r| &r.header) {
        if !header.contains(&column.as_str()) {
            header.push(column);
        }
    }
    let mut csv = csv::Writer::from_writer(Vec::new());
    if !runs.is_empty() {
        let _ = csv.write_record(&header);
    }
    for run in runs {
        let _ = csv.write_record(header.iter().map(|c| run.get(c).unwrap_or("")));
    }
    let bytes = csv
        .into_inner()
        .map_err(|e| Error::io("summary table", e.into_error()))?;
    Ok(String::from_utf8(bytes).expect("CSV of UTF-8 fields"))
}

/// The Markdown table: one row per run with the Table 3 columns, and with `compare` the report's test
/// accuracy and our difference from it in percentage points.
pub fn to_markdown(runs: &[RunSummary], compare: bool) -> Result<String> {
    let mut out = String::from(
        "| Network | Status | Epochs | Train Loss | Train Acc | Test Loss | Test Acc | Train Time |",
    );
    let mut rule = String::from("|---|---|---:|---:|---:|---:|---:|---:|");
    if compare {
        out.push_str(" Report Test Acc | Δ Test Acc (pp) |");
        rule.push_str("---:|---:|");
    }
    out.push('\n');
    out.push_str(&rule);
    out.push('\n');
    let mut unlike = 0;
    for run in runs {
        let test_acc = run.number("test_acc")?;
        let epochs = run.epochs();
        let _ = write!(
            out,
            "| {} | {} | {} | {:.5} | {:.3}% | {:.5} | {:.3}% | {:.1} s |",
            markdown_cell(run.name()),
            markdown_cell(run.get("status").unwrap_or("?")),
            epochs.map_or("?".to_string(), |e| e.to_string()),
            run.number("train_loss")?,
            100.0 * run.number("train_acc")?,
            run.number("test_loss")?,
            100.0 * test_acc,
            run.number("train_time_s")?,
        );
        if compare {
            match reference::lookup(run.name()) {
                Some(r) => {
                    let short = epochs != Some(reference::EPOCHS);
                    unlike += usize::from(short);
                    let _ = write!(
                        out,
                        " {:.3}% | {:+.2}{} |",
                        100.0 * r.test_acc,
                        100.0 * (test_acc - r.test_acc),
                        if short { " *" } else { "" }
                    );
                }
                None => out.push_str(" - | - |"),
            }
        }
        out.push('\n');
    }
    if unlike > 0 {
        let _ = writeln!(
            out,
            "\n\\* trained for other than the report's {} epochs: the difference is not like for like.",
            reference::EPOCHS
        );
    }
    Ok(out)
}

/// `text` safe in a Markdown table cell: `|` escaped, line breaks as spaces.
fn markdown_cell(text: &str) -> String {
    text.replace('\\', "\\\\")
        .replace('|', "\\|")
        .replace(['\n', '\r'], " ")
}
