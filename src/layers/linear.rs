//! Fully connected layer, report eq. 1, 10 and 11.
//!
//! Shapes: input `x` is `N x IN`, weight `W` is `IN x OUT`, bias `b` is `1 x OUT`, output is `N x OUT`.
//!
//! - forward:  `out = x W + b`
//! - backward: `dW = xᵀ dout`, `db = 1ᵀ dout` (column sums), `dinp = dout Wᵀ`
//!
//! Gradients are overwritten, never accumulated. `dinp` is skipped for the first layer, saving one matrix
//! product per batch.
//!
//! As the first layer, on a sparse batch `x = S + offset` (see [`crate::sparse`]), the same results come
//! from the nonzero pixels only: `out = S W + (b + offset · colsum(W))` and
//! `dW = Sᵀ dout + offset · 1 · dbᵀ`.

use ndarray::{Array1, Array2, ArrayView2, ArrayViewMut2};
use rand::Rng;
use rand_distr::{Distribution, Normal};

use super::{Activation, Layer, Param};
use crate::batch::{InputBatch, OFFSET};
use crate::elementwise::update_in_place;
use crate::linalg::{matmul, matmul_split_inner, matmul_then};
use crate::optim::Sgd;
use crate::parallel::{Finish, for_row_parts_with};
use crate::sparse::{
    ColumnSums, gather_squares, gather_squares_update, part_height, scatter_squares,
};

pub struct Linear {
    name: String,
    /// `[weight, bias]`.
    params: [Param; 2],
    /// Scratch row for the sparse path's constant terms, kept to avoid an allocation per batch.
    row: Array1<f32>,
    /// The sparse forward pass's `b + offset · colsum(W)` in parts, one per part of the weight's rows
    /// (`sparse::part_height`): the bias and the first part's rows in the first, the other parts'
    /// rows from zero. Made by the fused update ([`Layer::backward_input_and_update`]) or, when stale,
    /// by the forward pass.
    column_sums: Vec<Array1<f32>>,
    /// The part height `column_sums` were made with while they match the weight and bias; `None` once
    /// either may have changed otherwise (`params_mut`, an unfused update).
    sums_height: Option<usize>,
    /// The forward pass's second half of the sum on two threads (`scatter_squares`,
    /// `matmul_split_inner`), grown once.
    partial: Array2<f32>,
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
            row: Array1::zeros(weight.ncols()),
            column_sums: Vec::new(),
            sums_height: None,
            partial: Array2::zeros((0, 0)),
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

    /// `column_sums` made ready for parts of `height` rows of the weight: the bias in the first part,
    /// zeros in the others.
    fn start_column_sums(&mut self, height: usize) {
        let [weight, bias] = &self.params;
        let parts = crate::parallel::parts(weight.value.nrows(), height);
        let n = weight.value.ncols();
        if self.column_sums.len() < parts {
            self.column_sums.resize(parts, Array1::zeros(n));
        }
        self.column_sums[0].assign(&bias.value.row(0));
        self.column_sums[1..].iter_mut().for_each(|s| s.fill(0.0));
    }

    /// [`Layer::forward`], then `finish` on each row of `out` as it is finished.
    fn forward_finishing(
        &mut self,
        inp: ArrayView2<f32>,
        out: ArrayViewMut2<f32>,
        finish: Option<Finish>,
    ) {
        let [weight, bias] = &self.params;
        let (weight, bias) = (weight.value.view(), bias.value.row(0));
        matmul_split_inner(inp, weight, Some(bias), out, &mut self.partial, finish);
    }

    /// [`Layer::backward`], then `finish` on each row of `dinp` as it is finished.
    fn backward_finishing(
        &mut self,
        inp: ArrayView2<f32>,
        dout: ArrayView2<f32>,
        dinp: Option<ArrayViewMut2<f32>>,
        finish: Option<Finish>,
    ) {
        let [weight, bias] = &mut self.params;
        matmul(inp.t(), dout, None, weight.grad.view_mut());
        sum_rows(dout, bias);
        if let Some(dinp) = dinp {
            matmul_then(dout, weight.value.t(), None, dinp, finish);
        }
    }

    /// [`Layer::forward_input`], then `finish` on each row of `out` as it is finished.
    fn forward_input_finishing(
        &mut self,
        x: &InputBatch,
        out: ArrayViewMut2<f32>,
        finish: Option<Finish>,
    ) {
        let Some(sparse) = x.sparse() else {
            return self.forward_finishing(x.dense(), out, finish);
        };
        // row = b + offset · colsum(W): from the update that made this weight, or summed here in the
        // same parts, on the threads that update them, so that both ways give the same floats.
        let height = part_height(self.weight().value.nrows());
        if self.sums_height != Some(height) {
            self.start_column_sums(height);
            let w = self.params[0].value.view();
            for_row_parts_with(w, height, &mut self.column_sums, &|_, w, sums| {
                add_column_sums(OFFSET, w, sums)
            });
            self.sums_height = Some(height);
        }
        let parts = crate::parallel::parts(self.weight().value.nrows(), height);
        self.row.assign(&self.column_sums[0]);
        for sums in &self.column_sums[1..parts] {
            self.row += sums;
        }
        scatter_squares(
            sparse.squares,
            self.params[0].value.view(),
            self.row.view(),
            out,
            &mut self.partial,
            finish,
        );
    }

    /// For the sparse path's weight gradient: the bias gradient `db = 1ᵀ dout`, and in `row` the
    /// `offset · db` that every row of `dW` starts from.
    fn bias_grad_and_start_row(&mut self, dout: ArrayView2<f32>) {
        let bias = &mut self.params[1];
        sum_rows(dout, bias);
        self.row.assign(&bias.grad.row(0));
        self.row *= OFFSET;
    }
}

impl Layer for Linear {
    fn name(&self) -> &str {
        &self.name
    }

    fn out_width(&self, _inp: usize) -> usize {
        self.weight().value.ncols()
    }

    fn forward(&mut self, inp: ArrayView2<f32>, out: ArrayViewMut2<f32>) {
        self.forward_finishing(inp, out, None);
    }

    fn backward_reads_output(&self) -> bool {
        false
    }

    fn forward_then(&mut self, inp: ArrayView2<f32>, out: ArrayViewMut2<f32>, act: Activation) {
        self.forward_finishing(inp, out, Some(&act.on_rows()));
    }

    fn backward_through(
        &mut self,
        inp: ArrayView2<f32>,
        _out: ArrayView2<f32>,
        dout: ArrayView2<f32>,
        dinp: ArrayViewMut2<f32>,
        act: Activation,
    ) {
        self.backward_finishing(inp, dout, Some(dinp), Some(&act.derivative_on_rows(inp)));
    }

    fn backward(
        &mut self,
        inp: ArrayView2<f32>,
        _out: ArrayView2<f32>,
        dout: ArrayView2<f32>,
        dinp: Option<ArrayViewMut2<f32>>,
    ) {
        self.backward_finishing(inp, dout, dinp, None);
    }

    fn reads_sparse_input(&self) -> bool {
        true
    }

    fn forward_input(&mut self, x: &InputBatch, out: ArrayViewMut2<f32>) {
        self.forward_input_finishing(x, out, None);
    }

    fn forward_input_then(&mut self, x: &InputBatch, out: ArrayViewMut2<f32>, act: Activation) {
        self.forward_input_finishing(x, out, Some(&act.on_rows()));
    }

    fn backward_input(&mut self, x: &InputBatch, out: ArrayView2<f32>, dout: ArrayView2<f32>) {
        let Some(sparse) = x.sparse() else {
            return self.backward(x.dense(), out, dout, None);
        };
        self.bias_grad_and_start_row(dout);
        let weight = &mut self.params[0];
        gather_squares(
            sparse.squares,
            dout,
            self.row.view(),
            weight.grad.view_mut(),
        );
    }

    fn backward_input_and_update(
        &mut self,
        x: &InputBatch,
        out: ArrayView2<f32>,
        dout: ArrayView2<f32>,
        sgd: &Sgd,
    ) {
        let Some(sparse) = x.sparse() else {
            self.backward_input(x, out, dout);
            return self.params_mut().iter_mut().for_each(|p| sgd.step(p));
        };
        self.bias_grad_and_start_row(dout);
        // The bias first: the column sums start from its new value.
        sgd.step(&mut self.params[1]);
        let height = part_height(self.weight().value.nrows());
        self.start_column_sums(height);
        let sums = ColumnSums {
            scale: OFFSET,
            parts: &mut self.column_sums,
        };
        gather_squares_update(
            sparse.squares,
            dout,
            self.row.view(),
            &mut self.params[0],
            sgd,
            sums,
        );
        self.sums_height = Some(height);
    }

    fn params(&self) -> &[Param] {
        &self.params
    }

    fn params_mut(&mut self) -> &mut [Param] {
        self.sums_height = None;
        &mut self.params
    }
}

/// `bias.grad = 1ᵀ dout`, the column sums.
fn sum_rows(dout: ArrayView2<f32>, bias: &mut Param) {
    bias.grad.fill(0.0);
    let mut sums = bias.grad.row_mut(0);
    add_column_sums(1.0, dout, &mut sums);
}

/// `sums += scale · 1ᵀ m`, row after row over slices when the rows are contiguous (the compiler
/// vectorises that; ndarray's `scaled_add` took 4x longer on MLP1's weight).
fn add_column_sums<S: ndarray::DataMut<Elem = f32>>(
    scale: f32,
    m: ArrayView2<f32>,
    sums: &mut ndarray::ArrayBase<S, ndarray::Ix1>,
) {
    for row in m.rows() {
        match (row.to_slice(), sums.as_slice_mut()) {
            (Some(row), Some(sums)) => update_in_place(sums, row, |s, x| s + scale * x),
            _ => sums.scaled_add(scale, &row),
        }
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
