//! Work on a layer's inner dimension in two fixed halves, the same for every thread count and
//! backend: on two threads each core reads and writes only its half of the weight and velocity, in its
//! own L2, instead of the other core's rows after every step. On one thread the halves run in turn,
//! so the numbers are the same.
//!
//! A large dense weight (at least [`DENSE_FROM`] floats) is split over its rows at [`dense_mid`]:
//! `x W + b = (b + Σ₀) + Σ₁`, each half summed from its start and the two added. `Wᵀ`, the columns of
//! `D Wᵀ` and the rows of the gradient (and its update) are cut at the same row; none of these change
//! a number, as each of their outputs is still one whole sum. (The network's sparse first layer is
//! split the same way over its pixels.)

use std::ops::Range;

use ndarray::{Array2, ArrayView2, ArrayViewMut2, s};

use super::{
    Backend, Dense, Epilogue, PARALLEL_FROM, PARTS_PER_THREAD, Part, Plain, Pool, Transpose,
    add_halves, threads,
};

/// The size of the parts a half of `len` outputs is cut into, a multiple of `multiple`, for `work`
/// multiply-adds in all: each half is one core's on two threads (more on more), in parts small
/// enough that the other core takes over all but one if this one is descheduled.
pub fn part_size(len: usize, multiple: usize, work: usize) -> usize {
    let threads = threads();
    if threads <= 1 || work < PARALLEL_FROM {
        return len.max(1);
    }
    let per_half = (threads / 2).max(1);
    len.div_ceil(per_half * PARTS_PER_THREAD)
        .next_multiple_of(multiple)
        .max(1)
}

/// Runs `f(half, range)` over the two `halves`, each cut into parts of a multiple of `multiple`, each
/// half first taken by one thread.
pub fn over_halves(
    halves: &[Range<usize>; 2],
    multiple: usize,
    work: usize,
    f: &(impl Fn(usize, Range<usize>) + Sync),
) {
    let sizes = halves.clone().map(|h| part_size(h.len(), multiple, work));
    let parts = [0, 1].map(|h| halves[h].len().div_ceil(sizes[h]));
    Pool::current().run(&parts, threads(), &|half, p| {
        let start = halves[half].start + p * sizes[half];
        f(half, start..(start + sizes[half]).min(halves[half].end))
    });
}

/// The second half's sums and the zeros it starts from, kept between steps.
#[derive(Default)]
pub struct Scratch {
    zeros: Vec<f32>,
    partial: Array2<f32>,
}

impl Scratch {
    /// Room for a second half of `rows x n`; the buffers are kept for the next call.
    pub fn partial(&mut self, rows: usize, n: usize) -> (&[f32], ArrayViewMut2<'_, f32>) {
        if self.partial.nrows() < rows || self.partial.ncols() != n {
            self.partial = padded(rows, n);
        }
        self.zeros.resize(n, 0.0);
        (&self.zeros, self.partial.slice_mut(s![..rows, ..]))
    }
}

/// A zero matrix whose rows start an odd number of cache lines apart (as `param::padded`).
fn padded(rows: usize, cols: usize) -> Array2<f32> {
    let stride = 16 * (cols.div_ceil(16) | 1);
    Array2::zeros((rows, stride)).slice_move(s![.., ..cols])
}

/// Dense weights of at least this many floats (256 KB) are split in halves: below it, both cores
/// reading all of it costs little.
pub const DENSE_FROM: usize = 1 << 16;

/// Where a dense `k x n` weight's rows are split, if it is split: the multiple of 64 nearest the
/// middle (a whole number of vector blocks of `D Wᵀ`'s columns in the first half). A function of the
/// shape alone, so every thread count, backend and batch size splits alike.
pub fn dense_mid(k: usize, n: usize) -> Option<usize> {
    (k >= 128 && k * n >= DENSE_FROM).then(|| ((k / 2 + 32) / 64 * 64).clamp(64, k - 1))
}

/// The halves of `0..k` at `mid`.
fn at(mid: usize, k: usize) -> [Range<usize>; 2] {
    [0..mid, mid..k]
}

/// How one half's share of an `m x n` output is cut into parts: by rows (multiples of 8) when it is
/// taller than wide, else by columns (multiples of 64).
struct Cut {
    by_rows: bool,
    size: usize,
    m: usize,
    n: usize,
}

impl Cut {
    fn new(m: usize, n: usize, work: usize) -> Cut {
        let by_rows = m >= n || n < 2 * 64;
        let size = match by_rows {
            true => part_size(m, 8, work),
            false => part_size(n, 64, work),
        };
        Cut {
            by_rows,
            size,
            m,
            n,
        }
    }

    fn count(&self) -> usize {
        match self.by_rows {
            true => self.m.div_ceil(self.size),
            false => self.n.div_ceil(self.size),
        }
    }

    fn part(&self, p: usize) -> Part {
        let cut = |len: usize| p * self.size..((p + 1) * self.size).min(len);
        match self.by_rows {
            true => Part {
                rows: cut(self.m),
                cols: 0..self.n,
            },
            false => Part {
                rows: 0..self.m,
                cols: cut(self.n),
            },
        }
    }
}

/// `out = epi(inp W + b)` for a dense weight split at `mid`.
#[allow(clippy::too_many_arguments)]
pub fn dense_forward<E: Epilogue>(
    backend: Backend,
    inp: ArrayView2<f32>,
    w: ArrayView2<f32>,
    bias: &[f32],
    mid: usize,
    scratch: &mut Scratch,
    mut out: ArrayViewMut2<f32>,
    epi: &E,
) {
    let (rows, n) = out.dim();
    let (zeros, mut partial) = scratch.partial(rows, n);
    let halves = [
        Dense::new(
            inp.slice(s![.., ..mid]),
            w.slice(s![..mid, ..]),
            Some(bias),
            &mut out,
        ),
        Dense::new(
            inp.slice(s![.., mid..]),
            w.slice(s![mid.., ..]),
            Some(zeros),
            &mut partial,
        ),
    ];
    let cut = Cut::new(rows, n, halves[0].work() + halves[1].work());
    let parts = cut.count();
    Pool::current().run(&[parts, parts], threads(), &|half, p| {
        halves[half].part(backend, &cut.part(p), &Plain)
    });
    add_halves(backend, out, partial.view(), epi);
}

/// `wt = wᵀ`, then `dinp = epi(dout wᵀ)`, for a dense weight split at `mid`: `dinp`'s columns are the
/// weight's rows, so each half reads only its own rows.
#[allow(clippy::too_many_arguments)]
pub fn input_gradient<E: Epilogue>(
    backend: Backend,
    w: ArrayView2<f32>,
    mut wt: ArrayViewMut2<f32>,
    mid: usize,
    dout: ArrayView2<f32>,
    mut dinp: ArrayViewMut2<f32>,
    epi: &E,
) {
    let (k, n) = w.dim();
    let halves = at(mid, k);
    {
        let t = Transpose::new(w, &mut wt);
        // A copy is cheap beside a product: parallel from a sixteenth of a product's threshold.
        over_halves(&halves, 8, k * n * 16, &|_, rows| {
            t.part(backend, rows, 0..n)
        });
    }
    let product = Dense::new(dout, wt.view(), None, &mut dinp);
    let rows = dout.nrows();
    over_halves(&halves, 64, product.work(), &|_, cols| {
        product.part(
            backend,
            &Part {
                rows: 0..rows,
                cols,
            },
            epi,
        )
    });
}

/// `product` (a weight's gradient, `k x n`) by rows in the halves at `mid`, `then` on every few rows
/// once they are done, on the thread that did them (the update fused into the gradient).
pub fn weight_gradient(
    backend: Backend,
    product: &Dense,
    (k, n): (usize, usize),
    mid: usize,
    then: &(impl Fn(&Part) + Sync),
) {
    over_halves(&at(mid, k), 8, product.work(), &|_, rows| {
        product.part_then(backend, &Part { rows, cols: 0..n }, &Plain, then)
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::dense::tests::reference;
    use ndarray::Array2;

    #[test]
    fn only_large_weights_are_split_near_the_middle_on_a_block() {
        assert_eq!(dense_mid(500, 256), Some(256));
        assert_eq!(dense_mid(784, 500), Some(384));
        assert_eq!(dense_mid(128, 512), Some(64));
        // MLP1's and MLP2's last layers, and a weight too short to split.
        assert_eq!(dense_mid(256, 10), None);
        assert_eq!(dense_mid(100, 1000), None);
    }

    /// The forward pass is `(b + x₀ W₀) + x₁ W₁`, each half summed in order, and the backward pass's
    /// products are whole sums: bit for bit on every backend, on one thread and on three.
    #[test]
    fn the_halves_are_summed_apart_then_added_on_every_backend() {
        let (m, k, n) = (37, 300, 230);
        let x = Array2::from_shape_fn((m, k), |(i, j)| ((i * 7 + j * 3) % 17) as f32 * 0.13 - 0.8);
        let w = Array2::from_shape_fn((k, n), |(i, j)| ((i * 5 + j * 11) % 13) as f32 * 0.07 - 0.4);
        let dout = Array2::from_shape_fn((m, n), |(i, j)| ((i + 2 * j) % 7) as f32 * 0.3 - 1.0);
        let bias: Vec<f32> = (0..n).map(|j| j as f32 * 0.01 - 1.0).collect();
        let mid = dense_mid(k, n).expect("split");
        let (x0, x1) = (x.slice(s![.., ..mid]), x.slice(s![.., mid..]));
        let (w0, w1) = (w.slice(s![..mid, ..]), w.slice(s![mid.., ..]));
        let forward = reference(x0, w0, Some(&bias)) + reference(x1, w1, None);
        let wt = w.t().as_standard_layout().to_owned();
        let dinp = reference(dout.view(), wt.view(), None);
        let dw = reference(x.t(), dout.view(), None);
        let same = |a: &Array2<f32>, b: &Array2<f32>| {
            a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits())
        };
        for backend in Backend::ALL.into_iter().filter(|b| b.available()) {
            for threads in [1, 3] {
                Pool::new(threads).unwrap().install(|| {
                    let case = format!("{backend}, {threads} thread(s)");
                    let mut out = Array2::from_elem((m, n), f32::NAN);
                    let scratch = &mut Scratch::default();
                    let (out_view, epi) = (out.view_mut(), &Plain);
                    dense_forward(
                        backend,
                        x.view(),
                        w.view(),
                        &bias,
                        mid,
                        scratch,
                        out_view,
                        epi,
                    );
                    assert!(same(&out, &forward), "forward on {case}");
                    let (mut t, mut d) = (Array2::zeros((n, k)), Array2::zeros((m, k)));
                    let (tv, dv) = (t.view_mut(), d.view_mut());
                    input_gradient(backend, w.view(), tv, mid, dout.view(), dv, &Plain);
                    assert!(same(&t, &wt) && same(&d, &dinp), "D Wᵀ on {case}");
                    let mut g = Array2::from_elem((k, n), f32::NAN);
                    let rows = std::sync::Mutex::new(vec![0; k]);
                    let mut gv = g.view_mut();
                    let product = Dense::new(x.t(), dout.view(), None, &mut gv);
                    weight_gradient(backend, &product, (k, n), mid, &|part: &Part| {
                        rows.lock().unwrap()[part.rows.clone()]
                            .iter_mut()
                            .for_each(|r| *r += 1)
                    });
                    assert!(same(&g, &dw), "dW on {case}");
                    assert!(rows.into_inner().unwrap().iter().all(|&r| r == 1), "{case}");
                })
            }
        }
    }
}
