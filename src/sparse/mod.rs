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

pub use gather::{ColumnSums, gather_rows, gather_rows_split_src, gather_rows_update, part_height};

/// A sparse matrix by pairs of rows: rows `2p` and `2p + 1` share one list of entries, the columns
/// where either is nonzero, `cols[starts[p]..starts[p + 1]]` (increasing), with each row's value at
/// those positions in `vals[0]` and `vals[1]` (0 where that row has none, and throughout the second
/// row of an odd count's last pair). The kernel sums both rows from one load of each source row: 16
/// independent FMA chains against 8 loads, where a row alone had 8 against 9. On MNIST 65% of a pair
/// of images' entries are nonzero (they share the middle of the frame) and 86% of a pair of neighbouring
/// pixels' (over the batch's images). One thread, 600 MNIST batches, the kernel alone: the forward
/// pass 0.85x and the gradient 0.71x the time of the kernel one row at a time; in training (`mlp
/// bench --threads 1`, medians of 6 alternated runs), where the weight comes from L3, the forward
/// 0.98x (MLP2) and 0.93x (MLP1), the gradient 0.84x and 0.83x.
///
/// Every column is below `ncols` (the kernels rely on it), which is why the fields are private and the
/// only ways in check it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SparseRows {
    ncols: usize,
    nrows: usize,
    /// The nonzero values in all, for the density that picks the input path.
    nonzeros: usize,
    starts: Vec<usize>,
    /// Storage only grows, and by doubling (Vec's growth), so after the first batches a training run
    /// allocates nothing here; sized by the data actually seen rather than for every pixel nonzero
    /// (that took 750 MB for a 60,000-image batch). Entries past `starts.last()` are left over.
    cols: Vec<u32>,
    vals: [Vec<f32>; 2],
}

impl SparseRows {
    /// An empty matrix (no rows) of `ncols` columns, keeping the allocations.
    pub fn clear(&mut self, ncols: usize) {
        self.ncols = ncols;
        self.nrows = 0;
        self.nonzeros = 0;
        self.starts.clear();
        self.starts.push(0);
    }

    /// Appends two rows, or one when `second` is `None` (then no more may follow): the entries of
    /// `first` and `second` that are not 0, scaled by `scale`.
    pub fn push_pair(&mut self, first: &[u8], second: Option<&[u8]>, scale: f32) {
        assert!(self.nrows.is_multiple_of(2), "rows after an odd last one");
        assert_eq!(first.len(), self.ncols, "row width");
        assert!(second.is_none_or(|s| s.len() == self.ncols), "row width");
        let start = self.entries();
        // Room for every column and the vector kernel's whole last vector.
        let end = start + self.ncols.next_multiple_of(16);
        if self.cols.len() < end {
            self.cols.resize(end, 0);
            self.vals[0].resize(end, 0.0);
            self.vals[1].resize(end, 0.0);
        }
        let [vals0, vals1] = &mut self.vals;
        let out = Compressed {
            cols: &mut self.cols[start..end],
            first: &mut vals0[start..end],
            second: &mut vals1[start..end],
        };
        let (written, nonzeros) = compress_nonzero([first, second.unwrap_or(&[])], scale, out);
        self.starts.push(start + written);
        self.nrows += 1 + second.is_some() as usize;
        self.nonzeros += nonzeros;
    }

    pub fn nrows(&self) -> usize {
        self.nrows
    }

    pub fn ncols(&self) -> usize {
        self.ncols
    }

    /// Nonzero values, in both rows of every pair.
    pub fn nnz(&self) -> usize {
        self.nonzeros
    }

    /// Entries in all: columns where either row of a pair is nonzero.
    pub fn entries(&self) -> usize {
        self.starts.last().copied().unwrap_or(0)
    }

    /// Where each pair of rows starts in [`Self::cols`] and [`Self::vals`]; one more entry than pairs.
    pub fn starts(&self) -> &[usize] {
        &self.starts
    }

    /// The column of every entry, pair after pair.
    pub fn cols(&self) -> &[u32] {
        &self.cols[..self.entries()]
    }

    /// The values of every entry in the first (`which` 0) or second (1) row of its pair.
    pub fn vals(&self, which: usize) -> &[f32] {
        &self.vals[which][..self.entries()]
    }

    /// Row `r`'s nonzero entries, `(column, value)`, columns increasing.
    pub fn row(&self, r: usize) -> impl Iterator<Item = (u32, f32)> + '_ {
        assert!(r < self.nrows, "row {r} of {}", self.nrows);
        let range = self.starts[r / 2]..self.starts[r / 2 + 1];
        let vals = &self.vals[r % 2][range.clone()];
        self.cols[range]
            .iter()
            .zip(vals)
            .filter(|(_, v)| **v != 0.0)
            .map(|(&c, &v)| (c, v))
    }

    /// `rows` (each `ncols` bytes) paired in order, their nonzero bytes times `scale`.
    #[cfg(test)]
    pub fn from_rows<R: AsRef<[u8]>>(rows: &[R], ncols: usize, scale: f32) -> SparseRows {
        let mut sparse = SparseRows::default();
        sparse.clear(ncols);
        for pair in rows.chunks(2) {
            sparse.push_pair(pair[0].as_ref(), pair.get(1).map(|r| r.as_ref()), scale);
        }
        sparse
    }

    /// Writes the transpose into `out`, pairing its rows as [`SparseBatch`] does (a plain reference
    /// that the batch's column form is tested against).
    #[cfg(test)]
    pub fn transpose_into(&self, out: &mut SparseRows) {
        let mut dense = vec![vec![0u8; self.nrows]; self.ncols];
        let mut values = vec![vec![0.0f32; self.nrows]; self.ncols];
        for r in 0..self.nrows {
            for (c, v) in self.row(r) {
                dense[c as usize][r] = 1;
                values[c as usize][r] = v;
            }
        }
        out.clear(self.nrows);
        for pair in dense.chunks(2) {
            out.push_pair(&pair[0], pair.get(1).map(|r| &r[..]), 1.0);
        }
        // The values themselves, at the positions the pushes found.
        for p in 0..out.starts.len() - 1 {
            for k in out.starts[p]..out.starts[p + 1] {
                let c = out.cols[k] as usize;
                out.vals[0][k] = values[2 * p][c];
                out.vals[1][k] = values.get(2 * p + 1).map_or(0.0, |row| row[c]);
            }
        }
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
                let image = |i: u32| &images[i as usize * width..][..width];
                for pair in indices.chunks(2) {
                    by_row.push_pair(image(pair[0]), pair.get(1).map(|&i| image(i)), scale);
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
                for pair in transposed[..width * padded].chunks(2 * padded) {
                    let (first, second) = pair.split_at(padded.min(pair.len()));
                    let second = (!second.is_empty()).then(|| &second[..rows]);
                    by_col.push_pair(&first[..rows], second, scale);
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

/// Where [`compress_nonzero`] writes: each entry's column and its two rows' values, each with room for
/// the rows' length rounded up to 16 (the vector version writes whole vectors past the last entry).
struct Compressed<'a> {
    cols: &'a mut [u32],
    first: &'a mut [f32],
    second: &'a mut [f32],
}

/// Writes the position of every column where `rows[0]` or `rows[1]` (empty: all zeros) is nonzero to
/// the front of `out.cols`, and the two rows' values there times `scale` to `out.first` and
/// `out.second`. Returns how many entries and how many nonzero values (in both rows) there were.
fn compress_nonzero(rows: [&[u8]; 2], scale: f32, out: Compressed) -> (usize, usize) {
    let len = rows[0].len();
    assert!(
        rows[1].is_empty() || rows[1].len() == len,
        "rows of one width"
    );
    let room = len.next_multiple_of(16);
    assert!(out.cols.len() >= room && out.first.len() >= room && out.second.len() >= room);
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx512vbmi2") {
        // SAFETY: the CPU has AVX-512 VBMI2 (and so F and BW), checked just above; the room and the
        // widths were checked above.
        return unsafe { compress_nonzero_vbmi2(rows, scale, out) };
    }
    compress_nonzero_portable(rows, scale, out)
}

fn compress_nonzero_portable(rows: [&[u8]; 2], scale: f32, out: Compressed) -> (usize, usize) {
    let (mut n, mut nonzeros) = (0, 0);
    for (col, &a) in rows[0].iter().enumerate() {
        let b = rows[1].get(col).copied().unwrap_or(0);
        // Written always, kept only when either is nonzero: no unpredictable branch per pixel.
        out.cols[n] = col as u32;
        out.first[n] = a as f32 * scale;
        out.second[n] = b as f32 * scale;
        n += (a != 0 || b != 0) as usize;
        nonzeros += (a != 0) as usize + (b != 0) as usize;
    }
    (n, nonzeros)
}

/// Sixty-four columns at a time: move the positions where either row is nonzero, and both rows' bytes
/// there, to the front of byte vectors, then widen to 32 bits only the groups of sixteen that hold
/// any (about one at MNIST's density; widening every pixel first took 2.5x the shuffle-port work).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vbmi2,popcnt")]
unsafe fn compress_nonzero_vbmi2(rows: [&[u8]; 2], scale: f32, out: Compressed) -> (usize, usize) {
    use std::arch::x86_64::*;
    let len = rows[0].len();
    let positions: [u8; 64] = std::array::from_fn(|i| i as u8);
    // SAFETY (whole body): loads read 64 bytes from `positions` or, masked to the bytes that exist,
    // from the rows (`rows[1]` only when it is not empty, then as long as `rows[0]`); group g of a
    // chunk at `chunk` is stored only when the chunk has more than 16 g entries, at n + 16 g with
    // n <= chunk - (entries before it), so every store ends by chunk + round16(entries) <= len
    // rounded up to 16, the room `compress_nonzero` checked.
    unsafe {
        let positions = _mm512_loadu_si512(positions.as_ptr().cast());
        let scale = _mm512_set1_ps(scale);
        let (mut n, mut nonzeros) = (0, 0);
        let widen =
            |bytes: __m128i| _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(bytes)), scale);
        for chunk in (0..len).step_by(64) {
            let left = len - chunk;
            let present = if left >= 64 {
                u64::MAX
            } else {
                (1 << left) - 1
            };
            let load = |row: &[u8]| {
                if row.is_empty() {
                    _mm512_setzero_si512()
                } else {
                    _mm512_maskz_loadu_epi8(present, row.as_ptr().add(chunk).cast())
                }
            };
            let (a, b) = (load(rows[0]), load(rows[1]));
            let (keep_a, keep_b) = (_mm512_test_epi8_mask(a, a), _mm512_test_epi8_mask(b, b));
            let keep = keep_a | keep_b;
            let count = keep.count_ones() as usize;
            nonzeros += (keep_a.count_ones() + keep_b.count_ones()) as usize;
            let a = _mm512_maskz_compress_epi8(keep, a);
            let b = _mm512_maskz_compress_epi8(keep, b);
            let columns = _mm512_maskz_compress_epi8(keep, positions);
            let base = _mm512_set1_epi32(chunk as i32);
            let mut store = |g: usize, a: __m128i, b: __m128i, columns: __m128i| {
                let at = n + 16 * g;
                _mm512_storeu_ps(out.first.as_mut_ptr().add(at), widen(a));
                _mm512_storeu_ps(out.second.as_mut_ptr().add(at), widen(b));
                let c = _mm512_add_epi32(_mm512_cvtepu8_epi32(columns), base);
                _mm512_storeu_si512(out.cols.as_mut_ptr().add(at).cast(), c);
            };
            if count > 0 {
                store(
                    0,
                    _mm512_castsi512_si128(a),
                    _mm512_castsi512_si128(b),
                    _mm512_castsi512_si128(columns),
                );
            }
            if count > 16 {
                store(
                    1,
                    _mm512_extracti32x4_epi32::<1>(a),
                    _mm512_extracti32x4_epi32::<1>(b),
                    _mm512_extracti32x4_epi32::<1>(columns),
                );
            }
            if count > 32 {
                store(
                    2,
                    _mm512_extracti32x4_epi32::<2>(a),
                    _mm512_extracti32x4_epi32::<2>(b),
                    _mm512_extracti32x4_epi32::<2>(columns),
                );
            }
            if count > 48 {
                store(
                    3,
                    _mm512_extracti32x4_epi32::<3>(a),
                    _mm512_extracti32x4_epi32::<3>(b),
                    _mm512_extracti32x4_epi32::<3>(columns),
                );
            }
            n += count;
        }
        (n, nonzeros)
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
        (SparseRows::from_rows(&dense, 9, 0.5), dense)
    }

    fn to_dense(s: &SparseRows) -> Vec<Vec<f32>> {
        (0..s.nrows())
            .map(|r| {
                let mut row = vec![0.0; s.ncols()];
                for (c, v) in s.row(r) {
                    row[c as usize] = v;
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
        // A pair's entries are the columns where either row is nonzero; 23 rows end on a lone one.
        assert_eq!(sparse.starts().len(), 13);
        for p in 0..12 {
            let range = sparse.starts()[p]..sparse.starts()[p + 1];
            let union: Vec<u32> = (0..9u32)
                .filter(|&c| {
                    dense[2 * p][c as usize] != 0
                        || dense.get(2 * p + 1).is_some_and(|r| r[c as usize] != 0)
                })
                .collect();
            assert_eq!(sparse.cols()[range.clone()], union[..], "pair {p}");
            if p == 11 {
                assert!(sparse.vals(1)[range].iter().all(|&v| v == 0.0));
            }
        }
    }

    #[test]
    fn the_vector_and_portable_compressions_agree() {
        // 200 bytes: a chunk of 64 all nonzero (every group of 16 stored), one all zero, one a third
        // nonzero, and a tail of 8; the second row nonzero where the first is not, and some of where
        // it is.
        let first: Vec<u8> = (0..200u32)
            .map(|i| match i {
                0..64 => (i + 1) as u8,
                64..128 => 0,
                _ => ((i * 37) % 7 * 40) as u8,
            })
            .collect();
        let second: Vec<u8> = (0..200u32)
            .map(|i| if i % 3 == 0 { (i % 251) as u8 } else { 0 })
            .collect();
        for rows in [[&first[..], &second[..]], [&first[..], &[][..]]] {
            let mut buffers: [_; 2] =
                std::array::from_fn(|_| (vec![0u32; 208], vec![0.0f32; 208], vec![0.0f32; 208]));
            let [(c1, f1, s1), (c2, f2, s2)] = &mut buffers;
            let (n1, nz1) = compress_nonzero(
                rows,
                0.25,
                Compressed {
                    cols: c1,
                    first: f1,
                    second: s1,
                },
            );
            let (n2, nz2) = compress_nonzero_portable(
                rows,
                0.25,
                Compressed {
                    cols: c2,
                    first: f2,
                    second: s2,
                },
            );
            assert_eq!((n1, nz1), (n2, nz2));
            assert_eq!(
                (&c1[..n1], &f1[..n1], &s1[..n1]),
                (&c2[..n2], &f2[..n2], &s2[..n2])
            );
            let either = |c: usize| first[c] != 0 || rows[1].get(c).is_some_and(|&p| p != 0);
            assert_eq!(n1, (0..200).filter(|&c| either(c)).count());
            let count = |r: &[u8]| r.iter().filter(|&&p| p != 0).count();
            assert_eq!(nz1, count(rows[0]) + count(rows[1]));
        }
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
        let mut by_row = SparseRows::from_rows(&images, 9, 0.5);
        let mut transposed = SparseRows::default();
        by_row.transpose_into(&mut transposed);
        assert_eq!(to_dense(&batch.by_row), to_dense(&by_row));
        assert_eq!(to_dense(&batch.by_col), to_dense(&transposed));
        assert_eq!(batch.by_col.starts(), transposed.starts());
        assert_eq!(batch.by_col.cols(), transposed.cols());
        // Refilled with fewer images, nothing of the larger batch is left.
        batch.fill(&flat, 9, &[1, 2, 3], 0.5);
        by_row = SparseRows::from_rows(&images[1..4], 9, 0.5);
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
