//! The workload of `mlp bench` (and of scripts/bench_torch.py) written plainly with ndarray, as a Rust
//! peer would: MLP1 or MLP2 with ReLU and softmax cross-entropy, SGD lr 0.01, momentum 0.9, weight
//! decay 5e-4 (PyTorch's form: `v = 0.9 v + g + 5e-4 w`, `w -= 0.01 v`), batch 100, f32, inputs
//! (p - 128) / 255 gathered per batch, weights N(0, 0.01^2), zero biases, a fresh shuffle every epoch.
//! The matrices are allocated once and every product goes through `general_mat_mul`, so the peer is timed
//! on its products and elementwise passes, not on allocation.
//!
//! Prints one line: seconds per training epoch (evaluation excluded), the test accuracy after the
//! last epoch.
//!
//! Usage: peer_ndarray {mlp1,mlp2} EPOCHS DATA_DIR

#[cfg(feature = "openblas")]
extern crate blas_src;

use std::io::Read;
use std::time::Instant;

use ndarray::linalg::general_mat_mul;
use ndarray::{Array1, Array2, Axis, Zip};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal};

const BATCH: usize = 100;
const LR: f32 = 0.01;
const MOMENTUM: f32 = 0.9;
const WEIGHT_DECAY: f32 = 5e-4;

/// Says what was wrong on one line and exits with status 2.
fn fail(message: &str) -> ! {
    eprintln!("peer_ndarray: {message}");
    std::process::exit(2)
}

/// An IDX file's data bytes (gzipped), after its header.
fn read_idx(path: &str) -> Vec<u8> {
    let file = std::fs::File::open(path).unwrap_or_else(|e| fail(&format!("{path}: {e}")));
    let mut bytes = Vec::new();
    flate2::read::GzDecoder::new(file)
        .read_to_end(&mut bytes)
        .unwrap_or_else(|e| fail(&format!("{path}: {e}")));
    if bytes.len() < 4 || bytes.len() < 4 + 4 * bytes[3] as usize {
        fail(&format!("{path}: not an IDX file"));
    }
    let header = 4 + 4 * bytes[3] as usize;
    bytes.split_off(header)
}

struct Linear {
    w: Array2<f32>,
    b: Array1<f32>,
    dw: Array2<f32>,
    db: Array1<f32>,
    vw: Array2<f32>,
    vb: Array1<f32>,
}

impl Linear {
    fn new(inputs: usize, outputs: usize, rng: &mut ChaCha8Rng) -> Linear {
        let normal = Normal::new(0.0f32, 0.01).expect("a valid deviation");
        Linear {
            w: Array2::from_shape_simple_fn((inputs, outputs), || normal.sample(rng)),
            b: Array1::zeros(outputs),
            dw: Array2::zeros((inputs, outputs)),
            db: Array1::zeros(outputs),
            vw: Array2::zeros((inputs, outputs)),
            vb: Array1::zeros(outputs),
        }
    }

    fn step(&mut self) {
        Zip::from(&mut self.w)
            .and(&mut self.vw)
            .and(&self.dw)
            .for_each(|w, v, &g| {
                *v = MOMENTUM * *v + g + WEIGHT_DECAY * *w;
                *w -= LR * *v;
            });
        Zip::from(&mut self.b)
            .and(&mut self.vb)
            .and(&self.db)
            .for_each(|b, v, &g| {
                *v = MOMENTUM * *v + g + WEIGHT_DECAY * *b;
                *b -= LR * *v;
            });
    }
}

/// `out = x W + b`, then ReLU when `relu`.
fn forward(layer: &Linear, x: &Array2<f32>, out: &mut Array2<f32>, relu: bool) {
    let shape = out.raw_dim();
    out.assign(&layer.b.broadcast(shape).expect("bias width"));
    general_mat_mul(1.0, x, &layer.w, 1.0, out);
    if relu {
        out.mapv_inplace(|v| v.max(0.0));
    }
}

/// Softmax cross-entropy's gradient of the mean loss over the batch, in place of the logits.
fn softmax_ce_grad(logits: &mut Array2<f32>, labels: &[u8]) {
    for (mut row, &label) in logits.rows_mut().into_iter().zip(labels) {
        let max = row.fold(f32::NEG_INFINITY, |m, &v| m.max(v));
        row.mapv_inplace(|v| (v - max).exp());
        let sum = row.sum();
        row.mapv_inplace(|v| v / sum / BATCH as f32);
        row[label as usize] -= 1.0 / BATCH as f32;
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let usage = "usage: peer_ndarray {mlp1,mlp2} EPOCHS DATA_DIR";
    let [_, name, epochs, dir] = &args[..] else {
        fail(usage);
    };
    let widths: &[usize] = match name.as_str() {
        "mlp1" => &[784, 256, 10],
        "mlp2" => &[784, 500, 256, 10],
        _ => fail(usage),
    };
    let epochs: usize = match epochs.parse() {
        Ok(n) if n > 0 => n,
        _ => fail(&format!("EPOCHS: a whole number above 0, not '{epochs}'")),
    };
    let train_images = read_idx(&format!("{dir}/train-images-idx3-ubyte.gz"));
    let train_labels = read_idx(&format!("{dir}/train-labels-idx1-ubyte.gz"));
    let test_images = read_idx(&format!("{dir}/t10k-images-idx3-ubyte.gz"));
    let test_labels = read_idx(&format!("{dir}/t10k-labels-idx1-ubyte.gz"));
    let mut rng = ChaCha8Rng::seed_from_u64(2019);
    let mut layers: Vec<Linear> = widths
        .windows(2)
        .map(|w| Linear::new(w[0], w[1], &mut rng))
        .collect();
    // acts[0] is the input batch, acts[i + 1] layer i's output; grads[i] the loss's gradient there.
    let mut acts: Vec<Array2<f32>> = widths.iter().map(|&w| Array2::zeros((BATCH, w))).collect();
    let mut grads = acts.clone();
    let mut labels = [0u8; BATCH];
    let mut order: Vec<usize> = (0..train_labels.len()).collect();
    let last = layers.len() - 1;
    let mut seconds = 0.0;
    for _ in 0..epochs {
        let start = Instant::now();
        order.shuffle(&mut rng);
        for batch in order.chunks_exact(BATCH) {
            for (r, &i) in batch.iter().enumerate() {
                let image = &train_images[i * 784..(i + 1) * 784];
                acts[0]
                    .row_mut(r)
                    .iter_mut()
                    .zip(image)
                    .for_each(|(x, &p)| *x = (p as f32 - 128.0) / 255.0);
                labels[r] = train_labels[i];
            }
            for (i, layer) in layers.iter().enumerate() {
                let (input, output) = acts.split_at_mut(i + 1);
                forward(layer, &input[i], &mut output[0], i < last);
            }
            grads[last + 1].assign(&acts[last + 1]);
            softmax_ce_grad(&mut grads[last + 1], &labels);
            for i in (0..=last).rev() {
                let layer = &mut layers[i];
                let (below, above) = grads.split_at_mut(i + 1);
                let d = &above[0];
                general_mat_mul(1.0, &acts[i].t(), d, 0.0, &mut layer.dw);
                layer.db.assign(&d.sum_axis(Axis(0)));
                if i > 0 {
                    general_mat_mul(1.0, d, &layer.w.t(), 0.0, &mut below[i]);
                    Zip::from(&mut below[i])
                        .and(&acts[i])
                        .for_each(|g, &a| *g = if a > 0.0 { *g } else { 0.0 });
                }
                layer.step();
            }
        }
        seconds += start.elapsed().as_secs_f64();
    }
    let tests = test_labels.len();
    let mut x = Array2::from_shape_fn((tests, 784), |(r, c)| {
        (test_images[r * 784 + c] as f32 - 128.0) / 255.0
    });
    for (i, layer) in layers.iter().enumerate() {
        let mut out = Array2::zeros((tests, layer.w.ncols()));
        forward(layer, &x, &mut out, i < last);
        x = out;
    }
    let correct = x
        .rows()
        .into_iter()
        .zip(&test_labels)
        .filter(|(row, label)| {
            let best = row
                .iter()
                .enumerate()
                .fold(
                    (0, f32::NEG_INFINITY),
                    |b, (j, &v)| if v > b.1 { (j, v) } else { b },
                );
            best.0 == **label as usize
        })
        .count();
    println!(
        "{:.4} {:.4}",
        seconds / epochs as f64,
        correct as f64 / tests as f64
    );
}
