//! Dense matrix products, behind one function so that the kernel can be swapped in one place.
//!
//! Where the CPU has AVX-512, products go to [`crate::gemm`]'s kernel, which needs the right-hand matrix
//! by rows: a small transposed one (`D Wᵀ` of a 10-class layer) is copied by rows first, into a buffer
//! each thread keeps. Elsewhere, for larger `D Wᵀ` and for accumulating products, ndarray's
//! `general_mat_mul` runs matrixmultiply, with its AVX-512 kernel, on the rows of `c` split over the
//! threads here ([`crate::parallel`]). matrixmultiply's own `threading` feature is off: its worker
//! threads and the spinning helper of `parallel` fought for the second core (MLP2's "backward fc2"
//! stage took 0.53-0.55 s an epoch against 0.25-0.31). The `gemm` crate was measured too and lost end
//! to end (README, Performance).

use std::cell::RefCell;
use std::sync::atomic::{AtomicUsize, Ordering};

use ndarray::linalg::general_mat_mul;
use ndarray::{ArrayView2, ArrayViewMut2, s};

use crate::gemm::PARALLEL_FROM;
use crate::parallel::{for_row_parts, threads};

/// The largest transposed right-hand matrix copied by rows for the kernel. MLP2's `D Wᵀ` (256 x 500)
/// took 1.2x longer copied than in matrixmultiply (`mlp bench`, its stage "backward fc2"); a 10-class
/// layer's (10 x 256) is copied in a few microseconds and the product then takes 0.6x the time.
const COPY_AT_MOST: usize = 1 << 14;

thread_local! {
    /// A transposed right-hand matrix, copied by rows; it only grows, so a training run allocates it
    /// once.
    static BY_ROWS: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

static MATRIXMULTIPLY_CALLS: AtomicUsize = AtomicUsize::new(0);

/// How many products have gone to matrixmultiply so far. Each allocates its packing buffers
/// (tests/allocations.rs counts them).
pub fn matrixmultiply_calls() -> usize {
    MATRIXMULTIPLY_CALLS.load(Ordering::Relaxed)
}

/// `c = a · b` (`accumulate` false) or `c += a · b` (`accumulate` true). Any strides, transposed views
/// included.
pub fn matmul(a: ArrayView2<f32>, b: ArrayView2<f32>, mut c: ArrayViewMut2<f32>, accumulate: bool) {
    if !accumulate && crate::gemm::supports(&b, &c) {
        return crate::gemm::matmul(a, b, c);
    }
    let bt = b.t();
    if !accumulate && b.len() > 1 && b.len() <= COPY_AT_MOST && crate::gemm::supports(&bt, &c) {
        return BY_ROWS.with_borrow_mut(|buffer| {
            let b = copy_by_rows(b, buffer);
            crate::gemm::matmul(a, b, c)
        });
    }
    let beta = if accumulate { 1.0 } else { 0.0 };
    let height = a.nrows().div_ceil(threads());
    if height < a.nrows() && a.nrows() * a.ncols() * b.ncols() >= PARALLEL_FROM {
        return for_row_parts(c, height, &|first, mut c| {
            MATRIXMULTIPLY_CALLS.fetch_add(1, Ordering::Relaxed);
            let a = a.slice(s![first..first + c.nrows(), ..]);
            general_mat_mul(1.0, &a, &b, beta, &mut c);
        });
    }
    MATRIXMULTIPLY_CALLS.fetch_add(1, Ordering::Relaxed);
    general_mat_mul(1.0, &a, &b, beta, &mut c);
}

/// `b` copied into `buffer` with contiguous rows, returned as a view of it; `b`'s columns must be
/// contiguous. Sixteen rows of the copy are filled at a time, column after column, so that each read
/// takes one cache line of a column and the writes stay on sixteen lines.
fn copy_by_rows<'a>(b: ArrayView2<f32>, buffer: &'a mut Vec<f32>) -> ArrayView2<'a, f32> {
    let (k, n) = b.dim();
    if buffer.len() < k * n {
        buffer.resize(k * n, 0.0);
    }
    let out = &mut buffer[..k * n];
    let columns = b.t();
    for i0 in (0..k).step_by(16) {
        let i1 = (i0 + 16).min(k);
        for (j, column) in columns.rows().into_iter().enumerate() {
            let column = column.to_slice().expect("contiguous columns");
            for (i, &x) in (i0..i1).zip(&column[i0..i1]) {
                out[i * n + j] = x;
            }
        }
    }
    ArrayView2::from_shape((k, n), out).expect("k x n elements")
}

/// `a · b` by its definition, the reference the kernels are tested against.
#[cfg(test)]
pub(crate) fn naive(a: ArrayView2<f32>, b: ArrayView2<f32>) -> ndarray::Array2<f32> {
    ndarray::Array2::from_shape_fn((a.nrows(), b.ncols()), |(i, j)| {
        (0..a.ncols()).map(|k| a[[i, k]] * b[[k, j]]).sum()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Array2;

    #[test]
    fn matches_the_definition_for_plain_and_transposed_views() {
        let a = Array2::from_shape_fn((37, 53), |(i, j)| ((i * 7 + j * 3) % 17) as f32 * 0.1 - 0.8);
        let b = Array2::from_shape_fn((53, 29), |(i, j)| {
            ((i * 5 + j * 11) % 13) as f32 * 0.1 - 0.6
        });
        let bt = b.t().to_owned();
        let at = a.t().to_owned();
        let want = naive(a.view(), b.view());
        for (lhs, rhs) in [
            (a.view(), b.view()),
            (at.t(), b.view()),
            (a.view(), bt.t()),
            (at.t(), bt.t()),
        ] {
            let mut c = Array2::from_elem((37, 29), 9.0);
            matmul(lhs, rhs, c.view_mut(), false);
            assert!(c.iter().zip(&want).all(|(x, y)| (x - y).abs() < 1e-4));
            matmul(lhs, rhs, c.view_mut(), true);
            assert!(c.iter().zip(&want).all(|(x, y)| (x - 2.0 * y).abs() < 2e-4));
        }
    }
}
