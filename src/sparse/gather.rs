//! `out[r, :] = init + Σ_k vals[k] · src[cols[k], :]` over the entries of sparse row `r`: the first
//! layer's forward pass (`S W`) and weight gradient (`Sᵀ D`) on a sparse batch.
//!
//! The AVX-512 kernel keeps what it reads in L1 cache. It works on a block of `BLOCK_SRC_ROWS x
//! BLOCK_COLS` of `src` (32 KiB) at a time, and every pair of output rows takes the entries that fall
//! in that block from its sparse entries ([`SparseRows`] pairs its rows), summing into registers: each
//! source vector loaded feeds one FMA for each row of the pair. Measured (one row at a time) against reading each source row from L2
//! (one block of all the rows): the same speed on its own (1.85 against 1.83 G vector FMAs a second,
//! 600 MNIST batches), 0.93x the time of `mlp train --max-epoch 3` (9 alternated pairs), where the SGD
//! update and the other layers compete for the cache. Blocks of 32, 48, 96 or 128 rows, and 256
//! columns, were slower.

use std::cell::RefCell;

use ndarray::{Array1, Array2, ArrayView1, ArrayView2, ArrayViewMut2, s};

use crate::parallel::{for_row_parts, for_row_parts_with};

use super::SparseRows;
use crate::layers::Param;
use crate::optim::Sgd;

/// Columns processed together: eight AVX-512 registers of accumulators per row of a pair, sixteen
/// independent FMA chains, more than both FMA units need through their four-cycle latency.
const BLOCK_COLS: usize = 128;
/// Source rows per block: 64 rows x 128 floats is 32 KiB, which stays in a 48 KiB L1 cache.
const BLOCK_SRC_ROWS: usize = 64;
/// Pairs of output rows whose place in their sparse entries is tracked at once, on the stack.
const PAIR_GROUP: usize = 64;

/// `out[r, :] = init + Σ_k vals[k] · src[cols[k], :]` for every row `r` of `sparse` (`out` is
/// `sparse.nrows() x src.ncols()`, `src` has `sparse.ncols()` rows, both with contiguous rows).
///
/// The rows are split over the threads. Splitting the columns instead, so that each core keeps its
/// part of a weight matrix through the forward pass, the gradient and the update, measured 1.08x the
/// time of `mlp train --max-epoch 3` with rayon's join (2 threads); with the helper thread's fixed
/// halves, the update's share of a run went up 1.6x (column halves of a row-major weight interleave
/// in memory).
pub fn gather_rows(
    sparse: &SparseRows,
    src: ArrayView2<f32>,
    init: ArrayView1<f32>,
    out: ArrayViewMut2<f32>,
) {
    let Some(init) = checked_init(sparse, src, &init, out.dim()) else {
        return;
    };
    let (rows, height) = (sparse.nrows(), part_height(sparse.nrows()));
    if height < rows {
        for_row_parts(out, height, &|first, out| {
            gather_range(sparse, first, src, init, out)
        });
    } else {
        gather_range(sparse, 0, src, init, out);
    }
}

/// `init` as a slice, after checking that an output of `out_dim` fits `sparse` and `src`; `None` when
/// the output is empty.
fn checked_init<'a>(
    sparse: &SparseRows,
    src: ArrayView2<f32>,
    init: &'a ArrayView1<f32>,
    out_dim: (usize, usize),
) -> Option<&'a [f32]> {
    let n = src.ncols();
    assert_eq!(out_dim, (sparse.nrows(), n), "gather_rows output shape");
    assert_eq!(src.nrows(), sparse.ncols(), "gather_rows source rows");
    assert_eq!(init.len(), n, "gather_rows init width");
    let init = init.as_slice().expect("contiguous init");
    (n > 0 && out_dim.0 > 0).then_some(init)
}

/// Output rows per thread: as [`Sgd::step`] splits a weight's rows, rounded up to whole pairs. Also
/// how [`gather_rows_update`] splits the weight's rows, and with them its [`ColumnSums`].
pub fn part_height(rows: usize) -> usize {
    rows.div_ceil(crate::parallel::threads())
        .next_multiple_of(2)
}

/// Column sums of a weight that [`gather_rows_update`] adds up from the rows it has just updated:
/// `parts[k] += scale · (the sum of the k-th part's rows)`, in the order of the rows, with the rows
/// split into parts of [`part_height`] rows. The first layer's forward pass needs `b + offset ·
/// colsum(W)`; made here, while each updated row is in registers, it costs no pass over the weight
/// of its own.
pub struct ColumnSums<'a> {
    pub scale: f32,
    /// One row of sums per part at least.
    pub parts: &'a mut [Array1<f32>],
}

/// [`gather_rows`] into a weight's gradient, immediately consumed by its SGD update: `param`'s value and
/// velocity take the update from `init + S src` (`param.grad` is neither read nor written), and `sums`
/// the updated rows. The gradient's sums are made a group of `UPDATE_GROUP` (128) rows at a time into
/// a buffer that each thread keeps, and that group's rows updated from it while it is in L2, so the
/// whole gradient never goes to memory: it would be written (after reading its lines in), and read
/// again by the update, both through L3 for a weight that with its gradient does not fit L2 (MLP2's
/// first layer: 1.6 MB each). The rows are split over the threads as [`Sgd::step`] splits them.
pub fn gather_rows_update(
    sparse: &SparseRows,
    src: ArrayView2<f32>,
    init: ArrayView1<f32>,
    param: &mut Param,
    sgd: &Sgd,
    sums: ColumnSums,
) {
    let Some(init) = checked_init(sparse, src, &init, param.value.dim()) else {
        return;
    };
    let n = src.ncols();
    let height = part_height(sparse.nrows());
    assert!(
        sums.parts.iter().all(|s| s.len() == n),
        "one column sum per column"
    );
    let scale = sums.scale;
    let parts = (param.value.view_mut(), param.velocity.view_mut());
    for_row_parts_with(
        parts,
        height,
        sums.parts,
        &|first, (mut value, mut velocity), sums| {
            let sums = sums.as_slice_mut().expect("contiguous sums");
            SCRATCH.with_borrow_mut(|scratch| {
                if scratch.nrows() < UPDATE_GROUP || scratch.ncols() != n {
                    *scratch = crate::layers::padded(UPDATE_GROUP, n);
                }
                for g in (0..value.nrows()).step_by(UPDATE_GROUP) {
                    let end = (g + UPDATE_GROUP).min(value.nrows());
                    let mut grad = scratch.slice_mut(s![..end - g, ..]);
                    gather_range(sparse, first + g, src, init, grad.view_mut());
                    sgd.update_rows_summing(
                        value.slice_mut(s![g..end, ..]),
                        grad.view(),
                        velocity.slice_mut(s![g..end, ..]),
                        Some((scale, &mut *sums)),
                    );
                }
            })
        },
    );
}

/// Rows of a weight whose gradient [`gather_rows_update`] makes at once: 128 rows of 500 floats take
/// 270 KB, in a 2 MB L2 beside the weight's and velocity's same rows.
const UPDATE_GROUP: usize = 128;

thread_local! {
    /// [`gather_rows_update`]'s gradient rows; grown once per thread.
    static SCRATCH: RefCell<Array2<f32>> = RefCell::new(Array2::zeros((0, 0)));
}

/// [`gather_rows`] for the output rows `first..` that `out` holds.
fn gather_range(
    sparse: &SparseRows,
    first: usize,
    src: ArrayView2<f32>,
    init: &[f32],
    mut out: ArrayViewMut2<f32>,
) {
    assert!(first + out.nrows() <= sparse.nrows() && src.nrows() == sparse.ncols());
    assert!(first.is_multiple_of(2), "parts start at a pair of rows");
    assert!(src.ncols() == out.ncols() && init.len() == out.ncols());
    assert!(
        src.len() <= 1 || src.ncols() <= 1 || src.strides()[1] == 1,
        "contiguous source rows"
    );
    assert!(
        out.ncols() <= 1 || out.strides()[1] == 1,
        "contiguous output rows"
    );
    let src = Strided {
        ptr: src.as_ptr(),
        stride: src.strides()[0] as usize,
        rows: src.nrows(),
        width: src.ncols(),
    };
    let out = StridedMut {
        ptr: out.as_mut_ptr(),
        stride: out.strides()[0] as usize,
        rows: out.nrows(),
    };
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx512f") {
        // SAFETY: the CPU has AVX-512F, checked just above; the shapes were checked above and every
        // column of `sparse` is below its `ncols` (its invariant), so every source row read exists.
        return unsafe { gather_range_avx512(sparse, first, &src, init, &out) };
    }
    // SAFETY: as above, without the CPU feature.
    unsafe { gather_range_portable(sparse, first, &src, init, &out) }
}

/// A matrix by its first element and row stride, `rows` rows contiguous and `width` wide.
struct Strided {
    ptr: *const f32,
    stride: usize,
    rows: usize,
    width: usize,
}

/// The output's part: `rows` rows of the source's width, as [`Strided`].
struct StridedMut {
    ptr: *mut f32,
    stride: usize,
    rows: usize,
}

/// Pair of rows by pair of rows, in plain loops the compiler vectorises, a block of columns at a time.
///
/// # Safety
/// `src` and `out` must describe matrices as [`gather_range`] builds them from its checked views.
unsafe fn gather_range_portable(
    sparse: &SparseRows,
    first: usize,
    src: &Strided,
    init: &[f32],
    out: &StridedMut,
) {
    let (starts, cols) = (sparse.starts(), sparse.cols());
    for j0 in (0..src.width).step_by(BLOCK_COLS) {
        let width = (src.width - j0).min(BLOCK_COLS);
        for i in 0..out.rows {
            // SAFETY: row i of the output part, columns j0 .. j0 + width, inside it.
            let dst =
                unsafe { std::slice::from_raw_parts_mut(out.ptr.add(i * out.stride + j0), width) };
            dst.copy_from_slice(&init[j0..j0 + width]);
            let pair = (first + i) / 2;
            let range = starts[pair]..starts[pair + 1];
            let vals = &sparse.vals(i % 2)[range.clone()];
            for (&c, &v) in cols[range].iter().zip(vals) {
                // SAFETY: c < src.rows (the invariant), columns j0 .. j0 + width of that row.
                let row = unsafe {
                    std::slice::from_raw_parts(src.ptr.add(c as usize * src.stride + j0), width)
                };
                for (d, s) in dst.iter_mut().zip(row) {
                    *d += v * s;
                }
            }
        }
    }
}

/// # Safety
/// The CPU must have AVX-512F, and `src` and `out` must be as [`gather_range_portable`] needs.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn gather_range_avx512(
    sparse: &SparseRows,
    first: usize,
    src: &Strided,
    init: &[f32],
    out: &StridedMut,
) {
    let mut cursor = [0usize; PAIR_GROUP];
    let pairs = out.rows.div_ceil(2);
    for j0 in (0..src.width).step_by(BLOCK_COLS) {
        let width = (src.width - j0).min(BLOCK_COLS);
        for g0 in (0..pairs).step_by(PAIR_GROUP) {
            let group = g0..(g0 + PAIR_GROUP).min(pairs);
            let job = Block {
                starts: &sparse.starts()[first / 2..],
                cols: sparse.cols(),
                vals: [sparse.vals(0), sparse.vals(1)],
                src,
                out,
                init: &init[j0..],
                j0,
                width,
            };
            let cursor = &mut cursor[..group.len()];
            // SAFETY: as this function's; `width` columns from `j0` lie inside the rows.
            unsafe {
                match width.div_ceil(16) {
                    1 => block::<1>(&job, group, cursor),
                    2 => block::<2>(&job, group, cursor),
                    3 => block::<3>(&job, group, cursor),
                    4 => block::<4>(&job, group, cursor),
                    5 => block::<5>(&job, group, cursor),
                    6 => block::<6>(&job, group, cursor),
                    7 => block::<7>(&job, group, cursor),
                    _ => block::<8>(&job, group, cursor),
                }
            }
        }
    }
}

/// One block of columns, `j0 .. j0 + width`, of the output part.
#[cfg(target_arch = "x86_64")]
struct Block<'a> {
    /// The pairs' starts from the output part's first pair on.
    starts: &'a [usize],
    cols: &'a [u32],
    vals: [&'a [f32]; 2],
    src: &'a Strided,
    out: &'a StridedMut,
    /// `init` from column `j0` on.
    init: &'a [f32],
    j0: usize,
    width: usize,
}

/// The block's columns (`width` in `16 (V - 1) + 1 ..= 16 V`) of the output part's pairs of rows
/// `group`, one source block after the other. `cursor` remembers, per pair, the first entry not yet
/// added.
///
/// # Safety
/// As [`gather_range_avx512`].
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn block<const V: usize>(job: &Block, group: std::ops::Range<usize>, cursor: &mut [usize]) {
    use std::arch::x86_64::*;
    let Block {
        starts,
        cols,
        vals: [vals0, vals1],
        src,
        out,
        init,
        j0,
        width,
    } = *job;
    let tail = width - 16 * (V - 1);
    let last: __mmask16 = if tail == 16 { !0 } else { (1 << tail) - 1 };
    let mask = |q: usize| if q + 1 == V { last } else { !0 };
    // SAFETY (all below): every pointer is `j0 + 16 q` into a row of the source or the output part
    // (the second row of a pair only when the part has it), and the lanes at or past `j0 + width`,
    // the part's width, are masked off; a source row is read only when its index is below
    // `src.rows`, which the loop checks.
    unsafe {
        let load = |p: *const f32| -> [__m512; V] {
            std::array::from_fn(|q| _mm512_maskz_loadu_ps(mask(q), p.add(16 * q)))
        };
        let store = |p: *mut f32, acc: &[__m512; V]| {
            for (q, a) in acc.iter().enumerate() {
                _mm512_mask_storeu_ps(p.add(16 * q), mask(q), *a);
            }
        };
        let init = load(init.as_ptr());
        for (c, p) in cursor.iter_mut().zip(group.clone()) {
            *c = starts[p];
        }
        // At least one block, so that rows with no entries get `init`.
        for k0 in (0..src.rows.max(1)).step_by(BLOCK_SRC_ROWS) {
            let k1 = (k0 + BLOCK_SRC_ROWS).min(src.rows);
            for (c, p) in cursor.iter_mut().zip(group.clone()) {
                let o0 = out.ptr.add(2 * p * out.stride + j0);
                let o1 = o0.add(out.stride);
                let has_second = 2 * p + 1 < out.rows;
                let (mut e, end) = (*c, starts[p + 1]);
                let first = k0 == 0;
                // A pair with no entries in this block keeps what it has; a quarter of MNIST's
                // (row, block) pairs are empty (the image's top and bottom rows of pixels).
                if !first && (e == end || cols[e] as usize >= k1) {
                    continue;
                }
                let (mut acc0, mut acc1) = if first {
                    (init, init)
                } else if has_second {
                    (load(o0), load(o1))
                } else {
                    (load(o0), init)
                };
                while e < end {
                    // In bounds: `end` is a pair's end, at most `cols.len() == vals0.len() ==
                    // vals1.len()`.
                    let col = *cols.get_unchecked(e) as usize;
                    if col >= k1 {
                        break;
                    }
                    let v0 = _mm512_set1_ps(*vals0.get_unchecked(e));
                    let v1 = _mm512_set1_ps(*vals1.get_unchecked(e));
                    let s = src.ptr.add(col * src.stride + j0);
                    for q in 0..V {
                        let x = _mm512_maskz_loadu_ps(mask(q), s.add(16 * q));
                        acc0[q] = _mm512_fmadd_ps(v0, x, acc0[q]);
                        acc1[q] = _mm512_fmadd_ps(v1, x, acc1[q]);
                    }
                    e += 1;
                }
                *c = e;
                store(o0, &acc0);
                if has_second {
                    store(o1, &acc1);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{Array1, Array2};

    /// A sparse matrix of `rows x cols` with about a quarter of its entries nonzero, and its dense form.
    fn sample(rows: usize, cols: usize) -> (SparseRows, Array2<f32>) {
        let bytes = Array2::from_shape_fn((rows, cols), |(i, j)| {
            if (i * 3 + j * 5) % 4 == 0 {
                ((i + 2 * j) % 250 + 1) as u8
            } else {
                0
            }
        });
        let rows: Vec<&[u8]> = bytes
            .rows()
            .into_iter()
            .map(|r| r.to_slice().unwrap())
            .collect();
        (
            SparseRows::from_rows(&rows, cols, 0.25),
            bytes.mapv(|p| p as f32 * 0.25),
        )
    }

    /// Rows whose entries sit in some source blocks and skip others (as an image's pixel rows do):
    /// the skipped blocks must leave the sums as they are, on one thread and split over two.
    #[test]
    fn rows_with_empty_blocks_keep_their_sums() {
        let inner = 5 * BLOCK_SRC_ROWS + 7;
        let bytes = Array2::from_shape_fn((4, inner), |(i, j)| match i {
            0 if j < 10 || (4 * BLOCK_SRC_ROWS..4 * BLOCK_SRC_ROWS + 9).contains(&j) => 3,
            2 if (2 * BLOCK_SRC_ROWS + 1..2 * BLOCK_SRC_ROWS + 5).contains(&j) => 7,
            3 if j + 1 == inner => 1,
            _ => 0,
        });
        let rows: Vec<&[u8]> = bytes
            .rows()
            .into_iter()
            .map(|r| r.to_slice().unwrap())
            .collect();
        let sparse = SparseRows::from_rows(&rows, inner, 0.5);
        let n = 40;
        let src = Array2::from_shape_fn((inner, n), |(i, j)| ((i * 5 + j * 3) % 13) as f32 - 6.0);
        let init = Array1::from_shape_fn(n, |j| j as f32 - 20.0);
        let want = bytes.mapv(|p| p as f32 * 0.5).dot(&src) + &init;
        let mut whole = Array2::from_elem((4, n), f32::NAN);
        gather_rows(&sparse, src.view(), init.view(), whole.view_mut());
        let mut split = Array2::from_elem((4, n), f32::NAN);
        crate::parallel::with_helper(|| {
            gather_rows(&sparse, src.view(), init.view(), split.view_mut())
        });
        for got in [&whole, &split] {
            for (a, b) in got.iter().zip(&want) {
                assert!((a - b).abs() <= 1e-4 * b.abs().max(1.0), "{a} vs {b}");
            }
        }
    }

    /// Every column count from one register to past a block, and source rows spanning several blocks.
    #[test]
    fn gather_rows_is_init_plus_sparse_times_dense() {
        for (rows, inner, n) in [
            (23, 9, 37),
            (5, 200, 16),
            (130, 70, 1),
            (7, 130, 300),
            (3, 0, 20),
            (9, 5, 520),
        ] {
            let (sparse, dense) = sample(rows, inner);
            let src = Array2::from_shape_fn((inner, n), |(i, j)| ((i * 7 + j) % 11) as f32 - 5.0);
            let init = Array1::from_shape_fn(n, |j| j as f32 * 0.5);
            let want = dense.dot(&src) + &init;
            let mut out = Array2::from_elem((rows, n), f32::NAN);
            gather_rows(&sparse, src.view(), init.view(), out.view_mut());
            // The same on two threads, which split the rows.
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(2)
                .build()
                .unwrap();
            let mut split = Array2::from_elem((rows, n), f32::NAN);
            pool.install(|| gather_rows(&sparse, src.view(), init.view(), split.view_mut()));
            // On the helper thread's pair.
            let mut helper = Array2::from_elem((rows, n), f32::NAN);
            crate::parallel::with_helper(|| {
                gather_rows(&sparse, src.view(), init.view(), helper.view_mut())
            });
            // The portable loops.
            let mut portable = Array2::from_elem((rows, n), f32::NAN);
            let out_all = StridedMut {
                ptr: portable.as_mut_ptr(),
                stride: n,
                rows,
            };
            let src_all = Strided {
                ptr: src.as_ptr(),
                stride: n,
                rows: inner,
                width: n,
            };
            // SAFETY: both describe the whole, contiguous arrays.
            let init_all = init.as_slice().unwrap();
            unsafe { gather_range_portable(&sparse, 0, &src_all, init_all, &out_all) };
            for (got, name) in [
                (&out, "kernel"),
                (&split, "two threads"),
                (&helper, "two threads, with a helper"),
                (&portable, "portable"),
            ] {
                for (a, b) in got.iter().zip(&want) {
                    assert!(
                        (a - b).abs() <= 1e-3 * b.abs().max(1.0),
                        "{name} {rows}x{inner}x{n}: {a} vs {b}"
                    );
                }
            }
        }
    }
}
