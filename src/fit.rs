//! Whether a network fits its data and this machine: checked once the data is loaded and before any
//! buffer is allocated, so that a run that cannot work says why in one line instead of aborting.

use crate::data::Dataset;
use crate::error::{Error, Result};
use crate::spec::{LayerSpec, NetSpec};

/// Rows per forward pass when evaluating or predicting: larger than a training batch for speed. The mean
/// loss and accuracy do not depend on it beyond float rounding, and training and `mlp eval` use the same.
pub const EVAL_BATCH: usize = 1000;

/// The rows a network's buffers hold: a training batch or an evaluation chunk, whichever is larger.
pub fn capacity(batch_size: usize, test_len: usize) -> usize {
    batch_size.max(EVAL_BATCH.min(test_len))
}

/// Checks `spec` against the data (input width, classes, labels) and the memory its run needs for
/// batches of `capacity` rows against the memory this machine has available.
pub fn check(spec: &NetSpec, data: &Dataset, capacity: usize) -> Result<()> {
    data.check_labels_fit(spec.output_width())?;
    spec.check_data(data.input_width(), data.classes)?;
    let needed = Estimate::of(spec, capacity);
    match available_memory() {
        Some(available) if needed.total > available => Err(Error::usage(
            "--layer",
            format!(
                "the run needs about {} ({} for layer {}'s {}), more than the {} of memory available; \
                 use a smaller --batch-size or narrower layers",
                gib(needed.total),
                gib(needed.largest.1),
                needed.largest.0,
                needed.largest.2,
                gib(available)
            ),
        )),
        _ => Ok(()),
    }
}

/// The bytes a run's network and batches take, and the layer that takes the most.
#[derive(Debug)]
pub struct Estimate {
    pub total: u64,
    /// Name, bytes, and what they are.
    pub largest: (String, u64, String),
}

impl Estimate {
    /// Each layer's output and its gradient for `capacity` rows; each Linear's weights with their
    /// gradient, velocity and transposed copy; the two input batches.
    pub fn of(spec: &NetSpec, capacity: usize) -> Estimate {
        const F32: u64 = 4;
        let rows = capacity as u64;
        let mut total = 2 * rows * spec.input_width() as u64 * F32;
        let mut largest = (String::new(), 0, String::new());
        let mut width = spec.input_width() as u64;
        for layer in spec.layers() {
            let (bytes, what) = match layer {
                LayerSpec::Linear { inp, out, .. } => {
                    let (inp, out) = (*inp as u64, *out as u64);
                    width = out;
                    let params = 4 * (inp * out + out) * F32;
                    let activations = 2 * rows * out * F32;
                    (
                        params + activations,
                        format!("{inp}x{out} weights and activations"),
                    )
                }
                LayerSpec::Activation { .. } => {
                    (2 * rows * width * F32, format!("{width}-wide activations"))
                }
            };
            total = total.saturating_add(bytes);
            if bytes > largest.1 {
                largest = (layer.name().to_string(), bytes, what);
            }
        }
        Estimate { total, largest }
    }
}

fn gib(bytes: u64) -> String {
    format!("{:.1} GiB", bytes as f64 / (1u64 << 30) as f64)
}

/// The memory this process may still take: the system's available memory, capped by the control
/// group's limit where one is set; `None` where neither can be read (the check is then skipped).
fn available_memory() -> Option<u64> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok();
    let system = meminfo.as_deref().and_then(|text| {
        let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
        let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kib * 1024)
    });
    let group = std::fs::read_to_string("/sys/fs/cgroup/memory.max")
        .ok()
        .and_then(|t| t.trim().parse::<u64>().ok());
    match (system, group) {
        (Some(s), Some(g)) => Some(s.min(g)),
        (s, g) => s.or(g),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_estimate_counts_weights_activations_and_batches() {
        let spec: NetSpec = "linear,fc1,784,256,0.01; relu,r; linear,fc2,256,10,0.01"
            .parse()
            .unwrap();
        let e = Estimate::of(&spec, 100);
        let fc1 = 4 * (784 * 256 + 256) * 4 + 2 * 100 * 256 * 4;
        let relu = 2 * 100 * 256 * 4;
        let fc2 = 4 * (256 * 10 + 10) * 4 + 2 * 100 * 10 * 4;
        assert_eq!(e.total, 2 * 100 * 784 * 4 + fc1 + relu + fc2);
        assert_eq!(e.largest.0, "fc1");
    }
}
