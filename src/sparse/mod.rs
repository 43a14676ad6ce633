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

mod gather;

pub use gather::gather_rows;

/// A sparse matrix by rows: row `r` holds the entries `cols[starts[r]..starts[r + 1]]` with values
/// `vals[..]` at the same positions, columns increasing. Every column is below `ncols` (the kernels rely
/// on it), which is why the fields are private and the only ways in check it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SparseRows {
    ncols: usize,
    starts: Vec<usize>,
    /// Storage only grows, and by doubling (Vec's growth), so after the first batches a training run
    /// allocates nothing here; sized by the data actually seen rather than for every pixel nonzero
    /// (that took 750 MB for a 60,000-image batch). Entries past `starts.last()` are left over.
    cols: Vec<u32>,
    vals: Vec<f32>,
}

impl SparseRows {
    /// An empty matrix (no rows) of `ncols` columns, keeping the allocations.
    pub fn clear(&mut self, ncols: usize) {
        self.ncols = ncols;
        self.starts.clear();
        self.starts.push(0);
    }

    /// Appends a row: the entries of `dense` that are not 0, scaled by `scale`.
    pub fn push_row(&mut self, dense: &[u8], scale: f32) {
        assert_eq!(dense.len(), self.ncols, "row width");
        let start = self.nnz();
        // Room for every pixel, so that the kernel below can write without checking.
        if self.cols.len() < start + dense.len() {
            self.cols.resize(start + dense.len(), 0);
            self.vals.resize(start + dense.len(), 0.0);
        }
        let cols = &mut self.cols[start..start + dense.len()];
        let vals = &mut self.vals[start..start + dense.len()];
        let written = compress_nonzero(dense, scale, cols, vals);
        self.starts.push(start + written);
    }

    pub fn nrows(&self) -> usize {
        self.starts.len().saturating_sub(1)
    }

    pub fn ncols(&self) -> usize {
        self.ncols
    }

    pub fn nnz(&self) -> usize {
        self.starts.last().copied().unwrap_or(0)
    }

    /// Where each row starts in [`Self::cols`] and [`Self::vals`]; one more entry than rows.
    pub fn starts(&self) -> &[usize] {
        &self.starts
    }

    /// The column of every entry, row after row.
    pub fn cols(&self) -> &[u32] {
        &self.cols[..self.nnz()]
    }

    /// The value of every entry, row after row.
    pub fn vals(&self) -> &[f32] {
        &self.vals[..self.nnz()]
    }

    /// Writes the transpose into `out` (a counting sort by column, so each of its rows keeps increasing
    /// columns): the plain reference that [`SparseBatch`]'s column form is tested against.
    #[cfg(test)]
    pub fn transpose_into(&self, out: &mut SparseRows) {
        let nnz = self.nnz();
        out.ncols = self.nrows();
        out.starts.clear();
        out.starts.resize(self.ncols + 1, 0);
        for &c in self.cols() {
            out.starts[c as usize + 1] += 1;
        }
        for c in 0..self.ncols {
            out.starts[c + 1] += out.starts[c];
        }
        if out.cols.len() < nnz {
            out.cols.resize(nnz, 0);
            out.vals.resize(nnz, 0.0);
        }
        // `next[c]` is where the next entry of column c goes; reuse starts shifted by one row.
        let mut next = std::mem::take(&mut out.starts);
        for r in 0..self.nrows() {
            let range = self.starts[r]..self.starts[r + 1];
            for (&c, &v) in self.cols[range.clone()].iter().zip(&self.vals[range]) {
                let at = &mut next[c as usize];
                out.cols[*at] = r as u32;
                out.vals[*at] = v;
                *at += 1;
            }
        }
        // After the pass next[c] is the end of column c, i.e. the start of c + 1.
        next.rotate_right(1);
        next[0] = 0;
        out.starts = next;
    }
}

/// A batch of byte images in sparse form, by rows (images) and by columns (pixels), built together.
///
/// The column form is not a transpose of the row form (a counting sort scatters its writes over every
/// column: 3.7 ns an entry, measured): the bytes are transposed first, sixteen by sixteen in vector
/// registers, and each pixel's bytes compressed like an image's.
#[derive(Debug, Clone, Default)]
pub struct SparseBatch {
    pub by_row: SparseRows,
    pub by_col: SparseRows,
    /// The batch's bytes by pixel: `width` rows of `rows` rounded up to 16.
    transposed: Vec<u8>,
}

impl SparseBatch {
    /// Builds both forms from the images `indices` of `images` (each `width` bytes), keeping the
    /// nonzero pixels times `scale`. The two forms are built at once, on two of rayon's threads when it
    /// has them.
    pub fn fill(&mut self, images: &[u8], width: usize, indices: &[u32], scale: f32) {
        let SparseBatch {
            by_row,
            by_col,
            transposed,
        } = self;
        rayon::join(
            || {
                by_row.clear(width);
                for &i in indices {
                    by_row.push_row(&images[i as usize * width..][..width], scale);
                }
            },
            || {
                let rows = indices.len();
                let padded = rows.next_multiple_of(16);
                transposed.clear();
                transposed.resize(width * padded, 0);
                transpose_bytes(images, width, indices, transposed, padded);
                by_col.clear(rows);
                for pixel in transposed.chunks_exact(padded) {
                    by_col.push_row(&pixel[..rows], scale);
                }
            },
        );
    }
}

/// `out[c * stride + r] = image(indices[r])[c]`: the images `indices` of `images`, transposed.
fn transpose_bytes(images: &[u8], width: usize, indices: &[u32], out: &mut [u8], stride: usize) {
    assert!(out.len() >= width * stride && stride >= indices.len());
    let image = |r: usize| &images[indices[r] as usize * width..][..width];
    let (full_rows, full_cols) = (indices.len() / 16 * 16, width / 16 * 16);
    #[cfg(target_arch = "x86_64")]
    for r0 in (0..full_rows).step_by(16) {
        let block: [&[u8]; 16] = std::array::from_fn(|r| image(r0 + r));
        for c0 in (0..full_cols).step_by(16) {
            transpose_16x16(&block, c0, &mut out[c0 * stride + r0..], stride);
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let (full_rows, full_cols) = (0, 0);
    // What the blocks did not cover: the last rows for every pixel, the last pixels for every row.
    for r in 0..indices.len() {
        let first = if r < full_rows { full_cols } else { 0 };
        for (c, &p) in image(r).iter().enumerate().skip(first) {
            out[c * stride + r] = p;
        }
    }
}

/// Bytes `c0..c0 + 16` of the 16 rows `block` into `out[c * stride + r]`, `c` from 0, with SSE2 (part of
/// every x86-64 CPU): four rounds of interleaving row `i` with row `i + 8` transpose a 16 x 16 block.
#[cfg(target_arch = "x86_64")]
fn transpose_16x16(block: &[&[u8]; 16], c0: usize, out: &mut [u8], stride: usize) {
    use std::arch::x86_64::*;
    assert!(out.len() >= 15 * stride + 16);
    let mut x: [__m128i; 16] = std::array::from_fn(|r| {
        let bytes: &[u8; 16] = block[r][c0..c0 + 16].try_into().expect("16 bytes");
        // SAFETY: an unaligned load of the 16 bytes just borrowed.
        unsafe { _mm_loadu_si128(bytes.as_ptr().cast()) }
    });
    for _ in 0..4 {
        x = std::array::from_fn(|k| {
            let (a, b) = (x[k / 2], x[k / 2 + 8]);
            // SAFETY: SSE2 is part of x86-64.
            unsafe {
                if k % 2 == 0 {
                    _mm_unpacklo_epi8(a, b)
                } else {
                    _mm_unpackhi_epi8(a, b)
                }
            }
        });
    }
    for (c, v) in x.iter().enumerate() {
        let dst: &mut [u8; 16] = (&mut out[c * stride..][..16]).try_into().expect("16 bytes");
        // SAFETY: an unaligned store into the 16 bytes just borrowed.
        unsafe { _mm_storeu_si128(dst.as_mut_ptr().cast(), *v) };
    }
}

/// Writes the position and `scale ·` value of each nonzero byte of `dense` to the front of `cols` and
/// `vals` (both at least as long as `dense`), returning how many there were.
fn compress_nonzero(dense: &[u8], scale: f32, cols: &mut [u32], vals: &mut [f32]) -> usize {
    assert!(cols.len() >= dense.len() && vals.len() >= dense.len());
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx512f")
        && std::arch::is_x86_feature_detected!("popcnt")
    {
        // SAFETY: the CPU has AVX-512F and POPCNT, checked just above; the lengths were checked above.
        return unsafe { compress_nonzero_avx512(dense, scale, cols, vals) };
    }
    compress_nonzero_portable(dense, scale, cols, vals)
}

fn compress_nonzero_portable(
    dense: &[u8],
    scale: f32,
    cols: &mut [u32],
    vals: &mut [f32],
) -> usize {
    let mut n = 0;
    for (col, &p) in dense.iter().enumerate() {
        // Written always, kept only when nonzero: no unpredictable branch per pixel.
        cols[n] = col as u32;
        vals[n] = p as f32 * scale;
        n += (p != 0) as usize;
    }
    n
}

/// Sixteen pixels at a time: widen to 32 bits, move the nonzero lanes to the front, store all sixteen.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,popcnt")]
unsafe fn compress_nonzero_avx512(
    dense: &[u8],
    scale: f32,
    cols: &mut [u32],
    vals: &mut [f32],
) -> usize {
    use std::arch::x86_64::*;
    let lanes = 16;
    let full = dense.len() / lanes * lanes;
    let scale_v = _mm512_set1_ps(scale);
    let step = _mm512_set1_epi32(lanes as i32);
    let mut index = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    let mut n = 0;
    for chunk in (0..full).step_by(lanes) {
        // SAFETY: chunk + 16 <= dense.len(); the stores write 16 entries at n <= chunk, so they stay
        // below dense.len() <= cols.len(), vals.len().
        unsafe {
            let bytes = _mm_loadu_si128(dense.as_ptr().add(chunk).cast());
            let wide = _mm512_cvtepu8_epi32(bytes);
            let keep = _mm512_test_epi32_mask(wide, wide);
            let scaled = _mm512_mul_ps(_mm512_cvtepi32_ps(wide), scale_v);
            // Compressed in a register and stored whole (a compressing store to memory is microcoded
            // and took 3x longer, measured); lanes past the kept ones are overwritten later or ignored.
            let scaled = _mm512_maskz_compress_ps(keep, scaled);
            let index = _mm512_maskz_compress_epi32(keep, index);
            _mm512_storeu_ps(vals.as_mut_ptr().add(n), scaled);
            _mm512_storeu_epi32(cols.as_mut_ptr().add(n).cast(), index);
            n += keep.count_ones() as usize;
        }
        index = _mm512_add_epi32(index, step);
    }
    for (col, &p) in dense.iter().enumerate().skip(full) {
        cols[n] = col as u32;
        vals[n] = p as f32 * scale;
        n += (p != 0) as usize;
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 23 x 9 byte matrix with about a third of its entries nonzero.
    fn sample() -> (SparseRows, Vec<Vec<u8>>) {
        let dense: Vec<Vec<u8>> = (0..23)
            .map(|i| {
                (0..9)
                    .map(|j| {
                        if (i * 3 + j * 5) % 4 == 0 {
                            (i + j + 1) as u8
                        } else {
                            0
                        }
                    })
                    .collect()
            })
            .collect();
        let mut sparse = SparseRows::default();
        sparse.clear(9);
        for row in &dense {
            sparse.push_row(row, 0.5);
        }
        (sparse, dense)
    }

    fn to_dense(s: &SparseRows) -> Vec<Vec<f32>> {
        (0..s.nrows())
            .map(|r| {
                let mut row = vec![0.0; s.ncols()];
                for k in s.starts()[r]..s.starts()[r + 1] {
                    row[s.cols()[k] as usize] = s.vals()[k];
                }
                row
            })
            .collect()
    }

    #[test]
    fn rows_hold_the_scaled_nonzero_entries() {
        let (sparse, dense) = sample();
        let want: Vec<Vec<f32>> = dense
            .iter()
            .map(|row| row.iter().map(|&p| p as f32 * 0.5).collect())
            .collect();
        assert_eq!(to_dense(&sparse), want);
        assert_eq!(
            sparse.nnz(),
            dense.iter().flatten().filter(|&&p| p != 0).count()
        );
    }

    #[test]
    fn the_vector_and_portable_compressions_agree() {
        // 50 bytes: three full vectors and a tail of two.
        let bytes: Vec<u8> = (0..50u32).map(|i| ((i * 37) % 7 * 40) as u8).collect();
        let (mut c1, mut v1) = (vec![0; 50], vec![0.0; 50]);
        let (mut c2, mut v2) = (vec![0; 50], vec![0.0; 50]);
        let n1 = compress_nonzero(&bytes, 0.25, &mut c1, &mut v1);
        let n2 = compress_nonzero_portable(&bytes, 0.25, &mut c2, &mut v2);
        assert_eq!(n1, n2);
        assert_eq!((&c1[..n1], &v1[..n1]), (&c2[..n2], &v2[..n2]));
        assert_eq!(n1, bytes.iter().filter(|&&p| p != 0).count());
    }

    #[test]
    fn a_batch_by_columns_is_the_transpose_of_the_batch_by_rows() {
        // 70 images: the occupancy bits span two words.
        let images: Vec<Vec<u8>> = (0..70)
            .map(|r: usize| {
                (0..9)
                    .map(|c| ((r * 5 + c * 3) % 4 * (r + c) % 256) as u8)
                    .collect()
            })
            .collect();
        let flat: Vec<u8> = images.concat();
        let all: Vec<u32> = (0..70).collect();
        let mut batch = SparseBatch::default();
        batch.fill(&flat, 9, &all, 0.5);
        let mut by_row = SparseRows::default();
        by_row.clear(9);
        for image in &images {
            by_row.push_row(image, 0.5);
        }
        let mut transposed = SparseRows::default();
        by_row.transpose_into(&mut transposed);
        assert_eq!(to_dense(&batch.by_row), to_dense(&by_row));
        assert_eq!(to_dense(&batch.by_col), to_dense(&transposed));
        assert_eq!(batch.by_col.starts(), transposed.starts());
        assert_eq!(batch.by_col.cols(), transposed.cols());
        // Refilled with fewer images, nothing of the larger batch is left.
        batch.fill(&flat, 9, &[1, 2, 3], 0.5);
        by_row.clear(9);
        for image in &images[1..4] {
            by_row.push_row(image, 0.5);
        }
        by_row.transpose_into(&mut transposed);
        assert_eq!(to_dense(&batch.by_col), to_dense(&transposed));
    }

    #[test]
    fn bytes_transpose_in_blocks_and_at_the_edges() {
        // 37 images of 50 pixels, picked out of order: two full blocks of rows, three of pixels.
        let images: Vec<u8> = (0..40 * 50).map(|i| (i * 7 % 251) as u8).collect();
        let indices: Vec<u32> = (0..37).map(|r| (r * 13 % 40) as u32).collect();
        let stride = 48;
        let mut out = vec![0; 50 * stride];
        transpose_bytes(&images, 50, &indices, &mut out, stride);
        for (r, &i) in indices.iter().enumerate() {
            for c in 0..50 {
                assert_eq!(
                    out[c * stride + r],
                    images[i as usize * 50 + c],
                    "row {r} pixel {c}"
                );
            }
        }
    }

    #[test]
    fn transpose_matches_the_dense_transpose() {
        let (sparse, _) = sample();
        let mut t = SparseRows::default();
        sparse.transpose_into(&mut t);
        assert_eq!((t.nrows(), t.ncols(), t.nnz()), (9, 23, sparse.nnz()));
        let (a, b) = (to_dense(&sparse), to_dense(&t));
        for i in 0..23 {
            for j in 0..9 {
                assert_eq!(a[i][j], b[j][i]);
            }
        }
    }
}
