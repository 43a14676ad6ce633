//! The run folder: its files by name, and the check that a folder given as a run is one.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

pub const METRICS_FILE: &str = "metrics.csv";
pub const SUMMARY_FILE: &str = "summary.csv";
pub const CONFIG_FILE: &str = "config.json";
pub const GRAD_NORMS_FILE: &str = "grad_norms.csv";
pub const MODEL_FILE: &str = "model.ckpt";
/// The file whose exclusive lock a training holds on its run folder, with the holder's process id.
pub const LOCK_FILE: &str = "run.lock";

/// Whether `dir` holds a run (its config.json).
pub fn is_run(dir: &Path) -> bool {
    dir.join(CONFIG_FILE).is_file()
}

/// The path of `file` in the run folder `dir`; an error says when `dir` is not a run folder, or when
/// the run has no such file yet.
pub fn file_in(dir: &Path, file: &str) -> Result<PathBuf> {
    if !is_run(dir) {
        return Err(Error::data(
            dir,
            format!("not a run folder (no {CONFIG_FILE}); give a folder that mlp train wrote"),
        ));
    }
    let path = dir.join(file);
    if path.symlink_metadata().is_err() {
        let when = match file {
            MODEL_FILE => "; a run saves it at the end of its first epoch",
            GRAD_NORMS_FILE => "; train with --grad-norms to record gradient norms",
            _ => "",
        };
        return Err(Error::data(dir, format!("the run has no {file}{when}")));
    }
    Ok(path)
}
