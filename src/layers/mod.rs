//! The building blocks of a network: a [`Layer`] maps an `N x IN` batch to an `N x OUT` batch and back.
//!
//! A layer is its parameters and its maths, nothing more. It does not own its activations (the
//! [`Network`](crate::network::Network) keeps every layer's output and output gradient in buffers
//! allocated once) and it knows nothing of how a network runs fast: the network's plan decides what to
//! fuse, reading the spec (`network`). [`build`] turns a checked spec into layers.

mod elementwise;
mod linear;

use ndarray::{ArrayView2, ArrayViewMut2};
use rand::Rng;

pub use crate::param::Param;
pub use elementwise::Elementwise;
pub use linear::Linear;

use crate::spec::{LayerSpec, NetSpec};

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

    /// The trainable parameters (weight first, then bias), empty for activations.
    fn params(&self) -> &[Param] {
        &[]
    }

    fn params_mut(&mut self) -> &mut [Param] {
        &mut []
    }
}

/// The layers of `spec`, drawing every Linear's weights from `rng` in spec order.
pub fn build(spec: &NetSpec, rng: &mut impl Rng) -> Vec<Box<dyn Layer>> {
    spec.layers()
        .iter()
        .map(|layer| -> Box<dyn Layer> {
            match layer {
                LayerSpec::Linear {
                    name,
                    inp,
                    out,
                    std,
                } => Box::new(Linear::new(name, *inp, *out, *std as f32, rng)),
                LayerSpec::Activation { name, act } => Box::new(Elementwise::new(name, *act)),
            }
        })
        .collect()
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
