//! A parameter-free layer applying an [`Activation`] to every element (report eq. 2-4; see
//! `activation` for the table of functions).
//!
//! - forward:  `out = f(inp)`
//! - backward: `dinp = dout ⊙ f'(out)`, the derivative read from the output

use ndarray::{ArrayView2, ArrayViewMut2, Zip};

use super::Layer;
use crate::activation::Activation;

pub struct Elementwise {
    name: String,
    act: Activation,
}

impl Elementwise {
    pub fn new(name: &str, act: Activation) -> Self {
        Elementwise {
            name: name.to_string(),
            act,
        }
    }
}

impl Layer for Elementwise {
    fn name(&self) -> &str {
        &self.name
    }

    fn out_width(&self, inp: usize) -> usize {
        inp
    }

    fn forward(&mut self, inp: ArrayView2<f32>, out: ArrayViewMut2<f32>) {
        let act = self.act;
        Zip::from(out).and(inp).for_each(|o, &x| *o = act.value(x));
    }

    fn backward(
        &mut self,
        _inp: ArrayView2<f32>,
        out: ArrayView2<f32>,
        dout: ArrayView2<f32>,
        dinp: Option<ArrayViewMut2<f32>>,
    ) {
        let act = self.act;
        if let Some(dinp) = dinp {
            Zip::from(dinp)
                .and(out)
                .and(dout)
                .for_each(|d, &o, &g| *d = act.derivative(o, g));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layers::gradcheck;
    use ndarray::{Array2, array};

    /// Inputs kept away from 0, where ReLU has no derivative and finite differences straddle the kink.
    fn input() -> Array2<f32> {
        Array2::from_shape_fn((4, 5), |(i, j)| {
            (i as f32 - 1.5) * 0.9 + (j as f32 - 2.0) * 0.37 + 0.05
        })
    }

    #[test]
    fn values() {
        let x = array![[-2.0, 0.0, 3.0]];
        let run = |act| {
            let mut out = Array2::zeros((1, 3));
            Elementwise::new("a", act).forward(x.view(), out.view_mut());
            out
        };
        assert_eq!(run(Activation::Relu), array![[0.0, 0.0, 3.0]]);
        assert_eq!(run(Activation::LeakyRelu(0.1)), array![[-0.2, 0.0, 3.0]]);
        let s = run(Activation::Sigmoid);
        assert_eq!(s[[0, 1]], 0.5);
        assert!((s[[0, 2]] - 0.952_574_1).abs() < 1e-6);
        let t = run(Activation::Tanh);
        assert_eq!(t[[0, 1]], 0.0);
        assert!((t[[0, 0]] + 0.964_027_6).abs() < 1e-6);
    }

    #[test]
    fn gradients_match_finite_differences() {
        let x = input();
        assert!(
            x.iter().all(|v| v.abs() > 0.02),
            "probe input too close to the kink"
        );
        for act in [
            Activation::Relu,
            Activation::Sigmoid,
            Activation::Tanh,
            Activation::LeakyRelu(0.01),
            Activation::LeakyRelu(0.3),
        ] {
            gradcheck::check(&mut Elementwise::new("a", act), &x, 1e-3);
        }
    }
}
