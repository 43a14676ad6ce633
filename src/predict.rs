//! `mlp predict`: classify images with a saved model. Images come from IDX files (every image in them)
//! or PGM files (binary `P5` or text `P2`, 8-bit), which must have the model's input size.

use std::path::PathBuf;

use crate::data::Split;
use crate::error::{Error, Result};
use crate::idx;

/// Images to classify, with where each came from.
pub struct Inputs {
    pub split: Split,
    /// `(file, index within the file)` per image.
    pub origins: Vec<(PathBuf, usize)>,
}

/// Reads every file: IDX (by its magic, gzipped or not) or PGM; each image must have `width` pixels.
pub fn read_inputs(files: &[PathBuf], width: usize) -> Result<Inputs> {
    let mut images = Vec::new();
    let mut origins = Vec::new();
    for path in files {
        let bytes = crate::files::read_regular(path, "an IDX or PGM file")?;
        if let Some(format) = other_image_format(&bytes) {
            return Err(Error::data(
                path,
                format!(
                    "is a {format} image; predict reads IDX images (plain or .gz) and 8-bit PGM \
                     (convert it first, e.g. with ImageMagick: convert IN -colorspace gray -depth 8 OUT.pgm)"
                ),
            ));
        }
        let (count, pixels) = if bytes.starts_with(b"P5") || bytes.starts_with(b"P2") {
            (
                1,
                decode_pgm(&bytes, width).map_err(|p| Error::data(path, p))?,
            )
        } else {
            let array = idx::decode(&bytes, 3).map_err(|p| {
                Error::data(path, format!("{p} (expected IDX images or a PGM file)"))
            })?;
            let got = array.dims[1] * array.dims[2];
            if got != width {
                return Err(Error::data(
                    path,
                    format!(
                        "images of {}x{} = {got} pixels; the model takes {width}",
                        array.dims[1], array.dims[2]
                    ),
                ));
            }
            (array.dims[0], array.data)
        };
        images.extend_from_slice(&pixels);
        origins.extend((0..count).map(|i| (path.clone(), i)));
    }
    let labels = vec![0; origins.len()];
    Ok(Inputs {
        split: Split::new(images, labels, width),
        origins,
    })
}

/// The name of a common image format that `bytes` starts like, other than PGM.
fn other_image_format(bytes: &[u8]) -> Option<&'static str> {
    const MAGICS: [(&[u8], &str); 5] = [
        (b"\x89PNG\r\n\x1a\n", "PNG"),
        (b"\xff\xd8\xff", "JPEG"),
        (b"GIF8", "GIF"),
        (b"BM", "BMP"),
        (b"P6", "colour PPM"),
    ];
    MAGICS
        .iter()
        .find(|(magic, _)| bytes.starts_with(magic))
        .map(|&(_, name)| name)
}

/// An 8-bit PGM (`P5` binary or `P2` text) of exactly `width` pixels.
pub fn decode_pgm(bytes: &[u8], width: usize) -> std::result::Result<Vec<u8>, String> {
    // The header is 4 whitespace-separated tokens (magic, width, height, maxval), comments from '#'.
    let mut tokens = Vec::new();
    let mut at = 0;
    while tokens.len() < 4 {
        while at < bytes.len() && (bytes[at].is_ascii_whitespace() || bytes[at] == b'#') {
            if bytes[at] == b'#' {
                while at < bytes.len() && bytes[at] != b'\n' {
                    at += 1;
                }
            } else {
                at += 1;
            }
        }
        let start = at;
        // A comment may follow a token directly, even the magic ("P5#...").
        while at < bytes.len() && !bytes[at].is_ascii_whitespace() && bytes[at] != b'#' {
            at += 1;
        }
        if start == at {
            return Err("the PGM header ends early".into());
        }
        tokens.push(String::from_utf8_lossy(&bytes[start..at]).into_owned());
    }
    let number = |i: usize| {
        tokens[i]
            .parse::<usize>()
            .map_err(|_| format!("PGM header field \"{}\" is not a number", tokens[i]))
    };
    let (w, h, maxval) = (number(1)?, number(2)?, number(3)?);
    if w.checked_mul(h) != Some(width) {
        return Err(format!("a {w}x{h} image; the model takes {width} pixels"));
    }
    if maxval == 0 || maxval > 255 {
        return Err(format!(
            "maximum value {maxval}: only 8-bit PGM (at most 255) is read"
        ));
    }
    let scale = |v: usize| (v * 255 / maxval) as u8;
    if tokens[0] == "P5" {
        let data = bytes
            .get(at + 1..at + 1 + width)
            .ok_or_else(|| format!("the pixel data is shorter than {width} bytes"))?;
        return Ok(data.iter().map(|&v| scale(v as usize)).collect());
    }
    let text = String::from_utf8_lossy(&bytes[at..]);
    let values: Vec<usize> = text
        .split_ascii_whitespace()
        .map(|t| {
            t.parse()
                .map_err(|_| format!("PGM pixel \"{t}\" is not a number"))
        })
        .collect::<std::result::Result<_, _>>()?;
    if values.len() != width {
        return Err(format!("{} pixel values, expected {width}", values.len()));
    }
    Ok(values.into_iter().map(|v| scale(v.min(maxval))).collect())
}

/// Softmax of one output row: probabilities for a cross-entropy model.
pub fn softmax(row: &[f32]) -> Vec<f64> {
    let max = row.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v)) as f64;
    let exps: Vec<f64> = row.iter().map(|&v| (v as f64 - max).exp()).collect();
    let sum: f64 = exps.iter().sum();
    exps.into_iter().map(|e| e / sum).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pgm_binary_and_text() {
        let p5 = b"P5\n# a comment\n2 2\n255\n\x00\x80\xff\x10";
        assert_eq!(decode_pgm(p5, 4).unwrap(), vec![0, 128, 255, 16]);
        let tight = b"P5#c\n2 2#d\n255\n\x00\x80\xff\x10";
        assert_eq!(decode_pgm(tight, 4).unwrap(), vec![0, 128, 255, 16]);
        let p2 = b"P2 2 2 15\n0 15\n 8 1\n";
        assert_eq!(decode_pgm(p2, 4).unwrap(), vec![0, 255, 136, 17]);
        assert!(
            decode_pgm(p5, 9)
                .unwrap_err()
                .starts_with("a 2x2 image; the model takes 9 pixels")
        );
        assert!(
            decode_pgm(b"P5 2 2 255\n\x00", 4)
                .unwrap_err()
                .starts_with("the pixel data is shorter")
        );
        assert!(
            decode_pgm(b"P5 2", 4)
                .unwrap_err()
                .starts_with("the PGM header ends early")
        );
    }

    #[test]
    fn softmax_sums_to_one() {
        let p = softmax(&[1000.0, 0.0, 1000.0]);
        assert!(
            (p[0] - 0.5).abs() < 1e-12
                && p[1] < 1e-300
                && (p.iter().sum::<f64>() - 1.0).abs() < 1e-12
        );
    }
}
