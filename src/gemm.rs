//! `c = a · b` for the products whose right-hand matrix has contiguous rows (a dense layer's forward
//! pass `x W` and its weight gradient `xᵀ D`), in AVX-512 registers.
//!
//! The kernel is the sparse one's ([`crate::sparse`]) made dense: a block of 128 rows x 64 columns of `b`
//! (32 KiB) stays in L1 cache while four rows of `c` at a time take every row of it, 16 accumulator
//! registers against 8 loads for each 16 FMAs. matrixmultiply, which the rest of the products use, packs
//! both operands for every call; at these small shapes (100 x 500 by 500 x 256) that cost shows.

use ndarray::{ArrayView2, ArrayViewMut2, s};

use crate::parallel::{Columns, balanced_height, for_row_parts};

/// Columns of `b` and `c` per block: four AVX-512 registers.
const BLOCK_COLS: usize = 64;
/// Rows of `b` per block: 128 rows x 64 floats = 32 KiB, inside a 48 KiB L1 cache.
const BLOCK_INNER: usize = 128;
/// Rows of `c` summed at once: 4 x 4 accumulators, 4 loaded vectors of `b` and 4 broadcasts of `a`
/// fit the 32 registers (with 3 x 8 the compiler ran out and broadcast `a` from memory for every FMA).
const ROWS: usize = 4;
/// Rows of `c` summed at once when a block is one vector wide (a 10-class layer): eight independent
/// FMA chains, enough to cover the FMA's latency on both units.
const NARROW_ROWS: usize = 8;
/// Products of fewer multiply-adds than this run on one thread: a fork-join costs about 8 us here
/// when the other thread has gone idle, as long as 2^20 multiply-adds take on one core.
pub(crate) const PARALLEL_FROM: usize = 1 << 20;

/// Whether [`matmul`] takes these operands: a CPU with AVX-512 and unit column strides for `b` and `c`.
pub fn supports(b: &ArrayView2<f32>, c: &ArrayViewMut2<f32>) -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        // An empty matrix may have any strides; it is never read.
        let rows_ok = |len: usize, cols: usize, strides: &[isize]| {
            len == 0 || ((cols <= 1 || strides[1] == 1) && strides[0] >= 0)
        };
        std::arch::is_x86_feature_detected!("avx512f")
            && rows_ok(b.len(), b.ncols(), b.strides())
            && rows_ok(c.len(), c.ncols(), c.strides())
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (b, c);
        false
    }
}

/// `c = a · b`, plus `init` in every row when given (a layer's bias: the accumulators start from it,
/// so no second pass over `c` adds it), shared between the threads ([`crate::parallel`]) as `split`
/// decides. Panics unless [`supports`] holds.
pub fn matmul(a: ArrayView2<f32>, b: ArrayView2<f32>, init: Option<&[f32]>, c: ArrayViewMut2<f32>) {
    assert!(
        supports(&b, &c),
        "gemm::matmul needs AVX-512 and rows with unit stride"
    );
    assert_eq!(a.ncols(), b.nrows(), "inner dimensions");
    assert_eq!(c.dim(), (a.nrows(), b.ncols()), "output shape");
    assert!(init.is_none_or(|i| i.len() == b.ncols()), "init width");
    if c.is_empty() {
        return;
    }
    match split(a.nrows(), a.ncols(), b.ncols()) {
        Split::None => matmul_part(a, b, init, c),
        Split::Rows(height) => for_row_parts(c, height, &|first, c| {
            matmul_part(a.slice(s![first..first + c.nrows(), ..]), b, init, c)
        }),
        Split::Columns(width) => for_row_parts(Columns(c), width, &|first, Columns(c)| {
            let columns = first..first + c.ncols();
            let init = init.map(|i| &i[columns.clone()]);
            matmul_part(a, b.slice(s![.., columns]), init, c)
        }),
    }
}

/// How an `m x k` by `k x n` product is shared between the threads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Split {
    /// On this thread alone: a small product, or one thread.
    None,
    /// Parts of this many rows of `c` ([`for_row_parts`]).
    Rows(usize),
    /// Parts of this many columns of `c` (and `b`), whole blocks ([`for_row_parts`] on [`Columns`]).
    Columns(usize),
}

/// Rows for a tall `c` (a weight gradient `xᵀ D`, 500 x 256 for MLP2's second layer); columns, in
/// whole blocks, for a short wide one (`D Wᵀ`, 100 x 500), whose rows would split as 56 + 44 (multiples
/// of eight) with each core reading all of `b`. A layer's forward pass `x W` is split over its inner
/// dimension instead ([`crate::linalg::matmul_split_inner`]). The parts are
/// [`crate::parallel::balanced_height`]'s, so that a core that runs slower takes fewer of them.
pub(crate) fn split(m: usize, k: usize, n: usize) -> Split {
    if crate::parallel::threads() < 2 || m * k * n < PARALLEL_FROM {
        return Split::None;
    }
    if m < n && n >= 2 * BLOCK_COLS {
        return Split::Columns(balanced_height(n, BLOCK_COLS));
    }
    let height = balanced_height(m, NARROW_ROWS);
    if height < m {
        Split::Rows(height)
    } else {
        Split::None
    }
}

/// [`matmul`] on this thread alone, for a caller that shares the work itself.
pub(crate) fn matmul_part(
    a: ArrayView2<f32>,
    b: ArrayView2<f32>,
    init: Option<&[f32]>,
    mut c: ArrayViewMut2<f32>,
) {
    #[cfg(target_arch = "x86_64")]
    {
        let operands = Operands {
            a: a.as_ptr(),
            a_row: a.strides()[0],
            a_col: a.strides()[1],
            b: b.as_ptr(),
            b_row: b.strides()[0] as usize,
            init: init.map_or(std::ptr::null(), |i| i.as_ptr()),
            c: c.as_mut_ptr(),
            c_row: c.strides()[0] as usize,
            m: a.nrows(),
            k: a.ncols(),
            n: b.ncols(),
        };
        // SAFETY: `matmul` checked the CPU feature, the unit column strides and the shapes; the
        // pointers and strides describe the views borrowed for this call.
        unsafe { kernel(&operands) }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (a, b, init, &mut c);
}

/// Three matrices by first element and strides: `a` is `m x k` (any strides), `b` is `k x n` and `c`
/// is `m x n` (unit column strides).
#[cfg(target_arch = "x86_64")]
struct Operands {
    a: *const f32,
    a_row: isize,
    a_col: isize,
    b: *const f32,
    b_row: usize,
    /// `n` floats added to every row of `c`, or null for none.
    init: *const f32,
    c: *mut f32,
    c_row: usize,
    m: usize,
    k: usize,
    n: usize,
}

/// # Safety
/// The CPU must have AVX-512F; `o` must describe matrices that exist for the call's length.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn kernel(o: &Operands) {
    for j0 in (0..o.n).step_by(BLOCK_COLS) {
        let width = (o.n - j0).min(BLOCK_COLS);
        // SAFETY: as this function's; the block's columns lie inside the rows.
        unsafe {
            match width.div_ceil(16) {
                1 => column_block::<NARROW_ROWS, 1>(o, j0, width),
                2 => column_block::<ROWS, 2>(o, j0, width),
                3 => column_block::<ROWS, 3>(o, j0, width),
                _ => column_block::<ROWS, 4>(o, j0, width),
            }
        }
    }
}

/// Columns `j0 .. j0 + width` (`width` in `16 (V - 1) + 1 ..= 16 V`) of `c`, block of `b` after block,
/// `R` rows of `c` at a time.
///
/// # Safety
/// As [`kernel`].
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn column_block<const R: usize, const V: usize>(o: &Operands, j0: usize, width: usize) {
    for k0 in (0..o.k.max(1)).step_by(BLOCK_INNER) {
        let inner = k0..(k0 + BLOCK_INNER).min(o.k);
        let mut i0 = 0;
        // SAFETY: as this function's.
        unsafe {
            while i0 + R <= o.m {
                rows::<R, V>(o, i0, j0, width, inner.clone());
                i0 += R;
            }
            while i0 + 4 <= o.m {
                rows::<4, V>(o, i0, j0, width, inner.clone());
                i0 += 4;
            }
            match o.m - i0 {
                1 => rows::<1, V>(o, i0, j0, width, inner),
                2 => rows::<2, V>(o, i0, j0, width, inner),
                3 => rows::<3, V>(o, i0, j0, width, inner),
                _ => {}
            }
        }
    }
}

/// `c[i0 .. i0 + R, j0 ..][..width] (+)= a[i0 .. i0 + R, inner] · b[inner, j0 ..][..width]`: set on
/// the first block of `b`'s rows (to `init` plus the block's sum), added to on the others.
///
/// # Safety
/// As [`kernel`]; `i0 + R <= m`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn rows<const R: usize, const V: usize>(
    o: &Operands,
    i0: usize,
    j0: usize,
    width: usize,
    inner: std::ops::Range<usize>,
) {
    use std::arch::x86_64::*;
    let tail = width - 16 * (V - 1);
    let last: __mmask16 = if tail == 16 { !0 } else { (1 << tail) - 1 };
    let mask = |q: usize| if q + 1 == V { last } else { !0 };
    // SAFETY (all below): rows i0 .. i0 + R < m of `a` and `c`, rows `inner` < k of `b`; columns
    // `j0 + 16 q ..` with the lanes past `j0 + width <= n` masked off.
    unsafe {
        let c_row = |r: usize| o.c.add((i0 + r) * o.c_row + j0);
        let mut acc: [[__m512; V]; R] = if inner.start == 0 && o.init.is_null() {
            [[_mm512_setzero_ps(); V]; R]
        } else if inner.start == 0 {
            let init = o.init.add(j0);
            [std::array::from_fn(|q| _mm512_maskz_loadu_ps(mask(q), init.add(16 * q))); R]
        } else {
            std::array::from_fn(|r| {
                std::array::from_fn(|q| _mm512_maskz_loadu_ps(mask(q), c_row(r).add(16 * q)))
            })
        };
        for kk in inner {
            let b_row = o.b.add(kk * o.b_row + j0);
            let a_col = o.a.offset(kk as isize * o.a_col);
            let a: [__m512; R] =
                std::array::from_fn(|r| _mm512_set1_ps(*a_col.offset((i0 + r) as isize * o.a_row)));
            let b: [__m512; V] =
                std::array::from_fn(|q| _mm512_maskz_loadu_ps(mask(q), b_row.add(16 * q)));
            for (acc, &a) in acc.iter_mut().zip(&a) {
                for (acc, &b) in acc.iter_mut().zip(&b) {
                    *acc = _mm512_fmadd_ps(a, b, *acc);
                }
            }
        }
        for (r, acc) in acc.iter().enumerate() {
            for (q, v) in acc.iter().enumerate() {
                _mm512_mask_storeu_ps(c_row(r).add(16 * q), mask(q), *v);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::linalg::naive;
    use ndarray::Array2;

    /// Shapes around every block edge, `a` plain and transposed, on one thread and on two.
    #[test]
    fn matches_the_definition() {
        let b_probe = Array2::<f32>::zeros((1, 1));
        let mut c_probe = Array2::<f32>::zeros((1, 1));
        if !supports(&b_probe.view(), &c_probe.view_mut()) {
            return; // no AVX-512 here: linalg::matmul never calls this kernel
        }
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(2)
            .build()
            .unwrap();
        for (m, k, n) in [
            (1, 1, 1),
            (4, 65, 17),
            (100, 130, 257),
            (300, 70, 100),
            (7, 0, 5),
            (2, 64, 128),
            (101, 10, 10),
            (100, 256, 10),
            (256, 100, 10),
            (19, 9, 3),
        ] {
            let a =
                Array2::from_shape_fn((m, k), |(i, j)| ((i * 7 + j * 3) % 17) as f32 * 0.1 - 0.8);
            let at = a.t().to_owned();
            let b =
                Array2::from_shape_fn((k, n), |(i, j)| ((i * 5 + j * 11) % 13) as f32 * 0.1 - 0.6);
            let init = ndarray::Array1::from_shape_fn(n, |j| j as f32 * 0.25 - 1.0);
            let want = naive(a.view(), b.view());
            let want_plus = &want + &init;
            for (lhs, init, want) in [
                (a.view(), None, &want),
                (at.t(), None, &want),
                (a.view(), init.as_slice(), &want_plus),
            ] {
                let mut one = Array2::from_elem((m, n), f32::NAN);
                matmul(lhs, b.view(), init, one.view_mut());
                let mut two = Array2::from_elem((m, n), f32::NAN);
                pool.install(|| matmul(lhs, b.view(), init, two.view_mut()));
                for (got, threads) in [(&one, 1), (&two, 2)] {
                    for (x, y) in got.iter().zip(want) {
                        assert!(
                            (x - y).abs() < 1e-3,
                            "{m}x{k}x{n}, {threads} thread(s): {x} vs {y}"
                        );
                    }
                }
            }
        }
    }
}
