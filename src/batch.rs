//! The input batch: a network's first layer sees raw pixels and how they are normalised, not just an f32
//! matrix, so that a Linear layer can skip the zero pixels exactly (see [`crate::kernels::Grouped`]).
//!
//! Pixels `p` are normalised as the reference framework does, `x = (p - 128) / 255`, which is
//! `p / 255 + OFFSET` with `OFFSET = -128/255`. A batch holds `x` dense or, when few enough pixels are
//! nonzero for the sparse path to win, the nonzero `p / 255` by rows (and by columns, for the gradient).

use ndarray::{Array2, ArrayView2, s};
use serde::Serialize;

use crate::data::Split;
use crate::kernels::Grouped;

/// The constant part of every normalised pixel: `x = p / 255 + OFFSET`.
pub const OFFSET: f32 = -128.0 / 255.0;

/// Share of nonzero pixels below which the first layer takes the sparse path: the sparse path's work
/// grows with the density and the dense path's does not (the break-even is measured in
/// docs/performance.md). MNIST is about 0.19; Fashion-MNIST, about 0.5, takes the dense path.
pub const SPARSE_MAX_DENSITY: f64 = 0.35;

/// Which path the first layer takes.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, serde::Deserialize, clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum InputPath {
    /// Sparse when under 35% of a batch's pixels are nonzero (as in MNIST), dense otherwise
    #[default]
    Auto,
    /// Every pixel through the dense product
    Dense,
    /// Only the nonzero pixels, whatever the density
    Sparse,
}

/// The sparse form of a batch: `x = pixels + OFFSET`, with the nonzero `pixels` (`p / 255`) by pixel,
/// four neighbouring pixels to a group: what the forward pass and the weight gradient both read.
pub struct SparseInput<'a> {
    pub by_pixel: &'a Grouped,
}

pub struct InputBatch {
    /// Allocated when a batch first takes the dense path (a sparse run never touches it: 3 MB for
    /// 1,000 MNIST images, which the 64-byte-aligned allocation writes as zeros at once).
    dense: Array2<f32>,
    capacity: usize,
    width: usize,
    labels: Vec<u8>,
    by_pixel: Grouped,
    rows: usize,
    path: InputPath,
    sparse: bool,
}

/// Hints the CPU to bring `bytes` into cache; a no-op elsewhere than x86-64.
fn prefetch(bytes: &[u8]) {
    #[cfg(target_arch = "x86_64")]
    for line in bytes.chunks(64) {
        // SAFETY: prefetching is only a hint; the address is inside `bytes`.
        unsafe {
            std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(
                line.as_ptr().cast(),
            )
        };
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = bytes;
}

impl InputBatch {
    /// A batch of up to `capacity` images of `width` pixels.
    pub fn new(capacity: usize, width: usize, path: InputPath) -> Self {
        InputBatch {
            dense: Array2::zeros((0, width)),
            capacity,
            width,
            labels: Vec::with_capacity(capacity),
            by_pixel: Grouped::default(),
            rows: 0,
            path,
            sparse: false,
        }
    }

    /// A batch of already normalised inputs, always taking the dense path (for tests and tools).
    pub fn from_dense(x: Array2<f32>, labels: Vec<u8>) -> Self {
        assert_eq!(x.nrows(), labels.len(), "one label per row");
        InputBatch {
            rows: x.nrows(),
            capacity: x.nrows(),
            width: x.ncols(),
            dense: x,
            labels,
            path: InputPath::Dense,
            ..InputBatch::new(0, 0, InputPath::Dense)
        }
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    pub fn width(&self) -> usize {
        self.width
    }

    /// Loads images `indices` of `split` (at most `capacity` of them) and their labels, in the dense form
    /// or, when the batch takes the sparse path, in the sparse form only.
    pub fn fill(&mut self, split: &Split, indices: &[u32]) {
        let (n, width) = (indices.len(), split.width);
        assert!(
            n <= self.capacity() && width == self.width(),
            "batch of {n}x{width} does not fit"
        );
        self.rows = n;
        self.labels.clear();
        self.labels
            .extend(indices.iter().map(|&i| split.labels[i as usize]));
        let image = |i: u32| &split.images[i as usize * width..][..width];
        self.sparse = self.path != InputPath::Dense;
        // Shuffled images are scattered over the data set: ask for all their cache lines at once
        // (building the batch is otherwise bound by memory latency).
        for &i in indices {
            prefetch(image(i));
        }
        if self.sparse {
            let image = |r: usize| image(indices[r]);
            self.by_pixel.fill_columns(n, width, image, 1.0 / 255.0);
            let nnz = self.by_pixel.nnz() as f64;
            let dense_enough = nnz >= SPARSE_MAX_DENSITY * (n * width) as f64;
            self.sparse = !(self.path == InputPath::Auto && dense_enough);
        }
        if self.sparse {
            return;
        }
        if self.dense.nrows() < self.capacity {
            self.dense = Array2::zeros((self.capacity, width));
        }
        let dense = self.dense.as_slice_mut().expect("contiguous batch");
        for (row, &i) in dense.chunks_exact_mut(width).zip(indices) {
            for (x, &p) in row.iter_mut().zip(image(i)) {
                *x = (p as f32 - 128.0) / 255.0;
            }
        }
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    pub fn labels(&self) -> &[u8] {
        &self.labels
    }

    /// The normalised inputs, `rows x width`. Only a batch on the dense path has them: a network whose
    /// first layer cannot read the sparse form must use [`InputPath::Dense`].
    pub fn dense(&self) -> ArrayView2<'_, f32> {
        assert!(!self.sparse, "a sparse batch has no dense form");
        self.dense.slice(s![..self.rows, ..])
    }

    /// The sparse form, when this batch takes the sparse path.
    pub fn sparse(&self) -> Option<SparseInput<'_>> {
        self.sparse.then_some(SparseInput {
            by_pixel: &self.by_pixel,
        })
    }
}
