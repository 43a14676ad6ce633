//! Sparse rows (CSR) and the two kernels the sparse input path needs.
//!
//! About 81% of MNIST's pixels are 0, so the first Linear layer can skip them: with the input written as
//! `x = S + offset` (`S` the sparse pixels `p / 255`, `offset = -128/255` everywhere),
//!
//! ```text
//! x W  = S W  + offset · 1 · colsum(W)ᵀ           forward
//! xᵀ D = Sᵀ D + offset · 1 · colsum(D)ᵀ           weight gradient (colsum(D) is the bias gradient)
//! ```
//! Both go by [`Squares`], four neighbouring pixels at a time. The gradient is [`gather_squares`]: each
//! output row (a pixel's) is a fixed row plus a weighted sum of rows of `D`, one per image with that
//! pixel nonzero. The forward pass is [`scatter_squares`]: the weight rows of a square's pixels added
//! into the output row of every image that has any of them.

use std::ops::Range;

mod gather;
mod scatter;

pub use gather::{ColumnSums, gather_squares, gather_squares_update, part_height};
pub use scatter::scatter_squares;

/// A sparse matrix by groups of `N` rows: rows `N g .. N g + N` share one list of entries, the columns
/// where any is nonzero, `cols[starts[g]..starts[g + 1]]` (increasing), with each row's value at those
/// positions in `vals[0]` to `vals[N - 1]` (0 where that row has none, and throughout the missing rows
/// of a short last group). [`SparseBatch`] makes squares of pixels (`N = 4`) for both kernels; pairs
/// (`N = 2`) were their form before the squares.
///
/// Every column is below `ncols` (the kernels rely on it), which is why the fields are private and the
/// only ways in check it.
#[derive(Debug, Clone, PartialEq)]
pub struct SparseRows<const N: usize> {
    ncols: usize,
    nrows: usize,
    /// The nonzero values in all, for the density that picks the input path.
    nonzeros: usize,
    starts: Vec<usize>,
    /// Storage only grows, and by doubling (Vec's growth), so after the first batches a training run
    /// allocates nothing here; sized by the data actually seen rather than for every pixel nonzero
    /// (that took 750 MB for a 60,000-image batch). Entries past `starts.last()` are left over.
    cols: Vec<u32>,
    vals: [Vec<f32>; N],
}

impl<const N: usize> Default for SparseRows<N> {
    fn default() -> Self {
        SparseRows {
            ncols: 0,
            nrows: 0,
            nonzeros: 0,
            starts: Vec::new(),
            cols: Vec::new(),
            vals: std::array::from_fn(|_| Vec::new()),
        }
    }
}

impl<const N: usize> SparseRows<N> {
    /// An empty matrix (no rows) of `ncols` columns, keeping the allocations.
    pub fn clear(&mut self, ncols: usize) {
        self.ncols = ncols;
        self.nrows = 0;
        self.nonzeros = 0;
        self.starts.clear();
        self.starts.push(0);
    }

    /// Appends a group of `N` rows, or fewer (then no more may follow): the entries of `rows` that are
    /// not 0, scaled by `scale`. An empty row stands for a row of zeros.
    pub fn push_group(&mut self, rows: &[&[u8]], scale: f32) {
        assert!(self.nrows.is_multiple_of(N), "rows after a short group");
        assert!((1..=N).contains(&rows.len()), "1 to {N} rows in a group");
        assert!(
            rows.iter().all(|r| r.is_empty() || r.len() == self.ncols),
            "row width"
        );
        let start = self.entries();
        // Room for every column and the vector kernel's whole last vector.
        let end = start + self.ncols.next_multiple_of(16);
        if self.cols.len() < end {
            self.cols.resize(end, 0);
            self.vals.iter_mut().for_each(|v| v.resize(end, 0.0));
        }
        let mut vals = self.vals.each_mut().map(|v| &mut v[start..end]).into_iter();
        let out = Compressed {
            cols: &mut self.cols[start..end],
            vals: std::array::from_fn(|_| vals.next().expect("N value rows")),
        };
        let group: [&[u8]; N] = std::array::from_fn(|k| rows.get(k).copied().unwrap_or(&[]));
        let (written, nonzeros) = compress_nonzero(group, self.ncols, scale, out);
        self.starts.push(start + written);
        self.nrows += rows.len();
        self.nonzeros += nonzeros;
    }

    pub fn nrows(&self) -> usize {
        self.nrows
    }

    pub fn ncols(&self) -> usize {
        self.ncols
    }

    /// Nonzero values, in all rows of every group.
    pub fn nnz(&self) -> usize {
        self.nonzeros
    }

    /// Entries in all: columns where any row of a group is nonzero.
    pub fn entries(&self) -> usize {
        self.starts.last().copied().unwrap_or(0)
    }

    /// Where each group of rows starts in [`Self::cols`] and [`Self::vals`]; one more entry than groups.
    pub fn starts(&self) -> &[usize] {
        &self.starts
    }

    /// The column of every entry, group after group.
    pub fn cols(&self) -> &[u32] {
        &self.cols[..self.entries()]
    }

    /// The values of every entry in row `which` (0 to `N - 1`) of its group.
    pub fn vals(&self, which: usize) -> &[f32] {
        &self.vals[which][..self.entries()]
    }

    /// Row `r`'s nonzero entries, `(column, value)`, columns increasing.
    pub fn row(&self, r: usize) -> impl Iterator<Item = (u32, f32)> + '_ {
        assert!(r < self.nrows, "row {r} of {}", self.nrows);
        let range = self.starts[r / N]..self.starts[r / N + 1];
        let vals = &self.vals[r % N][range.clone()];
        self.cols[range]
            .iter()
            .zip(vals)
            .filter(|(_, v)| **v != 0.0)
            .map(|(&c, &v)| (c, v))
    }

    /// `rows` (each `ncols` bytes) grouped in order, their nonzero bytes times `scale`.
    #[cfg(test)]
    pub fn from_rows<R: AsRef<[u8]>>(rows: &[R], ncols: usize, scale: f32) -> Self {
        let mut sparse = Self::default();
        sparse.clear(ncols);
        for group in rows.chunks(N) {
            let group: Vec<&[u8]> = group.iter().map(|r| r.as_ref()).collect();
            sparse.push_group(&group, scale);
        }
        sparse
    }
}

/// A batch of byte images in sparse form: by pixels, in squares of four (see [`Squares`]), for both
/// the forward pass and the weight gradient. Made from the batch's bytes transposed (a counting sort
/// from the images' form would scatter its writes over every pixel: 3.7 ns an entry, measured),
/// sixteen by sixteen in vector registers, each square's four pixels' bytes then compressed together.
#[derive(Debug, Clone, Default)]
pub struct SparseBatch {
    pub squares: Squares,
    /// The batch's bytes by pixel: `width` rows of `rows` rounded up to 16.
    transposed: Vec<u8>,
    /// One image of zeros, completing the batch's last block of sixteen images.
    zeros: Vec<u8>,
}

/// A batch's pixels by groups of four that neighbour in the image, `pixels[g]` the pixels of group
/// `g` (rows `4g..4g + 4` of `groups`), [`ABSENT`] where a square runs off the image. A 2 x 2 square's
/// pixels are nonzero in mostly the same images: on MNIST a square's entries hold 1.34 nonzero values
/// for every one, against 1.53 for a pair of images (the form the forward pass had before) and 1.48
/// for four pixels in a row. The forward pass keeps a square's four weight rows in registers and
/// adds them into each image's output row that has any of the four ([`scatter_squares`]); the
/// gradient sums each square's four rows from one load of each image's row ([`gather_squares`]).
#[derive(Debug, Clone, Default)]
pub struct Squares {
    pub groups: SparseRows<4>,
    pub pixels: Vec<[u32; 4]>,
    /// The image shape `pixels` was made for: `(width, line)`.
    shape: (usize, usize),
    /// Pixels per row of the squares' image: `line`, or `width` when `line` does not divide it.
    line: usize,
}

/// A member of a square outside the image.
pub const ABSENT: u32 = u32::MAX;

impl Squares {
    /// `pixels` for images of `width` pixels in rows of `line`: squares two rows by two pixels, row by
    /// row of squares. When `line` does not divide `width`, the image is taken as one row, and its
    /// "squares" are pairs of pixels.
    fn shape_for(&mut self, width: usize, line: usize) {
        if self.shape == (width, line) {
            return;
        }
        self.shape = (width, line);
        let line = if line > 0 && width.is_multiple_of(line) {
            line
        } else {
            width
        };
        self.line = line;
        let height = width / line.max(1);
        let at = |r: usize, c: usize| {
            if r < height && c < line {
                (r * line + c) as u32
            } else {
                ABSENT
            }
        };
        self.pixels.clear();
        for r in (0..height).step_by(2) {
            for c in (0..line).step_by(2) {
                self.pixels
                    .push([at(r, c), at(r, c + 1), at(r + 1, c), at(r + 1, c + 1)]);
            }
        }
    }

    /// The pixels the squares cover: the image's width.
    pub fn pixel_count(&self) -> usize {
        self.shape.0
    }

    /// Pixels in a band of squares (two rows of the image): a band's squares hold exactly its pixels.
    pub fn band_rows(&self) -> usize {
        (2 * self.line).max(1)
    }

    /// The squares that hold any of the pixels `pixels`: those of the bands the range touches.
    pub fn squares_holding(&self, pixels: Range<usize>) -> Range<usize> {
        let per_band = self.line.div_ceil(2);
        let band = self.band_rows();
        let end = (pixels.end.div_ceil(band) * per_band).min(self.pixels.len());
        (pixels.start / band * per_band).min(end)..end
    }
}

impl SparseBatch {
    /// Builds the squares from the images `indices` of `images` (each `width` bytes, in rows of `line`
    /// pixels), keeping the nonzero pixels times `scale`.
    pub fn fill(
        &mut self,
        images: &[u8],
        (width, line): (usize, usize),
        indices: &[u32],
        scale: f32,
    ) {
        let SparseBatch {
            squares,
            transposed,
            zeros,
        } = self;
        let rows = indices.len();
        let padded = rows.next_multiple_of(16);
        zeros.resize(width, 0);
        // Every byte read below is written first: no need to clear.
        if transposed.len() < width * padded {
            transposed.resize(width * padded, 0);
        }
        transpose_bytes(images, (width, zeros), indices, transposed, padded);
        squares.shape_for(width, line);
        let pixel = |p: u32| match p {
            ABSENT => &[][..],
            p => &transposed[p as usize * padded..][..rows],
        };
        let Squares { groups, pixels, .. } = squares;
        groups.clear(rows);
        for square in pixels.iter() {
            groups.push_group(&square.map(pixel), scale);
        }
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

/// Where [`compress_nonzero`] writes: each entry's column and its rows' values, each with room for
/// the rows' length rounded up to 16 (the vector version writes whole vectors past the last entry).
struct Compressed<'a, const N: usize> {
    cols: &'a mut [u32],
    vals: [&'a mut [f32]; N],
}

/// Writes the position of every column where any of `rows` (each `len` bytes, or empty: all zeros) is
/// nonzero to the front of `out.cols`, and the rows' values there times `scale` to `out.vals`.
/// Returns how many entries and how many nonzero values (in all rows) there were.
fn compress_nonzero<const N: usize>(
    rows: [&[u8]; N],
    len: usize,
    scale: f32,
    out: Compressed<N>,
) -> (usize, usize) {
    assert!(
        rows.iter().all(|r| r.is_empty() || r.len() == len),
        "rows of one width"
    );
    let room = len.next_multiple_of(16);
    assert!(out.cols.len() >= room && out.vals.iter().all(|v| v.len() >= room));
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx512vbmi2") {
        // SAFETY: the CPU has AVX-512 VBMI2 (and so F and BW), checked just above; the room and the
        // widths were checked above.
        return unsafe { compress_nonzero_vbmi2(rows, len, scale, out) };
    }
    compress_nonzero_portable(rows, len, scale, out)
}

fn compress_nonzero_portable<const N: usize>(
    rows: [&[u8]; N],
    len: usize,
    scale: f32,
    mut out: Compressed<N>,
) -> (usize, usize) {
    let (mut n, mut nonzeros) = (0, 0);
    for col in 0..len {
        let bytes = rows.map(|r| r.get(col).copied().unwrap_or(0));
        // Written always, kept only when any is nonzero: no unpredictable branch per pixel.
        out.cols[n] = col as u32;
        for (vals, &b) in out.vals.iter_mut().zip(&bytes) {
            vals[n] = b as f32 * scale;
        }
        let present = bytes.iter().filter(|&&b| b != 0).count();
        n += (present > 0) as usize;
        nonzeros += present;
    }
    (n, nonzeros)
}

/// Sixty-four columns at a time: move the positions where any row is nonzero, and the rows' bytes
/// there, to the front of byte vectors, then widen to 32 bits only the groups of sixteen that hold
/// any (about one at MNIST's density; widening every pixel first took 2.5x the shuffle-port work).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vbmi2,popcnt")]
unsafe fn compress_nonzero_vbmi2<const N: usize>(
    rows: [&[u8]; N],
    len: usize,
    scale: f32,
    out: Compressed<N>,
) -> (usize, usize) {
    use std::arch::x86_64::*;
    let positions: [u8; 64] = std::array::from_fn(|i| i as u8);
    let Compressed { cols, mut vals } = out;
    // SAFETY (whole body): loads read 64 bytes from `positions` or, masked to the bytes that exist,
    // from the rows that are not empty (then `len` long); group g of a chunk at `chunk` is stored
    // only when the chunk has more than 16 g entries, at n + 16 g with n <= chunk - (entries before
    // it), so every store ends by chunk + round16(entries) <= len rounded up to 16, the room
    // `compress_nonzero` checked.
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
            let bytes = rows.map(|row| {
                if row.is_empty() {
                    _mm512_setzero_si512()
                } else {
                    _mm512_maskz_loadu_epi8(present, row.as_ptr().add(chunk).cast())
                }
            });
            let masks = bytes.map(|b| _mm512_test_epi8_mask(b, b));
            let keep = masks.iter().fold(0, |keep, m| keep | m);
            let count = keep.count_ones() as usize;
            nonzeros += masks.iter().map(|m| m.count_ones() as usize).sum::<usize>();
            let bytes = bytes.map(|b| _mm512_maskz_compress_epi8(keep, b));
            let columns = _mm512_maskz_compress_epi8(keep, positions);
            let base = _mm512_set1_epi32(chunk as i32);
            macro_rules! store {
                ($g:literal, $lane:expr) => {
                    if count > 16 * $g {
                        let at = n + 16 * $g;
                        for (v, b) in vals.iter_mut().zip(&bytes) {
                            _mm512_storeu_ps(v.as_mut_ptr().add(at), widen($lane(*b)));
                        }
                        let c = _mm512_add_epi32(_mm512_cvtepu8_epi32($lane(columns)), base);
                        _mm512_storeu_si512(cols.as_mut_ptr().add(at).cast(), c);
                    }
                };
            }
            store!(0, _mm512_castsi512_si128);
            store!(1, _mm512_extracti32x4_epi32::<1>);
            store!(2, _mm512_extracti32x4_epi32::<2>);
            store!(3, _mm512_extracti32x4_epi32::<3>);
            n += count;
        }
        (n, nonzeros)
    }
}

/// What the kernels' tests share: a batch and its dense form, and a comparison within a tolerance.
#[cfg(test)]
mod fixtures {
    use super::SparseBatch;
    use ndarray::Array2;

    /// `images` images of `width` pixels in rows of `line` (squares run off the right and the bottom
    /// when those are odd), about a third of the pixels nonzero, picked out of order, as a sparse batch
    /// (values `p / 4`), and the dense `S` it stands for.
    pub fn batch(images: usize, width: usize, line: usize) -> (SparseBatch, Array2<f32>) {
        let bytes: Vec<u8> = (0..images * width)
            .map(|i| if i % 3 == 0 { (i * 7 % 251) as u8 } else { 0 })
            .collect();
        let picked: Vec<u32> = (0..images).map(|r| ((r * 5) % images) as u32).collect();
        let mut sparse = SparseBatch::default();
        sparse.fill(&bytes, (width, line), &picked, 0.25);
        let dense = Array2::from_shape_fn((images, width), |(r, c)| {
            bytes[picked[r] as usize * width + c] as f32 * 0.25
        });
        (sparse, dense)
    }

    /// Every result in `got` (each named) within 1e-4 (relative, or absolute below 1) of `want`.
    pub fn assert_close(got: &[(&Array2<f32>, &str)], want: &Array2<f32>, case: &str) {
        for (got, name) in got {
            for (a, b) in got.iter().zip(want) {
                assert!(
                    (a - b).abs() <= 1e-4 * b.abs().max(1.0),
                    "{name}, {case}: {a} vs {b}"
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 23 x 9 byte matrix with about a third of its entries nonzero.
    fn sample() -> (SparseRows<2>, Vec<Vec<u8>>) {
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
        (SparseRows::<2>::from_rows(&dense, 9, 0.5), dense)
    }

    fn to_dense<const N: usize>(s: &SparseRows<N>) -> Vec<Vec<f32>> {
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

    /// Both kernels on `rows`, which must agree.
    fn compress_both<const N: usize>(rows: [&[u8]; N], len: usize) -> (usize, usize) {
        let buffers = || (vec![0u32; 208], std::array::from_fn(|_| vec![0.0f32; 208]));
        let (mut c1, mut v1): (Vec<u32>, [Vec<f32>; N]) = buffers();
        let (mut c2, mut v2): (Vec<u32>, [Vec<f32>; N]) = buffers();
        fn out<'a, const N: usize>(
            cols: &'a mut [u32],
            vals: &'a mut [Vec<f32>; N],
        ) -> Compressed<'a, N> {
            Compressed {
                cols,
                vals: vals.each_mut().map(|v| &mut v[..]),
            }
        }
        let (n1, nz1) = compress_nonzero(rows, len, 0.25, out(&mut c1, &mut v1));
        let (n2, nz2) = compress_nonzero_portable(rows, len, 0.25, out(&mut c2, &mut v2));
        assert_eq!((n1, nz1), (n2, nz2));
        assert_eq!(c1[..n1], c2[..n2]);
        for (a, b) in v1.iter().zip(&v2) {
            assert_eq!(a[..n1], b[..n2]);
        }
        (n1, nz1)
    }

    #[test]
    fn the_vector_and_portable_compressions_agree() {
        // 200 bytes: a chunk of 64 all nonzero (every group of 16 stored), one all zero, one a third
        // nonzero, and a tail of 8; the other rows nonzero where the first is not, and some of where
        // it is.
        let first: Vec<u8> = (0..200u32)
            .map(|i| match i {
                0..64 => (i + 1) as u8,
                64..128 => 0,
                _ => ((i * 37) % 7 * 40) as u8,
            })
            .collect();
        let every = |k: u32| -> Vec<u8> {
            (0..200u32)
                .map(|i| if i % k == 0 { (i % 251) as u8 } else { 0 })
                .collect()
        };
        let (second, third) = (every(3), every(5));
        let count = |r: &[u8]| r.iter().filter(|&&p| p != 0).count();
        let any = |rows: &[&[u8]], c: usize| rows.iter().any(|r| r.get(c).is_some_and(|&p| p != 0));
        for rows in [[&first[..], &second[..]], [&first[..], &[][..]]] {
            let (n, nonzeros) = compress_both(rows, 200);
            assert_eq!(n, (0..200).filter(|&c| any(&rows, c)).count());
            assert_eq!(nonzeros, count(rows[0]) + count(rows[1]));
        }
        let rows = [&first[..], &[][..], &second[..], &third[..]];
        let (n, nonzeros) = compress_both(rows, 200);
        assert_eq!(n, (0..200).filter(|&c| any(&rows, c)).count());
        assert_eq!(nonzeros, rows.iter().map(|r| count(r)).sum::<usize>());
    }

    #[test]
    fn squares_cover_every_pixel_once_with_its_values() {
        // Images of 3 x 5 pixels (odd both ways: squares run off the right and the bottom), and of 15
        // pixels in one row when the shape is not known.
        let images: Vec<Vec<u8>> = (0..37)
            .map(|r: usize| (0..15).map(|c| ((r * 7 + c * 3) % 5 * 60) as u8).collect())
            .collect();
        let flat: Vec<u8> = images.concat();
        let picked: Vec<u32> = (0..37).map(|r| (r * 11 % 37) as u32).collect();
        for line in [5, 15, 4] {
            let mut batch = SparseBatch::default();
            batch.fill(&flat, (15, line), &picked, 0.5);
            let squares = &batch.squares;
            let mut seen = vec![0; 15];
            let dense = to_dense(&squares.groups);
            for (g, pixels) in squares.pixels.iter().enumerate() {
                for (k, &p) in pixels.iter().enumerate() {
                    let values = &dense[4 * g + k];
                    if p == ABSENT {
                        assert!(values.iter().all(|&v| v == 0.0));
                        continue;
                    }
                    seen[p as usize] += 1;
                    for (r, &i) in picked.iter().enumerate() {
                        assert_eq!(values[r], images[i as usize][p as usize] as f32 * 0.5);
                    }
                }
            }
            assert_eq!(seen, vec![1; 15], "line {line}");
            let squares_of = |line: usize| (15 / line).div_ceil(2) * line.div_ceil(2);
            let expected = if line == 4 {
                squares_of(15)
            } else {
                squares_of(line)
            };
            assert_eq!(squares.pixels.len(), expected, "line {line}");
        }
        // A square's pixels in 3 x 5 images: two rows by two pixels.
        let mut batch = SparseBatch::default();
        batch.fill(&flat, (15, 5), &picked, 0.5);
        // Refilled with fewer images, nothing of the larger batch is left.
        let mut refilled = batch.clone();
        refilled.fill(&flat, (15, 5), &picked[..3], 0.5);
        let mut fresh = SparseBatch::default();
        fresh.fill(&flat, (15, 5), &picked[..3], 0.5);
        let (a, b) = (&refilled.squares.groups, &fresh.squares.groups);
        assert_eq!(
            (a.nrows(), a.ncols(), a.nnz()),
            (b.nrows(), b.ncols(), b.nnz())
        );
        assert_eq!((a.starts(), a.cols()), (b.starts(), b.cols()));
        assert_eq!(to_dense(a), to_dense(b));
        assert_eq!(batch.squares.pixels[0], [0, 1, 5, 6]);
        assert_eq!(batch.squares.pixels[2], [4, ABSENT, 9, ABSENT]);
        assert_eq!(batch.squares.pixels[3], [10, 11, ABSENT, ABSENT]);
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
}
