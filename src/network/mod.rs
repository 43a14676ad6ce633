//! A network and its plan: the layers of a spec in order, run with every activation and activation
//! gradient in buffers allocated once for the largest batch, so a training step allocates nothing.
//!
//! `outputs[i]` holds layer i's output and `douts[i]` the gradient of the loss with respect to it; layer
//! i reads its input from `outputs[i - 1]` (or the batch itself for i = 0). Buffers hold `capacity` rows;
//! a batch of `n` rows uses the first `n`.
//!
//! The plan, read from the spec once, is where everything about running fast lives; the layers only say
//! the maths ([`crate::layers`]):
//! - **Folding.** An element-wise activation between two Linear layers has no pass of its own: the
//!   Linear before applies it to each block of its output while the block is in registers (writing
//!   the activation's output), and the Linear after multiplies its derivative, read from that output,
//!   into each block of its input gradient (writing the activation's input gradient). Only element-wise
//!   activations fold: each output element depends on its own input alone, so a block at a time is the
//!   same as a whole pass. Anything else (a layer given as a plain [`Layer`]) runs its own passes.
//! - **The sparse first layer.** A first Linear layer reads a sparse batch, `x = S + offset`, by its
//!   nonzero pixels: `x W + b = S W + (b + offset · colsum W)` and `xᵀ D = Sᵀ D + offset · 1 · dbᵀ`.
//!   Both are split over the pixels in two fixed halves (`sparse_halves.rs`), so that on two threads
//!   each core keeps its half of the weight in its own cache.
//! - **A large dense weight** is split over its rows in two fixed halves the same way
//!   ([`kernels::halves`]), in its forward pass, `Wᵀ`, `D Wᵀ` and its gradient and update.
//! - **The update fused into the gradient.** Each part of a weight's gradient is followed at once, on
//!   the thread that computed it, by the SGD update of the same rows, while they are in cache.
//!
//! None of these changes a number with the thread count or the backend ([`crate::kernels`]).

use ndarray::{Array2, ArrayView2, s};
use rand::Rng;

use crate::activation::{Activation, Apply, Derivative};
use crate::batch::{InputBatch, InputPath};
use crate::kernels::halves::{self as split, Scratch};
use crate::kernels::{self, Backend, Dense, Plain};
use crate::layers::{Layer, Param};
use crate::loss::{BatchStats, Loss};
use crate::optim::Sgd;
use crate::spec::{LayerSpec, NetSpec};

mod fused_update;
mod sparse_halves;
use fused_update::weight_gradient;

/// A stage of [`Network::train_step`]; numbers are layer indices.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// `beside`, when one thread runs it before the layers.
    Beside,
    Forward(usize),
    Loss,
    /// The layer's backward pass, with its parameters' update when the step updates.
    Backward(usize),
}

/// What [`Network::train_step`] does after the gradients.
#[derive(Debug, Clone, Copy)]
pub struct UpdatePlan {
    pub sgd: Sgd,
    /// Update even when the batch's loss is not finite (otherwise such a step updates nothing).
    pub allow_nan: bool,
    /// Leave every parameter's gradient in its `grad` (to read its norm). Otherwise the first
    /// layer's sparse gradient is applied from registers and never written, and its `grad` is stale.
    pub keep_gradients: bool,
}

/// Told when each stage of a training step ends. `()` ignores it, so plain training pays nothing.
pub trait Laps: Send {
    fn lap(&mut self, stage: Stage);
}

impl Laps for () {
    #[inline(always)]
    fn lap(&mut self, _stage: Stage) {}
}

/// What the plan knows of a layer.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Op {
    /// A [`crate::layers::Linear`]: parameters `[weight, bias]`, run by the plan's kernels.
    Linear,
    /// An element-wise activation, run by the plan.
    Elementwise(Activation),
    /// Any other layer: its own `forward` and `backward`.
    Opaque,
}

pub struct Network {
    layers: Vec<Box<dyn Layer>>,
    ops: Vec<Op>,
    /// `folded[i]`: layer i is an activation whose passes its neighbours do (see the module's doc);
    /// its input (`outputs[i - 1]`) and output gradient (`douts[i]`) are left unset.
    folded: Vec<bool>,
    outputs: Vec<Array2<f32>>,
    douts: Vec<Array2<f32>>,
    /// `Wᵀ` of each Linear layer after the first, for its input gradient `dout Wᵀ`: the kernels read
    /// their right-hand side by rows.
    transposed: Vec<Array2<f32>>,
    /// The sparse first layer's gradient's constant row, `offset · db`.
    row: Vec<f32>,
    /// Where each Linear layer's weight is split in halves for a dense input, if it is
    /// ([`split::dense_mid`]).
    mids: Vec<Option<usize>>,
    /// Each layer's buffers for the second half of a split forward pass.
    halves: Vec<Scratch>,
    /// The first layer of the light tail, which runs beside the next batch's building (see
    /// [`light_tail`]).
    tail: usize,
    capacity: usize,
    backend: Backend,
}

impl Network {
    /// The network of `spec`, its weights drawn from `rng`, for batches of up to `capacity` rows,
    /// run with the process's backend ([`kernels::current`]).
    pub fn from_spec(spec: &NetSpec, rng: &mut impl Rng, capacity: usize) -> Self {
        let ops = spec
            .layers()
            .iter()
            .map(|l| match l {
                LayerSpec::Linear { .. } => Op::Linear,
                LayerSpec::Activation { act, .. } => Op::Elementwise(*act),
            })
            .collect();
        Network::planned(
            crate::layers::build(spec, rng),
            ops,
            spec.input_width(),
            capacity,
        )
    }

    /// Wraps any `layers` for inputs of `input_width` features: each runs its own passes, on dense
    /// batches, and nothing is fused (the reference that the plan is tested against).
    pub fn new(layers: Vec<Box<dyn Layer>>, input_width: usize, capacity: usize) -> Self {
        let ops = vec![Op::Opaque; layers.len()];
        Network::planned(layers, ops, input_width, capacity)
    }

    fn planned(
        layers: Vec<Box<dyn Layer>>,
        ops: Vec<Op>,
        input_width: usize,
        capacity: usize,
    ) -> Self {
        let mut widths = Vec::with_capacity(layers.len());
        let mut width = input_width;
        for layer in &layers {
            width = layer.out_width(width);
            widths.push(width);
        }
        let buffers = || -> Vec<Array2<f32>> {
            widths
                .iter()
                .map(|&w| crate::param::padded(capacity, w))
                .collect()
        };
        let folded = (0..layers.len())
            .map(|i| {
                matches!(ops[i], Op::Elementwise(_))
                    && i > 0
                    && ops[i - 1] == Op::Linear
                    && ops.get(i + 1) == Some(&Op::Linear)
            })
            .collect();
        let transposed = (0..layers.len())
            .map(|i| match (i, ops[i]) {
                (1.., Op::Linear) => {
                    let w = &layers[i].params()[0].value;
                    crate::param::padded(w.ncols(), w.nrows())
                }
                _ => Array2::zeros((0, 0)),
            })
            .collect();
        let mids = (0..layers.len())
            .map(|i| match ops[i] {
                Op::Linear => {
                    let (k, n) = layers[i].params()[0].value.dim();
                    split::dense_mid(k, n)
                }
                _ => None,
            })
            .collect();
        Network {
            tail: light_tail(&layers, input_width, &widths, capacity),
            row: vec![0.0; widths.first().copied().unwrap_or(0)],
            halves: std::iter::repeat_with(Scratch::default)
                .take(layers.len())
                .collect(),
            mids,
            outputs: buffers(),
            douts: buffers(),
            transposed,
            folded,
            ops,
            layers,
            capacity,
            backend: kernels::current(),
        }
    }

    /// Runs this network's kernels on `backend` from now on (for tests that compare backends).
    pub fn set_backend(&mut self, backend: Backend) {
        assert!(backend.available(), "the {backend} kernels cannot run here");
        self.backend = backend;
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Whether layer `i` is an activation folded into its neighbours (its passes cost nothing).
    pub fn folded(&self, i: usize) -> bool {
        self.folded[i]
    }

    /// The input path to batch for: `wanted`, unless the first layer cannot read the sparse form.
    pub fn input_path(&self, wanted: InputPath) -> InputPath {
        if self.ops[0] == Op::Linear {
            wanted
        } else {
            InputPath::Dense
        }
    }

    pub fn layers(&self) -> &[Box<dyn Layer>] {
        &self.layers
    }

    /// Every trainable parameter, in spec order.
    pub fn params(&self) -> impl Iterator<Item = &Param> {
        self.layers.iter().flat_map(|l| l.params())
    }

    pub fn params_mut(&mut self) -> impl Iterator<Item = &mut Param> {
        self.layers.iter_mut().flat_map(|l| l.params_mut())
    }

    /// Runs the batch `x` through every layer and returns the network's output (a view of its buffer).
    pub fn forward(&mut self, x: &InputBatch) -> ArrayView2<'_, f32> {
        let n = x.rows();
        assert!(
            n <= self.capacity,
            "batch of {n} rows exceeds the buffers' {} rows",
            self.capacity
        );
        for i in 0..self.layers.len() {
            self.forward_layer(i, x);
        }
        self.outputs
            .last()
            .expect("a network has layers")
            .slice(s![..n, ..])
    }

    /// Forward, loss and backward for one batch: afterwards every parameter's `grad` holds the gradient
    /// of the batch's mean loss. Returns the batch's loss and accuracy.
    pub fn compute_gradients(&mut self, x: &InputBatch, loss: Loss) -> BatchStats {
        self.run_layers(x, loss, None, || {}, &mut ()).0
    }

    /// One training step: forward, loss, backward and the SGD update of `plan`, which is skipped when
    /// the batch's loss is not finite (unless `plan.allow_nan`). Every parameter's `grad` holds its
    /// gradient afterwards. Returns the batch's loss and accuracy and whether the parameters were
    /// updated. `beside` (building the next batch) runs at the same time, on whichever thread is free.
    /// `laps` is told when each stage ends (for `mlp bench`).
    pub fn train_step(
        &mut self,
        x: &InputBatch,
        loss: Loss,
        plan: &UpdatePlan,
        beside: impl FnOnce() + Send,
        laps: &mut impl Laps,
    ) -> (BatchStats, bool) {
        self.run_layers(x, loss, Some(plan), beside, laps)
    }

    /// The step's passes, `beside` run beside the light tail (the last layers, their loss and their
    /// backward passes): the layers before it have every thread, and `beside` fills the other
    /// thread's time while the tail's products, too small to share, run on one.
    fn run_layers(
        &mut self,
        x: &InputBatch,
        loss: Loss,
        plan: Option<&UpdatePlan>,
        beside: impl FnOnce() + Send,
        laps: &mut impl Laps,
    ) -> (BatchStats, bool) {
        // One thread builds the batch first, as the step's order does not matter to it.
        let beside = match kernels::threads() {
            ..=1 => {
                beside();
                laps.lap(Stage::Beside);
                None
            }
            _ => Some(beside),
        };
        let tail = self.tail;
        for i in 0..tail {
            self.forward_layer(i, x);
            laps.lap(Stage::Forward(i));
        }
        let run_tail = |net: &mut Self, laps: &mut _| net.tail_layers(x, loss, plan, laps);
        let (stats, sgd) = match beside {
            Some(beside) => kernels::join(|| run_tail(self, laps), beside).0,
            None => run_tail(self, laps),
        };
        let keep = plan.is_none_or(|plan| plan.keep_gradients);
        for i in (0..tail).rev() {
            self.backward_layer(i, x, sgd.as_ref(), i > 0 || keep);
            laps.lap(Stage::Backward(i));
        }
        (stats, sgd.is_some())
    }

    /// The forward passes of the layers from `self.tail` on, the loss, and their backward passes;
    /// returns the loss and the update to apply (none when the loss is not finite, unless allowed).
    fn tail_layers(
        &mut self,
        x: &InputBatch,
        loss: Loss,
        plan: Option<&UpdatePlan>,
        laps: &mut impl Laps,
    ) -> (BatchStats, Option<Sgd>) {
        let n = x.rows();
        for i in self.tail..self.layers.len() {
            self.forward_layer(i, x);
            laps.lap(Stage::Forward(i));
        }
        let last = self.layers.len() - 1;
        let stats = loss.evaluate(
            self.outputs[last].slice(s![..n, ..]),
            x.labels(),
            Some(self.douts[last].slice_mut(s![..n, ..])),
        );
        laps.lap(Stage::Loss);
        let sgd = plan
            .filter(|plan| plan.allow_nan || stats.loss_sum.is_finite())
            .map(|plan| plan.sgd);
        for i in (self.tail..self.layers.len()).rev() {
            self.backward_layer(i, x, sgd.as_ref(), true);
            laps.lap(Stage::Backward(i));
        }
        (stats, sgd)
    }

    /// The activation layer `i + 1` folds into layer i's output, if any.
    fn folds_next(&self, i: usize) -> Option<Activation> {
        match self.ops.get(i + 1) {
            Some(&Op::Elementwise(act)) if self.folded[i + 1] => Some(act),
            _ => None,
        }
    }

    /// Layer `i`'s forward pass: nothing for a folded activation.
    fn forward_layer(&mut self, i: usize, x: &InputBatch) {
        let n = x.rows();
        let backend = self.backend;
        let next = self.folds_next(i);
        let target = if next.is_some() { i + 1 } else { i };
        let (before, after) = self.outputs.split_at_mut(i);
        let inp = match i {
            0 => None,
            _ => Some(before[i - 1].slice(s![..n, ..])),
        };
        let dense_input = || inp.unwrap_or_else(|| x.dense());
        let mut out = after[target - i].slice_mut(s![..n, ..]);
        match self.ops[i] {
            _ if self.folded[i] => {}
            Op::Linear => {
                let [weight, bias] = self.layers[i].params() else {
                    unreachable!("a Linear layer has a weight and a bias")
                };
                let bias = bias.value.row(0).to_slice().expect("one row");
                match (i, x.sparse()) {
                    (0, Some(sparse)) => {
                        let (w, by_pixel) = (weight.value.view(), sparse.by_pixel);
                        let scratch = &mut self.halves[i];
                        match next {
                            Some(act) => sparse_halves::forward(
                                backend,
                                by_pixel,
                                w,
                                bias,
                                scratch,
                                out,
                                &Apply(act),
                            ),
                            None => sparse_halves::forward(
                                backend, by_pixel, w, bias, scratch, out, &Plain,
                            ),
                        }
                    }
                    _ => {
                        let (inp, w) = (dense_input(), weight.value.view());
                        match (self.mids[i], next) {
                            (Some(mid), Some(act)) => {
                                let scratch = &mut self.halves[i];
                                split::dense_forward(
                                    backend,
                                    inp,
                                    w,
                                    bias,
                                    mid,
                                    scratch,
                                    out,
                                    &Apply(act),
                                )
                            }
                            (Some(mid), None) => {
                                let scratch = &mut self.halves[i];
                                split::dense_forward(
                                    backend, inp, w, bias, mid, scratch, out, &Plain,
                                )
                            }
                            (None, next) => {
                                let product = Dense::new(inp, w, Some(bias), &mut out);
                                match next {
                                    Some(act) => product.run(backend, &Apply(act)),
                                    None => product.run(backend, &Plain),
                                }
                            }
                        }
                    }
                }
            }
            Op::Elementwise(act) => {
                let inp = dense_input();
                kernels::with_backend(
                    backend,
                    #[inline(always)]
                    || {
                        for (inp, mut out) in inp.rows().into_iter().zip(out.rows_mut()) {
                            let out = out.as_slice_mut().expect("rows");
                            out.copy_from_slice(inp.to_slice().expect("rows"));
                            act.apply(out);
                        }
                    },
                );
            }
            Op::Opaque => self.layers[i].forward(dense_input(), out),
        }
    }

    /// Layer `i`'s backward pass, then its parameters' update by `sgd` if given: nothing for a folded
    /// activation. Unless `keep`, an update may leave the gradient unwritten (see [`UpdatePlan`]).
    fn backward_layer(&mut self, i: usize, x: &InputBatch, sgd: Option<&Sgd>, keep: bool) {
        let n = x.rows();
        let backend = self.backend;
        if self.folded[i] {
            return;
        }
        // The gradient this layer writes: its input's, or the folded activation's input's.
        let folds_previous = match i.checked_sub(1).map(|p| (self.folded[p], self.ops[p])) {
            Some((true, Op::Elementwise(act))) => Some(act),
            _ => None,
        };
        let target = match (i, folds_previous) {
            (0, _) => None,
            (_, Some(_)) => Some(i - 2),
            (_, None) => Some(i - 1),
        };
        let (douts_before, douts_after) = self.douts.split_at_mut(i);
        let dout = douts_after[0].slice(s![..n, ..]);
        let dinp = target.map(|t| douts_before[t].slice_mut(s![..n, ..]));
        let inp = match i {
            0 => None,
            _ => Some(self.outputs[i - 1].slice(s![..n, ..])),
        };
        let out = self.outputs[i].slice(s![..n, ..]);
        match self.ops[i] {
            Op::Linear => {
                let params = self.layers[i].params_mut();
                let (weight, bias) = params.split_at_mut(1);
                let (weight, bias) = (&mut weight[0], &mut bias[0]);
                let db = bias.grad.as_slice_mut().expect("one row");
                let rows = dout.rows().into_iter().map(|r| r.to_slice().expect("rows"));
                kernels::add_rows(backend, rows, db);
                if let Some(mut dinp) = dinp {
                    // dinp = dout Wᵀ (⊙ f' of the folded activation), before W is updated.
                    let (w, mut wt) = (weight.value.view(), self.transposed[i].view_mut());
                    let before = self.outputs[i - 1].slice(s![..n, ..]);
                    match (self.mids[i], folds_previous) {
                        (Some(mid), Some(act)) => {
                            let epi = Derivative { act, out: before };
                            split::input_gradient(backend, w, wt, mid, dout, dinp, &epi)
                        }
                        (Some(mid), None) => {
                            split::input_gradient(backend, w, wt, mid, dout, dinp, &Plain)
                        }
                        (None, folds) => {
                            kernels::transpose_into(backend, w, wt.view_mut());
                            let product =
                                Dense::new(dout, self.transposed[i].view(), None, &mut dinp);
                            match folds {
                                Some(act) => product.run(backend, &Derivative { act, out: before }),
                                None => product.run(backend, &Plain),
                            }
                        }
                    }
                }
                let db = bias.grad.row(0).to_slice().expect("one row");
                weight_gradient(
                    backend,
                    i,
                    self.mids[i],
                    x,
                    inp,
                    dout,
                    weight,
                    &mut self.row,
                    db,
                    sgd,
                    keep,
                );
                if let Some(sgd) = sgd {
                    sgd.step(backend, bias);
                }
            }
            Op::Elementwise(act) => {
                if let Some(mut dinp) = dinp {
                    kernels::with_backend(
                        backend,
                        #[inline(always)]
                        || {
                            for ((o, g), mut d) in
                                out.rows().into_iter().zip(dout.rows()).zip(dinp.rows_mut())
                            {
                                let d = d.as_slice_mut().expect("rows");
                                d.copy_from_slice(g.to_slice().expect("rows"));
                                act.through(o.to_slice().expect("rows"), d);
                            }
                        },
                    );
                }
            }
            Op::Opaque => {
                let inp = inp.unwrap_or_else(|| x.dense());
                self.layers[i].backward(inp, out, dout, dinp);
                if let Some(sgd) = sgd {
                    for param in self.layers[i].params_mut() {
                        sgd.step(backend, param);
                    }
                }
            }
        }
    }

    /// `(layer name, ‖dW‖₂)` for every layer with a weight (its first parameter), in spec order.
    pub fn weight_grad_norms(&self) -> impl Iterator<Item = (&str, f64)> {
        self.layers.iter().filter_map(|layer| {
            let weight = layer.params().first()?;
            let sum: f64 = weight.grad.iter().map(|&g| g as f64 * g as f64).sum();
            Some((layer.name(), sum.sqrt()))
        })
    }

    /// The first parameter (in spec order) whose gradient or value holds a NaN or an infinity, named for
    /// a message: `"fc1.weight gradient"`, `"fc2.bias"`.
    pub fn first_non_finite(&self) -> Option<String> {
        let finite = |a: &Array2<f32>| a.iter().all(|v| v.is_finite());
        self.params().find_map(|p| {
            if !finite(&p.grad) {
                Some(format!("{} gradient", p.name))
            } else if !finite(&p.value) {
                Some(p.name.clone())
            } else {
                None
            }
        })
    }

    /// Applies one SGD step to every parameter.
    pub fn update(&mut self, sgd: &Sgd) {
        let backend = self.backend;
        for param in self.params_mut() {
            sgd.step(backend, param);
        }
    }

    /// Loss and accuracy of a batch without touching gradients.
    pub fn evaluate(&mut self, x: &InputBatch, loss: Loss) -> BatchStats {
        self.forward(x);
        let outputs = self
            .outputs
            .last()
            .expect("a network has layers")
            .slice(s![..x.rows(), ..]);
        loss.evaluate(outputs, x.labels(), None)
    }
}

/// The first layer of the light tail: the last layers whose products are each too small to share
/// between threads (below [`kernels::PARALLEL_FROM`] multiply-adds for `capacity` rows), so that the
/// next batch, built beside them, takes a thread from no product that the threads could share. A
/// heavy last layer is the tail alone; the first layer is never in it.
fn light_tail(
    layers: &[Box<dyn Layer>],
    input_width: usize,
    widths: &[usize],
    capacity: usize,
) -> usize {
    let light = |i: usize| {
        let inp = i.checked_sub(1).map_or(input_width, |p| widths[p]);
        layers[i].params().is_empty() || capacity * inp * widths[i] < kernels::PARALLEL_FROM
    };
    let mut start = layers.len().saturating_sub(1).max(1);
    while start > 1 && light(start) && light(start - 1) {
        start -= 1;
    }
    start
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn tail(spec: &str) -> usize {
        let spec: NetSpec = spec.parse().unwrap();
        let net = Network::from_spec(&spec, &mut rand_chacha::ChaCha8Rng::seed_from_u64(1), 100);
        net.tail
    }

    #[test]
    fn the_light_tail_holds_only_products_too_small_to_share() {
        // MLP1: fc2 (256 x 10) after relu1; MLP2: only fc3 (256 x 10) after relu2, not fc2.
        assert_eq!(
            tail("linear,a,784,256,0.01; relu,r; linear,b,256,10,0.01"),
            1
        );
        let mlp2 =
            "linear,a,784,500,0.01; relu,r; linear,b,500,256,0.01; relu,s; linear,c,256,10,0.01";
        assert_eq!(tail(mlp2), 3);
        // A heavy last layer is the tail alone; a single layer leaves the tail empty.
        assert_eq!(
            tail("linear,a,784,500,0.01; relu,r; linear,b,500,500,0.01"),
            2
        );
        assert_eq!(tail("linear,a,784,10,0.01"), 1);
    }
}
