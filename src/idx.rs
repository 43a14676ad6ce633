//! Reader for IDX files, the format of MNIST and its look-alikes (Fashion-MNIST, KMNIST, ...).
//!
//! An IDX file is a 4-byte magic number `00 00 TT DD` (TT the element type, 0x08 for unsigned bytes; DD
//! the number of dimensions), then DD big-endian u32 sizes, then exactly the product of the sizes in
//! bytes of data. Images are `0x00000803` (count, rows, cols), labels `0x00000801` (count).
//!
//! Files may be gzip-compressed; that is detected from gzip's magic bytes, not the file name. Everything
//! is checked: magic, dimension count, and that the data is exactly as long as the header says.

use std::io::{self, Read};
use std::path::Path;

use flate2::read::MultiGzDecoder;

use crate::error::{Error, Result};

/// The element type code of unsigned bytes, the only one MNIST-style data uses.
const UBYTE: u8 = 0x08;
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];
const GZIP_CORRUPT: &str = "gzip data is corrupt";

/// A decoded IDX array of unsigned bytes, row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct IdxArray {
    pub dims: Vec<usize>,
    pub data: Vec<u8>,
}

/// The most data one IDX file may hold: beyond it a header is taken to be wrong rather than read.
pub const MAX_DATA: usize = 1 << 32;

/// Reads the IDX file at `path`, which must hold unsigned bytes in `want_dims` dimensions.
pub fn read_idx(path: &Path, want_dims: u8) -> Result<IdxArray> {
    let raw = crate::files::read_regular(path, "an IDX file")?;
    decode(&raw, want_dims).map_err(|problem| Error::data(path, problem))
}

/// Decodes an IDX file's bytes (gzipped or plain); the error says what is wrong with them.
pub fn decode(raw: &[u8], want_dims: u8) -> Result<IdxArray, String> {
    if raw.starts_with(&GZIP_MAGIC) {
        let mut gz = MultiGzDecoder::new(raw);
        decode_stream(&mut gz, want_dims, GZIP_CORRUPT).map_err(|problem| {
            // Corruption shows only at the checksum at the end; bytes read before it may have looked like
            // a malformed header. Finish the stream so that the real cause is reported.
            match io::copy(&mut gz, &mut io::sink()) {
                Err(e) if !problem.starts_with(GZIP_CORRUPT) => format!("{GZIP_CORRUPT}: {e}"),
                _ => problem,
            }
        })
    } else {
        decode_stream(raw, want_dims, "read failed")
    }
}

fn decode_stream(
    mut reader: impl Read,
    want_dims: u8,
    read_error: &str,
) -> Result<IdxArray, String> {
    let fail = |e: io::Error| format!("{read_error}: {e}");
    let mut magic = [0u8; 4];
    let got = read_up_to(&mut reader, &mut magic).map_err(fail)?;
    if got == 0 {
        return Err("the file is empty, expected an IDX file".into());
    }
    if got < 4 {
        return Err(format!(
            "the file is {got} bytes long, too short for an IDX header"
        ));
    }
    let want_magic = u32::from_be_bytes([0, 0, UBYTE, want_dims]);
    let magic_number = u32::from_be_bytes(magic);
    if magic_number != want_magic {
        let what = if want_dims == 1 { "labels" } else { "images" };
        return Err(format!(
            "expected IDX magic number 0x{want_magic:08X} ({what}: unsigned bytes in {want_dims} dimension{}), got 0x{magic_number:08X}",
            if want_dims == 1 { "" } else { "s" }
        ));
    }
    let mut dims = Vec::with_capacity(want_dims as usize);
    for axis in 0..want_dims {
        let mut size = [0u8; 4];
        if read_up_to(&mut reader, &mut size).map_err(fail)? < 4 {
            return Err(format!(
                "the header ends before the size of dimension {}",
                axis + 1
            ));
        }
        dims.push(u32::from_be_bytes(size) as usize);
    }
    let shape = dims
        .iter()
        .map(|d| d.to_string())
        .collect::<Vec<_>>()
        .join("x");
    let expected = dims
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| format!("the header's sizes {shape} overflow"))?;
    if expected > MAX_DATA {
        return Err(format!(
            "the header claims {shape} = {expected} bytes of data, more than the {} GiB an IDX file \
             may hold here; is the header right?",
            MAX_DATA >> 30
        ));
    }
    let data = read_claimed(&mut reader, expected, &shape, read_error)?;
    if data.len() < expected {
        return Err(format!(
            "truncated: the header promises {expected} bytes of data ({shape}), the file holds {}",
            data.len()
        ));
    }
    let trailing = io::copy(&mut reader, &mut io::sink()).map_err(fail)?;
    if trailing > 0 {
        return Err(format!(
            "{trailing} trailing bytes after the {expected} bytes of data the header describes ({shape})"
        ));
    }
    Ok(IdxArray { dims, data })
}

/// Up to `expected` bytes, allocated as they arrive (so that a header that lies about its size costs
/// no memory for it), with a clear error if they do not fit in memory.
fn read_claimed(
    reader: &mut impl Read,
    expected: usize,
    shape: &str,
    read_error: &str,
) -> Result<Vec<u8>, String> {
    const CHUNK: usize = 1 << 24;
    let mut data = Vec::new();
    while data.len() < expected {
        let want = CHUNK.min(expected - data.len());
        data.try_reserve(want).map_err(|_| {
            format!(
                "not enough memory for the {expected} bytes of data the header claims ({shape})"
            )
        })?;
        let got = reader
            .by_ref()
            .take(want as u64)
            .read_to_end(&mut data)
            .map_err(|e| format!("{read_error}: {e}"))?;
        if got == 0 {
            break;
        }
    }
    Ok(data)
}

/// Like `read_exact`, but returns how many bytes were read instead of failing at end of file.
fn read_up_to(reader: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// Encodes an unsigned-byte IDX file (plain, not gzipped); for tests and tools that write data sets.
pub fn encode(dims: &[usize], data: &[u8]) -> Vec<u8> {
    let mut out = vec![0, 0, UBYTE, dims.len() as u8];
    for &d in dims {
        out.extend_from_slice(&(d as u32).to_be_bytes());
    }
    out.extend_from_slice(data);
    out
}
