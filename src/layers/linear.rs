//! Fully connected layer, report eq. 1, 10 and 11.
//!
//! Shapes: input `x` is `N x IN`, weight `W` is `IN x OUT`, bias `b` is `1 x OUT`, output is `N x OUT`.
//!
//! - forward:  `out = x W + b` (for a large `W`, in two halves of its rows: `(b + x₀ W₀) + x₁ W₁`)
//! - backward: `dW = xᵀ dout`, `db = 1ᵀ dout` (column sums), `dinp = dout Wᵀ`
//!
//! Gradients are overwritten, never accumulated. This is the plain form; the network's plan runs the
//! same products with its own buffers, the sparse first layer and fused activations.

use ndarray::{Array2, ArrayView2, ArrayViewMut2};
use rand::Rng;
use rand_distr::{Distribution, Normal};

use super::{Layer, Param};
use crate::kernels::{self, Dense, Plain, halves};

pub struct Linear {
    name: String,
    /// `[weight, bias]`.
    params: [Param; 2],
}

impl Linear {
    /// Weights drawn from N(0, std²) in row-major order, biases zero, as the reference framework does.
    pub fn new(name: &str, inp: usize, out: usize, std: f32, rng: &mut impl Rng) -> Self {
        let normal = Normal::new(0.0, std).expect("the spec parser only accepts finite std > 0");
        let weight = Array2::from_shape_simple_fn((inp, out), || normal.sample(rng));
        Linear::from_params(name, weight, Array2::zeros((1, out)))
    }

    /// A layer with the given weight (`IN x OUT`) and bias (`1 x OUT`).
    pub fn from_params(name: &str, weight: Array2<f32>, bias: Array2<f32>) -> Self {
        assert_eq!(bias.dim(), (1, weight.ncols()), "bias must be 1 x OUT");
        Linear {
            name: name.to_string(),
            params: [
                Param::new(format!("{name}.weight"), weight),
                Param::new(format!("{name}.bias"), bias),
            ],
        }
    }

    pub fn weight(&self) -> &Param {
        &self.params[0]
    }

    pub fn bias(&self) -> &Param {
        &self.params[1]
    }
}

impl Layer for Linear {
    fn name(&self) -> &str {
        &self.name
    }

    fn out_width(&self, _inp: usize) -> usize {
        self.weight().value.ncols()
    }

    fn forward(&mut self, inp: ArrayView2<f32>, mut out: ArrayViewMut2<f32>) {
        let [weight, bias] = &self.params;
        let (w, backend) = (weight.value.view(), kernels::current());
        let bias = bias.value.row(0).to_slice().expect("one row");
        // A large weight's sums run in two halves, added ([`halves`]): the same numbers as the plan's.
        match halves::dense_mid(w.nrows(), w.ncols()) {
            Some(mid) => {
                let scratch = &mut halves::Scratch::default();
                halves::dense_forward(backend, inp, w, bias, mid, scratch, out, &Plain)
            }
            None => Dense::new(inp, w, Some(bias), &mut out).run(backend, &Plain),
        }
    }

    fn backward(
        &mut self,
        inp: ArrayView2<f32>,
        _out: ArrayView2<f32>,
        dout: ArrayView2<f32>,
        dinp: Option<ArrayViewMut2<f32>>,
    ) {
        let backend = kernels::current();
        let [weight, bias] = &mut self.params;
        let mut dw = weight.grad.view_mut();
        Dense::new(inp.t(), dout, None, &mut dw).run(backend, &Plain);
        let db = bias.grad.as_slice_mut().expect("one row");
        kernels::add_rows(
            backend,
            dout.rows().into_iter().map(|r| r.to_slice().expect("rows")),
            db,
        );
        if let Some(mut dinp) = dinp {
            let wt = weight.value.t().as_standard_layout().to_owned();
            Dense::new(dout, wt.view(), None, &mut dinp).run(backend, &Plain);
        }
    }

    fn params(&self) -> &[Param] {
        &self.params
    }

    fn params_mut(&mut self) -> &mut [Param] {
        &mut self.params
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layers::gradcheck;
    use ndarray::array;
    use rand::SeedableRng;

    #[test]
    fn forward_is_x_w_plus_b() {
        let mut layer = Linear::from_params(
            "fc",
            array![[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]],
            array![[0.5, -1.0]],
        );
        let x = array![[1.0, 0.0, -1.0], [0.0, 2.0, 1.0]];
        let mut out = Array2::zeros((2, 2));
        layer.forward(x.view(), out.view_mut());
        assert_eq!(out, array![[-3.5, -5.0], [11.5, 13.0]]);
    }

    #[test]
    fn gradients_match_finite_differences() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        let mut layer = Linear::new("fc", 4, 3, 0.5, &mut rng);
        layer.params[1].value = array![[0.1, -0.2, 0.3]];
        let x = Array2::from_shape_fn((5, 4), |(i, j)| (i as f32 - 2.0) * 0.3 + j as f32 * 0.1);
        gradcheck::check(&mut layer, &x, 1e-3);
    }

    #[test]
    fn init_draws_from_the_requested_normal() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
        let layer = Linear::new("fc", 200, 100, 0.01, &mut rng);
        let w = &layer.weight().value;
        let mean = w.mean().unwrap();
        let std = w.std(0.0);
        assert!(mean.abs() < 2e-4, "mean {mean}");
        assert!((std - 0.01).abs() < 2e-4, "std {std}");
        assert!(layer.bias().value.iter().all(|&b| b == 0.0));
    }
}
