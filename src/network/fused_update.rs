//! The update fused into the gradient: each part of a weight's gradient is followed at once, on the
//! thread that computed it, by the SGD update of the same elements, while they are in cache. The
//! sparse first layer's gradient goes further: each block is applied while it is still in registers,
//! and written out only when the step keeps its gradients.

use ndarray::{Array2, ArrayView2, ArrayViewMut2};

use crate::batch::{InputBatch, OFFSET};
use crate::kernels::{self, Backend, Dense, Epilogue, Part, Plain, SparseProduct};
use crate::layers::Param;
use crate::optim::Sgd;

use super::sparse_halves;

/// The weight gradient of Linear layer `i`, `dW = xᵀ dout` (for a sparse first layer
/// `Sᵀ dout + offset · 1 · dbᵀ`, with `db` already in the bias's `grad`), each part followed at once by
/// `sgd`'s update of the same elements, on the thread that computed them; a dense weight split at
/// `mid` is cut into parts there ([`kernels::halves`]). Unless `keep`, the sparse
/// first layer's gradient is not written (its `grad` is then stale).
#[allow(clippy::too_many_arguments)]
pub(super) fn weight_gradient(
    backend: Backend,
    i: usize,
    mid: Option<usize>,
    x: &InputBatch,
    inp: Option<ArrayView2<f32>>,
    dout: ArrayView2<f32>,
    weight: &mut Param,
    row: &mut [f32],
    bias_grad: &[f32],
    sgd: Option<&Sgd>,
    keep: bool,
) {
    let fused = FusedUpdate::new(weight);
    let then = |part: &Part| {
        if let Some(sgd) = sgd {
            // SAFETY: the parts of one product are disjoint, and this part's gradient is final.
            let (p, g, v) = unsafe { fused.part(part) };
            sgd.update_rows(backend, p, g, v);
        }
    };
    // SAFETY: the gradient is written only through this view while `fused` is in use, part by part,
    // each part before its update reads it.
    let mut grad = unsafe { fused.grad() };
    match (i, x.sparse()) {
        (0, Some(sparse)) => {
            kernels::scale_into(backend, OFFSET, bias_grad, row);
            let by_pixel = sparse.by_pixel;
            let product = SparseProduct::new(by_pixel, dout, row, &mut grad);
            match (sgd, keep) {
                (None, _) => sparse_halves::gradient(backend, by_pixel, product, &Plain),
                (Some(&sgd), true) => {
                    let epi = InRegisters::<true> { sgd, to: &fused };
                    sparse_halves::gradient(backend, by_pixel, product, &epi)
                }
                (Some(&sgd), false) => {
                    let epi = InRegisters::<false> { sgd, to: &fused };
                    sparse_halves::gradient(backend, by_pixel, product, &epi)
                }
            }
        }
        _ => {
            let inp = inp.unwrap_or_else(|| x.dense());
            let dim = grad.dim();
            let product = Dense::new(inp.t(), dout, None, &mut grad);
            match mid {
                Some(mid) => kernels::halves::weight_gradient(backend, &product, dim, mid, &then),
                None => product.run_then(backend, &Plain, &then),
            }
        }
    }
}

/// The update of each finished block of the gradient, applied from registers; the block is written
/// to the gradient only if `KEEP`.
struct InRegisters<'a, 'p, const KEEP: bool> {
    sgd: Sgd,
    to: &'a FusedUpdate<'p>,
}

impl<const KEEP: bool> Epilogue for InRegisters<'_, '_, KEEP> {
    const STORES: bool = KEEP;

    #[inline(always)]
    fn apply(&self, row: usize, first_col: usize, block: &mut [f32]) {
        let to = self.to;
        let width = block.len().min(to.dim.1.saturating_sub(first_col));
        let at = row * to.stride + first_col;
        // SAFETY: the product's threads own disjoint rows, and the block lies inside the row (its
        // lanes past the weight's width, the padding, are left alone).
        let (value, velocity) = unsafe {
            (
                std::slice::from_raw_parts_mut(to.value.add(at), width),
                std::slice::from_raw_parts_mut(to.velocity.add(at), width),
            )
        };
        for ((p, &g), v) in value.iter_mut().zip(&*block).zip(velocity) {
            self.sgd.update(p, g, v);
        }
    }
}

/// A parameter's value, gradient and velocity by pointers, so that each thread of a product can
/// update the part of the weight it has just computed the gradient of.
struct FusedUpdate<'a> {
    value: *mut f32,
    grad: *mut f32,
    velocity: *mut f32,
    /// The row stride of all three (they are allocated alike, `Param::new`).
    stride: usize,
    dim: (usize, usize),
    _param: std::marker::PhantomData<&'a mut Param>,
}

// SAFETY: shared between the threads of one product, which touch disjoint parts.
unsafe impl Sync for FusedUpdate<'_> {}

impl<'a> FusedUpdate<'a> {
    fn new(param: &'a mut Param) -> Self {
        let stride = param.value.strides()[0] as usize;
        let alike =
            |a: &Array2<f32>| a.dim() == param.value.dim() && a.strides() == param.value.strides();
        assert!(
            alike(&param.grad) && alike(&param.velocity) && param.value.strides()[1] == 1,
            "a parameter's three arrays stored alike, by rows"
        );
        FusedUpdate {
            dim: param.value.dim(),
            value: param.value.as_mut_ptr(),
            grad: param.grad.as_mut_ptr(),
            velocity: param.velocity.as_mut_ptr(),
            stride,
            _param: std::marker::PhantomData,
        }
    }

    /// The whole gradient.
    ///
    /// # Safety
    /// No two live views may write the same element.
    unsafe fn grad(&self) -> ArrayViewMut2<'a, f32> {
        use ndarray::ShapeBuilder;
        // SAFETY: the pointer and strides are the parameter's own.
        unsafe { ArrayViewMut2::from_shape_ptr(self.dim.strides((self.stride, 1)), self.grad) }
    }

    /// Value, gradient and velocity of `part`.
    ///
    /// # Safety
    /// `part` lies inside the parameter, and no other thread touches it meanwhile.
    unsafe fn part(
        &self,
        part: &Part,
    ) -> (
        ArrayViewMut2<'_, f32>,
        ArrayView2<'_, f32>,
        ArrayViewMut2<'_, f32>,
    ) {
        use ndarray::ShapeBuilder;
        let (rows, cols) = (part.rows.len(), part.cols.len());
        let offset = part.rows.start * self.stride + part.cols.start;
        let shape = || (rows, cols).strides((self.stride, 1));
        // SAFETY: as the function's.
        unsafe {
            (
                ArrayViewMut2::from_shape_ptr(shape(), self.value.add(offset)),
                ArrayView2::from_shape_ptr(shape(), self.grad.add(offset).cast_const()),
                ArrayViewMut2::from_shape_ptr(shape(), self.velocity.add(offset)),
            )
        }
    }
}
