//! A trainable tensor and how it is stored: the value, its gradient and its optimiser state side by
//! side, each with padded rows.

use ndarray::Array2;

/// A trainable tensor with its gradient and its SGD velocity stored beside it.
#[derive(Debug, Clone)]
pub struct Param {
    /// `"<layer>.weight"` or `"<layer>.bias"`.
    pub name: String,
    pub value: Array2<f32>,
    /// Overwritten by each backward pass, not accumulated.
    pub grad: Array2<f32>,
    /// The momentum buffer of [`crate::optim::Sgd`], zero at the start.
    pub velocity: Array2<f32>,
}

impl Param {
    /// `value`, with a zero gradient and velocity, all three stored with padded rows ([`padded`]).
    pub fn new(name: String, value: Array2<f32>) -> Self {
        let (rows, cols) = value.dim();
        let mut stored = padded(rows, cols);
        stored.assign(&value);
        Param {
            name,
            grad: padded(rows, cols),
            velocity: padded(rows, cols),
            value: stored,
        }
    }
}

/// A zero `rows x cols` matrix whose rows start an odd number of cache lines apart (16 floats each)
/// when wider than 16: with a power-of-two stride the rows a kernel reads together fall into a few
/// sets of the L1 cache and evict each other. Narrower rows are padded to a power of two, so that a
/// kernel can read a narrow row as one whole vector.
pub fn padded(rows: usize, cols: usize) -> Array2<f32> {
    Array2::zeros((rows, padded_stride(cols))).slice_move(ndarray::s![.., ..cols])
}

/// The row stride of [`padded`] for `cols` columns.
pub fn padded_stride(cols: usize) -> usize {
    if cols > 16 {
        16 * (cols.div_ceil(16) | 1)
    } else {
        cols.next_power_of_two()
    }
}
