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

pub use gather::{gather_rows, gather_rows_split_src};

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
        // Room for every pixel and the vector kernel's whole last vector.
        let end = start + dense.len().next_multiple_of(16);
        if self.cols.len() < end {
            self.cols.resize(end, 0);
            self.vals.resize(end, 0.0);
        }
        let cols = &mut self.cols[start..end];
        let vals = &mut self.vals[start..end];
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
    /// One image of zeros, completing the batch's last block of sixteen images.
    zeros: Vec<u8>,
}

impl SparseBatch {
    /// Builds both forms from the images `indices` of `images` (each `width` bytes), keeping the
    /// nonzero pixels times `scale`. The two forms are built at once, on two threads when there are two
    /// ([`crate::parallel::join`]).
    pub fn fill(&mut self, images: &[u8], width: usize, indices: &[u32], scale: f32) {
        let SparseBatch {
            by_row,
            by_col,
            transposed,
            zeros,
        } = self;
        zeros.resize(width, 0);
        crate::parallel::join(
            || {
                by_row.clear(width);
                for &i in indices {
                    by_row.push_row(&images[i as usize * width..][..width], scale);
                }
            },
            || {
                let rows = indices.len();
                let padded = rows.next_multiple_of(16);
                // Every byte read below is written first: no need to clear.
                if transposed.len() < width * padded {
                    transposed.resize(width * padded, 0);
                }
                transpose_bytes(images, (width, zeros), indices, transposed, padded);
                by_col.clear(rows);
                for pixel in transposed[..width * padded].chunks_exact(padded) {
                    by_col.push_row(&pixel[..rows], scale);
                }
            },
        );
    }
}

/// `out[c * stride + r] = image(indices[r])[c]`: the images `indices` of `images`, transposed, where
/// `stride` is a multiple of 16 that holds every row. `zeros` is a zero image that completes the last
/// block of sixteen rows (so no row goes byte by byte): those rows come out 0, except in the last
/// `width % 16` pixels, which go byte by byte and only for the real rows.
fn transpose_bytes(
    images: &[u8],
    (width, zeros): (usize, &[u8]),
    indices: &[u32],
    out: &mut [u8],
    stride: usize,
) {
    assert!(out.len() >= width * stride && stride >= indices.len() && stride.is_multiple_of(16));
    assert_eq!(zeros.len(), width, "a zero image");
    let image = |r: usize| &images[indices[r] as usize * width..][..width];
    #[cfg(target_arch = "x86_64")]
    let full_cols = width / 16 * 16;
    #[cfg(target_arch = "x86_64")]
    let wide = std::arch::is_x86_feature_detected!("avx512bw");
    #[cfg(target_arch = "x86_64")]
    for r0 in (0..indices.len()).step_by(16) {
        let block: [&[u8]; 16] = std::array::from_fn(|r| {
            if r0 + r < indices.len() {
                image(r0 + r)
            } else {
                zeros
            }
        });
        let mut c0 = 0;
        if wide {
            while c0 + 64 <= width {
                // SAFETY: the CPU has AVX-512BW, checked above.
                unsafe { transpose_16x64(&block, c0, &mut out[c0 * stride + r0..], stride) };
                c0 += 64;
            }
        }
        while c0 < full_cols {
            transpose_16x16(&block, c0, &mut out[c0 * stride + r0..], stride);
            c0 += 16;
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let full_cols = 0;
    // The last pixels, fewer than 16, byte by byte (all pixels without SSE2).
    for r in 0..indices.len() {
        for (c, &p) in image(r).iter().enumerate().skip(full_cols) {
            out[c * stride + r] = p;
        }
    }
}

/// One round of a 16 x 16 byte transpose: rows `k` and `k + 8` interleaved into rows `2k` and `2k + 1`.
/// Written out as an array literal: built in a loop, the array went through memory (memcpy) each round.
#[cfg(target_arch = "x86_64")]
macro_rules! interleave {
    ($lo:ident, $hi:ident, $x:expr) => {{
        let x = $x;
        [
            $lo(x[0], x[8]),
            $hi(x[0], x[8]),
            $lo(x[1], x[9]),
            $hi(x[1], x[9]),
            $lo(x[2], x[10]),
            $hi(x[2], x[10]),
            $lo(x[3], x[11]),
            $hi(x[3], x[11]),
            $lo(x[4], x[12]),
            $hi(x[4], x[12]),
            $lo(x[5], x[13]),
            $hi(x[5], x[13]),
            $lo(x[6], x[14]),
            $hi(x[6], x[14]),
            $lo(x[7], x[15]),
            $hi(x[7], x[15]),
        ]
    }};
}

/// Bytes `c0..c0 + 16` of the 16 rows `block` into `out[c * stride + r]`, `c` from 0, with SSE2 (part of
/// every x86-64 CPU): four rounds of interleaving row `i` with row `i + 8` transpose a 16 x 16 block.
#[cfg(target_arch = "x86_64")]
fn transpose_16x16(block: &[&[u8]; 16], c0: usize, out: &mut [u8], stride: usize) {
    use std::arch::x86_64::*;
    assert!(out.len() >= 15 * stride + 16);
    // SAFETY: SSE2 is part of x86-64; every load reads 16 bytes just borrowed, every store writes 16
    // bytes inside `out` (checked above).
    unsafe {
        let mut x = [_mm_setzero_si128(); 16];
        for r in 0..16 {
            let bytes: &[u8; 16] = block[r][c0..c0 + 16].try_into().expect("16 bytes");
            x[r] = _mm_loadu_si128(bytes.as_ptr().cast());
        }
        for _ in 0..4 {
            x = interleave!(_mm_unpacklo_epi8, _mm_unpackhi_epi8, x);
        }
        for (c, v) in x.iter().enumerate() {
            _mm_storeu_si128(out[c * stride..][..16].as_mut_ptr().cast(), *v);
        }
    }
}

/// As [`transpose_16x16`] for bytes `c0..c0 + 64`: the same rounds on 64-byte vectors transpose four
/// 16 x 16 blocks at once (each 16-byte lane is one block), a quarter of the shuffles.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw")]
fn transpose_16x64(block: &[&[u8]; 16], c0: usize, out: &mut [u8], stride: usize) {
    use std::arch::x86_64::*;
    assert!(out.len() >= 63 * stride + 16);
    // SAFETY: every load reads 64 bytes just borrowed, every store writes 16 bytes inside `out`
    // (checked above).
    unsafe {
        let mut x = [_mm512_setzero_si512(); 16];
        for r in 0..16 {
            let bytes: &[u8; 64] = block[r][c0..c0 + 64].try_into().expect("64 bytes");
            x[r] = _mm512_loadu_si512(bytes.as_ptr().cast());
        }
        for _ in 0..4 {
            x = interleave!(_mm512_unpacklo_epi8, _mm512_unpackhi_epi8, x);
        }
        let mut store = |c: usize, v: __m128i| {
            _mm_storeu_si128(out[c * stride..][..16].as_mut_ptr().cast(), v);
        };
        for (c, v) in x.iter().enumerate() {
            store(c, _mm512_castsi512_si128(*v));
            store(16 + c, _mm512_extracti32x4_epi32::<1>(*v));
            store(32 + c, _mm512_extracti32x4_epi32::<2>(*v));
            store(48 + c, _mm512_extracti32x4_epi32::<3>(*v));
        }
    }
}

/// Writes the position and `scale ·` value of each nonzero byte of `dense` to the front of `cols` and
/// `vals`, returning how many there were. Both must have room for `dense.len()` rounded up to 16: the
/// vector version writes whole vectors past the last entry.
fn compress_nonzero(dense: &[u8], scale: f32, cols: &mut [u32], vals: &mut [f32]) -> usize {
    let room = dense.len().next_multiple_of(16);
    assert!(cols.len() >= room && vals.len() >= room);
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx512vbmi2") {
        // SAFETY: the CPU has AVX-512 VBMI2 (and so F and BW), checked just above; the room was
        // checked above.
        return unsafe { compress_nonzero_vbmi2(dense, scale, cols, vals) };
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

/// Sixty-four pixels at a time: move the nonzero bytes and their positions to the front of two byte
/// vectors, then widen to 32 bits only the groups of sixteen that hold any (about one at MNIST's
/// density; widening every pixel first took 2.5x the shuffle-port work).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vbmi2,popcnt")]
unsafe fn compress_nonzero_vbmi2(
    dense: &[u8],
    scale: f32,
    cols: &mut [u32],
    vals: &mut [f32],
) -> usize {
    use std::arch::x86_64::*;
    let positions: [u8; 64] = std::array::from_fn(|i| i as u8);
    // SAFETY (whole body): loads read 64 bytes from `positions` or, masked to the bytes that exist,
    // from `dense`; group g of a chunk at `chunk` is stored only when the chunk has more than 16 g
    // nonzeros, at n + 16 g with n <= chunk - (nonzeros before it), so every store ends by
    // chunk + round16(nonzeros) <= dense.len() rounded up to 16 <= cols.len(), vals.len().
    unsafe {
        let positions = _mm512_loadu_si512(positions.as_ptr().cast());
        let scale = _mm512_set1_ps(scale);
        let mut n = 0;
        for chunk in (0..dense.len()).step_by(64) {
            let left = dense.len() - chunk;
            let present = if left >= 64 {
                u64::MAX
            } else {
                (1 << left) - 1
            };
            let bytes = _mm512_maskz_loadu_epi8(present, dense.as_ptr().add(chunk).cast());
            let keep = _mm512_test_epi8_mask(bytes, bytes);
            let count = keep.count_ones() as usize;
            let values = _mm512_maskz_compress_epi8(keep, bytes);
            let columns = _mm512_maskz_compress_epi8(keep, positions);
            let base = _mm512_set1_epi32(chunk as i32);
            let mut store = |g: usize, values: __m128i, columns: __m128i| {
                let at = n + 16 * g;
                let v = _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(values));
                _mm512_storeu_ps(vals.as_mut_ptr().add(at), _mm512_mul_ps(v, scale));
                let c = _mm512_add_epi32(_mm512_cvtepu8_epi32(columns), base);
                _mm512_storeu_si512(cols.as_mut_ptr().add(at).cast(), c);
            };
            if count > 0 {
                store(
                    0,
                    _mm512_castsi512_si128(values),
                    _mm512_castsi512_si128(columns),
                );
            }
            if count > 16 {
                let (v, c) = (
                    _mm512_extracti32x4_epi32::<1>(values),
                    _mm512_extracti32x4_epi32::<1>(columns),
                );
                store(1, v, c);
            }
            if count > 32 {
                let (v, c) = (
                    _mm512_extracti32x4_epi32::<2>(values),
                    _mm512_extracti32x4_epi32::<2>(columns),
                );
                store(2, v, c);
            }
            if count > 48 {
                let (v, c) = (
                    _mm512_extracti32x4_epi32::<3>(values),
                    _mm512_extracti32x4_epi32::<3>(columns),
                );
                store(3, v, c);
            }
            n += count;
        }
        n
    }
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
        // 200 bytes: a chunk of 64 all nonzero (every group of 16 stored), one all zero, one a third
        // nonzero, and a tail of 8.
        let bytes: Vec<u8> = (0..200u32)
            .map(|i| match i {
                0..64 => (i + 1) as u8,
                64..128 => 0,
                _ => ((i * 37) % 7 * 40) as u8,
            })
            .collect();
        let (mut c1, mut v1) = (vec![0; 208], vec![0.0; 208]);
        let (mut c2, mut v2) = (vec![0; 208], vec![0.0; 208]);
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
        // 37 images of 100 pixels, picked out of order: three blocks of rows (the last completed with
        // zeros), one block of 64 pixels, two of 16 and 4 pixels byte by byte.
        let width = 100;
        let images: Vec<u8> = (0..40 * width).map(|i| (i * 7 % 251) as u8).collect();
        let indices: Vec<u32> = (0..37).map(|r| (r * 13 % 40) as u32).collect();
        let stride = 48;
        let mut out = vec![9; width * stride];
        transpose_bytes(&images, (width, &[0; 100]), &indices, &mut out, stride);
        for c in 0..width {
            for r in 0..stride {
                let want = match indices.get(r) {
                    Some(&i) => images[i as usize * width + c],
                    None if cfg!(target_arch = "x86_64") && c < 96 => 0,
                    None => 9,
                };
                assert_eq!(out[c * stride + r], want, "row {r} pixel {c}");
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
