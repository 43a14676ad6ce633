//! Dense products `c = init + a · b`, with an epilogue on each finished block of `c`.
//!
//! `a` is `m x k` with any strides (a transposed view included), `b` is `k x n` and `c` is `m x n`,
//! both with unit column stride. Each element `c[i, j]` starts from `init[j]` (or 0) and takes one
//! fused multiply-add per `kk` in `0..k`, in order; a block of `R` rows by `B` columns of `c` is kept
//! in registers while it is summed. `R` and `B` depend on the backend's registers, the sums do not.

use std::marker::PhantomData;
use std::ops::Range;

use ndarray::{ArrayView2, ArrayViewMut2};

use super::{Backend, Epilogue, Part, for_parts, instantiate, with_backend};

/// Rows of `b` per block of the inner dimension: 128 rows of 64 floats are 32 KiB, inside L1.
const K_BLOCK: usize = 128;

/// One product, by pointers and strides, checked against its views when made.
#[derive(Clone, Copy)]
pub struct Dense<'a> {
    a: *const f32,
    a_row: isize,
    a_col: isize,
    b: *const f32,
    b_row: usize,
    /// `n` floats, or null for zeros.
    init: *const f32,
    c: *mut f32,
    c_row: usize,
    m: usize,
    k: usize,
    n: usize,
    _views: PhantomData<&'a mut f32>,
}

// SAFETY: a `Dense` is only read by the threads of `run`, which write disjoint parts of `c`; the views
// it was made from are borrowed for its lifetime.
unsafe impl Send for Dense<'_> {}
unsafe impl Sync for Dense<'_> {}

/// Whether a matrix can be read by rows of contiguous floats.
fn unit_columns(len: usize, cols: usize, strides: &[isize]) -> bool {
    len == 0 || ((cols <= 1 || strides[1] == 1) && strides[0] >= 0)
}

impl<'a> Dense<'a> {
    /// The product `c = init + a · b`. Panics unless the shapes agree and `b` and `c` have unit column
    /// strides.
    pub fn new(
        a: ArrayView2<'a, f32>,
        b: ArrayView2<'a, f32>,
        init: Option<&'a [f32]>,
        c: &'a mut ArrayViewMut2<'_, f32>,
    ) -> Dense<'a> {
        let ((m, k), n) = (a.dim(), b.ncols());
        assert_eq!(b.nrows(), k, "inner dimensions");
        assert_eq!(c.dim(), (m, n), "output shape");
        assert!(init.is_none_or(|i| i.len() == n), "init width");
        assert!(unit_columns(b.len(), n, b.strides()), "b by rows");
        assert!(unit_columns(c.len(), n, c.strides()), "c by rows");
        Dense {
            a: a.as_ptr(),
            a_row: a.strides()[0],
            a_col: a.strides()[1],
            b: b.as_ptr(),
            b_row: b.strides()[0] as usize,
            init: init.map_or(std::ptr::null(), |i| i.as_ptr()),
            c: c.as_mut_ptr(),
            c_row: c.strides()[0] as usize,
            m,
            k,
            n,
            _views: PhantomData,
        }
    }

    /// Computes the product, shared between the threads, `epi` applied to every block.
    pub fn run<E: Epilogue>(&self, backend: Backend, epi: &E) {
        if self.m == 0 || self.n == 0 {
            return;
        }
        for_parts(self.m, self.n, self.m * self.k * self.n, 8, &|part| {
            dense_part(backend, self, part, epi)
        });
    }

    /// [`Dense::run`], with `then` called on each part's rows and columns once they are done, on the
    /// thread that did them (the weight update fused into its gradient).
    pub fn run_then<E: Epilogue>(&self, backend: Backend, epi: &E, then: &(impl Fn(&Part) + Sync)) {
        if self.m == 0 || self.n == 0 {
            return;
        }
        for_parts(self.m, self.n, self.m * self.k * self.n, 8, &|part| {
            self.part_then(backend, part, epi, then)
        });
    }

    /// The rows and columns of `part` alone, on this thread.
    pub fn part<E: Epilogue>(&self, backend: Backend, part: &Part, epi: &E) {
        assert!(
            part.rows.end <= self.m && part.cols.end <= self.n,
            "part inside c"
        );
        dense_part(backend, self, part, epi)
    }

    /// [`Dense::part`], with `then` called on every few of its rows once they are done.
    pub fn part_then<E: Epilogue>(
        &self,
        backend: Backend,
        part: &Part,
        epi: &E,
        then: &(impl Fn(&Part) + Sync),
    ) {
        // `then` follows every few rows, while they are still in cache.
        const THEN_EVERY: usize = 16;
        for i0 in part.rows.clone().step_by(THEN_EVERY) {
            let part = Part {
                rows: i0..(i0 + THEN_EVERY).min(part.rows.end),
                cols: part.cols.clone(),
            };
            self.part(backend, &part, epi);
            then(&part);
        }
    }

    /// Multiply-adds in all.
    pub fn work(&self) -> usize {
        self.m * self.k * self.n
    }
}

instantiate! {
    /// One part of a [`Dense`] product, on this thread.
    fn dense_part(Dense<'_>) => body [4, 16] [4, 16] [4, 64]
}

/// # Safety
/// `d` describes live matrices and `part` lies inside `c`; the CPU has the caller's target features.
#[inline(always)]
unsafe fn body<const R: usize, const B: usize, E: Epilogue>(d: &Dense, part: &Part, epi: &E) {
    let mut j0 = part.cols.start;
    // Whole blocks of B columns, then narrower blocks for the rest, down to one column: every load is
    // a whole block.
    while j0 < part.cols.end {
        let left = part.cols.end - j0;
        // SAFETY: columns j0..j0 + width of the part's rows, inside `c`.
        // A narrow rest whose rows of `b` have room for a whole vector is one block, read whole (the
        // lanes past `left` are summed and dropped) but for `b`'s last row, which is read exactly.
        let whole = left.next_power_of_two();
        let room = whole <= B && d.b_row >= j0 + whole && left > 2;
        let width = unsafe {
            match left {
                _ if left >= B => columns::<R, B, E>(d, part, j0, B, epi),
                _ if room && whole == 32 => columns::<R, 32, E>(d, part, j0, left, epi),
                _ if room && whole == 16 => columns::<R, 16, E>(d, part, j0, left, epi),
                _ if room && whole == 8 => columns::<8, 8, E>(d, part, j0, left, epi),
                _ if room && whole == 4 => columns::<8, 4, E>(d, part, j0, left, epi),
                32.. if B > 32 => columns::<R, 32, E>(d, part, j0, 32, epi),
                16.. if B > 16 => columns::<R, 16, E>(d, part, j0, 16, epi),
                8..=15 => columns::<8, 8, E>(d, part, j0, 8, epi),
                4..=7 => columns::<8, 4, E>(d, part, j0, 4, epi),
                2 | 3 => columns::<8, 2, E>(d, part, j0, 2, epi),
                _ => columns::<8, 1, E>(d, part, j0, 1, epi),
            }
        };
        j0 += width;
    }
}

/// Columns `j0..j0 + width` (`width <= W`) of every row of the part, `R` rows at a time, in blocks of
/// `W` lanes; returns `width`.
///
/// # Safety
/// As [`body`]; with `width < W`, the rows of `b` have `W` floats from `j0` (its stride).
#[inline(always)]
unsafe fn columns<const R: usize, const W: usize, E: Epilogue>(
    d: &Dense,
    part: &Part,
    j0: usize,
    width: usize,
    epi: &E,
) -> usize {
    // The inner dimension in blocks of K_BLOCK, so that a block of `b` stays in L1 while every row
    // of the part takes it; between blocks the sums wait in `c`, as f32, exactly as in registers.
    let mut k0 = 0;
    loop {
        let inner = k0..(k0 + K_BLOCK).min(d.k);
        let last = inner.end == d.k;
        let mut i0 = part.rows.start;
        // SAFETY: rows i0.. of the part, inside `c`.
        unsafe {
            while i0 + R <= part.rows.end {
                block::<R, W, E>(d, i0, j0, width, inner.clone(), last, epi);
                i0 += R;
            }
            while i0 < part.rows.end {
                block::<1, W, E>(d, i0, j0, width, inner.clone(), last, epi);
                i0 += 1;
            }
        }
        if last {
            return width;
        }
        k0 = inner.end;
    }
}

/// Rows `i0..i0 + R`, columns `j0..j0 + width` (`width <= B`) of `c`, summed in registers.
///
/// # Safety
/// As [`body`]; the rows and columns lie inside `c`, and with `width < B` the rows of `b` have `B`
/// floats from `j0`.
#[inline(always)]
unsafe fn block<const R: usize, const B: usize, E: Epilogue>(
    d: &Dense,
    i0: usize,
    j0: usize,
    width: usize,
    inner: std::ops::Range<usize>,
    last: bool,
    epi: &E,
) {
    // Rows of `b` read as whole vectors: all of them, or all but `b`'s last row, whose lanes past
    // `width` may lie past the end of `b`. Lanes past `width` never reach `c`.
    let whole_until = if width == B {
        inner.end
    } else {
        inner.end.min(d.k - 1)
    };
    // SAFETY (all below): rows i0..i0 + R < m of `a` and `c`, rows < k of `b`, columns j0..j0 + width
    // (j0..j0 + B of `b`'s rows before its last, inside its stride).
    unsafe {
        let mut acc = [[0.0f32; B]; R];
        if inner.start > 0 {
            for (r, acc) in acc.iter_mut().enumerate() {
                *acc = load::<B>(d.c.add((i0 + r) * d.c_row + j0), width);
            }
        } else if !d.init.is_null() {
            let init = load::<B>(d.init.add(j0), width);
            acc = [init; R];
        }
        for kk in inner.start..whole_until {
            let b = load::<B>(d.b.add(kk * d.b_row + j0), B);
            add_row(d, &mut acc, i0, kk, &b);
        }
        // Apart from the loop above: the partial load is a call, around which `acc` would be spilled.
        for kk in whole_until.max(inner.start)..inner.end {
            let b = load::<B>(d.b.add(kk * d.b_row + j0), width);
            add_row(d, &mut acc, i0, kk, &b);
        }
        // A copy for the epilogue: borrowing `acc` itself would keep it in memory, not registers.
        let mut done = acc;
        for (r, done) in done.iter_mut().enumerate() {
            if last {
                epi.apply(i0 + r, j0, &mut done[..width]);
            }
            // The partial sums of the inner blocks before the last live in the output.
            if E::STORES || !last {
                store(d.c.add((i0 + r) * d.c_row + j0), done, width);
            }
        }
    }
}

/// `acc[r] += a[i0 + r, kk] * b`, one fused multiply-add a lane.
///
/// # Safety
/// Rows i0..i0 + R and column kk lie inside `a`.
#[inline(always)]
unsafe fn add_row<const R: usize, const B: usize>(
    d: &Dense,
    acc: &mut [[f32; B]; R],
    i0: usize,
    kk: usize,
    b: &[f32; B],
) {
    // SAFETY: as the function's.
    unsafe {
        let a_col = d.a.offset(kk as isize * d.a_col);
        for (r, acc) in acc.iter_mut().enumerate() {
            let a = *a_col.offset((i0 + r) as isize * d.a_row);
            for (acc, &b) in acc.iter_mut().zip(b) {
                *acc = a.mul_add(b, *acc);
            }
        }
    }
}

/// `width <= B` floats from `p`, zeros after them.
///
/// # Safety
/// `width` floats are readable at `p`.
#[inline(always)]
pub(super) unsafe fn load<const B: usize>(p: *const f32, width: usize) -> [f32; B] {
    // SAFETY: as the function's.
    unsafe {
        if width == B {
            p.cast::<[f32; B]>().read_unaligned()
        } else {
            let mut v = [0.0; B];
            std::ptr::copy_nonoverlapping(p, v.as_mut_ptr(), width);
            v
        }
    }
}

/// The first `width` floats of `v` to `p`.
///
/// # Safety
/// `width` floats are writable at `p`.
#[inline(always)]
pub(super) unsafe fn store<const B: usize>(p: *mut f32, v: &[f32; B], width: usize) {
    // SAFETY: as the function's.
    unsafe {
        if width == B {
            p.cast::<[f32; B]>().write_unaligned(*v)
        } else {
            std::ptr::copy_nonoverlapping(v.as_ptr(), p, width)
        }
    }
}

/// `out = mᵀ`: for `D Wᵀ`, whose right-hand side the kernel needs by rows. Both by rows; a large
/// matrix is shared between the threads by rows of `out`.
pub fn transpose_into(backend: Backend, m: ArrayView2<f32>, mut out: ArrayViewMut2<f32>) {
    let (rows, cols) = m.dim();
    let t = Transpose::new(m, &mut out);
    // A copy is cheap beside a product: parallel from a sixteenth of a product's threshold in size.
    for_parts(cols, rows, rows * cols * 16, T, &|part| {
        t.part(backend, part.cols.clone(), part.rows.clone())
    });
}

/// `out = mᵀ` by pointers, so that threads can copy disjoint blocks of it.
pub struct Transpose<'a> {
    src: *const f32,
    src_row: usize,
    dst: *mut f32,
    dst_row: usize,
    dim: (usize, usize),
    _views: PhantomData<&'a mut f32>,
}

// SAFETY: the threads write disjoint blocks of `dst` and only read `src`; the views it was made from
// are borrowed for its lifetime.
unsafe impl Sync for Transpose<'_> {}

impl<'a> Transpose<'a> {
    /// The transpose of `m` into `out`. Panics unless the shapes agree and both are by rows.
    pub fn new(m: ArrayView2<'a, f32>, out: &'a mut ArrayViewMut2<'_, f32>) -> Self {
        let (rows, cols) = m.dim();
        assert_eq!(out.dim(), (cols, rows), "transposed shape");
        assert!(
            (rows <= 1 || m.strides()[0] >= cols as isize) && (cols <= 1 || m.strides()[1] == 1),
            "by rows"
        );
        assert!(
            (cols <= 1 || out.strides()[0] >= rows as isize)
                && (rows <= 1 || out.strides()[1] == 1),
            "by rows"
        );
        Transpose {
            src: m.as_ptr(),
            src_row: m.strides()[0].max(0) as usize,
            dst: out.as_mut_ptr(),
            dst_row: out.strides()[0].max(0) as usize,
            dim: (rows, cols),
            _views: PhantomData,
        }
    }

    /// Rows `src_rows` by columns `src_cols` of `m`, on this thread.
    pub fn part(&self, backend: Backend, src_rows: Range<usize>, src_cols: Range<usize>) {
        assert!(
            src_rows.end <= self.dim.0 && src_cols.end <= self.dim.1,
            "inside m"
        );
        with_backend(
            backend,
            #[inline(always)]
            || {
                for j0 in src_cols.clone().step_by(T) {
                    for i0 in src_rows.clone().step_by(T) {
                        let (h, w) = ((src_rows.end - i0).min(T), (src_cols.end - j0).min(T));
                        // SAFETY: rows i0..i0 + h and columns j0..j0 + w lie inside `m` (checked
                        // above), and their transpose inside `out`, which no other thread writes.
                        unsafe {
                            let src = |i, j| self.src.add((i0 + i) * self.src_row + j0 + j);
                            let dst = |j, i| self.dst.add((j0 + j) * self.dst_row + i0 + i);
                            if h == T && w == T {
                                tile(backend, src(0, 0), self.src_row, dst(0, 0), self.dst_row);
                            } else {
                                for i in 0..h {
                                    for j in 0..w {
                                        *dst(j, i) = *src(i, j);
                                    }
                                }
                            }
                        }
                    }
                }
            },
        )
    }
}

/// The side of the tiles [`transpose_into`] copies whole.
const T: usize = 8;

/// One whole `T x T` tile: `dst[j * dst_row + i] = src[i * src_row + j]`.
///
/// # Safety
/// The tile's rows are readable at `src` and writable at `dst`, and the CPU has `backend`'s features.
#[inline(always)]
unsafe fn tile(backend: Backend, src: *const f32, src_row: usize, dst: *mut f32, dst_row: usize) {
    #[cfg(target_arch = "x86_64")]
    if backend != Backend::Portable {
        // SAFETY: as the function's; both x86 backends have AVX.
        return unsafe { tile_avx(src, src_row, dst, dst_row) };
    }
    let _ = backend;
    // SAFETY: as the function's.
    unsafe {
        let rows: [[f32; T]; T] =
            std::array::from_fn(|i| src.add(i * src_row).cast::<[f32; T]>().read_unaligned());
        let cols: [[f32; T]; T] = std::array::from_fn(|j| std::array::from_fn(|i| rows[i][j]));
        for (j, col) in cols.into_iter().enumerate() {
            dst.add(j * dst_row).cast::<[f32; T]>().write_unaligned(col);
        }
    }
}

/// [`tile`] in AVX registers: interleave pairs of rows, then pairs of pairs, then swap the 128-bit
/// halves. Written by hand because LLVM compiles the portable shuffle to scalar moves; a copy gives
/// the same floats whichever way it is done.
///
/// # Safety
/// As [`tile`], on a CPU with AVX.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx")]
unsafe fn tile_avx(src: *const f32, src_row: usize, dst: *mut f32, dst_row: usize) {
    use std::arch::x86_64::*;
    // SAFETY: as the function's.
    unsafe {
        let r: [__m256; T] = std::array::from_fn(|i| _mm256_loadu_ps(src.add(i * src_row)));
        let t: [__m256; T] = std::array::from_fn(|i| {
            let (a, b) = (r[i / 2 * 2], r[i / 2 * 2 + 1]);
            match i % 2 {
                0 => _mm256_unpacklo_ps(a, b),
                _ => _mm256_unpackhi_ps(a, b),
            }
        });
        // For q < 4, s[q] holds columns q and q + 4 of rows 0-3 (one per 128-bit lane), s[q + 4]
        // the same of rows 4-7.
        let s: [__m256; T] = std::array::from_fn(|i| {
            let (base, q) = (i / 4 * 4, i % 4);
            let (a, b) = (t[base + q / 2], t[base + q / 2 + 2]);
            match q % 2 {
                0 => _mm256_shuffle_ps::<0x44>(a, b),
                _ => _mm256_shuffle_ps::<0xEE>(a, b),
            }
        });
        for j in 0..4 {
            let (a, b) = (s[j], s[j + 4]);
            _mm256_storeu_ps(dst.add(j * dst_row), _mm256_permute2f128_ps::<0x20>(a, b));
            _mm256_storeu_ps(
                dst.add((j + 4) * dst_row),
                _mm256_permute2f128_ps::<0x31>(a, b),
            );
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::kernels::Plain;
    use ndarray::{Array1, Array2};

    /// `init + a · b` by the same rule in plain scalar code: one fused multiply-add per inner index, in
    /// order. Every backend must match it to the bit.
    pub(crate) fn reference(
        a: ArrayView2<f32>,
        b: ArrayView2<f32>,
        init: Option<&[f32]>,
    ) -> Array2<f32> {
        Array2::from_shape_fn((a.nrows(), b.ncols()), |(i, j)| {
            let mut acc = init.map_or(0.0, |init| init[j]);
            for kk in 0..a.ncols() {
                acc = a[[i, kk]].mul_add(b[[kk, j]], acc);
            }
            acc
        })
    }

    /// Shapes around every block edge, `a` plain and transposed, with and without `init`, on every
    /// backend this CPU runs, on one thread and on three.
    #[test]
    fn every_backend_matches_the_reference_to_the_bit() {
        let pools = [1, 3].map(|t| crate::kernels::Pool::new(t).unwrap());
        for (m, k, n) in [
            (1, 1, 1),
            (4, 65, 17),
            (100, 130, 257),
            (301, 70, 100),
            (7, 0, 5),
            (100, 256, 10),
            (19, 9, 3),
            (64, 300, 300),
        ] {
            let a =
                Array2::from_shape_fn((m, k), |(i, j)| ((i * 7 + j * 3) % 17) as f32 * 0.13 - 0.8);
            let at = a.t().to_owned();
            let b =
                Array2::from_shape_fn((k, n), |(i, j)| ((i * 5 + j * 11) % 13) as f32 * 0.07 - 0.4);
            let init = Array1::from_shape_fn(n, |j| j as f32 * 0.25 - 1.0);
            for (lhs, init) in [
                (a.view(), None),
                (at.t(), None),
                (a.view(), init.as_slice()),
            ] {
                let want = reference(lhs, b.view(), init);
                for backend in Backend::ALL.into_iter().filter(|b| b.available()) {
                    for pool in &pools {
                        let mut c = Array2::from_elem((m, n), f32::NAN);
                        pool.install(|| {
                            let mut view = c.view_mut();
                            Dense::new(lhs, b.view(), init, &mut view).run(backend, &Plain)
                        });
                        assert!(
                            c.iter().zip(&want).all(|(x, y)| x.to_bits() == y.to_bits()),
                            "{m}x{k}x{n} on {backend}, {} thread(s)",
                            pool.threads()
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn transpose_into_is_the_transpose() {
        for (r, c) in [(37, 53), (500, 256), (1, 7)] {
            let m = Array2::from_shape_fn((r, c), |(i, j)| (i * 1000 + j) as f32);
            let backends = Backend::ALL.into_iter().filter(|b| b.available());
            for (backend, threads) in backends.flat_map(|b| [(b, 1), (b, 3)]) {
                let mut out = Array2::zeros((c, r));
                crate::kernels::Pool::new(threads)
                    .unwrap()
                    .install(|| transpose_into(backend, m.view(), out.view_mut()));
                assert_eq!(out, m.t(), "{r} x {c}, {backend}, {threads} thread(s)");
            }
        }
    }
}
