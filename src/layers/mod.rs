//! The building blocks of a network: a [`Layer`] maps an `N x IN` batch to an `N x OUT` batch and back.
//!
//! Layers do not own their activations: the [`Network`](crate::network::Network) keeps every layer's
//! output and output gradient in buffers allocated once, and hands each layer views of them. So a layer
//! is just its parameters and the maths, and `backward` receives what `forward` produced.

mod activation;
mod linear;

use ndarray::{Array2, ArrayView2, ArrayViewMut2};

use crate::batch::InputBatch;
use crate::optim::Sgd;
use crate::parallel::finish_rows;

pub use activation::{Activation, Relu, Sigmoid};
pub use linear::Linear;

/// A trainable tensor with its gradient and its SGD velocity stored beside it.
#[derive(Debug, Clone)]
pub struct Param {
    /// `"<layer>.weight"` or `"<layer>.bias"`.
    pub name: String,
    pub value: Array2<f32>,
    /// Overwritten by each `backward`, not accumulated.
    pub grad: Array2<f32>,
    /// Momentum buffer of [`Sgd`], zero at the start.
    pub velocity: Array2<f32>,
}

impl Param {
    /// `value`, with a zero gradient and velocity, all three stored with padded rows (see `padded` below).
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

/// A zero `rows x cols` matrix whose rows start an odd number of cache lines apart (16 floats each),
/// when wider than 16: with the allocator's 64-byte alignment every row starts on a cache line, so the
/// kernels' vector loads never straddle two, and the odd stride spreads a block of rows over every set
/// of the L1 cache. With a power-of-two stride (512 floats, 2 KiB) the 64 rows of the sparse kernel's
/// source block fell into a quarter of the sets and evicted each other: on MLP2's 784 x 500 first
/// layer the kernel ran at 1.5-1.6 G vector FMAs a second with rows 500 or 512 floats apart, 1.9-2.0
/// with 528 (one thread, the 600 batches of an epoch; MLP1's 256 or 272: 2.0 either way). Used for
/// weights and the network's activation buffers (the gradient's source).
pub(crate) fn padded(rows: usize, cols: usize) -> Array2<f32> {
    Array2::zeros((rows, padded_stride(cols))).slice_move(ndarray::s![.., ..cols])
}

/// The row stride of [`padded`] for `cols` columns: an odd number of 16-float cache lines, or `cols`
/// itself for 16 or fewer. Also for the kernels' own buffers (`parallel::sum_in_halves`' partial sums,
/// `linalg`'s copy of `Wᵀ`).
pub(crate) fn padded_stride(cols: usize) -> usize {
    if cols > 16 {
        16 * (cols.div_ceil(16) | 1)
    } else {
        cols
    }
}

pub trait Layer: Send {
    /// The layer's NAME from the spec.
    fn name(&self) -> &str;

    /// Output width for an input of width `inp` (activations keep the width).
    fn out_width(&self, inp: usize) -> usize;

    /// Writes the layer's output for `inp` into `out` (same number of rows).
    fn forward(&mut self, inp: ArrayView2<f32>, out: ArrayViewMut2<f32>);

    /// Given the input and output of the last `forward` and `dout = dJ/d out`, overwrites the parameter
    /// gradients with `dJ/d param` and, when `dinp` is given, writes `dJ/d inp` into it. The first layer
    /// gets no `dinp`: nothing upstream needs it.
    fn backward(
        &mut self,
        inp: ArrayView2<f32>,
        out: ArrayView2<f32>,
        dout: ArrayView2<f32>,
        dinp: Option<ArrayViewMut2<f32>>,
    );

    /// The activation this layer is, if it is one: then the network has the layers beside it do its
    /// passes ([`Layer::forward_then`], [`Layer::backward_through`]).
    fn activation(&self) -> Option<Activation> {
        None
    }

    /// Whether `backward` reads `out`. When it does not (Linear), the network lets this layer write the
    /// output of the activation after it instead of its own ([`Layer::forward_then`]).
    fn backward_reads_output(&self) -> bool {
        true
    }

    /// `forward`, then the activation `act` (the next layer) applied to `out`, which is then that
    /// layer's output. Layers that finish their output row by row (Linear) apply it to each row as it
    /// is finished, while it is in cache.
    fn forward_then(&mut self, inp: ArrayView2<f32>, mut out: ArrayViewMut2<f32>, act: Activation) {
        self.forward(inp, out.view_mut());
        finish_rows(out, 0, 0, &act.on_rows());
    }

    /// `backward` where `inp` is the output of the activation `act` (the layer before) and `dinp`
    /// becomes that activation's input gradient: `dJ/d inp` times `act`'s derivative, read from `inp`.
    /// Layers that finish `dinp` row by row (Linear) apply the derivative to each row as it is finished.
    fn backward_through(
        &mut self,
        inp: ArrayView2<f32>,
        out: ArrayView2<f32>,
        dout: ArrayView2<f32>,
        mut dinp: ArrayViewMut2<f32>,
        act: Activation,
    ) {
        self.backward(inp, out, dout, Some(dinp.view_mut()));
        finish_rows(dinp, 0, 0, &act.derivative_on_rows(inp));
    }

    /// Whether `forward_input` and `backward_input` read a batch's sparse form.
    fn reads_sparse_input(&self) -> bool {
        false
    }

    /// `forward` for the network's first layer, which reads the input batch itself. Layers that can use
    /// the batch's sparse form (Linear) override it; the rest read the dense inputs.
    fn forward_input(&mut self, x: &InputBatch, out: ArrayViewMut2<f32>) {
        self.forward(x.dense(), out);
    }

    /// `forward_input`, then the activation `act` applied to `out`, as [`Layer::forward_then`].
    fn forward_input_then(&mut self, x: &InputBatch, mut out: ArrayViewMut2<f32>, act: Activation) {
        self.forward_input(x, out.view_mut());
        finish_rows(out, 0, 0, &act.on_rows());
    }

    /// `backward` for the network's first layer (no `dinp`: nothing is upstream).
    fn backward_input(&mut self, x: &InputBatch, out: ArrayView2<f32>, dout: ArrayView2<f32>) {
        self.backward(x.dense(), out, dout, None);
    }

    /// [`Layer::backward_input`] followed by `sgd`'s update of every parameter. Layers that can update
    /// while their gradient is still in cache override it (Linear on a sparse batch, which then leaves
    /// its weight's `grad` as it was: the gradient never goes to memory).
    fn backward_input_and_update(
        &mut self,
        x: &InputBatch,
        out: ArrayView2<f32>,
        dout: ArrayView2<f32>,
        sgd: &Sgd,
    ) {
        self.backward_input(x, out, dout);
        for param in self.params_mut() {
            sgd.step(param);
        }
    }

    /// The trainable parameters, empty for activations.
    fn params(&self) -> &[Param] {
        &[]
    }

    fn params_mut(&mut self) -> &mut [Param] {
        &mut []
    }
}

#[cfg(test)]
pub(crate) mod gradcheck {
    //! Central finite differences against a layer's analytic gradients, for the tests of each layer.

    use super::Layer;
    use ndarray::{Array2, ArrayView2};

    /// The probe loss J = sum(out * weights): its gradient w.r.t. `out` is `weights`.
    fn probe(layer: &mut dyn Layer, inp: ArrayView2<f32>, weights: &Array2<f32>) -> f64 {
        let mut out = Array2::zeros((inp.nrows(), layer.out_width(inp.ncols())));
        layer.forward(inp, out.view_mut());
        out.iter()
            .zip(weights)
            .map(|(&o, &w)| o as f64 * w as f64)
            .sum()
    }

    /// Asserts that the analytic input and parameter gradients match finite differences to `rel_tol`.
    pub fn check(layer: &mut dyn Layer, inp: &Array2<f32>, rel_tol: f64) {
        let rows = inp.nrows();
        let width = layer.out_width(inp.ncols());
        // Fixed, irregular weights so that no gradient entry is trivially zero.
        let weights = Array2::from_shape_fn((rows, width), |(i, j)| {
            ((i * 7 + j * 3) % 11) as f32 / 5.0 - 1.0
        });
        let mut out = Array2::zeros((rows, width));
        layer.forward(inp.view(), out.view_mut());
        let mut dinp = Array2::zeros(inp.raw_dim());
        layer.backward(
            inp.view(),
            out.view(),
            weights.view(),
            Some(dinp.view_mut()),
        );

        let eps = 1e-2f32;
        let assert_close = |what: String, analytic: f32, numeric: f64| {
            let err = (analytic as f64 - numeric).abs();
            let scale = (analytic.abs() as f64).max(numeric.abs()).max(1e-2);
            assert!(
                err / scale < rel_tol,
                "{what}: analytic {analytic} vs finite difference {numeric}"
            );
        };
        for idx in 0..inp.len() {
            let mut plus = inp.clone();
            let mut minus = inp.clone();
            plus.as_slice_mut().unwrap()[idx] += eps;
            minus.as_slice_mut().unwrap()[idx] -= eps;
            let numeric = (probe(layer, plus.view(), &weights)
                - probe(layer, minus.view(), &weights))
                / (2.0 * eps as f64);
            assert_close(
                format!("dinp[{idx}]"),
                dinp.as_slice().unwrap()[idx],
                numeric,
            );
        }
        for p in 0..layer.params().len() {
            let analytic = layer.params()[p].grad.clone();
            for idx in 0..analytic.len() {
                let nudge = |layer: &mut dyn Layer, delta: f32| {
                    *layer.params_mut()[p].value.iter_mut().nth(idx).unwrap() += delta;
                };
                nudge(layer, eps);
                let up = probe(layer, inp.view(), &weights);
                nudge(layer, -2.0 * eps);
                let down = probe(layer, inp.view(), &weights);
                nudge(layer, eps);
                let name = layer.params()[p].name.clone();
                assert_close(
                    format!("{name}[{idx}]"),
                    *analytic.iter().nth(idx).unwrap(),
                    (up - down) / (2.0 * eps as f64),
                );
            }
        }
    }
}
