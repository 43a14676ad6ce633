//! Dense matrix products, behind one function so that the kernel can be swapped in one place.
//!
//! Where the CPU has AVX-512, products go to [`crate::gemm`]'s kernel, which needs the right-hand matrix
//! by rows: a transposed one (`D Wᵀ`, up to 2^18 floats) is copied by rows first, into a buffer each
//! thread keeps. Elsewhere (accumulating products, CPUs without AVX-512), ndarray's
//! `general_mat_mul` runs matrixmultiply, with its AVX-512 kernel, on the rows of `c` split over the
//! threads here ([`crate::parallel`]). matrixmultiply's own `threading` feature is off: its worker
//! threads and the spinning helper of `parallel` fought for the second core (MLP2's "backward fc2"
//! stage took 0.53-0.55 s an epoch against 0.25-0.31). The `gemm` crate was measured too and lost end
//! to end (README, Performance).

use std::cell::RefCell;
use std::sync::atomic::{AtomicUsize, Ordering};

use ndarray::linalg::general_mat_mul;
use ndarray::{Array2, ArrayView1, ArrayView2, ArrayViewMut2, ShapeBuilder, s};

use crate::gemm::{PARALLEL_FROM, Split};
use crate::parallel::{Columns, Finish, finish_rows, for_row_parts, threads};

/// The largest transposed right-hand matrix copied by rows for the kernel (1 MiB of floats). A 10-class
/// layer's `Wᵀ` (10 x 256) is copied in a few microseconds and the product then takes 0.6x the time of
/// matrixmultiply's. MLP2's (256 x 500), copied sixteen by sixteen in registers: the whole process
/// took 1.006x the time with matrixmultiply on one thread, and with two, once the copy was split
/// over them, 0.97x (1.02x x 0.95x; alternated pairs); and nothing is allocated per step
/// (matrixmultiply allocates its packing buffers on every call). Copied element by element it had
/// taken 1.2x.
const COPY_AT_MOST: usize = 1 << 18;

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

/// `c = a · b`, plus `init` in every row when given (a layer's bias). Any strides, transposed views
/// included.
pub fn matmul(
    a: ArrayView2<f32>,
    b: ArrayView2<f32>,
    init: Option<ArrayView1<f32>>,
    c: ArrayViewMut2<f32>,
) {
    matmul_then(a, b, init, c, None)
}

/// [`matmul`], then `finish` on every row of `c`: for `D Wᵀ` on two threads, each thread finishes its
/// own columns as soon as it has summed them.
pub fn matmul_then(
    a: ArrayView2<f32>,
    b: ArrayView2<f32>,
    init: Option<ArrayView1<f32>>,
    mut c: ArrayViewMut2<f32>,
    finish: Option<Finish>,
) {
    // The kernels take the row as a slice; a strided one (never a bias) goes the general way.
    let kernel_init = match &init {
        None => Some(None),
        Some(row) => row.as_slice().map(Some),
    };
    if let Some(init) = kernel_init {
        if crate::gemm::supports(&b, &c) {
            crate::gemm::matmul(a, b, init, c.view_mut());
            return finish_all(c, finish);
        }
        let bt = b.t();
        if b.len() > 1 && b.len() <= COPY_AT_MOST && crate::gemm::supports(&bt, &c) {
            return transposed_product(a, b, init, c, finish);
        }
    }
    let beta = match init {
        Some(init) => {
            c.assign(&init);
            1.0
        }
        None => 0.0,
    };
    let height = a.nrows().div_ceil(threads());
    if height < a.nrows() && a.nrows() * a.ncols() * b.ncols() >= PARALLEL_FROM {
        return for_row_parts(c, height, &|first, mut c| {
            MATRIXMULTIPLY_CALLS.fetch_add(1, Ordering::Relaxed);
            let a = a.slice(s![first..first + c.nrows(), ..]);
            general_mat_mul(1.0, &a, &b, beta, &mut c);
            if let Some(finish) = finish {
                finish_rows(c, first, 0, finish);
            }
        });
    }
    MATRIXMULTIPLY_CALLS.fetch_add(1, Ordering::Relaxed);
    general_mat_mul(1.0, &a, &b, beta, &mut c);
    finish_all(c, finish);
}

/// `finish`, if any, on every row of the whole output `c`.
fn finish_all(c: ArrayViewMut2<f32>, finish: Option<Finish>) {
    if let Some(finish) = finish {
        finish_rows(c, 0, 0, finish);
    }
}

/// [`matmul`] with the sum split over the rows of `b` on two threads: a layer's forward pass `x W + b`,
/// where each core then reads only the half of the weight's rows that it updates
/// ([`crate::optim::Sgd::step`] splits them at the same row). The second half's sums go to `partial`
/// ([`crate::parallel::sum_in_halves`]). MLP2's second layer, `mlp bench` stage medians of 8 alternated
/// runs: 0.081 s an epoch against 0.095 split by the output's rows (each core reading the whole weight,
/// half of it just written by the other core); by the output's columns, 0.106 against 0.090. With one
/// thread or a small product, [`matmul`].
pub fn matmul_split_inner(
    a: ArrayView2<f32>,
    b: ArrayView2<f32>,
    init: Option<ArrayView1<f32>>,
    c: ArrayViewMut2<f32>,
    partial: &mut Array2<f32>,
    finish: Option<Finish>,
) {
    let (m, k) = a.dim();
    if threads() != 2 || m * k * b.ncols() < PARALLEL_FROM {
        return matmul_then(a, b, init, c, finish);
    }
    let mid = k.div_ceil(2);
    crate::parallel::sum_in_halves(
        c,
        partial,
        |c| matmul(a.slice(s![.., ..mid]), b.slice(s![..mid, ..]), init, c),
        |partial| {
            matmul(
                a.slice(s![.., mid..]),
                b.slice(s![mid.., ..]),
                None,
                partial,
            )
        },
        finish,
    );
}

/// [`matmul`] where `b` is a transposed row-major matrix (`D Wᵀ`): split by columns, each thread copies
/// the columns of `b` for each part of `c` it takes (weight rows that its core mostly updated, the
/// parts being claimed from both ends as the update's are) and multiplies. Copied whole (split by
/// rows over the threads) and then multiplied split by rows, MLP2's `D Wᵀ` (100 x 256 by 256 x 500) took as long on two threads as on
/// one (0.12-0.13 s for 600 products); this way 0.09-0.11, and MLP2's "backward fc2" stage went from
/// 0.254 to 0.172 s an epoch (`mlp bench`, medians of 8 alternated runs).
fn transposed_product(
    a: ArrayView2<f32>,
    b: ArrayView2<f32>,
    init: Option<&[f32]>,
    mut c: ArrayViewMut2<f32>,
    finish: Option<Finish>,
) {
    let part = |b: ArrayView2<f32>, init: Option<&[f32]>, mut c: ArrayViewMut2<f32>, first| {
        BY_ROWS.with_borrow_mut(|buffer| {
            let b = copy_by_rows(b, buffer);
            crate::gemm::matmul_part(a, b, init, c.view_mut())
        });
        if let Some(finish) = finish {
            finish_rows(c, 0, first, finish);
        }
    };
    match crate::gemm::split(a.nrows(), a.ncols(), b.ncols()) {
        Split::Columns(width) => for_row_parts(Columns(c), width, &|first, Columns(c)| {
            let columns = first..first + c.ncols();
            let init = init.map(|i| &i[columns.clone()]);
            part(b.slice(s![.., columns]), init, c, first)
        }),
        // By rows, or on one thread: every part needs all of `b`, copied once (split over the
        // threads when large) and shared.
        _ => {
            BY_ROWS.with_borrow_mut(|buffer| {
                let b = copy_by_rows(b, buffer);
                crate::gemm::matmul(a, b, init, c.view_mut())
            });
            finish_all(c, finish);
        }
    }
}

/// `b` copied into `buffer` with contiguous rows, returned as a view of it; `b`'s columns must be
/// contiguous (it is a transposed row-major matrix). Large copies are split by rows over the threads:
/// MLP2's 256 x 500 on one thread left the other waiting.
fn copy_by_rows<'a>(b: ArrayView2<f32>, buffer: &'a mut Vec<f32>) -> ArrayView2<'a, f32> {
    let (k, n) = b.dim();
    // Rows an odd number of cache lines apart, as `layers::padded` makes them: MLP2's `D Wᵀ` on two
    // threads copies 256 columns for the main thread, and rows 1 KiB apart put the kernel's 128-row
    // blocks into a quarter of the L1 cache's sets.
    let stride = crate::layers::padded_stride(n);
    let len = k * stride;
    if buffer.len() < len {
        buffer.resize(len, 0.0);
    }
    let shape = || (k, n).strides((stride, 1));
    let mut out = ArrayViewMut2::from_shape(shape(), &mut buffer[..len]).expect("k rows of stride");
    let columns = b.t();
    assert!(
        n <= 1 || (columns.strides()[1] == 1 && columns.strides()[0] >= 0),
        "contiguous columns"
    );
    let height = k.div_ceil(threads()).next_multiple_of(16);
    if height < k && k * n >= COPY_SPLIT_FROM {
        for_row_parts(out.view_mut(), height, &|first, part| {
            copy_rows(columns, first, part)
        });
    } else {
        copy_rows(columns, 0, out.view_mut());
    }
    ArrayView2::from_shape(shape(), &buffer[..len]).expect("k rows of stride")
}

/// Copies smaller than this (in floats) stay on one thread.
const COPY_SPLIT_FROM: usize = 1 << 15;

/// `part[r, j] = columns[j, first + r]`: sixteen by sixteen in AVX-512 registers where the CPU has it,
/// the edges one by one.
fn copy_rows(columns: ArrayView2<f32>, first: usize, mut part: ArrayViewMut2<f32>) {
    let (rows, n) = part.dim();
    // Rows and columns of `part` done by whole tiles.
    let (mut rows_done, mut n_done) = (0, 0);
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx512f") && rows >= 16 && n >= 16 {
        (rows_done, n_done) = (rows / 16 * 16, n / 16 * 16);
        let (column_stride, part_stride) =
            (columns.strides()[0] as usize, part.strides()[0] as usize);
        for j0 in (0..n_done).step_by(16) {
            for r0 in (0..rows_done).step_by(16) {
                // SAFETY: the CPU has AVX-512F, checked above; rows j0..j0 + 16 of `columns` exist
                // and hold columns first + r0.. + 16 contiguously (checked by the caller), and `part`
                // has rows r0..r0 + 16, columns j0..j0 + 16, contiguous.
                unsafe {
                    transpose_16x16(
                        columns.as_ptr().add(j0 * column_stride + first + r0),
                        column_stride,
                        part.as_mut_ptr().add(r0 * part_stride + j0),
                        part_stride,
                    )
                };
            }
        }
    }
    // The columns past the tiles, then the rows past them.
    for r in 0..rows {
        for j in n_done..n {
            part[[r, j]] = columns[[j, first + r]];
        }
    }
    for r in rows_done..rows {
        for j in 0..n_done {
            part[[r, j]] = columns[[j, first + r]];
        }
    }
}

/// `dst[c * dst_stride + r] = src[r * src_stride + c]` for r, c in 0..16: four rounds of shuffles in
/// registers (pairs of floats, pairs of pairs, then the 128-bit quarters twice).
///
/// # Safety
/// The CPU must have AVX-512F; sixteen rows of sixteen floats must be readable at `src` and
/// writable at `dst`, with those strides.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn transpose_16x16(src: *const f32, src_stride: usize, dst: *mut f32, dst_stride: usize) {
    use std::arch::x86_64::*;
    // SAFETY: as the function's.
    let r: [__m512; 16] =
        std::array::from_fn(|i| unsafe { _mm512_loadu_ps(src.add(i * src_stride)) });
    // Within each 128-bit quarter: t[2i] = (r2i[0], r2i+1[0], r2i[1], r2i+1[1]), t[2i+1] the same of
    // floats 2 and 3.
    let t: [__m512; 16] = std::array::from_fn(|i| {
        let (a, b) = (r[i & !1], r[i | 1]);
        if i % 2 == 0 {
            _mm512_unpacklo_ps(a, b)
        } else {
            _mm512_unpackhi_ps(a, b)
        }
    });
    // u[4i + c], quarter l: column 4l + c of rows 4i..4i + 4.
    let u: [__m512; 16] = std::array::from_fn(|x| {
        let (i, c) = (x / 4, x % 4);
        let (a, b) = (
            _mm512_castps_pd(t[4 * i + c / 2]),
            _mm512_castps_pd(t[4 * i + 2 + c / 2]),
        );
        _mm512_castpd_ps(if c % 2 == 0 {
            _mm512_unpacklo_pd(a, b)
        } else {
            _mm512_unpackhi_pd(a, b)
        })
    });
    for c in 0..4 {
        let low = _mm512_shuffle_f32x4::<0x44>(u[c], u[4 + c]);
        let high = _mm512_shuffle_f32x4::<0xEE>(u[c], u[4 + c]);
        let low2 = _mm512_shuffle_f32x4::<0x44>(u[8 + c], u[12 + c]);
        let high2 = _mm512_shuffle_f32x4::<0xEE>(u[8 + c], u[12 + c]);
        let rows = [
            _mm512_shuffle_f32x4::<0x88>(low, low2),
            _mm512_shuffle_f32x4::<0xDD>(low, low2),
            _mm512_shuffle_f32x4::<0x88>(high, high2),
            _mm512_shuffle_f32x4::<0xDD>(high, high2),
        ];
        for (l, row) in rows.into_iter().enumerate() {
            // SAFETY: row 4l + c of the sixteen at `dst`.
            unsafe { _mm512_storeu_ps(dst.add((4 * l + c) * dst_stride), row) };
        }
    }
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

    /// Whole tiles, edges on either side, and fewer than sixteen in one dimension.
    #[test]
    fn copy_by_rows_is_the_transpose_of_the_columns() {
        for (k, n) in [
            (256, 500),
            (250, 300),
            (37, 53),
            (16, 16),
            (5, 40),
            (40, 5),
            (33, 17),
            (256, 256),
        ] {
            // A row-major n x k matrix with padded rows, seen transposed: k x n, columns contiguous.
            let stored = Array2::from_shape_fn((n, k + 3), |(j, i)| (j * 1000 + i) as f32);
            let w = stored.slice(s![.., ..k]);
            let mut buffer = vec![f32::NAN; 7];
            let copy = copy_by_rows(w.t(), &mut buffer);
            assert_eq!(copy, w.t(), "{k} x {n}");
            let stride = copy.strides()[0] as usize;
            assert_eq!(
                stride,
                crate::layers::padded_stride(n),
                "{k} x {n}: rows apart"
            );
            // Split over two threads.
            let mut buffer = vec![f32::NAN; 7];
            crate::parallel::with_helper(|| {
                assert_eq!(copy_by_rows(w.t(), &mut buffer), w.t(), "{k} x {n}, split")
            });
        }
    }

    /// Shapes large enough for a product to be shared between two threads: `a` (m x k), `b` (k x n),
    /// `b`'s transpose and a row of `n`.
    struct Shared {
        m: usize,
        k: usize,
        n: usize,
        a: Array2<f32>,
        b: Array2<f32>,
        bt: Array2<f32>,
        init: ndarray::Array1<f32>,
    }

    fn shared_operands() -> Shared {
        let (m, k, n) = (100, 300, 500);
        let a = Array2::from_shape_fn((m, k), |(i, j)| ((i * 7 + j * 3) % 17) as f32 * 0.1 - 0.8);
        let b = Array2::from_shape_fn((k, n), |(i, j)| ((i * 5 + j * 11) % 13) as f32 * 0.1 - 0.6);
        let bt = b.t().to_owned();
        let init = ndarray::Array1::from_shape_fn(n, |j| j as f32 * 0.25 - 1.0);
        Shared {
            m,
            k,
            n,
            a,
            b,
            bt,
            init,
        }
    }

    /// Products large enough to be shared between two threads: by columns (short and wide `c`, `b`
    /// plain or transposed), by rows (tall `c`), and over the inner dimension.
    #[test]
    fn products_shared_between_threads_match_the_definition() {
        let Shared {
            m,
            k,
            n,
            a,
            b,
            bt,
            init,
        } = shared_operands();
        let want = naive(a.view(), b.view()) + &init;
        let close = |got: &Array2<f32>, want: &Array2<f32>, what: &str| {
            for (x, y) in got.iter().zip(want) {
                assert!(
                    (x - y).abs() < 1e-3 * y.abs().max(1.0),
                    "{what}: {x} vs {y}"
                );
            }
        };
        let mut partial = Array2::zeros((0, 0));
        crate::parallel::with_helper(|| {
            // Eight parts of whole 64-column blocks; 16 parts of whole 8-row blocks.
            assert_eq!(crate::gemm::split(m, k, n), Split::Columns(64));
            assert_eq!(crate::gemm::split(n, k, m), Split::Rows(32));
            for (rhs, what) in [(b.view(), "plain"), (bt.t(), "transposed")] {
                let mut c = Array2::from_elem((m, n), f32::NAN);
                matmul(a.view(), rhs, Some(init.view()), c.view_mut());
                close(&c, &want, what);
            }
            for _ in 0..2 {
                let mut c = Array2::from_elem((m, n), f32::NAN);
                matmul_split_inner(
                    a.view(),
                    b.view(),
                    Some(init.view()),
                    c.view_mut(),
                    &mut partial,
                    None,
                );
                close(&c, &want, "split over the inner dimension");
            }
            // Tall: split by rows.
            let mut c = Array2::from_elem((n, m), f32::NAN);
            matmul(b.t(), a.t(), None, c.view_mut());
            close(&c, &naive(b.t(), a.t()), "tall");
        });
        assert!(partial.dim() == (m, n), "the partial sums' buffer was used");
    }

    /// Split into parts by columns or rows, whichever thread takes each part, a product is the one
    /// thread's to the bit: each element is summed in one part, in the same order.
    #[test]
    fn products_in_parts_are_the_one_threads_to_the_bit() {
        let Shared {
            m,
            k,
            n,
            a,
            b,
            bt,
            init,
        } = shared_operands();
        let products = || {
            let mut wide = Array2::from_elem((m, n), f32::NAN);
            matmul(a.view(), b.view(), Some(init.view()), wide.view_mut());
            let mut transposed = Array2::from_elem((m, n), f32::NAN);
            matmul(a.view(), bt.t(), Some(init.view()), transposed.view_mut());
            let mut tall = Array2::from_elem((n, m), f32::NAN);
            matmul(b.t(), a.t(), None, tall.view_mut());
            [wide, transposed, tall]
        };
        let one = crate::parallel::with_helper(|| crate::parallel::join(|| (), products).1);
        let two = crate::parallel::with_helper(|| {
            assert!(matches!(crate::gemm::split(m, k, n), Split::Columns(w) if w < n / 2));
            assert!(matches!(crate::gemm::split(n, k, m), Split::Rows(h) if h < n / 2));
            products()
        });
        for ((one, two), what) in one.iter().zip(&two).zip(["wide", "transposed", "tall"]) {
            assert!(one == two, "{what}: two threads differ from one");
        }
    }

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
            matmul(lhs, rhs, None, c.view_mut());
            assert!(c.iter().zip(&want).all(|(x, y)| (x - y).abs() < 1e-4));
            // Plus a row, contiguous (the kernels) and strided (matrixmultiply, then the row added).
            let init = ndarray::Array1::from_shape_fn(58, |j| j as f32 - 20.0);
            let want_plus = &want + &init.slice(s![..29]);
            for row in [init.slice(s![..29]), init.slice(s![..;2])] {
                let mut c = Array2::from_elem((37, 29), 9.0);
                matmul(lhs, rhs, Some(row), c.view_mut());
                let want = if row.as_slice().is_some() {
                    &want_plus
                } else {
                    &(&want + &row)
                };
                assert!(c.iter().zip(want).all(|(x, y)| (x - y).abs() < 1e-4));
            }
        }
    }
}
