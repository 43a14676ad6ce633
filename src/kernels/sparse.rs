//! Sparse rows times a dense matrix: `out[r, :] = init + Σ v · src[c, :]` over row `r`'s entries
//! `(c, v)`, in increasing `c`, one fused multiply-add each. The first layer's forward pass on a sparse
//! batch (rows are images, `src` the weight) and its weight gradient (rows are pixels, `src` the output
//! gradient) are both this product.
//!
//! Rows come in groups of [`GROUP`] that share one list of columns, those where any of them is nonzero
//! ([`Grouped`]): the kernel keeps the group's four output rows in registers and each row of `src` it
//! loads feeds four multiply-adds. A row's value is 0 where only its neighbours are nonzero, and
//! `0 · x + acc` is `acc`, so the sums are those of the row's own entries. For the same reason a
//! backend may take each group as its two pairs of rows, each with a shorter list ([`PAIR_COLUMNS`]).

use std::marker::PhantomData;
use std::ops::Range;

use ndarray::{ArrayView2, ArrayViewMut2};

use super::dense::{load, store};
use super::grouped::{GROUP, Grouped};
use super::{Backend, Epilogue, Part, for_parts, instantiate};

/// One product `out = init + rows · src`, by pointers and strides, checked against its views.
#[derive(Clone, Copy)]
pub struct SparseProduct<'a> {
    rows: &'a Grouped,
    src: *const f32,
    src_row: usize,
    init: *const f32,
    out: *mut f32,
    out_row: usize,
    n: usize,
    _views: PhantomData<&'a mut f32>,
}

// SAFETY: as `Dense`'s: the threads of `run` write disjoint rows of `out`.
unsafe impl Send for SparseProduct<'_> {}
unsafe impl Sync for SparseProduct<'_> {}

impl<'a> SparseProduct<'a> {
    /// Panics unless `src` is `rows.ncols() x n` and `out` is `rows.nrows() x n`, both by rows, and
    /// `init` holds `n` floats.
    pub fn new(
        rows: &'a Grouped,
        src: ArrayView2<'a, f32>,
        init: &'a [f32],
        out: &'a mut ArrayViewMut2<'_, f32>,
    ) -> SparseProduct<'a> {
        let n = src.ncols();
        assert_eq!(src.nrows(), rows.ncols(), "inner dimensions");
        assert_eq!(out.dim(), (rows.nrows(), n), "output shape");
        assert_eq!(init.len(), n, "init width");
        assert!(
            n <= 1 || (src.strides()[1] == 1 && out.strides()[1] == 1),
            "by rows"
        );
        assert!(src.strides()[0] >= 0 && out.strides()[0] >= 0, "by rows");
        SparseProduct {
            rows,
            src: src.as_ptr(),
            src_row: src.strides()[0] as usize,
            init: init.as_ptr(),
            out: out.as_mut_ptr(),
            out_row: out.strides()[0] as usize,
            n,
            _views: PhantomData,
        }
    }

    /// Computes the product, shared between the threads by groups of rows, `epi` on every block,
    /// and `then` on each part of rows once done, on the thread that did it.
    pub fn run_then<E: Epilogue>(&self, backend: Backend, epi: &E, then: &(impl Fn(&Part) + Sync)) {
        let groups = self.rows.groups();
        for_parts(groups, 1, self.work(0..groups), 1, &|part| {
            self.groups_then(backend, part.rows.clone(), epi, then)
        });
    }

    /// The multiply-adds the rows of `groups` take.
    pub fn work(&self, groups: Range<usize>) -> usize {
        let entries = self.rows.count(groups.clone());
        (entries + groups.len()) * GROUP * self.n
    }

    /// The rows of `groups` (groups of [`GROUP`] rows) on this thread, `epi` on every block and
    /// `then` on every few groups once done, while their rows are still in cache.
    pub fn groups_then<E: Epilogue>(
        &self,
        backend: Backend,
        groups: Range<usize>,
        epi: &E,
        then: &(impl Fn(&Part) + Sync),
    ) {
        assert!(groups.end <= self.rows.groups(), "groups of rows");
        if self.n == 0 {
            return;
        }
        const THEN_EVERY: usize = 4;
        let m = self.rows.nrows();
        for g0 in groups.clone().step_by(THEN_EVERY) {
            let g1 = (g0 + THEN_EVERY).min(groups.end);
            let part = Part {
                rows: g0 * GROUP..(g1 * GROUP).min(m),
                cols: 0..self.n,
            };
            sparse_part(backend, self, &part, epi);
            then(&part);
        }
    }
}

/// Output columns a block of the sparse kernels holds, per backend (portable, avx2, avx512). AVX2's
/// four rows of 24 take twelve of its sixteen vector registers and each loaded row feeds three vectors
/// of multiply-adds; 32 would spill.
const COLUMNS: [usize; 3] = [16, 24, 64];

/// Output columns of a block of [`SparseProduct`]'s rows taken two at a time, per backend, or 0 where
/// the groups of four are faster whole. AVX2 splits each group in its two pairs of rows, each pair
/// listing only its own nonzero entries (MNIST: 1.17 values multiplied per nonzero pixel, against 1.48
/// in fours), the list made once for all its blocks; two rows of 32 take eight accumulators.
const PAIR_COLUMNS: [usize; 3] = [0, 32, 0];

/// Groups with more entries than this are taken whole (their pairs' lists are made on the stack).
const PAIRED_MAX: usize = 1024;

/// The widest block of output columns the sparse kernels take on `backend`: parts of columns in
/// multiples of it are whole blocks.
pub fn block_columns(backend: Backend) -> usize {
    match backend {
        Backend::Portable => COLUMNS[0],
        Backend::Avx2 => COLUMNS[1],
        Backend::Avx512 => COLUMNS[2],
    }
}

instantiate! {
    /// One part of a [`SparseProduct`] (whole groups of rows), on this thread.
    fn sparse_part(SparseProduct<'_>) => body
        [{ COLUMNS[0] }, { PAIR_COLUMNS[0] }]
        [{ COLUMNS[1] }, { PAIR_COLUMNS[1] }]
        [{ COLUMNS[2] }, { PAIR_COLUMNS[2] }]
}

/// Each group of rows in blocks of `B` columns, or, if `P > 0`, in its two pairs of rows in blocks of
/// `P`. A pair's list leaves out the entries where both its values are 0, which add `0 · x` to the
/// sums: the same sums.
///
/// # Safety
/// `s` describes live matrices and `part` lies inside `out`, its rows whole groups; the CPU has the
/// caller's features.
#[inline(always)]
unsafe fn body<const B: usize, const P: usize, E: Epilogue>(
    s: &SparseProduct,
    part: &Part,
    epi: &E,
) {
    use std::mem::MaybeUninit;
    let m = s.rows;
    for g in part.rows.start / GROUP..part.rows.end.div_ceil(GROUP) {
        let entries = m.entries(g);
        let (cols, vals) = (&m.cols[entries.clone()], &m.vals[entries]);
        let rows = (m.nrows - g * GROUP).min(GROUP);
        if P == 0 || cols.len() > PAIRED_MAX {
            let first = g * GROUP;
            // SAFETY: as the function's.
            unsafe {
                columns::<GROUP, B, E>(
                    s,
                    &Entries {
                        first,
                        rows,
                        cols,
                        vals,
                    },
                    epi,
                )
            };
            continue;
        }
        let mut pair_cols = [[MaybeUninit::<u32>::uninit(); PAIRED_MAX]; 2];
        let mut pair_vals = [[MaybeUninit::<[f32; 2]>::uninit(); PAIRED_MAX]; 2];
        let mut len = [0; 2];
        // Every entry written at its pair's next place, which moves on only if it is nonzero.
        for (&c, v) in cols.iter().zip(vals) {
            for half in 0..2 {
                let pair = [v[2 * half], v[2 * half + 1]];
                pair_cols[half][len[half]].write(c);
                pair_vals[half][len[half]].write(pair);
                len[half] += ((pair[0].to_bits() | pair[1].to_bits()) != 0) as usize;
            }
        }
        for half in 0..2 {
            let first = 2 * half;
            if first >= rows {
                break;
            }
            // SAFETY: the first `len[half]` places were written; the rest as the function's.
            unsafe {
                let pair = Entries {
                    first: g * GROUP + first,
                    rows: (rows - first).min(2),
                    cols: std::slice::from_raw_parts(pair_cols[half].as_ptr().cast(), len[half]),
                    vals: std::slice::from_raw_parts(pair_vals[half].as_ptr().cast(), len[half]),
                };
                columns::<2, P, E>(s, &pair, epi)
            }
        }
    }
}

/// The rows of `entries`, in whole blocks of `B` columns, then narrower ones, as the dense kernel
/// does.
///
/// # Safety
/// As [`body`]; the rows lie inside `out`, and the columns listed inside `src`.
#[inline(always)]
unsafe fn columns<const R: usize, const B: usize, E: Epilogue>(
    s: &SparseProduct,
    entries: &Entries<R>,
    epi: &E,
) {
    let mut j0 = 0;
    while j0 < s.n {
        let left = s.n - j0;
        // SAFETY: columns j0..j0 + width of the rows.
        j0 += unsafe {
            match left {
                _ if left >= B => block::<R, B, E>(s, entries, j0, epi),
                32.. if B > 32 => block::<R, 32, E>(s, entries, j0, epi),
                16.. if B > 16 => block::<R, 16, E>(s, entries, j0, epi),
                8.. => block::<R, 8, E>(s, entries, j0, epi),
                4.. => block::<R, 4, E>(s, entries, j0, epi),
                2 | 3 => block::<R, 2, E>(s, entries, j0, epi),
                _ => block::<R, 1, E>(s, entries, j0, epi),
            }
        };
    }
}

/// Output rows `first..first + rows` (`rows <= R`) and their entries: a column (increasing) and one
/// value for each of the `R` rows.
struct Entries<'a, const R: usize> {
    first: usize,
    rows: usize,
    cols: &'a [u32],
    vals: &'a [[f32; R]],
}

/// Columns `j0..j0 + W` of the rows of `e`; returns `W`.
///
/// # Safety
/// As [`columns`]; the columns lie inside the rows.
#[inline(always)]
unsafe fn block<const R: usize, const W: usize, E: Epilogue>(
    s: &SparseProduct,
    e: &Entries<R>,
    j0: usize,
    epi: &E,
) -> usize {
    // SAFETY: columns j0..j0 + W of `init`, of rows c < ncols of `src` (made so by the fills) and of
    // the rows of `out`.
    unsafe {
        let init = load::<W>(s.init.add(j0), W);
        let mut acc = [init; R];
        for (&c, v) in e.cols.iter().zip(e.vals) {
            let src = load::<W>(s.src.add(c as usize * s.src_row + j0), W);
            for (acc, &v) in acc.iter_mut().zip(v) {
                for (acc, &x) in acc.iter_mut().zip(&src) {
                    *acc = v.mul_add(x, *acc);
                }
            }
        }
        // A copy for the epilogue: borrowing `acc` itself would keep it in memory, not registers.
        let mut done = acc;
        for (r, done) in done.iter_mut().enumerate().take(e.rows) {
            let row = e.first + r;
            epi.apply(row, j0, done);
            if E::STORES {
                store(s.out.add(row * s.out_row + j0), done, W);
            }
        }
    }
    W
}

/// `out = init + rowsᵀ · w`, from the by-columns form: `rows` is `k x m` in groups of rows (a batch by
/// pixel), `w` is `k x n`, `out` is `m x n`. Each group's rows of `w` stay in registers while they are
/// added into the output row of every column listed (every image with any of the group's pixels);
/// each output element is summed in increasing `k`, one fused multiply-add each, as
/// [`SparseProduct`] sums it from the by-rows form. So the forward pass needs only the batch's
/// by-pixel form, the one the gradient reads.
#[derive(Clone, Copy)]
pub struct ScatterProduct<'a> {
    rows: &'a Grouped,
    w: *const f32,
    w_row: usize,
    init: *const f32,
    out: *mut f32,
    out_row: usize,
    n: usize,
    /// The groups of `w`'s rows summed, `groups.0..groups.1`.
    groups: (usize, usize),
    /// Added to every entry of `rows`, listed or not (see [`ScatterProduct::offset`]).
    offset: f32,
    _views: PhantomData<&'a mut f32>,
}

// SAFETY: the threads of `run` write disjoint columns of `out`.
unsafe impl Send for ScatterProduct<'_> {}
unsafe impl Sync for ScatterProduct<'_> {}

impl<'a> ScatterProduct<'a> {
    /// Panics unless `w` is `rows.nrows() x n`, `out` is `rows.ncols() x n`, both by rows, and `init`
    /// holds `n` floats.
    pub fn new(
        rows: &'a Grouped,
        w: ArrayView2<'a, f32>,
        init: &'a [f32],
        out: &'a mut ArrayViewMut2<'_, f32>,
    ) -> ScatterProduct<'a> {
        let n = w.ncols();
        assert_eq!(w.nrows(), rows.nrows(), "inner dimensions");
        assert_eq!(out.dim(), (rows.ncols(), n), "output shape");
        assert_eq!(init.len(), n, "init width");
        assert!(
            n <= 1 || (w.strides()[1] == 1 && out.strides()[1] == 1),
            "by rows"
        );
        assert!(w.strides()[0] >= 0 && out.strides()[0] >= 0, "by rows");
        ScatterProduct {
            rows,
            w: w.as_ptr(),
            w_row: w.strides()[0] as usize,
            init: init.as_ptr(),
            out: out.as_mut_ptr(),
            out_row: out.strides()[0] as usize,
            n,
            groups: (0, rows.groups()),
            offset: 0.0,
            _views: PhantomData,
        }
    }

    /// Only `w`'s rows in `groups` (groups of [`GROUP`] rows) are summed: one part of the inner
    /// dimension.
    pub fn groups(self, groups: Range<usize>) -> Self {
        assert!(groups.start <= groups.end && groups.end <= self.rows.groups());
        ScatterProduct {
            groups: (groups.start, groups.end),
            ..self
        }
    }

    /// `offset` added to every entry of `rows` (a sparse batch's dense constant): each output row
    /// starts from `init + offset · Σ w[k]` over the summed rows `k`, in increasing `k`.
    pub fn offset(self, offset: f32) -> Self {
        ScatterProduct { offset, ..self }
    }

    /// The multiply-adds the product takes.
    pub fn work(&self) -> usize {
        let (first, end) = self.groups;
        let entries = self.rows.count(first..end);
        let dense = if self.offset == 0.0 { 0 } else { end - first };
        (entries * GROUP + dense * GROUP + self.rows.ncols()) * self.n
    }

    /// Computes the product, shared between the threads by columns, `epi` on every block.
    pub fn run<E: Epilogue>(&self, backend: Backend, epi: &E) {
        for_parts(1, self.n, self.work(), 1, &|part| {
            self.columns(backend, part.cols.clone(), epi)
        });
    }

    /// Columns `cols` of the product, on this thread.
    pub fn columns<E: Epilogue>(&self, backend: Backend, cols: Range<usize>, epi: &E) {
        let m = self.rows.ncols();
        assert!(cols.end <= self.n, "columns of the output");
        if m == 0 || cols.is_empty() {
            return;
        }
        scatter_part(backend, self, &Part { rows: 0..m, cols }, epi)
    }
}

instantiate! {
    /// One part of columns of a [`ScatterProduct`], on this thread.
    fn scatter_part(ScatterProduct<'_>) =>
        scatter_body [{ COLUMNS[0] }] [{ COLUMNS[1] }] [{ COLUMNS[2] }]
}

/// # Safety
/// `s` describes live matrices and `part` lies inside `out`; the CPU has the caller's features.
#[inline(always)]
unsafe fn scatter_body<const B: usize, E: Epilogue>(s: &ScatterProduct, part: &Part, epi: &E) {
    let mut j0 = part.cols.start;
    while j0 < part.cols.end {
        let left = part.cols.end - j0;
        // SAFETY: columns j0..j0 + width of every row of `out`.
        j0 += unsafe {
            match left {
                _ if left >= B => scatter_block::<B, E>(s, j0, epi),
                32.. if B > 32 => scatter_block::<32, E>(s, j0, epi),
                16.. if B > 16 => scatter_block::<16, E>(s, j0, epi),
                8.. => scatter_block::<8, E>(s, j0, epi),
                4.. => scatter_block::<4, E>(s, j0, epi),
                2 | 3 => scatter_block::<2, E>(s, j0, epi),
                _ => scatter_block::<1, E>(s, j0, epi),
            }
        };
    }
}

/// Columns `j0..j0 + W` of every row of `out`; returns `W`.
///
/// # Safety
/// As [`scatter_body`]; the columns lie inside the rows.
#[inline(always)]
unsafe fn scatter_block<const W: usize, E: Epilogue>(
    s: &ScatterProduct,
    j0: usize,
    epi: &E,
) -> usize {
    let m = s.rows;
    let rows = m.ncols;
    // SAFETY: columns j0..j0 + W of `init`, of rows < k of `w` and of rows < m of `out` (the fills
    // keep every listed column below m).
    unsafe {
        let out = |i: usize| s.out.add(i * s.out_row + j0);
        let mut init = load::<W>(s.init.add(j0), W);
        if s.offset != 0.0 {
            for k in s.groups.0 * GROUP..(s.groups.1 * GROUP).min(m.nrows) {
                let w = load::<W>(s.w.add(k * s.w_row + j0), W);
                for (acc, &x) in init.iter_mut().zip(&w) {
                    *acc = s.offset.mul_add(x, *acc);
                }
            }
        }
        for i in 0..rows {
            store(out(i), &init, W);
        }
        for g in s.groups.0..s.groups.1 {
            let w: [[f32; W]; GROUP] = std::array::from_fn(|r| {
                let k = g * GROUP + r;
                if k < m.nrows {
                    load::<W>(s.w.add(k * s.w_row + j0), W)
                } else {
                    [0.0; W]
                }
            });
            let entries = m.entries(g);
            for (&i, v) in m.cols[entries.clone()].iter().zip(&m.vals[entries]) {
                let mut acc = load::<W>(out(i as usize), W);
                for (w, &v) in w.iter().zip(v) {
                    for (acc, &x) in acc.iter_mut().zip(w) {
                        *acc = v.mul_add(x, *acc);
                    }
                }
                store(out(i as usize), &acc, W);
            }
        }
        for i in 0..rows {
            let mut acc = load::<W>(out(i), W);
            epi.apply(i, j0, &mut acc);
            store(out(i), &acc, W);
        }
    }
    W
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::Plain;
    use ndarray::Array2;

    /// 23 rows of 70 bytes, some all zero, one all nonzero.
    fn bytes() -> Vec<Vec<u8>> {
        bytes_of(23, 70)
    }

    fn bytes_of(rows: u32, cols: u32) -> Vec<Vec<u8>> {
        (0..rows)
            .map(|r| {
                (0..cols)
                    .map(|c| match r {
                        5 => 0,
                        9 => 200,
                        _ if (c * 7 + r * 3) % 5 == 0 => (c * 3 + r) as u8,
                        _ => 0,
                    })
                    .collect()
            })
            .collect()
    }

    fn dense(m: &Grouped) -> Array2<f32> {
        let mut d = Array2::zeros((m.nrows(), m.ncols()));
        for r in 0..m.nrows() {
            for (c, v) in m.row(r) {
                d[[r, c as usize]] = v;
            }
        }
        d
    }

    /// By rows and by columns, the same matrix transposed (rows of 70 bytes, and of 301: more
    /// groups than one mask of nonzero groups covers, and a short last group).
    #[test]
    fn the_two_fills_are_transposes() {
        for (n, width) in [(23, 70), (10, 301)] {
            let rows = bytes_of(n as u32, width as u32);
            let (mut by_rows, mut by_cols) = (Grouped::default(), Grouped::default());
            by_rows.fill_rows(n, width, |r| &rows[r], 0.5);
            by_cols.fill_columns(n, width, |r| &rows[r], 0.5);
            let want = Array2::from_shape_fn((n, width), |(r, c)| rows[r][c] as f32 * 0.5);
            assert_eq!(dense(&by_rows), want);
            assert_eq!(dense(&by_cols), want.t());
            let nonzeros = want.iter().filter(|&&v| v != 0.0).count();
            assert_eq!((by_rows.nnz(), by_cols.nnz()), (nonzeros, nonzeros));
        }
    }

    /// Against the dense reference product of the same matrix, on every backend, one thread and
    /// three.
    /// The forward pass from the by-pixel form sums as the by-image form does.
    #[test]
    fn scatter_from_the_columns_equals_the_product_of_the_rows() {
        let rows = bytes();
        let (mut by_rows, mut by_cols) = (Grouped::default(), Grouped::default());
        by_rows.fill_rows(23, 70, |r| &rows[r], 1.0 / 255.0);
        by_cols.fill_columns(23, 70, |r| &rows[r], 1.0 / 255.0);
        for n in [1, 10, 130, 300] {
            let w = Array2::from_shape_fn((70, n), |(i, j)| {
                ((i * 5 + j * 11) % 13) as f32 * 0.07 - 0.4
            });
            let init: Vec<f32> = (0..n).map(|j| j as f32 * 0.5 - 2.25).collect();
            for backend in Backend::ALL.into_iter().filter(|b| b.available()) {
                let mut want = Array2::from_elem((23, n), f32::NAN);
                let mut got = Array2::from_elem((23, n), f32::NAN);
                let mut view = want.view_mut();
                SparseProduct::new(&by_rows, w.view(), &init, &mut view).run_then(
                    backend,
                    &Plain,
                    &|_| {},
                );
                let mut view = got.view_mut();
                ScatterProduct::new(&by_cols, w.view(), &init, &mut view).run(backend, &Plain);
                assert!(
                    got.iter()
                        .zip(&want)
                        .all(|(x, y)| x.to_bits() == y.to_bits()),
                    "n = {n} on {backend}"
                );
            }
        }
    }

    /// Also with groups of more entries than are taken in pairs (rows of 1,030 bytes).
    #[test]
    fn every_backend_matches_the_reference_to_the_bit() {
        for (m_rows, width) in [(23, 70), (10, 1030)] {
            every_backend_matches_the_reference_on(m_rows, width);
        }
    }

    fn every_backend_matches_the_reference_on(m_rows: usize, width: usize) {
        let rows = bytes_of(m_rows as u32, width as u32);
        let mut m = Grouped::default();
        m.fill_rows(m_rows, width, |r| &rows[r], 1.0 / 255.0);
        let longest = (0..m.groups()).map(|g| m.entries(g).len()).max();
        assert_eq!(
            longest > Some(PAIRED_MAX),
            width > PAIRED_MAX,
            "row 9 is all nonzero"
        );
        let d = dense(&m);
        for n in [1, 10, 130, 300] {
            let src = Array2::from_shape_fn((width, n), |(i, j)| {
                ((i * 5 + j * 11) % 13) as f32 * 0.07 - 0.4
            });
            let init: Vec<f32> = (0..n).map(|j| j as f32 * 0.5 - 2.25).collect();
            let want = crate::kernels::dense::tests::reference(d.view(), src.view(), Some(&init));
            for backend in Backend::ALL.into_iter().filter(|b| b.available()) {
                for threads in [1, 3] {
                    let pool = crate::kernels::Pool::new(threads).unwrap();
                    let mut out = Array2::from_elem((m_rows, n), f32::NAN);
                    pool.install(|| {
                        let mut view = out.view_mut();
                        SparseProduct::new(&m, src.view(), &init, &mut view).run_then(
                            backend,
                            &Plain,
                            &|_| {},
                        )
                    });
                    assert!(
                        out.iter()
                            .zip(&want)
                            .all(|(x, y)| x.to_bits() == y.to_bits()),
                        "n = {n} on {backend}, {threads} thread(s)"
                    );
                }
            }
        }
    }
}
