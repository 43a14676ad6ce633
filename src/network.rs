//! A network: the layers of a spec in order, with every activation and activation gradient in buffers
//! that are allocated once for the largest batch and reused, so a training step allocates nothing.
//!
//! `outputs[i]` holds layer i's output and `douts[i]` the gradient of the loss with respect to it; layer
//! i reads its input from `outputs[i - 1]` (or the batch itself for i = 0). Buffers hold `capacity` rows;
//! a batch of `n` rows uses the first `n`.

use ndarray::{Array2, ArrayView2, s};

use crate::batch::{InputBatch, InputPath};
use crate::layers::{Activation, Layer, Param};
use crate::loss::{BatchStats, Loss};
use crate::optim::Sgd;

/// Parameters in the last layers up to which they run on one thread beside the next batch's building
/// (see [`Network::train_step`]).
const LIGHT_LATER_LAYERS: usize = 1 << 16;

/// A stage of [`Network::train_step`]; numbers are layer indices.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    Forward(usize),
    Loss,
    Backward(usize),
    /// The end of `beside` when it runs on its own, before the layers (it times itself).
    Beside,
    /// The end of the SGD update of the layers after the first (the first layer's is part of its
    /// backward stage when fused, see [`UpdatePlan`]).
    Update,
}

/// What [`Network::train_step`] does after the gradients.
#[derive(Debug, Clone, Copy)]
pub struct UpdatePlan {
    pub sgd: Sgd,
    /// Update even when the batch's loss is not finite (otherwise such a step updates nothing).
    pub allow_nan: bool,
    /// Keep every gradient in `grad` (to read their norms after the step): then the first layer's
    /// update is not fused into its gradient.
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

pub struct Network {
    layers: Vec<Box<dyn Layer>>,
    /// `by_neighbours[i]`: layer i is an activation between two layers, whose passes they do: the layer
    /// before applies it as it finishes its output ([`Layer::forward_then`], writing the activation's
    /// output), the layer after folds its derivative into its input gradient
    /// ([`Layer::backward_through`], writing the activation's input gradient), and layer i itself does
    /// nothing: its input (`outputs[i - 1]`) and output gradient (`douts[i]`) are left unset. The
    /// activations' own passes, each a read and a write of a whole batch, took 5% of MLP2's two-thread
    /// epoch as stages of their own; done this way the epoch measured the same within the noise (the
    /// neighbours' stages grew by most of it: the rows still move between the cores).
    by_neighbours: Vec<bool>,
    outputs: Vec<Array2<f32>>,
    douts: Vec<Array2<f32>>,
    capacity: usize,
}

impl Network {
    /// Wraps `layers` for inputs of `input_width` features and batches of up to `capacity` rows.
    pub fn new(layers: Vec<Box<dyn Layer>>, input_width: usize, capacity: usize) -> Self {
        let mut widths = Vec::with_capacity(layers.len());
        let mut width = input_width;
        for layer in &layers {
            width = layer.out_width(width);
            widths.push(width);
        }
        // Rows padded like weights' (see `layers::padded`): the first layer's output gradient is the
        // sparse kernel's source.
        let buffers = || {
            widths
                .iter()
                .map(|&w| crate::layers::padded(capacity, w))
                .collect()
        };
        let mut by_neighbours = vec![false; layers.len()];
        for i in 1..layers.len().saturating_sub(1) {
            by_neighbours[i] = layers[i].activation().is_some()
                && !layers[i - 1].backward_reads_output()
                && !by_neighbours[i - 1];
        }
        Network {
            outputs: buffers(),
            douts: buffers(),
            by_neighbours,
            layers,
            capacity,
        }
    }

    /// Whether layer `i` is an activation whose passes the layers beside it do (see `by_neighbours`).
    pub fn done_by_neighbours(&self, i: usize) -> bool {
        self.by_neighbours[i]
    }

    /// The activation after layer `i` whose forward pass layer i does.
    fn applies_next(&self, i: usize) -> Option<Activation> {
        let next = i + 1;
        if *self.by_neighbours.get(next)? {
            self.layers[next].activation()
        } else {
            None
        }
    }

    /// The activation before layer `i` whose backward pass layer i does.
    fn folds_previous(&self, i: usize) -> Option<Activation> {
        let previous = i.checked_sub(1)?;
        if self.by_neighbours[previous] {
            self.layers[previous].activation()
        } else {
            None
        }
    }

    /// The first layer's forward pass on the batch `x`, into the output of the activation after it
    /// when it applies that one.
    fn forward_first(&mut self, x: &InputBatch) {
        let n = x.rows();
        match self.applies_next(0) {
            Some(act) => {
                let out = self.outputs[1].slice_mut(s![..n, ..]);
                self.layers[0].forward_input_then(x, out, act)
            }
            None => {
                let out = self.outputs[0].slice_mut(s![..n, ..]);
                self.layers[0].forward_input(x, out)
            }
        }
    }

    /// Layer `i`'s forward pass (after the first) on the first `n` rows: nothing for an activation
    /// that the layer before has applied.
    fn forward_layer(&mut self, i: usize, n: usize) {
        if self.by_neighbours[i] {
            return;
        }
        let act = self.applies_next(i);
        let (before, after) = self.outputs.split_at_mut(i);
        let inp = before[i - 1].slice(s![..n, ..]);
        match act {
            Some(act) => self.layers[i].forward_then(inp, after[1].slice_mut(s![..n, ..]), act),
            None => self.layers[i].forward(inp, after[0].slice_mut(s![..n, ..])),
        }
    }

    /// Layer `i`'s backward pass (after the first) on the first `n` rows: nothing for an activation
    /// whose derivative the layer after has folded in.
    fn backward_layer(&mut self, i: usize, n: usize) {
        if self.by_neighbours[i] {
            return;
        }
        let act = self.folds_previous(i);
        let target = if act.is_some() { i - 2 } else { i - 1 };
        let (douts_before, douts_after) = self.douts.split_at_mut(i);
        let (inp, out, dout) = (
            self.outputs[i - 1].slice(s![..n, ..]),
            self.outputs[i].slice(s![..n, ..]),
            douts_after[0].slice(s![..n, ..]),
        );
        let dinp = douts_before[target].slice_mut(s![..n, ..]);
        match act {
            Some(act) => self.layers[i].backward_through(inp, out, dout, dinp, act),
            None => self.layers[i].backward(inp, out, dout, Some(dinp)),
        }
    }

    /// The input path to batch for: `wanted`, unless the first layer cannot read the sparse form.
    pub fn input_path(&self, wanted: InputPath) -> InputPath {
        if self.layers[0].reads_sparse_input() {
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
        self.forward_first(x);
        for i in 1..self.layers.len() {
            self.forward_layer(i, n);
        }
        self.outputs
            .last()
            .expect("a network has layers")
            .slice(s![..n, ..])
    }

    /// Forward, loss and backward for one batch: afterwards every parameter's `grad` holds the gradient
    /// of the batch's mean loss. Returns the batch's loss and accuracy.
    pub fn compute_gradients(&mut self, x: &InputBatch, loss: Loss) -> BatchStats {
        self.run_layers::<fn()>(x, loss, None, None, &mut ()).0
    }

    /// One training step: forward, loss, backward and the SGD update of `plan`, which is skipped when
    /// the batch's loss is not finite (unless `plan.allow_nan`). The first layer updates its weight
    /// from its gradient while the gradient is in cache, unless `plan.keep_gradients`
    /// ([`Layer::backward_input_and_update`]): the same numbers, to the bit. Returns the batch's loss
    /// and accuracy and whether the parameters were updated. `laps` is told when each stage ends (for
    /// `mlp bench`).
    ///
    /// `beside` (building the next batch) runs at the same time on the other thread when there is one
    /// ([`crate::parallel::join`]), beside the network's light tail (its last layers, the loss and
    /// their backward passes: `Network::light_tail`), which runs on one thread: for MLP1 all the
    /// layers after the first, for MLP2 those after its 500 x 256 layer. On one thread `beside` runs
    /// first, on its own (as the batch was built before this step, so the step finds its data in cache).
    pub fn train_step(
        &mut self,
        x: &InputBatch,
        loss: Loss,
        plan: &UpdatePlan,
        beside: impl FnOnce() + Send,
        laps: &mut impl Laps,
    ) -> (BatchStats, bool) {
        self.run_layers(x, loss, Some(beside), Some(plan), laps)
    }

    /// Forward, loss and backward, with `beside` as [`Network::train_step`] runs it, then the update of
    /// `plan` if any; returns whether it updated.
    fn run_layers<F: FnOnce() + Send>(
        &mut self,
        x: &InputBatch,
        loss: Loss,
        mut beside: Option<F>,
        plan: Option<&UpdatePlan>,
        laps: &mut impl Laps,
    ) -> (BatchStats, bool) {
        let n = x.rows();
        if !self.builds_beside() {
            if let Some(beside) = beside.take() {
                beside();
            }
            laps.lap(Stage::Beside);
        }
        self.forward_first(x);
        laps.lap(Stage::Forward(0));
        let tail = self.light_tail();
        self.forward_layers(1..tail, n, laps);
        let stats = match beside {
            Some(beside) => crate::parallel::join(|| self.tail(tail, x, loss, laps), beside).0,
            None => self.tail(tail, x, loss, laps),
        };
        self.backward_layers(1..tail, n, laps);
        let update = plan.filter(|plan| plan.allow_nan || stats.loss_sum.is_finite());
        let (out, dout) = (
            self.outputs[0].slice(s![..n, ..]),
            self.douts[0].slice(s![..n, ..]),
        );
        let first = &mut self.layers[0];
        match update {
            Some(plan) if !plan.keep_gradients => {
                first.backward_input_and_update(x, out, dout, &plan.sgd)
            }
            _ => first.backward_input(x, out, dout),
        }
        laps.lap(Stage::Backward(0));
        if let Some(plan) = update {
            let skip = if plan.keep_gradients { 0 } else { 1 };
            for layer in self.layers.iter_mut().skip(skip) {
                for param in layer.params_mut() {
                    plan.sgd.step(param);
                }
            }
            laps.lap(Stage::Update);
        }
        (stats, update.is_some())
    }

    /// Whether [`Network::train_step`] runs its `beside` at the same time as the layers: whenever there
    /// is a second thread, beside the light tail of the network (`Network::light_tail`), which has
    /// too little work to split.
    pub fn builds_beside(&self) -> bool {
        crate::parallel::threads() >= 2
    }

    /// The first of the layers after the first that, with all those after them, have few enough
    /// parameters to run on one thread (the layers' count when none have): all of MLP1's after its
    /// first (the 256 x 10 output layer, 2,570), MLP2's from its second ReLU on (not its 500 x 256
    /// layer). The next batch is built beside these, the loss and their backward passes: in MLP2
    /// otherwise the helper idled through them, and the batch took the main thread's time of its own.
    fn light_tail(&self) -> usize {
        let mut tail = self.layers.len();
        let mut sum = 0;
        while tail > 1 {
            sum += self.layers[tail - 1]
                .params()
                .iter()
                .map(|p| p.value.len())
                .sum::<usize>();
            if sum > LIGHT_LATER_LAYERS {
                break;
            }
            tail -= 1;
        }
        tail
    }

    /// The forward passes of the layers `range` (after the first).
    fn forward_layers(&mut self, range: std::ops::Range<usize>, n: usize, laps: &mut impl Laps) {
        for i in range {
            self.forward_layer(i, n);
            laps.lap(Stage::Forward(i));
        }
    }

    /// The backward passes of the layers `range` (after the first), last first.
    fn backward_layers(&mut self, range: std::ops::Range<usize>, n: usize, laps: &mut impl Laps) {
        for i in range.rev() {
            self.backward_layer(i, n);
            laps.lap(Stage::Backward(i));
        }
    }

    /// The layers from `tail` on, forward, the loss, and their backward passes.
    fn tail(
        &mut self,
        tail: usize,
        x: &InputBatch,
        loss: Loss,
        laps: &mut impl Laps,
    ) -> BatchStats {
        let n = x.rows();
        let last = self.layers.len() - 1;
        self.forward_layers(tail..last + 1, n, laps);
        let stats = loss.evaluate(
            self.outputs[last].slice(s![..n, ..]),
            x.labels(),
            Some(self.douts[last].slice_mut(s![..n, ..])),
        );
        laps.lap(Stage::Loss);
        self.backward_layers(tail..last + 1, n, laps);
        stats
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
        for param in self.params_mut() {
            sgd.step(param);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::NetSpec;
    use rand::SeedableRng;

    fn network(spec: &str) -> Network {
        let spec: NetSpec = spec.parse().expect("a valid spec");
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        Network::new(spec.build(&mut rng), spec.input_width(), 4)
    }

    /// The light tail starts after the last layer too heavy for one thread: MLP1's whole rest, MLP2's
    /// after its 500 x 256 layer, none of a one-layer network.
    #[test]
    fn the_light_tail_starts_after_the_heavy_layers() {
        let mlp1 = "linear,fc1,784,256,0.01; relu,r1; linear,fc2,256,10,0.01";
        let mlp2 = "linear,fc1,784,500,0.01; relu,r1; linear,fc2,500,256,0.01; relu,r2; \
                    linear,fc3,256,10,0.01";
        let affine = "linear,fc1,784,10,0.01";
        assert_eq!(network(mlp1).light_tail(), 1);
        assert_eq!(network(mlp2).light_tail(), 3);
        assert_eq!(network(affine).light_tail(), 1);
    }

    /// An activation is done by its neighbours when both are there and the one before does not read
    /// its own output going backward: not as the last layer (the loss reads it), not after another
    /// activation.
    #[test]
    fn activations_between_layers_are_done_by_their_neighbours() {
        let by_neighbours = |spec: &str| network(spec).by_neighbours;
        assert_eq!(
            by_neighbours(
                "linear,fc1,784,500,0.01; relu,r1; linear,fc2,500,256,0.01; relu,r2; \
                 linear,fc3,256,10,0.01"
            ),
            [false, true, false, true, false]
        );
        assert_eq!(
            by_neighbours(
                "linear,fc1,784,64,0.01; sigmoid,s1; relu,r1; linear,fc2,64,10,0.01; sigmoid,s2"
            ),
            [false, true, false, false, false]
        );
    }
}
