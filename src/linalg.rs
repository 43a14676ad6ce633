//! Dense matrix products, behind one function so that the kernel can be swapped in one place.
//!
//! Products whose right-hand matrix has contiguous rows go to [`crate::gemm`]'s AVX-512 kernel where the
//! CPU has one; the rest to ndarray's `general_mat_mul`, which runs matrixmultiply, built here with its AVX-512 kernel and its
//! `threading` feature (thread count: `MATMUL_NUM_THREADS`, set from `--threads`). The `gemm` crate was
//! measured too and lost end to end (README, Performance).

use std::sync::atomic::{AtomicUsize, Ordering};

use ndarray::linalg::general_mat_mul;
use ndarray::{ArrayView2, ArrayViewMut2};

static MATRIXMULTIPLY_CALLS: AtomicUsize = AtomicUsize::new(0);

/// How many products have gone to matrixmultiply so far. Each allocates its packing buffers, the one
/// allocation a training step still makes (tests/allocations.rs counts them).
pub fn matrixmultiply_calls() -> usize {
    MATRIXMULTIPLY_CALLS.load(Ordering::Relaxed)
}

/// `c = a · b` (`accumulate` false) or `c += a · b` (`accumulate` true). Any strides, transposed views
/// included.
pub fn matmul(a: ArrayView2<f32>, b: ArrayView2<f32>, mut c: ArrayViewMut2<f32>, accumulate: bool) {
    // Narrow products (a 10-class output layer) stay with matrixmultiply: the kernel's 64-column
    // blocks would be mostly masked lanes there.
    if !accumulate && b.ncols() >= 64 && crate::gemm::supports(&b, &c) {
        return crate::gemm::matmul(a, b, c);
    }
    MATRIXMULTIPLY_CALLS.fetch_add(1, Ordering::Relaxed);
    general_mat_mul(1.0, &a, &b, if accumulate { 1.0 } else { 0.0 }, &mut c);
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
