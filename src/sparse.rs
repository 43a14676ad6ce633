//! Sparse rows (CSR) and the one kernel the sparse input path needs.
//!
//! About 81% of MNIST's pixels are 0, so the first Linear layer can skip them: with the input written as
//! `x = S + offset` (`S` the sparse pixels `p / 255`, `offset = -128/255` everywhere),
//!
//! ```text
//! x W  = S W  + offset · 1 · colsum(W)ᵀ           forward
//! xᵀ D = Sᵀ D + offset · 1 · colsum(D)ᵀ           weight gradient (colsum(D) is the bias gradient)
//! ```
//! Both are [`gather_rows`]: each output row is a fixed row plus a weighted sum of rows of a dense
//! matrix, picked by one sparse row (of `S` for the forward pass, of `Sᵀ` for the gradient).

use ndarray::{ArrayView1, ArrayView2, ArrayViewMut2};
use rayon::prelude::*;

/// A sparse matrix by rows: row `r` holds the entries `cols[starts[r]..starts[r + 1]]` with values
/// `vals[..]` at the same positions.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SparseRows {
    pub ncols: usize,
    pub starts: Vec<usize>,
    pub cols: Vec<u32>,
    pub vals: Vec<f32>,
}

impl SparseRows {
    /// Empties the matrix, keeping its allocations, for rows of `ncols` columns.
    pub fn clear(&mut self, ncols: usize) {
        self.ncols = ncols;
        self.starts.clear();
        self.starts.push(0);
        self.cols.clear();
        self.vals.clear();
    }

    pub fn push(&mut self, col: u32, val: f32) {
        self.cols.push(col);
        self.vals.push(val);
    }

    pub fn end_row(&mut self) {
        self.starts.push(self.cols.len());
    }

    pub fn nrows(&self) -> usize {
        self.starts.len().saturating_sub(1)
    }

    pub fn nnz(&self) -> usize {
        self.cols.len()
    }

    /// Writes the transpose into `out` (a counting sort by column; no allocation once `out` has grown).
    pub fn transpose_into(&self, out: &mut SparseRows) {
        out.ncols = self.nrows();
        out.starts.clear();
        out.starts.resize(self.ncols + 1, 0);
        for &c in &self.cols {
            out.starts[c as usize + 1] += 1;
        }
        for c in 0..self.ncols {
            out.starts[c + 1] += out.starts[c];
        }
        out.cols.resize(self.nnz(), 0);
        out.vals.resize(self.nnz(), 0.0);
        // `next[c]` is where the next entry of column c goes; reuse starts shifted by one row.
        let mut next = std::mem::take(&mut out.starts);
        for r in 0..self.nrows() {
            for k in self.starts[r]..self.starts[r + 1] {
                let c = self.cols[k] as usize;
                out.cols[next[c]] = r as u32;
                out.vals[next[c]] = self.vals[k];
                next[c] += 1;
            }
        }
        // After the pass next[c] is the end of column c, i.e. the start of c + 1.
        next.rotate_right(1);
        next[0] = 0;
        out.starts = next;
    }
}

/// Columns processed together. A block of 128 floats is eight AVX-512 registers: the output block stays
/// in registers while every nonzero of its row adds into it, eight independent chains that keep both
/// FMA units busy, and a block of the source (784 x 128 for MNIST's first layer) stays in L2 cache.
const BLOCK: usize = 128;

/// `out[r, :] = init + Σ_k vals[k] · src[cols[k], :]` over the entries `k` of sparse row `r`, for every
/// row of `sparse` (`out` has `sparse.nrows()` rows and `src.ncols()` columns, both contiguous).
/// Rows are split evenly over the rayon pool's threads.
pub fn gather_rows(
    sparse: &SparseRows,
    src: ArrayView2<f32>,
    init: ArrayView1<f32>,
    mut out: ArrayViewMut2<f32>,
) {
    let n = src.ncols();
    let rows = sparse.nrows();
    assert_eq!(out.dim(), (rows, n), "gather_rows output shape");
    assert_eq!(src.nrows(), sparse.ncols, "gather_rows source rows");
    assert_eq!(init.len(), n, "gather_rows init width");
    let src = src.as_slice().expect("contiguous source");
    let init = init.as_slice().expect("contiguous init");
    let out = out.as_slice_mut().expect("contiguous output");
    if n == 0 || rows == 0 {
        return;
    }
    let rows_per_task = rows.div_ceil(rayon::current_num_threads());
    let task = |(t, chunk): (usize, &mut [f32])| {
        let first = t * rows_per_task;
        for j0 in (0..n).step_by(BLOCK) {
            let j1 = (j0 + BLOCK).min(n);
            for (i, dst) in chunk.chunks_mut(n).enumerate() {
                let range = sparse.starts[first + i]..sparse.starts[first + i + 1];
                let terms = Terms {
                    src,
                    stride: n,
                    cols: &sparse.cols[range.clone()],
                    vals: &sparse.vals[range],
                };
                accumulate(&mut dst[j0..j1], &init[j0..j1], j0, &terms);
            }
        }
    };
    if rows_per_task < rows {
        out.par_chunks_mut(rows_per_task * n)
            .enumerate()
            .for_each(task);
    } else {
        task((0, out));
    }
}

/// The weighted source rows that make one output row: `Σ vals[k] · src[cols[k] * stride ..]`.
struct Terms<'a> {
    src: &'a [f32],
    stride: usize,
    cols: &'a [u32],
    vals: &'a [f32],
}

/// `dst = init + Σ vals[k] · src[cols[k], j0 .. j0 + dst.len()]`, dispatched to the widest vector unit
/// the CPU has.
fn accumulate(dst: &mut [f32], init: &[f32], j0: usize, terms: &Terms) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("fma")
        {
            // SAFETY: the CPU has AVX-512F and FMA, checked just above.
            return unsafe { accumulate_avx512(dst, init, j0, terms) };
        }
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            // SAFETY: the CPU has AVX2 and FMA, checked just above.
            return unsafe { accumulate_avx2(dst, init, j0, terms) };
        }
    }
    accumulate_portable::<false>(dst, init, j0, terms)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,fma")]
fn accumulate_avx512(dst: &mut [f32], init: &[f32], j0: usize, terms: &Terms) {
    accumulate_portable::<true>(dst, init, j0, terms)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn accumulate_avx2(dst: &mut [f32], init: &[f32], j0: usize, terms: &Terms) {
    accumulate_portable::<true>(dst, init, j0, terms)
}

/// `a * b + c`, fused where the caller compiled with FMA (without it `mul_add` is a slow library call).
#[inline(always)]
fn mul_add<const FMA: bool>(a: f32, b: f32, c: f32) -> f32 {
    if FMA { a.mul_add(b, c) } else { a * b + c }
}

/// Plain loops the compiler vectorises. A full block accumulates in a fixed-size array that lives in
/// registers; a narrower one (the last block of a layer, or a narrow layer) works on `dst` directly.
#[inline(always)]
fn accumulate_portable<const FMA: bool>(dst: &mut [f32], init: &[f32], j0: usize, terms: &Terms) {
    let Terms {
        src,
        stride,
        cols,
        vals,
    } = *terms;
    let w = dst.len();
    let row = |k: usize| &src[cols[k] as usize * stride + j0..][..w];
    if let (Ok(dst), Ok(init)) = (
        <&mut [f32; BLOCK]>::try_from(&mut *dst),
        <&[f32; BLOCK]>::try_from(init),
    ) {
        let mut acc = *init;
        for (k, &v) in vals.iter().enumerate() {
            let r: &[f32; BLOCK] = row(k).try_into().expect("a block-wide row");
            for j in 0..BLOCK {
                acc[j] = mul_add::<FMA>(v, r[j], acc[j]);
            }
        }
        *dst = acc;
        return;
    }
    dst.copy_from_slice(init);
    for (k, &v) in vals.iter().enumerate() {
        for (d, a) in dst.iter_mut().zip(row(k)) {
            *d = mul_add::<FMA>(v, *a, *d);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{Array1, Array2};

    fn sample() -> (SparseRows, Array2<f32>) {
        let dense = Array2::from_shape_fn((23, 9), |(i, j)| {
            if (i * 3 + j * 5) % 4 == 0 {
                (i + j) as f32 * 0.25
            } else {
                0.0
            }
        });
        let mut sparse = SparseRows::default();
        sparse.clear(9);
        for row in dense.rows() {
            for (c, &v) in row.iter().enumerate() {
                if v != 0.0 {
                    sparse.push(c as u32, v);
                }
            }
            sparse.end_row();
        }
        (sparse, dense)
    }

    #[test]
    fn transpose_matches_the_dense_transpose() {
        let (sparse, dense) = sample();
        let mut t = SparseRows::default();
        sparse.transpose_into(&mut t);
        assert_eq!((t.nrows(), t.ncols, t.nnz()), (9, 23, sparse.nnz()));
        let mut back = Array2::zeros((9, 23));
        for r in 0..t.nrows() {
            for k in t.starts[r]..t.starts[r + 1] {
                back[[r, t.cols[k] as usize]] = t.vals[k];
            }
        }
        assert_eq!(back, dense.t());
    }

    #[test]
    fn gather_rows_is_init_plus_sparse_times_dense() {
        let (sparse, dense) = sample();
        let src = Array2::from_shape_fn((9, 37), |(i, j)| ((i * 7 + j) % 11) as f32 - 5.0);
        let init = Array1::from_shape_fn(37, |j| j as f32 * 0.5);
        let mut out = Array2::zeros((23, 37));
        gather_rows(&sparse, src.view(), init.view(), out.view_mut());
        let want = dense.dot(&src) + &init;
        for (a, b) in out.iter().zip(&want) {
            assert!((a - b).abs() < 1e-4, "{a} vs {b}");
        }
    }
}
