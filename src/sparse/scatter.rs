//! `out = init + S W` on a batch in [`Squares`]: the first layer's forward pass. Each square's four
//! weight rows are held in registers and added into the output row of every image that has any of the
//! four pixels nonzero, so one load and one store of an output vector carry four FMAs, and a square's
//! entries hold 1.34 nonzero values for every one on MNIST (against 1.53 for the pairs of images that
//! the forward pass summed before, with its sums stored and reloaded at every 64-row block of the
//! weight). The kernels alone, one thread, 600 MNIST batches alternated in one process: 0.68-0.82x the
//! time of the pairs of images on MLP1's first layer (784 x 256), 0.76-0.86x on MLP2's (784 x 500).

use std::ops::Range;

use ndarray::{Array2, ArrayView1, ArrayView2, ArrayViewMut2};

use super::{ABSENT, Squares, part_height};
use crate::parallel::Finish;

/// Output columns per pass: four AVX-512 registers of each of a square's four weight rows, sixteen.
const BLOCK_COLS: usize = 64;
/// Output rows (images) per pass: 128 rows of 64 floats (32 KiB) stay in a 48 KiB L1 cache while
/// every square adds into them. A training batch of 100 takes one pass.
const BLOCK_ROWS: usize = 128;

/// `out = init + S src` where `S` is the batch (`out.nrows()` images) in `squares` and `src` (one row
/// per pixel, rows contiguous) is a weight. On two threads the squares are split where
/// [`crate::optim::Sgd::step`] splits the weight's rows, so each core reads the rows it updates; the
/// second half's sums go to `partial` (grown to `out`'s shape when smaller) and are added in at the end.
pub fn scatter_squares(
    squares: &Squares,
    src: ArrayView2<f32>,
    init: ArrayView1<f32>,
    out: ArrayViewMut2<f32>,
    partial: &mut Array2<f32>,
    finish: Option<Finish>,
) {
    let (rows, n) = out.dim();
    let groups = squares.pixels.len();
    assert_eq!(rows, squares.groups.ncols(), "one output row per image");
    assert_eq!(n, src.ncols(), "scatter_squares output width");
    assert_eq!(init.len(), n, "scatter_squares init width");
    assert_eq!(
        groups + 1,
        squares.groups.starts().len(),
        "a square per group"
    );
    // Checked here, not taken from how `Squares` makes them: the loads below rely on it.
    assert!(
        squares
            .pixels
            .iter()
            .flatten()
            .all(|&p| p == ABSENT || (p as usize) < src.nrows()),
        "every pixel has a weight row"
    );
    assert!(
        n <= 1 || src.nrows() == 0 || src.strides()[1] == 1,
        "contiguous weight rows"
    );
    assert!(
        n <= 1 || rows == 0 || out.strides()[1] == 1,
        "contiguous output rows"
    );
    if rows == 0 || n == 0 {
        return;
    }
    let init = init.as_slice().expect("contiguous init");
    if crate::parallel::threads() == 2 {
        // Each square in one half: by its first pixel, which is never ABSENT.
        let mid = part_height(src.nrows()) as u32;
        let split = squares.pixels.partition_point(|p| p[0] < mid);
        crate::parallel::sum_in_halves(
            out,
            partial,
            |out| scatter_range(squares, 0..split, src, Some(init), out, None),
            |partial| scatter_range(squares, split..groups, src, None, partial, None),
            finish,
        );
    } else {
        scatter_range(squares, 0..groups, src, Some(init), out, finish);
    }
}

/// A weight by its first element and row stride, rows contiguous and `width` wide.
struct Source {
    ptr: *const f32,
    stride: usize,
    width: usize,
}

/// `out = init (or zero) + the squares `groups` of the batch times `src`, then `finish` on each row's
/// columns of a pass as the pass ends, while they are in L1.
fn scatter_range(
    squares: &Squares,
    groups: Range<usize>,
    src: ArrayView2<f32>,
    init: Option<&[f32]>,
    mut view: ArrayViewMut2<f32>,
    finish: Option<Finish>,
) {
    let src = &Source {
        ptr: src.as_ptr(),
        stride: src.strides()[0] as usize,
        width: src.ncols(),
    };
    let rows = view.nrows();
    let out = Output {
        ptr: view.as_mut_ptr(),
        stride: view.strides()[0] as usize,
        rows,
    };
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx512f") {
        for j0 in (0..src.width).step_by(BLOCK_COLS) {
            let width = (src.width - j0).min(BLOCK_COLS);
            for s0 in (0..rows).step_by(BLOCK_ROWS) {
                let block = Block {
                    squares,
                    groups: groups.clone(),
                    src,
                    init: init.map(|i| &i[j0..]),
                    out: &out,
                    images: s0..(s0 + BLOCK_ROWS).min(rows),
                    j0,
                    width,
                };
                // SAFETY: the CPU has AVX-512F (checked just above); `scatter_squares` checked the
                // shapes, that every pixel has a weight row, and the squares' images are below
                // `rows` (the columns of `SparseRows` are below its `ncols`, its invariant).
                unsafe {
                    match width.div_ceil(16) {
                        1 => block_avx512::<1>(&block),
                        2 => block_avx512::<2>(&block),
                        3 => block_avx512::<3>(&block),
                        _ => block_avx512::<4>(&block),
                    }
                }
                if let Some(finish) = finish {
                    for r in block.images {
                        // SAFETY: row r < rows of the output, columns j0 .. j0 + width of it, which
                        // nothing else borrows while this runs.
                        let row = unsafe {
                            std::slice::from_raw_parts_mut(out.ptr.add(r * out.stride + j0), width)
                        };
                        finish(r, j0, row);
                    }
                }
            }
        }
        return;
    }
    // SAFETY: as above, without the CPU feature.
    unsafe { scatter_portable(squares, groups, src, init, &out) };
    if let Some(finish) = finish {
        crate::parallel::finish_rows(view, 0, 0, finish);
    }
}

/// The output part as a pointer, row stride and rows, rows contiguous and the source's width.
struct Output {
    ptr: *mut f32,
    stride: usize,
    rows: usize,
}

/// The entries of square `g` whose image is in `images`; the images increase along a square's entries.
fn entries_of(squares: &Squares, g: usize, images: &Range<usize>) -> Range<usize> {
    let starts = squares.groups.starts();
    let (start, end) = (starts[g], starts[g + 1]);
    if images.start == 0 && images.end == squares.groups.ncols() {
        return start..end;
    }
    let cols = &squares.groups.cols()[start..end];
    let from = cols.partition_point(|&c| (c as usize) < images.start);
    let to = cols.partition_point(|&c| (c as usize) < images.end);
    start + from..start + to
}

/// Square by square, in plain loops, in the same order as the vector kernel.
///
/// # Safety
/// `src` and `out` must describe the matrices that `scatter_squares` checked.
unsafe fn scatter_portable(
    squares: &Squares,
    groups: Range<usize>,
    src: &Source,
    init: Option<&[f32]>,
    out: &Output,
) {
    let n = src.width;
    // SAFETY: row r < out.rows of the output, n floats.
    let row = |r: usize| unsafe { std::slice::from_raw_parts_mut(out.ptr.add(r * out.stride), n) };
    for r in 0..out.rows {
        match init {
            Some(init) => row(r).copy_from_slice(init),
            None => row(r).fill(0.0),
        }
    }
    let vals: [&[f32]; 4] = std::array::from_fn(|k| squares.groups.vals(k));
    for g in groups {
        let pixels = squares.pixels[g];
        for e in entries_of(squares, g, &(0..out.rows)) {
            let dst = row(squares.groups.cols()[e] as usize);
            for (k, &p) in pixels.iter().enumerate() {
                if p == ABSENT {
                    continue;
                }
                // SAFETY: p is a weight row (checked), n floats.
                let w =
                    unsafe { std::slice::from_raw_parts(src.ptr.add(p as usize * src.stride), n) };
                let v = vals[k][e];
                for (d, w) in dst.iter_mut().zip(w) {
                    *d += v * w;
                }
            }
        }
    }
}

/// One pass: columns `j0 .. j0 + width` of the output rows `images`, from the squares `groups`.
#[cfg(target_arch = "x86_64")]
struct Block<'a> {
    squares: &'a Squares,
    groups: Range<usize>,
    src: &'a Source,
    /// `init` from column `j0` on, or zeros.
    init: Option<&'a [f32]>,
    out: &'a Output,
    images: Range<usize>,
    j0: usize,
    width: usize,
}

/// The block's columns (`width` in `16 (V - 1) + 1 ..= 16 V`): its output rows set to `init`, then
/// every square's four weight rows loaded once and added, with each image's values, into that
/// image's row: `x = v0 w0 + x`, then `v1 w1`, `v2 w2`, `v3 w3`, each a fused multiply-add.
///
/// # Safety
/// The CPU must have AVX-512F, and the block must be as `scatter_range` makes it.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn block_avx512<const V: usize>(block: &Block) {
    use std::arch::x86_64::*;
    let Block {
        squares,
        ref groups,
        src,
        init,
        out,
        ref images,
        j0,
        width,
    } = *block;
    let tail = width - 16 * (V - 1);
    let last: __mmask16 = if tail == 16 { !0 } else { (1 << tail) - 1 };
    let mask = |q: usize| if q + 1 == V { last } else { !0 };
    let cols = squares.groups.cols();
    let vals: [&[f32]; 4] = std::array::from_fn(|k| squares.groups.vals(k));
    // SAFETY (all below): every pointer is `j0 + 16 q` into a weight row that exists (a square's
    // pixel, not ABSENT) or into an output row below `out.rows` (the block's images, and every
    // entry's image), and lanes at or past the block's width are masked off; entries are below
    // `cols.len()`, as long as every row of `vals`.
    unsafe {
        let start = match init {
            Some(init) => {
                std::array::from_fn(|q| _mm512_maskz_loadu_ps(mask(q), init.as_ptr().add(16 * q)))
            }
            None => [_mm512_setzero_ps(); V],
        };
        for s in images.clone() {
            let o = out.ptr.add(s * out.stride + j0);
            for (q, x) in start.iter().enumerate() {
                _mm512_mask_storeu_ps(o.add(16 * q), mask(q), *x);
            }
        }
        for g in groups.clone() {
            let entries = entries_of(squares, g, images);
            if entries.is_empty() {
                continue;
            }
            let w: [[__m512; V]; 4] = squares.pixels[g].map(|p| {
                if p == ABSENT {
                    [_mm512_setzero_ps(); V]
                } else {
                    let row = src.ptr.add(p as usize * src.stride + j0);
                    std::array::from_fn(|q| _mm512_maskz_loadu_ps(mask(q), row.add(16 * q)))
                }
            });
            for e in entries {
                let image = *cols.get_unchecked(e) as usize;
                let v: [__m512; 4] =
                    std::array::from_fn(|k| _mm512_set1_ps(*vals[k].get_unchecked(e)));
                let o = out.ptr.add(image * out.stride + j0);
                for q in 0..V {
                    let mut x = _mm512_maskz_loadu_ps(mask(q), o.add(16 * q));
                    for (v, w) in v.iter().zip(&w) {
                        x = _mm512_fmadd_ps(*v, w[q], x);
                    }
                    _mm512_mask_storeu_ps(o.add(16 * q), mask(q), x);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sparse::fixtures::{assert_close, batch};
    use ndarray::Array1;

    /// Every column count from one register to past a pass, one pass of images and several, on one
    /// thread, on two, and in the portable loops; `finish` sees every element once, with its row and
    /// column.
    #[test]
    fn scatter_squares_is_init_plus_sparse_times_dense() {
        for (images, n) in [(5, 1), (100, 10), (130, 64), (300, 100), (2, 200)] {
            let (sparse, dense) = batch(images, 63, 9);
            let src = Array2::from_shape_fn((63, n), |(i, j)| ((i * 7 + j) % 11) as f32 - 5.0);
            let init = Array1::from_shape_fn(n, |j| j as f32 * 0.5);
            let want = dense.dot(&src) + &init;
            let mut partial = Array2::zeros((0, 0));
            let run = |out: &mut Array2<f32>, partial: &mut Array2<f32>| {
                scatter_squares(
                    &sparse.squares,
                    src.view(),
                    init.view(),
                    out.view_mut(),
                    partial,
                    None,
                )
            };
            let mut one = Array2::from_elem((images, n), f32::NAN);
            crate::parallel::with_helper(|| {
                crate::parallel::join(|| (), || run(&mut one, &mut partial))
            });
            let mut two = Array2::from_elem((images, n), f32::NAN);
            crate::parallel::with_helper(|| run(&mut two, &mut partial));
            let mut portable = Array2::from_elem((images, n), f32::NAN);
            let all = 0..sparse.squares.pixels.len();
            let source = Source {
                ptr: src.as_ptr(),
                stride: n,
                width: n,
            };
            let out = Output {
                ptr: portable.as_mut_ptr(),
                stride: n,
                rows: images,
            };
            // SAFETY: both describe the whole, contiguous arrays.
            unsafe {
                scatter_portable(
                    &sparse.squares,
                    all,
                    &source,
                    Some(init.as_slice().unwrap()),
                    &out,
                )
            };
            // `finish` adds a value that only the right row and column give, so a row finished
            // twice, or with the wrong column, shows.
            let mark = |r: usize, j: usize| r as f32 + 0.001 * j as f32;
            let finish = move |r: usize, first: usize, row: &mut [f32]| {
                for (j, x) in row.iter_mut().enumerate() {
                    *x += mark(r, first + j);
                }
            };
            let marked = Array2::from_shape_fn((images, n), |(r, j)| want[[r, j]] + mark(r, j));
            let run_finished = |out: &mut Array2<f32>, partial: &mut Array2<f32>| {
                let (src, init) = (src.view(), init.view());
                scatter_squares(
                    &sparse.squares,
                    src,
                    init,
                    out.view_mut(),
                    partial,
                    Some(&finish),
                )
            };
            let mut one_finished = Array2::from_elem((images, n), f32::NAN);
            crate::parallel::with_helper(|| {
                crate::parallel::join(|| (), || run_finished(&mut one_finished, &mut partial))
            });
            let mut two_finished = Array2::from_elem((images, n), f32::NAN);
            crate::parallel::with_helper(|| run_finished(&mut two_finished, &mut partial));
            let finished = [
                (&one_finished, "one thread"),
                (&two_finished, "two threads"),
            ];
            assert_close(
                &finished,
                &marked,
                &format!("{images} images x {n}, finished"),
            );
            let got = [
                (&one, "one thread"),
                (&two, "two threads"),
                (&portable, "portable"),
            ];
            assert_close(&got, &want, &format!("{images} images x {n}"));
        }
    }
}
