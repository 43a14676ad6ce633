//! Checkpoints: a trained network with everything needed to continue training it exactly.
//!
//! The format is small, versioned and checked, defined here rather than borrowed (safetensors and .npz
//! carry tensors but neither the optimiser state, the RNG position nor the spec, and would bring a
//! dependency each):
//!
//! ```text
//! offset  size  contents
//! 0       8     magic "MLPCKPT\0"
//! 8       4     format version, u32 little-endian (1)
//! 12      8     header length H, u64 little-endian
//! 20      H     header, UTF-8 JSON: spec, loss, epoch, step, seed, rng_word_pos, tensors [{name, shape}]
//! 20+H    ...   for each tensor in header order: its values, then its SGD velocities, f32 little-endian
//! end-4   4     CRC-32 (IEEE) of every byte before it, u32 little-endian
//! ```
//! The RNG is ChaCha8 seeded from `seed`; `rng_word_pos` is its position in the stream, so shuffling
//! resumes exactly where it stopped.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::loss::Loss;
use crate::network::Network;
use crate::output::write_atomically;

pub const MAGIC: &[u8; 8] = b"MLPCKPT\0";
pub const VERSION: u32 = 1;

/// One tensor's name and shape, as listed in the header.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TensorInfo {
    pub name: String,
    pub shape: [usize; 2],
}

/// The header: what the checkpoint holds and where training stood.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Header {
    /// The canonical spec of the network.
    pub spec: String,
    pub loss: Loss,
    /// Epochs completed.
    pub epoch: usize,
    /// Iterations completed.
    pub step: usize,
    pub seed: u64,
    /// Position of the ChaCha8 stream, as a decimal string (JSON numbers cannot hold a u128).
    pub rng_word_pos: String,
    /// Seconds since training started (the `time_s` of the last row), and of training alone, so that a
    /// resumed run's clock and summary continue from them.
    pub time_s: f64,
    pub train_time_s: f64,
    pub tensors: Vec<TensorInfo>,
}

/// A whole checkpoint in memory.
#[derive(Debug, Clone, PartialEq)]
pub struct Checkpoint {
    pub header: Header,
    /// Per tensor: `(values, velocities)`, row-major.
    pub data: Vec<(Vec<f32>, Vec<f32>)>,
}

impl Checkpoint {
    /// Captures `network`'s parameters and velocities after `position = (epoch, step)`; the RNG position
    /// and clocks are set with [`Checkpoint::at`].
    pub fn capture(
        network: &Network,
        spec: String,
        loss: Loss,
        position: (usize, usize),
        seed: u64,
    ) -> Self {
        let (epoch, step) = position;
        let mut tensors = Vec::new();
        let mut data = Vec::new();
        for p in network.params() {
            tensors.push(TensorInfo {
                name: p.name.clone(),
                shape: [p.value.nrows(), p.value.ncols()],
            });
            data.push((
                p.value.iter().copied().collect(),
                p.velocity.iter().copied().collect(),
            ));
        }
        let rng_word_pos = "0".to_string();
        let header = Header {
            spec,
            loss,
            epoch,
            step,
            seed,
            rng_word_pos,
            time_s: 0.0,
            train_time_s: 0.0,
            tensors,
        };
        Checkpoint { header, data }
    }

    /// The same checkpoint with the RNG's position and the clocks filled in.
    pub fn at(mut self, rng_word_pos: u128, time_s: f64, train_time_s: f64) -> Self {
        self.header.rng_word_pos = rng_word_pos.to_string();
        self.header.time_s = time_s;
        self.header.train_time_s = train_time_s;
        self
    }

    /// Copies the parameters and velocities into `network`, whose layers must match the tensors.
    pub fn restore(&self, network: &mut Network) -> std::result::Result<(), String> {
        let params: Vec<_> = network.params_mut().collect();
        if params.len() != self.header.tensors.len() {
            return Err(format!(
                "the checkpoint holds {} tensors, the network has {} parameters",
                self.header.tensors.len(),
                params.len()
            ));
        }
        for ((param, info), (values, velocities)) in
            params.into_iter().zip(&self.header.tensors).zip(&self.data)
        {
            let shape = [param.value.nrows(), param.value.ncols()];
            if param.name != info.name || shape != info.shape {
                return Err(format!(
                    "the checkpoint's {} {:?} does not match the network's {} {:?}",
                    info.name, info.shape, param.name, shape
                ));
            }
            for (dst, src) in param.value.iter_mut().zip(values) {
                *dst = *src;
            }
            for (dst, src) in param.velocity.iter_mut().zip(velocities) {
                *dst = *src;
            }
        }
        Ok(())
    }

    pub fn rng_word_pos(&self) -> std::result::Result<u128, String> {
        self.header.rng_word_pos.parse().map_err(|_| {
            format!(
                "rng_word_pos \"{}\" is not a number",
                self.header.rng_word_pos
            )
        })
    }

    /// The file's bytes.
    pub fn encode(&self) -> Vec<u8> {
        let header = serde_json::to_vec(&self.header).expect("the header serialises");
        let mut out = Vec::with_capacity(
            24 + header.len() + self.data.iter().map(|(v, _)| 8 * v.len()).sum::<usize>(),
        );
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&VERSION.to_le_bytes());
        out.extend_from_slice(&(header.len() as u64).to_le_bytes());
        out.extend_from_slice(&header);
        for (values, velocities) in &self.data {
            for x in values.iter().chain(velocities) {
                out.extend_from_slice(&x.to_le_bytes());
            }
        }
        let crc = crc32fast::hash(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        out
    }

    /// Parses a file's bytes; the error says what is wrong with them.
    pub fn decode(bytes: &[u8]) -> std::result::Result<Checkpoint, String> {
        if bytes.len() < 24 || &bytes[..8] != MAGIC {
            return Err("not an mlp checkpoint (no MLPCKPT magic)".into());
        }
        let version = u32::from_le_bytes(bytes[8..12].try_into().expect("4 bytes"));
        if version != VERSION {
            return Err(format!(
                "checkpoint format version {version}; this mlp reads version {VERSION}"
            ));
        }
        let (body, crc) = bytes.split_at(bytes.len() - 4);
        if crc32fast::hash(body) != u32::from_le_bytes(crc.try_into().expect("4 bytes")) {
            return Err("checksum mismatch: the file is truncated or damaged".into());
        }
        let header_len = u64::from_le_bytes(body[12..20].try_into().expect("8 bytes"));
        let header_end = usize::try_from(header_len)
            .ok()
            .and_then(|h| h.checked_add(20))
            .filter(|&e| e <= body.len());
        let header_end = header_end.ok_or("the header length runs past the end of the file")?;
        let header: Header = serde_json::from_slice(&body[20..header_end])
            .map_err(|e| format!("bad header: {e}"))?;
        let floats = |info: &TensorInfo| info.shape[0].checked_mul(info.shape[1]);
        let total = header
            .tensors
            .iter()
            .try_fold(0usize, |acc, t| floats(t)?.checked_mul(8)?.checked_add(acc));
        if total != Some(body.len() - header_end) {
            return Err(format!(
                "the tensors listed need {} bytes, the file holds {}",
                total.map_or("too many".to_string(), |t| t.to_string()),
                body.len() - header_end
            ));
        }
        let mut at = header_end;
        let mut take = |n: usize| {
            let v: Vec<f32> = body[at..at + 4 * n]
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes(c.try_into().expect("4")))
                .collect();
            at += 4 * n;
            v
        };
        let data = header.tensors.iter().map(|t| {
            let n = t.shape[0] * t.shape[1];
            (take(n), take(n))
        });
        let data = data.collect();
        Ok(Checkpoint { header, data })
    }

    /// Writes the checkpoint to `path` atomically (temporary file, then rename).
    pub fn save(&self, path: &Path) -> Result<()> {
        let bytes = self.encode();
        write_atomically(path, |w| w.write_all(&bytes))
    }

    pub fn load(path: &Path) -> Result<Checkpoint> {
        let bytes = crate::files::read_regular(path, "a checkpoint")?;
        Checkpoint::decode(&bytes).map_err(|problem| Error::data(path, problem))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::NetSpec;
    use rand::SeedableRng;

    fn sample() -> Checkpoint {
        let spec: NetSpec = "linear,a,3,2,0.5; relu,r; linear,b,2,2,0.5"
            .parse()
            .unwrap();
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        let mut net = Network::from_spec(&spec, &mut rng, 4);
        for p in net.params_mut() {
            p.velocity.fill(0.25);
        }
        Checkpoint::capture(&net, spec.to_string(), Loss::SoftmaxCe, (2, 20), 1).at(
            u128::MAX - 3,
            1.5,
            1.25,
        )
    }

    #[test]
    fn round_trip_is_bit_identical() {
        let ckpt = sample();
        let bytes = ckpt.encode();
        assert_eq!(&bytes[..8], MAGIC);
        let back = Checkpoint::decode(&bytes).unwrap();
        assert_eq!(back, ckpt);
        assert_eq!(back.rng_word_pos().unwrap(), u128::MAX - 3);
    }

    #[test]
    fn damaged_files_are_refused() {
        let bytes = sample().encode();
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (vec![], "not an mlp checkpoint"),
            (
                b"P5 not a checkpoint at all".to_vec(),
                "not an mlp checkpoint",
            ),
            (bytes[..bytes.len() - 9].to_vec(), "checksum mismatch"),
            (
                {
                    let mut b = bytes.clone();
                    b[30] ^= 1;
                    b
                },
                "checksum mismatch",
            ),
            (
                {
                    let mut b = bytes.clone();
                    b[8] = 2;
                    b
                },
                "checkpoint format version 2; this mlp reads version 1",
            ),
        ];
        for (bytes, expected) in cases {
            let err = Checkpoint::decode(&bytes).unwrap_err();
            assert!(err.starts_with(expected), "{err}");
        }
    }
}
