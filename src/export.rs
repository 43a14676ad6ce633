//! `mlp export`: a saved model's weights for numpy and PyTorch, as an `.npz` file (numpy's archive: a
//! zip of `.npy` arrays, one per tensor, named as in the model: `fc1.weight`, `fc1.bias`, ...).
//!
//! Weights are `IN x OUT` float32 as in the report (`out = x W + b`); biases `1 x OUT`. PyTorch's
//! `nn.Linear` stores the transpose: `layer.weight.data = torch.from_numpy(w["fc1.weight"].T)`.
//! The writer is the few lines the formats need (uncompressed zip, npy version 1.0).

use crate::checkpoint::Checkpoint;

/// One `.npy` file (format 1.0) holding a little-endian float32 array of `shape`, C order.
pub fn npy(shape: [usize; 2], values: &[f32]) -> Vec<u8> {
    let mut header = format!(
        "{{'descr': '<f4', 'fortran_order': False, 'shape': ({}, {}), }}",
        shape[0], shape[1]
    );
    // Magic (6) + version (2) + length (2) + header, padded with spaces to a multiple of 64, ending in '\n'.
    let total = (10 + header.len() + 1).div_ceil(64) * 64;
    header.push_str(&" ".repeat(total - 10 - header.len() - 1));
    header.push('\n');
    let mut out = Vec::with_capacity(total + 4 * values.len());
    out.extend_from_slice(b"\x93NUMPY\x01\x00");
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    for v in values {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out
}

/// An uncompressed zip archive of `(name, bytes)` entries, as `numpy.load` reads `.npz` files.
pub fn zip_stored(entries: &[(String, Vec<u8>)]) -> Vec<u8> {
    const DOS_DATE_1980_01_01: u16 = 0x21;
    let mut out = Vec::new();
    let mut central = Vec::new();
    for (name, data) in entries {
        let offset = out.len() as u32;
        let crc = crc32fast::hash(data);
        let size = data.len() as u32;
        // Local file header: signature, version 2.0, no flags, stored, time 0, date, crc, sizes, name.
        out.extend_from_slice(&0x04034b50u32.to_le_bytes());
        out.extend_from_slice(&[20, 0, 0, 0, 0, 0, 0, 0]);
        out.extend_from_slice(&DOS_DATE_1980_01_01.to_le_bytes());
        for v in [crc, size, size] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        out.extend_from_slice(&(name.len() as u16).to_le_bytes());
        out.extend_from_slice(&0u16.to_le_bytes());
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(data);
        // Its central-directory entry.
        central.extend_from_slice(&0x02014b50u32.to_le_bytes());
        central.extend_from_slice(&[20, 0, 20, 0, 0, 0, 0, 0, 0, 0]);
        central.extend_from_slice(&DOS_DATE_1980_01_01.to_le_bytes());
        for v in [crc, size, size] {
            central.extend_from_slice(&v.to_le_bytes());
        }
        central.extend_from_slice(&(name.len() as u16).to_le_bytes());
        central.extend_from_slice(&[0; 12]); // extra, comment, disk, internal and external attributes
        central.extend_from_slice(&offset.to_le_bytes());
        central.extend_from_slice(name.as_bytes());
    }
    let central_offset = out.len() as u32;
    out.extend_from_slice(&central);
    out.extend_from_slice(&0x06054b50u32.to_le_bytes());
    out.extend_from_slice(&[0, 0, 0, 0]);
    let count = entries.len() as u16;
    out.extend_from_slice(&count.to_le_bytes());
    out.extend_from_slice(&count.to_le_bytes());
    out.extend_from_slice(&(central.len() as u32).to_le_bytes());
    out.extend_from_slice(&central_offset.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    out
}

/// The model's parameters as an `.npz` archive.
pub fn npz(checkpoint: &Checkpoint) -> Vec<u8> {
    let entries: Vec<(String, Vec<u8>)> = checkpoint
        .header
        .tensors
        .iter()
        .zip(&checkpoint.data)
        .map(|(info, (values, _))| (format!("{}.npy", info.name), npy(info.shape, values)))
        .collect();
    zip_stored(&entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn npy_header_is_aligned_and_exact() {
        let bytes = npy([2, 3], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
        assert_eq!(&bytes[..8], b"\x93NUMPY\x01\x00");
        let header_len = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
        assert_eq!((10 + header_len) % 64, 0);
        let header = std::str::from_utf8(&bytes[10..10 + header_len]).unwrap();
        assert!(header.starts_with("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }"));
        assert!(header.ends_with('\n'));
        assert_eq!(
            &bytes[10 + header_len..10 + header_len + 4],
            &1.0f32.to_le_bytes()
        );
        assert_eq!(bytes.len(), 10 + header_len + 24);
    }
}
