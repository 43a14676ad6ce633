//! The sparse form of a batch: rows in groups of [`GROUP`] that share one list of columns, those where
//! any of the four is nonzero, so that each row of the dense operand a kernel loads feeds four
//! multiply-adds. A row's value is 0 where only its neighbours are nonzero, and `0 · x + acc` is `acc`,
//! so the sums are those of the row's own entries.

/// Rows per group.
pub const GROUP: usize = 4;

/// A sparse matrix by groups of [`GROUP`] rows: group `g` (rows `4g..4g + 4`) has the entries
/// `starts[g]..starts[g + 1]`, each a column (increasing) and the four rows' values there. Storage
/// only grows, so refilling it for every batch allocates nothing once it has seen the largest.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Grouped {
    pub(super) nrows: usize,
    pub(super) ncols: usize,
    /// Nonzero values in all, for the density that picks the input path.
    nonzeros: usize,
    pub(super) starts: Vec<u32>,
    pub(super) cols: Vec<u32>,
    pub(super) vals: Vec<[f32; GROUP]>,
    /// A row of zeros, standing for the missing rows of a short last group.
    zeros: Vec<u8>,
}

impl Grouped {
    /// No rows, `ncols` columns, the storage kept.
    fn clear(&mut self, ncols: usize) {
        self.nrows = 0;
        self.ncols = ncols;
        self.nonzeros = 0;
        self.starts.clear();
        self.starts.push(0);
        self.cols.clear();
        self.vals.clear();
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
        self.clear(ncols);
        self.nrows = nrows;
        let mut zeros = std::mem::take(&mut self.zeros);
        zeros.resize(ncols, 0);
        for g0 in (0..nrows).step_by(GROUP) {
            let rows: [&[u8]; GROUP] = std::array::from_fn(|r| {
                let bytes = if g0 + r < nrows {
                    row(g0 + r)
                } else {
                    &zeros[..]
                };
                assert_eq!(bytes.len(), ncols, "row width");
                bytes
            });
            // Eight columns at a time: the bytes where any of the four rows is nonzero, found from
            // one word (most of an image's border is all zeros).
            let whole = ncols / 8 * 8;
            for c0 in (0..whole).step_by(8) {
                let word =
                    |r: &[u8]| u64::from_le_bytes(r[c0..c0 + 8].try_into().expect("8 bytes"));
                let mut any = rows.iter().fold(0, |any, r| any | word(r));
                while any != 0 {
                    let c = c0 + any.trailing_zeros() as usize / 8;
                    any &= !(0xff << (8 * (c - c0)));
                    self.push(c, rows.map(|r| r[c]), scale);
                }
            }
            for c in whole..ncols {
                let bytes = rows.map(|r| r[c]);
                if bytes != [0; GROUP] {
                    self.push(c, bytes, scale);
                }
            }
            self.starts.push(self.cols.len() as u32);
        }
        self.zeros = zeros;
    }

    /// The transpose of [`Grouped::fill_rows`]'s matrix: rows are the columns `0..ncols` of the
    /// `row(0..nrows)` (a batch's pixels, by pixel), four neighbouring ones to a group, each group
    /// listing the rows where any of them is nonzero, in increasing order. `counts` is scratch.
    pub fn fill_columns<'a>(
        &mut self,
        nrows: usize,
        ncols: usize,
        row: impl Fn(usize) -> &'a [u8],
        scale: f32,
        counts: &mut Vec<u32>,
    ) {
        self.clear(nrows);
        self.nrows = ncols;
        let groups = ncols.div_ceil(GROUP);
        // Group g's four bytes of a row, zeros past its end.
        let chunk = |bytes: &[u8], g: usize| -> [u8; GROUP] {
            match bytes.get(g * GROUP..g * GROUP + GROUP) {
                Some(b) => b.try_into().expect("a group"),
                None => std::array::from_fn(|k| bytes.get(g * GROUP + k).copied().unwrap_or(0)),
            }
        };
        counts.clear();
        counts.resize(groups + 1, 0);
        let whole = ncols / GROUP;
        for i in 0..nrows {
            let bytes = row(i);
            assert_eq!(bytes.len(), ncols, "row width");
            for (b, count) in bytes.chunks_exact(GROUP).zip(&mut counts[1..]) {
                *count += (b != [0; GROUP]) as u32;
            }
            for g in whole..groups {
                counts[g + 1] += (chunk(bytes, g) != [0; GROUP]) as u32;
            }
        }
        for g in 0..groups {
            counts[g + 1] += counts[g];
        }
        self.starts.clear();
        self.starts.extend_from_slice(counts);
        let entries = counts[groups] as usize;
        self.cols.resize(entries, 0);
        self.vals.resize(entries, [0.0; GROUP]);
        for i in 0..nrows {
            let bytes = row(i);
            for g in 0..groups {
                let b = if g < whole {
                    bytes[g * GROUP..g * GROUP + GROUP]
                        .try_into()
                        .expect("a group")
                } else {
                    chunk(bytes, g)
                };
                if b != [0; GROUP] {
                    let at = counts[g] as usize;
                    counts[g] += 1;
                    self.cols[at] = i as u32;
                    self.vals[at] = b.map(|p| p as f32 * scale);
                    self.nonzeros += b.iter().filter(|&&p| p != 0).count();
                }
            }
        }
    }

    fn push(&mut self, c: usize, bytes: [u8; GROUP], scale: f32) {
        self.cols.push(c as u32);
        self.vals.push(bytes.map(|p| p as f32 * scale));
        self.nonzeros += bytes.iter().filter(|&&p| p != 0).count();
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

    pub(super) fn groups(&self) -> usize {
        self.starts.len() - 1
    }

    /// Row `r`'s nonzero entries, `(column, value)`, columns increasing.
    pub fn row(&self, r: usize) -> impl Iterator<Item = (u32, f32)> + '_ {
        let g = r / GROUP;
        let range = self.starts[g] as usize..self.starts[g + 1] as usize;
        self.cols[range.clone()]
            .iter()
            .zip(&self.vals[range])
            .map(move |(&c, v)| (c, v[r % GROUP]))
            .filter(|&(_, v)| v != 0.0)
    }
}
