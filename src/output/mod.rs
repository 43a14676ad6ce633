//! What a run leaves behind and shows: the files of its folder and the progress on the terminal.

pub mod config;
pub mod grad_norms;
pub mod metrics;
pub mod progress;
pub mod summary;

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// Writes `path` whole or not at all: the bytes go to a temporary file beside it, which is then renamed
/// over `path`, so a crash never leaves half a file.
pub fn write_atomically(
    path: &Path,
    write: impl FnOnce(&mut dyn Write) -> std::io::Result<()>,
) -> Result<()> {
    let tmp = temporary_path(path);
    let result = (|| {
        let mut file = fs::File::create(&tmp)?;
        write(&mut file)?;
        file.sync_all()
    })();
    if let Err(e) = result {
        let _ = fs::remove_file(&tmp);
        return Err(Error::io(&tmp, e));
    }
    fs::rename(&tmp, path).map_err(|e| Error::io(path, e))
}

/// Keeps the header and the rows whose first column (`step`) is at most `step`, rewriting the file
/// atomically: a resumed run continues from its checkpoint without duplicating rows.
pub fn keep_rows_up_to(path: &Path, step: usize) -> Result<()> {
    let fail = |e: csv::Error| Error::data(path, e.to_string());
    let mut reader = csv::Reader::from_path(path).map_err(fail)?;
    let header = reader.headers().map_err(fail)?.clone();
    let mut kept = Vec::new();
    for record in reader.records() {
        let record = record.map_err(fail)?;
        let row_step: usize = record.get(0).and_then(|s| s.parse().ok()).ok_or_else(|| {
            Error::data(
                path,
                format!("a row whose step is not a number: {:?}", record.get(0)),
            )
        })?;
        if row_step <= step {
            kept.push(record);
        }
    }
    write_atomically(path, |w| {
        let mut csv = csv::Writer::from_writer(w);
        csv.write_record(&header)?;
        for record in &kept {
            csv.write_record(record)?;
        }
        csv.flush()
    })
}

fn temporary_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".tmp");
    path.with_file_name(name)
}
