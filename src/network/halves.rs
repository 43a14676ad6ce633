//! The sparse first layer split over its pixels in two fixed halves, the same for every thread count
//! and backend: its forward pass sums each half apart, `x W + b = (b + Σ₀) + Σ₁`, and its gradient and
//! update take the same halves of the weight's rows. On two threads each core then reads and writes
//! only its half of the weight and velocity (1.6 MB for MLP1 together, 0.8 MB a half: one core's L2),
//! instead of the other core's rows after every step. On one thread the halves run in turn, so the
//! numbers are the same.

use std::ops::Range;

use ndarray::{Array2, ArrayView2, ArrayViewMut2, s};

use crate::batch::OFFSET;
use crate::kernels::{
    self, Backend, Epilogue, Grouped, PARALLEL_FROM, PARTS_PER_THREAD, Plain, Pool,
};
use crate::kernels::{ScatterProduct, SparseProduct};

/// The halves of `by_pixel`'s groups of pixels: `0..mid` and `mid..`.
fn halves(by_pixel: &Grouped) -> [Range<usize>; 2] {
    let (groups, mid) = (by_pixel.groups(), by_pixel.groups().div_ceil(2));
    [0..mid, mid..groups]
}

/// The size of the parts a half of `len` outputs is cut into, a multiple of `multiple`, for `work`
/// multiply-adds in all: each half is one core's on two threads (more on more), in parts small
/// enough that the other core takes over all but one if this one is descheduled.
fn part_size(len: usize, multiple: usize, work: usize) -> usize {
    let threads = kernels::threads();
    if threads <= 1 || work < PARALLEL_FROM {
        return len.max(1);
    }
    let per_half = (threads / 2).max(1);
    len.div_ceil(per_half * PARTS_PER_THREAD)
        .next_multiple_of(multiple)
        .max(1)
}

/// The second half's sums and the zeros it starts from, kept between steps.
#[derive(Default)]
pub(super) struct Scratch {
    zeros: Vec<f32>,
    partial: Array2<f32>,
}

/// `out = epi(x W + b)` for the sparse batch `x = by_pixel + OFFSET`, in the two halves.
pub(super) fn forward<E: Epilogue>(
    backend: Backend,
    by_pixel: &Grouped,
    w: ArrayView2<f32>,
    bias: &[f32],
    scratch: &mut Scratch,
    mut out: ArrayViewMut2<f32>,
    epi: &E,
) {
    let (rows, n) = out.dim();
    if scratch.partial.nrows() < rows || scratch.partial.ncols() != n {
        scratch.partial = crate::param::padded(rows, n);
    }
    scratch.zeros.resize(n, 0.0);
    let mut partial = scratch.partial.slice_mut(s![..rows, ..]);
    let [first, second] = halves(by_pixel);
    let halves = [
        ScatterProduct::new(by_pixel, w, bias, &mut out).groups(first),
        ScatterProduct::new(by_pixel, w, &scratch.zeros, &mut partial).groups(second),
    ]
    .map(|half| half.offset(OFFSET));
    let width = part_size(n, 64, halves[0].work() + halves[1].work());
    let parts = n.div_ceil(width);
    Pool::current().run(&[parts, parts], kernels::threads(), &|half, p| {
        halves[half].columns(backend, p * width..((p + 1) * width).min(n), &Plain)
    });
    kernels::add_halves(backend, out, partial.view(), epi);
}

/// `product`'s rows in the two halves, `epi` on every block.
pub(super) fn gradient<E: Epilogue>(
    backend: Backend,
    by_pixel: &Grouped,
    product: SparseProduct,
    epi: &E,
) {
    let halves = halves(by_pixel);
    let work = product.work(0..by_pixel.groups());
    let sizes = halves.clone().map(|h| part_size(h.len(), 1, work));
    let parts = [0, 1].map(|h| halves[h].len().div_ceil(sizes[h]));
    Pool::current().run(&parts, kernels::threads(), &|half, p| {
        let start = halves[half].start + p * sizes[half];
        let groups = start..(start + sizes[half]).min(halves[half].end);
        product.groups_then(backend, groups, epi, &|_| {})
    });
}
