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

use ndarray::{ArrayView2, ArrayViewMut2, Axis};
use serde::Serialize;

use crate::kernels::{Backend, with_backend};
use crate::param::Param;

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Sgd {
    pub lr: f32,
    pub momentum: f32,
    pub weight_decay: f32,
}

impl Sgd {
    /// One update of `param` from its current gradient, in one pass over value, gradient and velocity;
    /// a large parameter's rows are shared between the threads (each element's update is its own, so
    /// the split changes nothing).
    pub fn step(&self, backend: Backend, param: &mut Param) {
        let Param {
            value,
            grad,
            velocity,
            ..
        } = param;
        let (rows, cols) = value.dim();
        if rows == 0 || cols == 0 {
            return;
        }
        let threads = match value.len() {
            PARALLEL_FROM.. => crate::kernels::threads(),
            _ => 1,
        };
        let height = crate::kernels::part_size(rows, 1, threads);
        // Each thread takes the next block of rows; which block it gets changes nothing.
        let blocks = std::sync::Mutex::new(
            value
                .axis_chunks_iter_mut(Axis(0), height)
                .zip(grad.axis_chunks_iter(Axis(0), height))
                .zip(velocity.axis_chunks_iter_mut(Axis(0), height)),
        );
        crate::kernels::Pool::current().run(&[rows.div_ceil(height)], threads, &|_, _| {
            let block = blocks.lock().unwrap_or_else(|e| e.into_inner()).next();
            if let Some(((p, g), v)) = block {
                self.update_rows(backend, p, g, v);
            }
        });
    }

    /// The update of a block of rows, on this thread, row after row (a weight's rows are padded apart).
    pub fn update_rows(
        &self,
        backend: Backend,
        mut p: ArrayViewMut2<f32>,
        g: ArrayView2<f32>,
        mut v: ArrayViewMut2<f32>,
    ) {
        with_backend(
            backend,
            #[inline(always)]
            || {
                for ((mut p, g), mut v) in p.rows_mut().into_iter().zip(g.rows()).zip(v.rows_mut())
                {
                    let (p, g, v) = (
                        p.as_slice_mut().expect("rows by contiguous floats"),
                        g.to_slice().expect("rows by contiguous floats"),
                        v.as_slice_mut().expect("rows by contiguous floats"),
                    );
                    for ((p, &g), v) in p.iter_mut().zip(g).zip(v) {
                        self.update(p, g, v);
                    }
                }
            },
        )
    }

    /// One element's update: the velocity, then the value.
    #[inline(always)]
    pub(crate) fn update(&self, p: &mut f32, g: f32, v: &mut f32) {
        *v = self.momentum * *v + (g + self.weight_decay * *p);
        *p -= self.lr * *v;
    }
}

/// Parameters fewer than this are updated on one thread: waking the others costs more.
const PARALLEL_FROM: usize = 1 << 15;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::Backend;
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
        sgd.step(Backend::Portable, &mut p);
        assert_close(&p.velocity, &[0.51, 0.48]);
        assert_close(&p.value, &[0.949, -2.048]);
        p.grad = array![[-1.0, 0.0]];
        sgd.step(Backend::Portable, &mut p);
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
        sgd.step(Backend::Portable, &mut p);
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
        let pool = crate::kernels::Pool::new(2).unwrap();
        pool.install(|| sgd.step(Backend::best(), &mut p));
        sgd.step(Backend::Portable, &mut p);
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
