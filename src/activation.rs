//! The element-wise activations, as numbers: report eq. 2-4, plus tanh and leaky ReLU.
//!
//! | spec                        | `out = f(x)`                  | `f'`, read from the output        |
//! |-----------------------------|-------------------------------|-----------------------------------|
//! | `relu,NAME`                 | `max(x, 0)`                   | `[out > 0]`                       |
//! | `sigmoid,NAME`              | `1 / (1 + e^(-x))`            | `out (1 - out)`                   |
//! | `tanh,NAME`                 | `tanh x`                      | `1 - out²`                        |
//! | `leaky_relu,NAME[,SLOPE]`   | `x` if `x > 0`, else `SLOPE x` | `1` if `out > 0`, else `SLOPE`   |
//!
//! Every derivative is read from the output, so backward needs no copy of the input, and a network
//! can fold an activation into the layers beside it (`network`). Adding one is a variant here, its
//! value and derivative, and its keyword.

use ndarray::ArrayView2;

use crate::kernels::Epilogue;

/// Leaky ReLU's slope when the spec gives none, as PyTorch's `LeakyReLU()`.
pub const DEFAULT_SLOPE: f32 = 0.01;

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Activation {
    Relu,
    Sigmoid,
    Tanh,
    /// The slope for `x <= 0`, finite and `>= 0` (so that the output's sign is the input's).
    LeakyRelu(f32),
}

impl Activation {
    /// The spec keyword.
    pub fn keyword(self) -> &'static str {
        match self {
            Activation::Relu => "relu",
            Activation::Sigmoid => "sigmoid",
            Activation::Tanh => "tanh",
            Activation::LeakyRelu(_) => "leaky_relu",
        }
    }

    /// Its name in a derived run name (`MLP1_ReLU_CE`).
    pub fn label(self) -> &'static str {
        match self {
            Activation::Relu => "ReLU",
            Activation::Sigmoid => "Sigmoid",
            Activation::Tanh => "Tanh",
            Activation::LeakyRelu(_) => "LeakyReLU",
        }
    }

    /// The activation a spec segment `KIND,NAME[,ARGS]` names, from its kind and the fields after the
    /// name; `None` when `kind` is no activation.
    /// `fields` counts every field of the segment, the kind and name included.
    pub fn parse(kind: &str, args: &[&str], fields: usize) -> Option<Result<Activation, String>> {
        let plain = |act: Activation| {
            Some(match fields {
                2 => Ok(act),
                _ => Err(format!("{kind} takes 2 fields ({kind},NAME), got {fields}")),
            })
        };
        match kind {
            "relu" => plain(Activation::Relu),
            "sigmoid" => plain(Activation::Sigmoid),
            "tanh" => plain(Activation::Tanh),
            "leaky_relu" => Some(match (fields, args) {
                (2, _) => Ok(Activation::LeakyRelu(DEFAULT_SLOPE)),
                (3, [slope]) => parse_slope(slope).map(Activation::LeakyRelu),
                _ => Err(format!(
                    "leaky_relu takes 2 or 3 fields (leaky_relu,NAME[,SLOPE]), got {fields}"
                )),
            }),
            _ => None,
        }
    }

    /// The spec segment for a layer of this activation named `name`; parses back to the same.
    pub fn segment(self, name: &str) -> String {
        match self {
            Activation::LeakyRelu(slope) => format!("leaky_relu,{name},{slope}"),
            other => format!("{},{name}", other.keyword()),
        }
    }

    #[inline(always)]
    pub fn value(self, x: f32) -> f32 {
        match self {
            Activation::Relu => x.max(0.0),
            Activation::Sigmoid => 1.0 / (1.0 + crate::exp::exp(-x)),
            Activation::Tanh => tanh(x),
            Activation::LeakyRelu(slope) => {
                if x > 0.0 {
                    x
                } else {
                    slope * x
                }
            }
        }
    }

    /// `dout` times the derivative, read from the output `out`.
    #[inline(always)]
    pub fn derivative(self, out: f32, dout: f32) -> f32 {
        match self {
            Activation::Relu => {
                if out > 0.0 {
                    dout
                } else {
                    0.0
                }
            }
            Activation::Sigmoid => dout * out * (1.0 - out),
            Activation::Tanh => dout * (1.0 - out * out),
            Activation::LeakyRelu(slope) => {
                if out > 0.0 {
                    dout
                } else {
                    slope * dout
                }
            }
        }
    }

    /// `row = f(row)`, the match outside the loop so that each loop vectorises.
    #[inline(always)]
    pub fn apply(self, row: &mut [f32]) {
        match self {
            Activation::Relu => by_eights(row, |x| Activation::Relu.value(x)),
            Activation::Sigmoid => by_eights(row, |x| Activation::Sigmoid.value(x)),
            Activation::Tanh => by_eights(row, |x| Activation::Tanh.value(x)),
            Activation::LeakyRelu(s) => by_eights(row, |x| Activation::LeakyRelu(s).value(x)),
        }
    }

    /// `dout = dout ⊙ f'`, the derivative read from the output `out`.
    #[inline(always)]
    pub fn through(self, out: &[f32], dout: &mut [f32]) {
        match self {
            Activation::Relu => {
                pairs_by_eights(dout, out, |g, o| Activation::Relu.derivative(o, g))
            }
            Activation::Sigmoid => {
                pairs_by_eights(dout, out, |g, o| Activation::Sigmoid.derivative(o, g))
            }
            Activation::Tanh => {
                pairs_by_eights(dout, out, |g, o| Activation::Tanh.derivative(o, g))
            }
            Activation::LeakyRelu(s) => {
                pairs_by_eights(dout, out, |g, o| Activation::LeakyRelu(s).derivative(o, g))
            }
        }
    }
}

/// `xs[i] = f(xs[i])`, eight at a time as arrays by value. Inside a kernel's block the compiler
/// vectorises this form but leaves a plain loop over the slice scalar, and a block written a float
/// at a time stalls the vector store that reads it back.
#[inline(always)]
fn by_eights(xs: &mut [f32], f: impl Fn(f32) -> f32) {
    let (whole, rest) = xs.as_chunks_mut::<8>();
    for x in whole {
        let v = *x;
        *x = std::array::from_fn(|i| f(v[i]));
    }
    rest.iter_mut().for_each(|x| *x = f(*x));
}

/// `xs[i] = f(xs[i], ys[i])` as [`by_eights`]; `ys` is at least as long as `xs`.
#[inline(always)]
fn pairs_by_eights(xs: &mut [f32], ys: &[f32], f: impl Fn(f32, f32) -> f32) {
    let ys = &ys[..xs.len()];
    let (whole, rest) = xs.as_chunks_mut::<8>();
    let (ys_whole, ys_rest) = ys.as_chunks::<8>();
    for (x, y) in whole.iter_mut().zip(ys_whole) {
        let (v, w) = (*x, *y);
        *x = std::array::from_fn(|i| f(v[i], w[i]));
    }
    for (x, &y) in rest.iter_mut().zip(ys_rest) {
        *x = f(*x, y);
    }
}

fn parse_slope(field: &str) -> Result<f32, String> {
    match field.parse::<f32>() {
        Ok(slope) if slope.is_finite() && slope >= 0.0 => Ok(slope),
        Ok(_) => Err(format!(
            "slope must be a finite number >= 0, got {field:.40}"
        )),
        Err(_) => Err(format!("slope \"{field:.40}\" is not a number")),
    }
}

/// `tanh x`, odd: a Taylor polynomial near 0 (where `1 - e^(-2|x|)` would cancel), else
/// `(1 - t) / (1 + t)` with `t = e^(-2|x|)`; within a few ulps of f64's tanh (tested).
#[inline(always)]
fn tanh(x: f32) -> f32 {
    let a = x.abs();
    let t = crate::exp::exp(-2.0 * a);
    let far = (1.0 - t) / (1.0 + t);
    let a2 = a * a;
    // x - x³/3 + 2x⁵/15 - 17x⁷/315 + 62x⁹/2835; the next term is below 2e-9 for |x| < 0.25.
    let near = a
        * (1.0
            + a2 * (-1.0 / 3.0 + a2 * (2.0 / 15.0 + a2 * (-17.0 / 315.0 + a2 * (62.0 / 2835.0)))));
    let y = if a < 0.25 { near } else { far };
    y.copysign(x)
}

/// The activation applied to each finished block of a product's output (the layer before it).
pub struct Apply(pub Activation);

impl Epilogue for Apply {
    #[inline(always)]
    fn apply(&self, _row: usize, _first_col: usize, block: &mut [f32]) {
        self.0.apply(block)
    }
}

/// The derivative of the activation whose output is `out`, multiplied into each finished block of
/// an input gradient (the layer after it).
pub struct Derivative<'a> {
    pub act: Activation,
    pub out: ArrayView2<'a, f32>,
}

impl Epilogue for Derivative<'_> {
    #[inline(always)]
    fn apply(&self, row: usize, first_col: usize, block: &mut [f32]) {
        let out = self.out.row(row);
        let out = &out.as_slice().expect("rows by contiguous floats")[first_col..][..block.len()];
        self.act.through(out, block)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tanh_is_within_a_few_ulps_of_f64() {
        let mut x = -12.0f32;
        while x < 12.0 {
            let want = (x as f64).tanh() as f32;
            let got = tanh(x);
            let ulps = (got.to_bits() as i64 - want.to_bits() as i64).unsigned_abs();
            assert!(
                ulps <= 4 || (got - want).abs() < 1e-9,
                "tanh({x}) = {got}, want {want}"
            );
            x += 0.001_3;
        }
        assert_eq!(tanh(0.0), 0.0);
        assert_eq!(tanh(50.0), 1.0);
        assert_eq!(tanh(-50.0), -1.0);
    }

    #[test]
    fn keywords_parse_back() {
        for act in [
            Activation::Relu,
            Activation::Sigmoid,
            Activation::Tanh,
            Activation::LeakyRelu(0.2),
        ] {
            let segment = act.segment("a");
            let fields: Vec<&str> = segment.split(',').collect();
            let parsed = Activation::parse(fields[0], &fields[2..], fields.len());
            assert_eq!(parsed, Some(Ok(act)));
        }
        assert_eq!(
            Activation::parse("leaky_relu", &[], 2),
            Some(Ok(Activation::LeakyRelu(DEFAULT_SLOPE)))
        );
        assert!(matches!(
            Activation::parse("leaky_relu", &["-1"], 3),
            Some(Err(_))
        ));
        assert!(matches!(Activation::parse("tanh", &["1"], 3), Some(Err(_))));
        assert!(matches!(Activation::parse("relu", &[], 1), Some(Err(_))));
        assert_eq!(Activation::parse("linear", &[], 2), None);
    }

    /// The passes over a row, eight floats at a time and then the rest, give each element's own
    /// value and derivative.
    #[test]
    fn row_passes_are_the_elementwise_maths() {
        let xs: Vec<f32> = (0..19).map(|i| (i as f32 - 9.0) * 0.37).collect();
        let grads: Vec<f32> = (0..19).map(|i| 1.0 + i as f32 * 0.1).collect();
        for act in [
            Activation::Relu,
            Activation::Sigmoid,
            Activation::Tanh,
            Activation::LeakyRelu(0.1),
        ] {
            let mut row = xs.clone();
            act.apply(&mut row);
            let want: Vec<f32> = xs.iter().map(|&x| act.value(x)).collect();
            assert_eq!(row, want, "{act:?}");
            let mut dout = grads.clone();
            act.through(&row, &mut dout);
            let want: Vec<f32> = grads
                .iter()
                .zip(&row)
                .map(|(&g, &o)| act.derivative(o, g))
                .collect();
            assert_eq!(dout, want, "{act:?}");
        }
    }

    #[test]
    fn derivatives_match_finite_differences_of_the_value() {
        for act in [
            Activation::Relu,
            Activation::Sigmoid,
            Activation::Tanh,
            Activation::LeakyRelu(0.1),
        ] {
            for x in [-2.5f32, -0.7, -0.1, 0.05, 0.3, 1.9] {
                let h = 1e-3f64;
                let f = |x: f64| act.value(x as f32) as f64;
                let numeric = (f(x as f64 + h) - f(x as f64 - h)) / (2.0 * h);
                let analytic = act.derivative(act.value(x), 1.0) as f64;
                assert!(
                    (numeric - analytic).abs() < 2e-3,
                    "{act:?} at {x}: {analytic} vs {numeric}"
                );
            }
        }
    }
}
