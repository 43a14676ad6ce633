//! Reading the files a user names: only regular files (after following symlinks), since reading a
//! FIFO or a device could block forever or never end.

use std::fs;
use std::path::Path;

use crate::error::{Error, Result};

/// The bytes of the regular file at `path` (after following symlinks). A FIFO, device or folder is
/// refused before it is opened, since reading one could block forever; `expected` names what was wanted.
pub fn read_regular(path: &Path, expected: &str) -> Result<Vec<u8>> {
    let kind = fs::metadata(path)
        .map_err(|e| Error::io(path, e))?
        .file_type();
    if kind.is_file() {
        return fs::read(path).map_err(|e| Error::io(path, e));
    }
    let what = if kind.is_dir() {
        "a directory"
    } else {
        special_kind(kind)
    };
    Err(Error::data(path, format!("is {what}, expected {expected}")))
}

#[cfg(unix)]
fn special_kind(kind: fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if kind.is_fifo() {
        "a FIFO (named pipe)"
    } else if kind.is_socket() {
        "a socket"
    } else if kind.is_char_device() || kind.is_block_device() {
        "a device"
    } else {
        "not a regular file"
    }
}

#[cfg(not(unix))]
fn special_kind(_: fs::FileType) -> &'static str {
    "not a regular file"
}

/// [`read_regular`] as UTF-8 text.
pub fn read_regular_text(path: &Path, expected: &str) -> Result<String> {
    let bytes = read_regular(path, expected)?;
    String::from_utf8(bytes)
        .map_err(|_| Error::data(path, format!("is not UTF-8 text, expected {expected}")))
}
