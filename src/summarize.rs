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
}

/// Reads `path/summary.csv`, or, for a folder of run folders, every `*/summary.csv` in it. Runs named
/// as in the report's Table 3 come first, in its order; the others follow by name.
pub fn collect(paths: &[PathBuf]) -> Result<Vec<RunSummary>> {
    let mut runs = Vec::new();
    for path in paths {
        if path.join(SUMMARY_FILE).is_file() {
            runs.push(read(path)?);
            continue;
        }
        let entries = fs::read_dir(path).map_err(|e| Error::io(path, e))?;
        let mut found = 0;
        for entry in entries {
            let dir = entry.map_err(|e| Error::io(path, e))?.path();
            if dir.join(SUMMARY_FILE).is_file() {
                runs.push(read(&dir)?);
                found += 1;
            }
        }
        if found == 0 {
            return Err(Error::data(
                path,
                "holds no summary.csv, nor do its subfolders (is it a run folder?)",
            ));
        }
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

/// The summaries stacked under one header (they must share it).
pub fn to_csv(runs: &[RunSummary]) -> Result<String> {
    let mut csv = csv::Writer::from_writer(Vec::new());
    if let Some(first) = runs.first() {
        let _ = csv.write_record(&first.header);
    }
    for run in runs {
        if run.header != runs[0].header {
            return Err(Error::data(
                run.folder.join(SUMMARY_FILE),
                "has other columns than the first summary",
            ));
        }
        let _ = csv.write_record(&run.values);
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
        "| Network | Status | Train Loss | Train Acc | Test Loss | Test Acc | Train Time |",
    );
    let mut rule = String::from("|---|---|---:|---:|---:|---:|---:|");
    if compare {
        out.push_str(" Report Test Acc | Δ Test Acc (pp) |");
        rule.push_str("---:|---:|");
    }
    out.push('\n');
    out.push_str(&rule);
    out.push('\n');
    for run in runs {
        let test_acc = run.number("test_acc")?;
        let _ = write!(
            out,
            "| {} | {} | {:.5} | {:.3}% | {:.5} | {:.3}% | {:.1} s |",
            run.name(),
            run.get("status").unwrap_or("?"),
            run.number("train_loss")?,
            100.0 * run.number("train_acc")?,
            run.number("test_loss")?,
            100.0 * test_acc,
            run.number("train_time_s")?,
        );
        if compare {
            match reference::lookup(run.name()) {
                Some(r) => {
                    let _ = write!(
                        out,
                        " {:.3}% | {:+.2} |",
                        100.0 * r.test_acc,
                        100.0 * (test_acc - r.test_acc)
                    );
                }
                None => out.push_str(" - | - |"),
            }
        }
        out.push('\n');
    }
    Ok(out)
}
