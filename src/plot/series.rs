//! The curves of a run, read back from its `metrics.csv` and `grad_norms.csv`.

use std::path::Path;

use crate::error::{Error, Result};
use crate::run_folder::{GRAD_NORMS_FILE, METRICS_FILE, file_in};

/// `(step, value)` points.
pub type Points = Vec<(f64, f64)>;

/// A run's loss and accuracy curves.
#[derive(Debug, Clone, Default)]
pub struct RunCurves {
    pub name: String,
    /// Train rows averaged over windows of `smooth` iterations (as the console prints them).
    pub train_loss: Points,
    pub train_acc: Points,
    pub test_loss: Points,
    pub test_acc: Points,
}

fn csv_error(path: &Path, e: csv::Error) -> Error {
    Error::data(path, e.to_string())
}

/// Reads `run/metrics.csv`; train rows are averaged over consecutive windows of `smooth` rows.
pub fn read_run(run: &Path, smooth: usize) -> Result<RunCurves> {
    let path = file_in(run, METRICS_FILE)?;
    let mut reader = crate::output::csv_reader(&path)?;
    let name = run.file_name().map_or_else(
        || run.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    );
    let mut curves = RunCurves {
        name,
        ..RunCurves::default()
    };
    let mut window: Vec<(f64, f64, f64)> = Vec::new();
    let flush = |window: &mut Vec<(f64, f64, f64)>, curves: &mut RunCurves| {
        if let Some(&(step, _, _)) = window.last() {
            let n = window.len() as f64;
            curves
                .train_loss
                .push((step, window.iter().map(|w| w.1).sum::<f64>() / n));
            curves
                .train_acc
                .push((step, window.iter().map(|w| w.2).sum::<f64>() / n));
        }
        window.clear();
    };
    for record in reader.records() {
        let record = record.map_err(|e| csv_error(&path, e))?;
        let field = |i: usize| -> Result<f64> {
            record.get(i).and_then(|v| v.parse().ok()).ok_or_else(|| {
                Error::data(
                    &path,
                    format!(
                        "line {}: column {} is not a number",
                        record.position().map_or(0, |p| p.line()),
                        i + 1
                    ),
                )
            })
        };
        let (step, loss, acc) = (field(0)?, field(4)?, field(5)?);
        match record.get(2) {
            Some("train") => {
                window.push((step, loss, acc));
                if window.len() == smooth {
                    flush(&mut window, &mut curves);
                }
            }
            Some("test") => {
                curves.test_loss.push((step, loss));
                curves.test_acc.push((step, acc));
            }
            other => return Err(Error::data(&path, format!("unknown split {other:?}"))),
        }
    }
    flush(&mut window, &mut curves);
    if curves.train_loss.is_empty() && curves.test_loss.is_empty() {
        return Err(Error::data(
            &path,
            "holds no rows yet: the run has not finished an iteration",
        ));
    }
    Ok(curves)
}

/// Reads `run/grad_norms.csv` into one curve per layer, in the order the layers first appear.
pub fn read_grad_norms(run: &Path) -> Result<Vec<(String, Points)>> {
    let path = file_in(run, GRAD_NORMS_FILE)?;
    let mut reader = crate::output::csv_reader(&path)?;
    let mut layers: Vec<(String, Points)> = Vec::new();
    for record in reader.records() {
        let record = record.map_err(|e| csv_error(&path, e))?;
        let (Some(step), Some(layer), Some(norm)) = (record.get(0), record.get(2), record.get(3))
        else {
            return Err(Error::data(&path, "a row with fewer than 4 columns"));
        };
        let point = match (step.parse(), norm.parse()) {
            (Ok(s), Ok(n)) => (s, n),
            _ => {
                return Err(Error::data(
                    &path,
                    format!("step {step:?} or norm {norm:?} is not a number"),
                ));
            }
        };
        match layers.iter_mut().find(|(name, _)| name == layer) {
            Some((_, points)) => points.push(point),
            None => layers.push((layer.to_string(), vec![point])),
        }
    }
    if layers.is_empty() {
        return Err(Error::data(
            &path,
            "holds no rows: the run was shorter than its --disp-freq iterations",
        ));
    }
    Ok(layers)
}
