//! The sparse form of a batch: rows in groups of [`GROUP`] that share one list of columns, those where
//! any of the four is nonzero, so that each row of the dense operand a kernel loads feeds four
//! multiply-adds. A row's value is 0 where only its neighbours are nonzero, and `0 · x + acc` is `acc`,
//! so the sums are those of the row's own entries.

/// Rows per group.
pub const GROUP: usize = 4;

/// Groups of an image tested for nonzeros at once by [`Grouped::fill_columns`].
const RUN: usize = 64;

/// A sparse matrix by groups of [`GROUP`] rows: group `g` (rows `4g..4g + 4`) has the entries
/// `starts[g]..ends[g]`, each a column (increasing) and the four rows' values there. Storage only
/// grows, so refilling it for every batch allocates nothing once it has seen the largest; `cols` and
/// `vals` are longer than the entries (they keep room for the most entries a batch can have, and the
/// groups of [`Grouped::fill_columns`] have gaps between them).
#[derive(Debug, Clone, Default)]
pub struct Grouped {
    pub(super) nrows: usize,
    pub(super) ncols: usize,
    /// Nonzero values in all, for the density that picks the input path.
    nonzeros: usize,
    starts: Vec<u32>,
    ends: Vec<u32>,
    pub(super) cols: Vec<u32>,
    pub(super) vals: Vec<[f32; GROUP]>,
}

/// The four bytes as floats times `scale`, and how many of them are nonzero.
#[inline(always)]
fn entry(bytes: [u8; GROUP], scale: f32) -> ([f32; GROUP], usize) {
    let word = u32::from_le_bytes(bytes);
    // Nonzero bytes: the high bit of each byte of (low seven bits + 0x7f) | byte, summed by a
    // multiply into the top byte.
    let high = (((word & 0x7f7f_7f7f) + 0x7f7f_7f7f) | word) & 0x8080_8080;
    let nonzeros = ((high >> 7).wrapping_mul(0x0101_0101) >> 24) as usize;
    (bytes.map(|p| p as f32 * scale), nonzeros)
}

impl Grouped {
    /// No rows, `ncols` columns, room for `entries` entries and one more, the storage kept.
    fn clear(&mut self, ncols: usize, entries: usize) {
        self.nrows = 0;
        self.ncols = ncols;
        self.nonzeros = 0;
        self.starts.clear();
        self.ends.clear();
        if self.cols.len() <= entries {
            self.cols.resize(entries + 1, 0);
            self.vals.resize(entries + 1, [0.0; GROUP]);
        }
    }

    /// Appends a group whose candidate entries `(column, four bytes)` come in increasing column
    /// order; those with any byte nonzero are kept, times `scale`. Each candidate is written at the
    /// next free entry and kept by moving past it only if nonzero: no branch to mispredict.
    #[inline(always)]
    fn push_group(&mut self, candidates: impl Iterator<Item = (usize, [u8; GROUP])>, scale: f32) {
        let start = self.ends.last().copied().unwrap_or(0);
        let (mut at, mut nonzeros) = (start as usize, 0);
        for (c, bytes) in candidates {
            let (vals, n) = entry(bytes, scale);
            self.cols[at] = c as u32;
            self.vals[at] = vals;
            at += (n != 0) as usize;
            nonzeros += n;
        }
        self.nonzeros += nonzeros;
        self.starts.push(start);
        self.ends.push(at as u32);
    }

    /// The matrix with rows `row(0..nrows)`, each `ncols` bytes, their nonzero bytes times `scale`
    /// (a batch's images, by image).
    pub fn fill_rows<'a>(
        &mut self,
        nrows: usize,
        ncols: usize,
        row: impl Fn(usize) -> &'a [u8],
        scale: f32,
    ) {
        self.clear(ncols, nrows.div_ceil(GROUP) * ncols);
        self.nrows = nrows;
        for g0 in (0..nrows).step_by(GROUP) {
            // The missing rows of a short last group are zeros.
            let rows: [Option<&[u8]>; GROUP] = std::array::from_fn(|r| {
                let bytes = (g0 + r < nrows).then(|| row(g0 + r));
                assert!(bytes.is_none_or(|b| b.len() == ncols), "row width");
                bytes
            });
            let bytes = |c: usize| rows.map(|r| r.map_or(0, |r| r[c]));
            self.push_group((0..ncols).map(|c| (c, bytes(c))), scale);
        }
    }

    /// The transpose of [`Grouped::fill_rows`]'s matrix: rows are the columns `0..ncols` of the
    /// `row(0..nrows)` (a batch's pixels, by pixel), four neighbouring ones to a group, each group
    /// listing the rows where any of them is nonzero, in increasing order.
    ///
    /// Each of `row(0..nrows)` is read once, in order (an image at a time, not a pixel group at a
    /// time across all images): group `g` keeps room for every row, from `g · nrows`.
    pub fn fill_columns<'a>(
        &mut self,
        nrows: usize,
        ncols: usize,
        row: impl Fn(usize) -> &'a [u8],
        scale: f32,
    ) {
        let groups = ncols.div_ceil(GROUP);
        self.clear(nrows, groups * nrows);
        self.nrows = ncols;
        self.starts.extend((0..groups).map(|g| (g * nrows) as u32));
        self.ends.extend_from_slice(&self.starts);
        let (cols, vals, ends) = (&mut self.cols[..], &mut self.vals[..], &mut self.ends[..]);
        let mut nonzeros = 0;
        let mut push = |g: usize, i: usize, bytes: [u8; GROUP]| {
            let at = ends[g] as usize;
            let (v, n) = entry(bytes, scale);
            cols[at] = i as u32;
            vals[at] = v;
            ends[g] += (n != 0) as u32;
            nonzeros += n;
        };
        for i in 0..nrows {
            let bytes = row(i);
            assert_eq!(bytes.len(), ncols, "row width");
            let (whole, rest) = bytes.as_chunks::<GROUP>();
            // Most groups of an image are zero: find the others by a mask of a run of groups at
            // a time (a vector compare), and write only those.
            for (run, groups) in whole.chunks(RUN).enumerate() {
                let mut mask = groups.iter().enumerate().fold(0u64, |m, (k, &b)| {
                    m | (((u32::from_ne_bytes(b) != 0) as u64) << k)
                });
                while mask != 0 {
                    let k = mask.trailing_zeros() as usize;
                    mask &= mask - 1;
                    push(run * RUN + k, i, groups[k]);
                }
            }
            if !rest.is_empty() {
                // The missing pixels of a short last group are zeros.
                let chunk = std::array::from_fn(|k| rest.get(k).copied().unwrap_or(0));
                push(whole.len(), i, chunk);
            }
        }
        self.nonzeros = nonzeros;
    }

    /// Group `g`'s entries, as indices into `cols` and `vals`.
    #[inline(always)]
    pub(super) fn entries(&self, g: usize) -> std::ops::Range<usize> {
        self.starts[g] as usize..self.ends[g] as usize
    }

    /// Entries in the groups `groups`.
    pub(super) fn count(&self, groups: std::ops::Range<usize>) -> usize {
        groups.map(|g| self.entries(g).len()).sum()
    }

    pub fn nrows(&self) -> usize {
        self.nrows
    }

    pub fn ncols(&self) -> usize {
        self.ncols
    }

    /// Nonzero values in all.
    pub fn nnz(&self) -> usize {
        self.nonzeros
    }

    /// Groups of [`GROUP`] rows.
    pub fn groups(&self) -> usize {
        self.starts.len()
    }

    /// Row `r`'s nonzero entries, `(column, value)`, columns increasing.
    pub fn row(&self, r: usize) -> impl Iterator<Item = (u32, f32)> + '_ {
        let range = self.entries(r / GROUP);
        self.cols[range.clone()]
            .iter()
            .zip(&self.vals[range])
            .map(move |(&c, v)| (c, v[r % GROUP]))
            .filter(|&(_, v)| v != 0.0)
    }
}
