//! The sparse first layer split over its pixels in two fixed halves, the same for every thread count
//! and backend ([`crate::kernels::halves`]): its forward pass sums each half apart,
//! `x W + b = (b + Σ₀) + Σ₁`, and its gradient and update take the same halves of the weight's rows.
//! On two threads each core then keeps its half of the weight and velocity (1.6 MB for MLP1
//! together, 0.8 MB a half) in its own L2.

use std::ops::Range;

use ndarray::{ArrayView2, ArrayViewMut2};

use crate::batch::OFFSET;
use crate::kernels::halves::{Scratch, over_halves, part_size};
use crate::kernels::{self, Backend, Epilogue, Grouped, Plain, Pool};
use crate::kernels::{ScatterProduct, SparseProduct};

/// The halves of `by_pixel`'s groups of pixels: `0..mid` and `mid..`.
fn halves(by_pixel: &Grouped) -> [Range<usize>; 2] {
    let (groups, mid) = (by_pixel.groups(), by_pixel.groups().div_ceil(2));
    [0..mid, mid..groups]
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
    let (zeros, mut partial) = scratch.partial(rows, n);
    let [first, second] = halves(by_pixel);
    let halves = [
        ScatterProduct::new(by_pixel, w, bias, &mut out).groups(first),
        ScatterProduct::new(by_pixel, w, zeros, &mut partial).groups(second),
    ]
    .map(|half| half.offset(OFFSET));
    // Parts of whole blocks, so that no part ends in a narrower, slower one.
    let width = part_size(
        n,
        kernels::block_columns(backend),
        halves[0].work() + halves[1].work(),
    );
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
    let work = product.work(0..by_pixel.groups());
    over_halves(&halves(by_pixel), 1, work, &|_, groups| {
        product.groups_then(backend, groups, epi, &|_| {})
    });
}
