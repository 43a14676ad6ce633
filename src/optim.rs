//! Stochastic gradient descent with momentum and coupled L2 weight decay.
//!
//! For every parameter `p` (weights and biases alike), with gradient `g` and velocity `v` (zero at start):
//!
//! ```text
//! v ← momentum · v + (g + weight_decay · p)
//! p ← p − lr · v
//! ```
//!
//! This is the reference framework's `Linear.update` and equals PyTorch's `torch.optim.SGD(lr, momentum,
//! weight_decay)` with dampening 0 and no Nesterov (PyTorch's first step sets `v = g` instead of
//! `0·v + g`, the same value).

use ndarray::{ArrayView2, ArrayViewMut2, Zip};
use serde::Serialize;

use crate::layers::Param;
use crate::parallel::for_row_parts;

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Sgd {
    pub lr: f32,
    pub momentum: f32,
    pub weight_decay: f32,
}

impl Sgd {
    /// One update of `param` from its current gradient, in a single pass over value, gradient, velocity.
    /// A large parameter's rows are split over the threads, in parts that a slower core takes fewer of
    /// ([`crate::parallel::balanced_height`]; split by columns instead, like
    /// a weight matrix's share in a column-split kernel, it measured 1.07x the time of
    /// `mlp train --max-epoch 3`).
    pub fn step(&self, param: &mut Param) {
        let rows = param.value.nrows();
        let height = if param.value.len() >= PARALLEL_FROM {
            crate::parallel::balanced_height(rows, 1)
        } else {
            rows
        };
        let parts = (
            param.value.view_mut(),
            param.grad.view(),
            param.velocity.view_mut(),
        );
        for_row_parts(parts, height, &|_, (p, g, v)| self.update_rows(p, g, v));
    }

    /// One pass over a block of rows, on this thread: as one slice when contiguous, else row by row (a
    /// weight's rows are padded apart, see `Param::new`).
    pub fn update_rows(&self, p: ArrayViewMut2<f32>, g: ArrayView2<f32>, v: ArrayViewMut2<f32>) {
        self.update_rows_summing(p, g, v, None)
    }

    /// [`Sgd::update_rows`] that, given `(scale, sums)`, also adds `scale ·` every updated row of `p`
    /// into `sums` (one float per column), row after row: the first layer's column sums for its next
    /// forward pass, made while each row is in registers instead of read again from memory (see
    /// `sparse::gather_rows_update`). Each sum is `sums[j] += scale * p[j]`, a multiply then an add, as
    /// `Linear` adds up a weight's rows.
    pub fn update_rows_summing(
        &self,
        mut p: ArrayViewMut2<f32>,
        g: ArrayView2<f32>,
        mut v: ArrayViewMut2<f32>,
        mut sums: Option<(f32, &mut [f32])>,
    ) {
        if let Some((_, sums)) = &sums {
            assert_eq!(sums.len(), p.ncols(), "one sum per column");
        } else if let (Some(p), Some(g), Some(v)) =
            (p.as_slice_mut(), g.as_slice(), v.as_slice_mut())
        {
            return self.update_slices(p, g, v, None);
        }
        for ((mut p, g), mut v) in p.rows_mut().into_iter().zip(g.rows()).zip(v.rows_mut()) {
            let sums = sums.as_mut().map(|(scale, sums)| (*scale, &mut **sums));
            match (p.as_slice_mut(), g.as_slice(), v.as_slice_mut()) {
                (Some(p), Some(g), Some(v)) => self.update_slices(p, g, v, sums),
                _ => {
                    Zip::from(&mut p)
                        .and(g)
                        .and(v)
                        .for_each(|p, &g, v| self.update(p, g, v));
                    if let Some((scale, sums)) = sums {
                        ndarray::ArrayViewMut1::from(sums).scaled_add(scale, &p);
                    }
                }
            }
        }
    }

    /// The update of one stretch of parameters (and the sums of [`Sgd::update_rows_summing`]), in a
    /// loop the compiler vectorises: for AVX-512 where the CPU has it (the default x86-64 target stops
    /// at SSE2, four floats at a time; measured, the update took 16% of an MLP1 epoch that way).
    fn update_slices(
        &self,
        p: &mut [f32],
        g: &[f32],
        v: &mut [f32],
        sums: Option<(f32, &mut [f32])>,
    ) {
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU has AVX-512F, checked just above.
            return unsafe { self.update_slices_avx512(p, g, v, sums) };
        }
        self.update_slices_portable(p, g, v, sums)
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f")]
    fn update_slices_avx512(
        &self,
        p: &mut [f32],
        g: &[f32],
        v: &mut [f32],
        sums: Option<(f32, &mut [f32])>,
    ) {
        self.update_slices_portable(p, g, v, sums)
    }

    #[inline(always)]
    fn update_slices_portable(
        &self,
        p: &mut [f32],
        g: &[f32],
        v: &mut [f32],
        sums: Option<(f32, &mut [f32])>,
    ) {
        let Some((scale, sums)) = sums else {
            for ((p, &g), v) in p.iter_mut().zip(g).zip(v) {
                self.update(p, g, v);
            }
            return;
        };
        for (((p, &g), v), s) in p.iter_mut().zip(g).zip(v).zip(sums) {
            self.update(p, g, v);
            *s += scale * *p;
        }
    }

    #[inline(always)]
    fn update(&self, p: &mut f32, g: f32, v: &mut f32) {
        *v = self.momentum * *v + (g + self.weight_decay * *p);
        *p -= self.lr * *v;
    }
}

/// Parameters fewer than this are updated on one thread: waking the others costs more.
const PARALLEL_FROM: usize = 1 << 15;

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    /// Two steps worked by hand, with lr 0.1, momentum 0.9, weight decay 0.01:
    ///
    /// ```text
    /// p0 = [1.0, -2.0], g1 = [0.5, 0.5]
    /// v1 = 0 + (0.5 + 0.01·1.0, 0.5 + 0.01·-2.0)     = [0.51, 0.48]
    /// p1 = p0 − 0.1·v1                               = [0.949, -2.048]
    /// g2 = [-1.0, 0.0]
    /// v2 = 0.9·v1 + (g2 + 0.01·p1) = [0.459 − 1 + 0.00949, 0.432 + 0 − 0.02048] = [-0.53151, 0.41152]
    /// p2 = p1 − 0.1·v2                               = [1.002151, -2.089152]
    /// ```
    /// PyTorch gives the same: `torch.optim.SGD([p], lr=.1, momentum=.9, weight_decay=.01)`.
    #[test]
    fn two_steps_by_hand() {
        let sgd = Sgd {
            lr: 0.1,
            momentum: 0.9,
            weight_decay: 0.01,
        };
        let mut p = Param::new("w".into(), array![[1.0, -2.0]]);
        p.grad = array![[0.5, 0.5]];
        sgd.step(&mut p);
        assert_close(&p.velocity, &[0.51, 0.48]);
        assert_close(&p.value, &[0.949, -2.048]);
        p.grad = array![[-1.0, 0.0]];
        sgd.step(&mut p);
        assert_close(&p.velocity, &[-0.53151, 0.41152]);
        assert_close(&p.value, &[1.002151, -2.089152]);
    }

    #[test]
    fn weight_decay_alone_shrinks_parameters() {
        let sgd = Sgd {
            lr: 0.5,
            momentum: 0.0,
            weight_decay: 0.2,
        };
        let mut p = Param::new("b".into(), array![[10.0]]);
        sgd.step(&mut p);
        assert_close(&p.value, &[9.0]);
    }

    /// A weight wider than 16 columns is stored with padded rows; the update treats it element by
    /// element like any other, on one thread or split over two.
    #[test]
    fn padded_rows_update_like_contiguous_ones() {
        let sgd = Sgd {
            lr: 0.1,
            momentum: 0.9,
            weight_decay: 0.01,
        };
        let value = ndarray::Array2::from_shape_fn((40, 1000), |(i, j)| (i * 7 + j) as f32 * 1e-3);
        let grad = value.mapv(|x| 0.5 - x);
        let mut p = Param::new("w".into(), value.clone());
        assert_eq!(p.value.strides(), &[1008, 1]);
        p.grad.assign(&grad);
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(2)
            .build()
            .unwrap();
        pool.install(|| sgd.step(&mut p));
        sgd.step(&mut p);
        for ((&got, &x), &g) in p.value.iter().zip(&value).zip(&grad) {
            let v1 = g + 0.01 * x;
            let x1 = x - 0.1 * v1;
            let v2 = 0.9 * v1 + (g + 0.01 * x1);
            let want = x1 - 0.1 * v2;
            assert!((got - want).abs() < 1e-6, "{got} vs {want}");
        }
    }

    fn assert_close(got: &ndarray::Array2<f32>, want: &[f32]) {
        for (g, w) in got.iter().zip(want) {
            assert!((g - w).abs() < 1e-6, "got {got}, want {want:?}");
        }
    }
}
