//! Loss functions on a batch of `N x K` outputs against integer labels, and accuracy.
//!
//! - MSE (report eq. 5, 12): `J = Σ‖x - t‖² / (2N)`, `dJ/dx = (x - t) / N`, `t` the one-hot label.
//! - Softmax cross-entropy (eq. 6, 14): `J = -Σ ln softmax(x)_label / N`, `dJ/dx = (softmax(x) - t) / N`.
//!   The per-sample loss is `logsumexp(x) - x_label` with the row maximum subtracted first, so large
//!   logits neither overflow nor lose the loss to rounding.
//!
//! Accuracy is the share of rows whose arg-max is the label (first maximum wins on ties).

use std::fmt;

use ndarray::{ArrayView1, ArrayView2, ArrayViewMut2};
use serde::Serialize;

/// Serialised under the names the command line takes (`mse`, `ce`), so a config replays as given.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize, clap::ValueEnum)]
pub enum Loss {
    /// Mean squared error against one-hot targets (the reference's EuclideanLoss).
    #[value(alias = "euclidean")]
    #[serde(rename = "mse")]
    Mse,
    /// Softmax followed by cross-entropy, fused (the reference's SoftmaxCrossEntropyLoss).
    #[value(name = "ce", alias = "softmax_ce")]
    #[serde(rename = "ce")]
    SoftmaxCe,
}

/// Sums over one batch; divide by `samples` for means.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct BatchStats {
    pub loss_sum: f64,
    pub correct: usize,
    pub samples: usize,
}

impl BatchStats {
    pub fn mean_loss(&self) -> f64 {
        self.loss_sum / self.samples as f64
    }

    pub fn accuracy(&self) -> f64 {
        self.correct as f64 / self.samples as f64
    }

    pub fn add(&mut self, other: BatchStats) {
        self.loss_sum += other.loss_sum;
        self.correct += other.correct;
        self.samples += other.samples;
    }
}

impl fmt::Display for Loss {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.tag())
    }
}

impl Loss {
    /// The short tag used in run names: `CE` or `MSE`.
    pub fn tag(self) -> &'static str {
        match self {
            Loss::Mse => "MSE",
            Loss::SoftmaxCe => "CE",
        }
    }

    /// Loss and accuracy of `outputs` against `labels`. With `doutputs`, also writes the gradient of the
    /// batch's mean loss with respect to `outputs` into it.
    pub fn evaluate(
        self,
        outputs: ArrayView2<f32>,
        labels: &[u8],
        doutputs: Option<ArrayViewMut2<f32>>,
    ) -> BatchStats {
        let n = outputs.nrows();
        assert_eq!(labels.len(), n, "one label per output row");
        let inv_n = 1.0 / n as f32;
        let mut stats = BatchStats {
            samples: n,
            ..BatchStats::default()
        };
        let mut per_row = |i: usize, x: &[f32], grad: Option<&mut [f32]>| {
            let label = labels[i] as usize;
            if argmax(x) == label {
                stats.correct += 1;
            }
            match self {
                Loss::Mse => {
                    let mut sq = 0.0f64;
                    for (k, &v) in x.iter().enumerate() {
                        let d = (v - if k == label { 1.0 } else { 0.0 }) as f64;
                        sq += d * d;
                    }
                    stats.loss_sum += 0.5 * sq;
                    if let Some(g) = grad {
                        for (k, (g, &v)) in g.iter_mut().zip(x).enumerate() {
                            *g = (v - if k == label { 1.0 } else { 0.0 }) * inv_n;
                        }
                    }
                }
                Loss::SoftmaxCe => {
                    let max = x.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
                    match grad {
                        // One exp per logit, kept in the gradient's row until the sum is known
                        // (exp was most of this stage's time when taken twice).
                        Some(g) => {
                            for (g, &v) in g.iter_mut().zip(x) {
                                *g = (v - max).exp();
                            }
                            let sum_exp: f32 = g.iter().sum();
                            stats.loss_sum += (max + sum_exp.ln() - x[label]) as f64;
                            let scale = inv_n / sum_exp;
                            for g in g.iter_mut() {
                                *g *= scale;
                            }
                            g[label] -= inv_n;
                        }
                        None => {
                            let sum_exp: f32 = x.iter().map(|&v| (v - max).exp()).sum();
                            stats.loss_sum += (max + sum_exp.ln() - x[label]) as f64;
                        }
                    }
                }
            }
        };
        // Rows as slices (a network's output rows are contiguous); other layouts through a copy.
        let (mut x_copy, mut g_copy) = (Vec::new(), Vec::new());
        let mut doutputs = doutputs;
        for (i, row) in outputs.rows().into_iter().enumerate() {
            let x = match row.to_slice() {
                Some(x) => x,
                None => {
                    x_copy.clear();
                    x_copy.extend(row.iter());
                    &x_copy[..]
                }
            };
            let Some(d) = &mut doutputs else {
                per_row(i, x, None);
                continue;
            };
            let mut g = d.row_mut(i);
            match g.as_slice_mut() {
                Some(g) => per_row(i, x, Some(g)),
                None => {
                    g_copy.resize(x.len(), 0.0);
                    per_row(i, x, Some(&mut g_copy));
                    g.assign(&ArrayView1::from(&g_copy[..]));
                }
            }
        }
        stats
    }
}

/// Index of the first largest value.
pub fn argmax<'a>(row: impl IntoIterator<Item = &'a f32>) -> usize {
    let mut row = row.into_iter().enumerate();
    let Some((mut best, mut top)) = row.next() else {
        return 0;
    };
    for (k, v) in row {
        if v > top {
            (best, top) = (k, v);
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{Array2, array};

    fn loss_of(loss: Loss, x: &Array2<f32>, labels: &[u8]) -> f64 {
        loss.evaluate(x.view(), labels, None).mean_loss()
    }

    #[test]
    fn values_by_hand() {
        let x = array![[0.5, 0.2, 0.1], [0.0, 1.0, 0.0]];
        let labels = [0u8, 1];
        // MSE: (0.25 + 0.04 + 0.01 + 0) / (2 * 2)
        assert!((loss_of(Loss::Mse, &x, &labels) - 0.075).abs() < 1e-7);
        // CE: row 1 ln(e^.5 + e^.2 + e^.1) - .5, row 2 ln(2 + e) - 1
        let expected = ((0.5f64.exp() + 0.2f64.exp() + 0.1f64.exp()).ln() - 0.5
            + (2.0 + 1f64.exp()).ln()
            - 1.0)
            / 2.0;
        assert!((loss_of(Loss::SoftmaxCe, &x, &labels) - expected).abs() < 1e-6);
        let stats = Loss::Mse.evaluate(
            array![[0.1, 0.9], [0.8, 0.2], [0.3, 0.3]].view(),
            &[1, 1, 0],
            None,
        );
        assert_eq!((stats.correct, stats.samples), (2, 3));
    }

    /// Outputs and gradient in any layout (here column-major, through the copies) give the same.
    #[test]
    fn any_layout_gives_the_same() {
        let x = Array2::from_shape_fn((5, 4), |(i, j)| ((i * 3 + j * 7) % 9) as f32 * 0.4 - 1.5);
        let x_columns = x.t().to_owned();
        let labels = [0, 3, 1, 1, 2];
        for loss in [Loss::Mse, Loss::SoftmaxCe] {
            let mut g = Array2::zeros((5, 4));
            let want = loss.evaluate(x.view(), &labels, Some(g.view_mut()));
            let mut g_columns = Array2::zeros((4, 5));
            let got = loss.evaluate(
                x_columns.t(),
                &labels,
                Some(g_columns.view_mut().reversed_axes()),
            );
            assert_eq!(got, want, "{loss:?}");
            assert_eq!(g_columns.t(), g, "{loss:?}");
            assert_eq!(
                loss.evaluate(x_columns.t(), &labels, None),
                want,
                "{loss:?}"
            );
        }
        assert_eq!(
            argmax(&[1.0, 3.0, 3.0, -1.0]),
            1,
            "the first of equal maxima"
        );
    }

    #[test]
    fn cross_entropy_is_stable_for_huge_logits() {
        let x = array![[1000.0, 0.0, -1000.0], [-1000.0, -1000.0, -999.0]];
        let loss = loss_of(Loss::SoftmaxCe, &x, &[0, 0]);
        assert!(loss.is_finite());
        // row 1: ~0; row 2: ln(2 + e) + 1 - ... = logsumexp(-1000,-1000,-999) + 1000
        let row2 = (2.0 + 1f64.exp()).ln() - 1.0 + 1.0;
        assert!((loss - row2 / 2.0).abs() < 1e-4, "{loss}");
    }

    #[test]
    fn gradients_match_finite_differences() {
        let x = Array2::from_shape_fn((3, 4), |(i, j)| ((i * 5 + j * 3) % 7) as f32 * 0.3 - 0.8);
        let labels = [2u8, 0, 3];
        for loss in [Loss::Mse, Loss::SoftmaxCe] {
            let mut grad = Array2::zeros(x.raw_dim());
            loss.evaluate(x.view(), &labels, Some(grad.view_mut()));
            let eps = 1e-2;
            for idx in 0..x.len() {
                let mut plus = x.clone();
                let mut minus = x.clone();
                plus.as_slice_mut().unwrap()[idx] += eps;
                minus.as_slice_mut().unwrap()[idx] -= eps;
                let numeric = (loss_of(loss, &plus, &labels) - loss_of(loss, &minus, &labels))
                    / (2.0 * eps as f64);
                let analytic = grad.as_slice().unwrap()[idx] as f64;
                assert!(
                    (numeric - analytic).abs() < 1e-3 * analytic.abs().max(1e-2),
                    "{loss:?} [{idx}]: analytic {analytic} vs finite difference {numeric}"
                );
            }
        }
    }
}
