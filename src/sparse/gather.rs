//! `out[p, :] = init + Σ_i S[i, p] · src[i, :]` for every pixel `p`: the first layer's weight gradient
//! (`Sᵀ D`) on a batch in [`Squares`].
//!
//! Square by square, each of its four pixels' output rows sums, in registers, the rows of `src` (one
//! per image) picked by the square's entries: one load of each source vector feeds four FMAs. With 64
//! columns at a time, a batch of 100 images' source rows (25 KiB) stay in L1 while every square reads
//! them, and a square's sums are stored once. Each output row is `init` plus its images in increasing
//! order, as the pairs of pixels that this replaced summed them: the same floats to the bit. The
//! kernels alone, one thread, 600 MNIST batches, alternated in one process: 0.92x the time of the
//! pairs on MLP1's gradient; and the batch needs only its squares, not its pairs as well.

use std::cell::RefCell;
use std::ops::Range;

use ndarray::{Array1, Array2, ArrayView1, ArrayView2, ArrayViewMut2, s};

use super::{ABSENT, Squares};
use crate::layers::Param;
use crate::optim::Sgd;
use crate::parallel::{for_row_parts, for_row_parts_with};

/// Output columns per pass: four AVX-512 registers for each of a square's four rows, sixteen.
const BLOCK_COLS: usize = 64;

/// `out = init + Sᵀ src` (`out` one row per pixel, `src` one row per image, rows contiguous), the rows
/// split over the threads as [`Sgd::step`] splits a weight's.
pub fn gather_squares(
    squares: &Squares,
    src: ArrayView2<f32>,
    init: ArrayView1<f32>,
    out: ArrayViewMut2<f32>,
) {
    let Some(init) = checked_init(squares, src, &init, out.dim()) else {
        return;
    };
    let (rows, height) = (out.nrows(), part_height(out.nrows()));
    if height < rows {
        for_row_parts(out, height, &|first, out| {
            gather_range(squares, first, src, init, out)
        });
    } else {
        gather_range(squares, 0, src, init, out);
    }
}

/// `init` as a slice, after checking that an output of `out_dim` fits `squares` and `src`; `None` when
/// the output is empty.
fn checked_init<'a>(
    squares: &Squares,
    src: ArrayView2<f32>,
    init: &'a ArrayView1<f32>,
    out_dim: (usize, usize),
) -> Option<&'a [f32]> {
    let n = src.ncols();
    assert_eq!(
        out_dim,
        (squares.pixel_count(), n),
        "gather_squares output shape"
    );
    assert_eq!(
        src.nrows(),
        squares.groups.ncols(),
        "one source row per image"
    );
    assert_eq!(init.len(), n, "gather_squares init width");
    assert!(
        n <= 1 || src.nrows() == 0 || src.strides()[1] == 1,
        "contiguous source rows"
    );
    let init = init.as_slice().expect("contiguous init");
    (n > 0 && out_dim.0 > 0).then_some(init)
}

/// Output rows per thread: as [`Sgd::step`] splits a weight's rows, rounded up to whole pairs. Also
/// how [`gather_squares_update`] splits the weight's rows, and with them its [`ColumnSums`], and where
/// [`super::scatter_squares`] splits the squares, so each core reads the rows it updates.
pub fn part_height(rows: usize) -> usize {
    rows.div_ceil(crate::parallel::threads())
        .next_multiple_of(2)
}

/// Column sums of a weight that [`gather_squares_update`] adds up from the rows it has just updated:
/// `parts[k] += scale · (the sum of the k-th part's rows)`, in the order of the rows, with the rows
/// split into parts of [`part_height`] rows. The first layer's forward pass needs `b + offset ·
/// colsum(W)`; made here, while each updated row is in registers, it costs no pass over the weight
/// of its own.
pub struct ColumnSums<'a> {
    pub scale: f32,
    /// One row of sums per part at least.
    pub parts: &'a mut [Array1<f32>],
}

/// [`gather_squares`] into a weight's gradient, immediately consumed by its SGD update: `param`'s value
/// and velocity take the update from `init + Sᵀ src` (`param.grad` is neither read nor written), and
/// `sums` the updated rows. The gradient is made about `UPDATE_GROUP` (128) rows at a time, whole bands
/// of squares, into a buffer that each thread keeps, and those rows updated from it while it is in L2,
/// so the whole gradient never goes to memory: it would be written (after reading its lines in), and
/// read again by the update, both through L3 for a weight that with its gradient does not fit L2
/// (MLP2's first layer: 1.6 MB each). The rows are split over the threads as [`Sgd::step`] splits them.
pub fn gather_squares_update(
    squares: &Squares,
    src: ArrayView2<f32>,
    init: ArrayView1<f32>,
    param: &mut Param,
    sgd: &Sgd,
    sums: ColumnSums,
) {
    let Some(init) = checked_init(squares, src, &init, param.value.dim()) else {
        return;
    };
    let n = src.ncols();
    let height = part_height(param.value.nrows());
    assert!(
        sums.parts.iter().all(|s| s.len() == n),
        "one column sum per column"
    );
    // Whole bands, so that no square is summed for two groups (one that straddles two threads' parts
    // is summed by both, each keeping its own rows).
    let band = squares.band_rows();
    let group = (UPDATE_GROUP / band).max(1) * band;
    let scale = sums.scale;
    let parts = (param.value.view_mut(), param.velocity.view_mut());
    for_row_parts_with(
        parts,
        height,
        sums.parts,
        &|first, (mut value, mut velocity), sums| {
            let sums = sums.as_slice_mut().expect("contiguous sums");
            SCRATCH.with_borrow_mut(|scratch| {
                if scratch.nrows() < group || scratch.ncols() != n {
                    *scratch = crate::layers::padded(group, n);
                }
                // Groups aligned to bands of the whole weight, not of this part.
                let mut g = first;
                while g < first + value.nrows() {
                    let end = ((g / group + 1) * group).min(first + value.nrows());
                    let mut grad = scratch.slice_mut(s![..end - g, ..]);
                    gather_range(squares, g, src, init, grad.view_mut());
                    let rows = g - first..end - first;
                    sgd.update_rows_summing(
                        value.slice_mut(s![rows.clone(), ..]),
                        grad.view(),
                        velocity.slice_mut(s![rows, ..]),
                        Some((scale, &mut *sums)),
                    );
                    g = end;
                }
            })
        },
    );
}

/// Rows of a weight whose gradient [`gather_squares_update`] makes at once, rounded down to whole
/// bands of squares: 112 rows of 500 floats take 240 KB, in a 2 MB L2 beside the weight's and
/// velocity's same rows.
const UPDATE_GROUP: usize = 128;

thread_local! {
    /// [`gather_squares_update`]'s gradient rows; grown once per thread.
    static SCRATCH: RefCell<Array2<f32>> = RefCell::new(Array2::zeros((0, 0)));
}

/// Rows `first..first + out.nrows()` of [`gather_squares`]'s output into `out`, from the squares that
/// hold those pixels.
fn gather_range(
    squares: &Squares,
    first: usize,
    src: ArrayView2<f32>,
    init: &[f32],
    mut out: ArrayViewMut2<f32>,
) {
    let rows = first..first + out.nrows();
    assert!(rows.end <= squares.pixel_count() && src.nrows() == squares.groups.ncols());
    assert!(src.ncols() == out.ncols() && init.len() == out.ncols());
    assert!(
        out.ncols() <= 1 || out.strides()[1] == 1,
        "contiguous output rows"
    );
    let job = Job {
        squares,
        groups: squares.squares_holding(rows.clone()),
        rows,
        src: src.as_ptr(),
        src_stride: src.strides()[0] as usize,
        init,
        out: out.as_mut_ptr(),
        out_stride: out.strides()[0] as usize,
    };
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx512f") {
        let n = init.len();
        for j0 in (0..n).step_by(BLOCK_COLS) {
            let width = (n - j0).min(BLOCK_COLS);
            // SAFETY: the CPU has AVX-512F (checked just above); the shapes were checked above, every
            // entry's image is below `src.nrows()` (the columns of `SparseRows` are below its
            // `ncols`), and a square's pixels are rows of the output or ABSENT.
            unsafe {
                match width.div_ceil(16) {
                    1 => block_avx512::<1>(&job, j0, width),
                    2 => block_avx512::<2>(&job, j0, width),
                    3 => block_avx512::<3>(&job, j0, width),
                    _ => block_avx512::<4>(&job, j0, width),
                }
            }
        }
        return;
    }
    // SAFETY: as above, without the CPU feature.
    unsafe { gather_portable(&job) }
}

/// What [`gather_range`] sums: the squares `groups`, of which the pixels `rows` are stored, at
/// `out + (p - rows.start) * out_stride`.
struct Job<'a> {
    squares: &'a Squares,
    groups: Range<usize>,
    rows: Range<usize>,
    src: *const f32,
    src_stride: usize,
    init: &'a [f32],
    out: *mut f32,
    out_stride: usize,
}

impl Job<'_> {
    /// Where pixel `p`'s output row starts, when it is one of the rows this job stores.
    fn out_row(&self, p: u32) -> Option<*mut f32> {
        let p = p as usize;
        (p != ABSENT as usize && self.rows.contains(&p)).then(|| {
            self.out
                .wrapping_add((p - self.rows.start) * self.out_stride)
        })
    }
}

/// Square by square, in plain loops, in the same order as the vector kernel.
///
/// # Safety
/// `job` must be as [`gather_range`] makes it.
unsafe fn gather_portable(job: &Job) {
    let n = job.init.len();
    let (starts, cols) = (job.squares.groups.starts(), job.squares.groups.cols());
    for g in job.groups.clone() {
        for (k, &p) in job.squares.pixels[g].iter().enumerate() {
            let Some(row) = job.out_row(p) else {
                continue;
            };
            // SAFETY: an output row this job stores, n floats.
            let dst = unsafe { std::slice::from_raw_parts_mut(row, n) };
            dst.copy_from_slice(job.init);
            let vals = job.squares.groups.vals(k);
            for e in starts[g]..starts[g + 1] {
                // SAFETY: every image is a source row (checked), n floats.
                let src = unsafe {
                    std::slice::from_raw_parts(job.src.add(cols[e] as usize * job.src_stride), n)
                };
                for (d, s) in dst.iter_mut().zip(src) {
                    *d += vals[e] * s;
                }
            }
        }
    }
}

/// Columns `j0 .. j0 + width` (`width` in `16 (V - 1) + 1 ..= 16 V`) of every square of the job: its
/// four rows' sums start from `init` and take `v_k · src[image]` for each entry, a fused multiply-add,
/// images in increasing order; the rows the job stores are written once at the end.
///
/// # Safety
/// The CPU must have AVX-512F, and `job` must be as [`gather_range`] makes it.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn block_avx512<const V: usize>(job: &Job, j0: usize, width: usize) {
    use std::arch::x86_64::*;
    let tail = width - 16 * (V - 1);
    let last: __mmask16 = if tail == 16 { !0 } else { (1 << tail) - 1 };
    let mask = |q: usize| if q + 1 == V { last } else { !0 };
    let groups = &job.squares.groups;
    let (starts, cols) = (groups.starts(), groups.cols());
    let vals: [&[f32]; 4] = std::array::from_fn(|k| groups.vals(k));
    // SAFETY (all below): loads read `j0 + 16 q` into `init`, or into a source row (an entry's image,
    // below the source's rows), and stores write into an output row the job stores; lanes at or past
    // the block's width are masked off; entries are below `cols.len()`, as long as every row of `vals`.
    unsafe {
        let init: [__m512; V] = std::array::from_fn(|q| {
            _mm512_maskz_loadu_ps(mask(q), job.init.as_ptr().add(j0 + 16 * q))
        });
        for g in job.groups.clone() {
            let mut acc = [init; 4];
            for e in starts[g]..starts[g + 1] {
                let s = job
                    .src
                    .add(*cols.get_unchecked(e) as usize * job.src_stride + j0);
                let v: [__m512; 4] =
                    std::array::from_fn(|k| _mm512_set1_ps(*vals[k].get_unchecked(e)));
                for q in 0..V {
                    let x = _mm512_maskz_loadu_ps(mask(q), s.add(16 * q));
                    for (acc, v) in acc.iter_mut().zip(&v) {
                        acc[q] = _mm512_fmadd_ps(*v, x, acc[q]);
                    }
                }
            }
            for (&p, acc) in job.squares.pixels[g].iter().zip(&acc) {
                if let Some(row) = job.out_row(p) {
                    let row = row.add(j0);
                    for (q, a) in acc.iter().enumerate() {
                        _mm512_mask_storeu_ps(row.add(16 * q), mask(q), *a);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sparse::fixtures::{assert_close, batch};

    /// Every column count from one register to past a pass, images in one row and in odd rows, on one
    /// thread, on two (whose parts cut bands of squares), with the helper, and in the portable loops.
    #[test]
    fn gather_squares_is_init_plus_the_transpose_times_dense() {
        for (images, width, line, n) in [
            (7, 63, 9, 1),
            (100, 63, 9, 10),
            (30, 63, 7, 64),
            (13, 40, 40, 100),
            (5, 63, 9, 200),
            (0, 10, 5, 16),
        ] {
            let (sparse, dense) = batch(images, width, line);
            let squares = &sparse.squares;
            let src = Array2::from_shape_fn((images, n), |(i, j)| ((i * 7 + j) % 11) as f32 - 5.0);
            let init = Array1::from_shape_fn(n, |j| j as f32 * 0.5);
            let want = dense.t().dot(&src) + &init;
            let run = |out: &mut Array2<f32>| {
                gather_squares(squares, src.view(), init.view(), out.view_mut())
            };
            let mut one = Array2::from_elem((width, n), f32::NAN);
            crate::parallel::with_helper(|| crate::parallel::join(|| (), || run(&mut one)));
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(2)
                .build()
                .unwrap();
            let mut two = Array2::from_elem((width, n), f32::NAN);
            pool.install(|| run(&mut two));
            let mut helper = Array2::from_elem((width, n), f32::NAN);
            crate::parallel::with_helper(|| run(&mut helper));
            let mut portable = Array2::from_elem((width, n), f32::NAN);
            let job = Job {
                squares,
                groups: 0..squares.pixels.len(),
                rows: 0..width,
                src: src.as_ptr(),
                src_stride: n,
                init: init.as_slice().unwrap(),
                out: portable.as_mut_ptr(),
                out_stride: n,
            };
            // SAFETY: the job describes the whole, contiguous arrays.
            unsafe { gather_portable(&job) };
            let got = [
                (&one, "one thread"),
                (&two, "two threads"),
                (&helper, "with the helper"),
                (&portable, "portable"),
            ];
            let case = format!("{images} images of {width} in rows of {line}, {n} columns");
            assert_close(&got, &want, &case);
        }
    }

    /// The fused update gives what the gradient and then the plain update give, to the bit, and the
    /// updated rows' column sums, with the weight's rows split over two threads in the middle of a band
    /// and a group of bands in the middle of each part.
    #[test]
    fn the_fused_update_is_the_gradient_then_the_update() {
        let (images, width, line, n) = (50, 300, 10, 70);
        let (sparse, _) = batch(images, width, line);
        let src = Array2::from_shape_fn((images, n), |(i, j)| ((i * 3 + j) % 7) as f32 * 0.1 - 0.3);
        let init = Array1::from_shape_fn(n, |j| j as f32 * 0.01);
        let start = Array2::from_shape_fn((width, n), |(i, j)| ((i + 2 * j) % 13) as f32 * 0.05);
        let sgd = Sgd {
            lr: 0.1,
            momentum: 0.9,
            weight_decay: 0.01,
        };
        let mut plain = Param::new("w".into(), start.clone());
        plain.velocity.fill(0.25);
        let mut fused = plain.clone();
        crate::parallel::with_helper(|| {
            gather_squares(
                &sparse.squares,
                src.view(),
                init.view(),
                plain.grad.view_mut(),
            );
            for _ in 0..2 {
                let mut parts = vec![Array1::zeros(n); 2];
                let sums = ColumnSums {
                    scale: 0.5,
                    parts: &mut parts,
                };
                gather_squares_update(
                    &sparse.squares,
                    src.view(),
                    init.view(),
                    &mut fused,
                    &sgd,
                    sums,
                );
                let height = part_height(width);
                assert_eq!(
                    height, 150,
                    "two parts, the first ending inside a band of 20 rows"
                );
                for (k, part) in parts.iter().enumerate() {
                    let rows = fused.value.slice(s![k * height..(k + 1) * height, ..]);
                    let want = rows.sum_axis(ndarray::Axis(0)) * 0.5;
                    for (a, b) in part.iter().zip(&want) {
                        assert!(
                            (a - b).abs() <= 1e-4 * b.abs().max(1.0),
                            "part {k}: {a} vs {b}"
                        );
                    }
                }
            }
        });
        // The plain way, twice, the gradient made again from the same batch.
        for _ in 0..2 {
            sgd.update_rows_summing(
                plain.value.view_mut(),
                plain.grad.view(),
                plain.velocity.view_mut(),
                None,
            );
        }
        assert_eq!(fused.value, plain.value);
        assert_eq!(fused.velocity, plain.velocity);
    }
}
