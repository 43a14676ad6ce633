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
    // The file is replaced by a rename: a folder, a device or a FIFO there would be replaced, not
    // written to.
    match fs::metadata(path) {
        Ok(m) if m.is_dir() => return Err(Error::data(path, "is a folder; give a file name")),
        Ok(m) if !m.is_file() => {
            return Err(Error::data(
                path,
                "is not a regular file (a device, FIFO or socket); give a file's path",
            ));
        }
        _ => {}
    }
    let tmp = temporary_path(path);
    let result = (|| {
        let mut file = fs::File::create(&tmp)?;
        write(&mut file)?;
        file.sync_all()
    })();
    if let Err(e) = result {
        let _ = fs::remove_file(&tmp);
        return Err(Error::io(path, e));
    }
    fs::rename(&tmp, path).map_err(|e| Error::io(path, e))
}

/// A CSV file's whole rows: its bytes up to its last newline. A process killed while appending (or a
/// full disk) can leave a partial last line; it is read as absent. Returns the bytes and whether a
/// partial line was dropped.
pub fn whole_rows(path: &Path) -> Result<(Vec<u8>, bool)> {
    let mut bytes = crate::files::read_regular(path, "a CSV file")?;
    let whole = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    let torn = whole < bytes.len();
    bytes.truncate(whole);
    Ok((bytes, torn))
}

/// A CSV reader over [`whole_rows`] of `path`.
pub fn csv_reader(path: &Path) -> Result<csv::Reader<std::io::Cursor<Vec<u8>>>> {
    let (bytes, _) = whole_rows(path)?;
    Ok(csv::Reader::from_reader(std::io::Cursor::new(bytes)))
}

/// A writer that only ever hands whole lines to the file: bytes wait in memory until a newline ends
/// them, and go out, whole lines only, when 64 KiB have gathered or on `flush`. So a process killed
/// at any moment leaves whole rows behind.
pub struct WholeLines<W: Write> {
    inner: W,
    pending: Vec<u8>,
}

impl<W: Write> WholeLines<W> {
    pub fn new(inner: W) -> Self {
        WholeLines {
            inner,
            pending: Vec::with_capacity(WHOLE_LINES_AT_ONCE),
        }
    }

    /// Writes out every line ended so far, keeping the unfinished one.
    fn write_lines(&mut self) -> std::io::Result<()> {
        if let Some(end) = self.pending.iter().rposition(|&b| b == b'\n') {
            self.inner.write_all(&self.pending[..=end])?;
            self.pending.drain(..=end);
        }
        Ok(())
    }
}

const WHOLE_LINES_AT_ONCE: usize = 1 << 16;

impl<W: Write> Write for WholeLines<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.pending.extend_from_slice(buf);
        if self.pending.len() >= WHOLE_LINES_AT_ONCE {
            self.write_lines()?;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.write_lines()?;
        self.inner.flush()
    }
}

/// Keeps the header and the rows whose first column (`step`) is at most `step`, rewriting the file
/// atomically: a resumed run continues from its checkpoint without duplicating rows. A partial last
/// line (a process killed while writing it) is dropped, and said so on stderr.
pub fn keep_rows_up_to(path: &Path, step: usize) -> Result<()> {
    let fail = |e: csv::Error| Error::data(path, e.to_string());
    let (bytes, torn) = whole_rows(path)?;
    if torn {
        eprintln!(
            "note: {}: dropped a partial last row (the run was stopped while writing it)",
            path.display()
        );
    }
    let mut reader = csv::Reader::from_reader(bytes.as_slice());
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

#[cfg(test)]
mod tests {
    use super::*;

    /// More than the batch of lines between flushes goes out as whole lines only.
    #[test]
    fn whole_lines_never_hand_over_part_of_a_line() {
        let mut w = WholeLines::new(Vec::new());
        let line = b"12345,1,train,0.01,2.302585,0.125,0.5\n";
        for _ in 0..3000 {
            w.write_all(line).unwrap();
            w.write_all(b"7,").unwrap();
            assert!(w.inner.is_empty() || w.inner.ends_with(b"\n"));
            w.write_all(b"8\n").unwrap();
        }
        assert!(!w.inner.is_empty(), "64 KiB gathered and nothing written");
        w.flush().unwrap();
        assert_eq!(w.inner.len(), 3000 * (line.len() + 4));
    }
}
