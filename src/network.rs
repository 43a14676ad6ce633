//! A network: the layers of a spec in order, with every activation and activation gradient in buffers
//! that are allocated once for the largest batch and reused, so a training step allocates nothing.
//!
//! `outputs[i]` holds layer i's output and `douts[i]` the gradient of the loss with respect to it; layer
//! i reads its input from `outputs[i - 1]` (or the batch itself for i = 0). Buffers hold `capacity` rows;
//! a batch of `n` rows uses the first `n`.

use ndarray::{Array2, ArrayView2, s};

use crate::layers::{Layer, Param};
use crate::loss::{BatchStats, Loss};
use crate::optim::Sgd;

pub struct Network {
    layers: Vec<Box<dyn Layer>>,
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
        let buffers = || {
            widths
                .iter()
                .map(|&w| Array2::zeros((capacity, w)))
                .collect()
        };
        Network {
            outputs: buffers(),
            douts: buffers(),
            layers,
            capacity,
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
    pub fn forward(&mut self, x: ArrayView2<f32>) -> ArrayView2<'_, f32> {
        let n = x.nrows();
        assert!(
            n <= self.capacity,
            "batch of {n} rows exceeds the buffers' {} rows",
            self.capacity
        );
        for i in 0..self.layers.len() {
            let (before, after) = self.outputs.split_at_mut(i);
            let inp = if i == 0 {
                x
            } else {
                before[i - 1].slice(s![..n, ..])
            };
            self.layers[i].forward(inp, after[0].slice_mut(s![..n, ..]));
        }
        self.outputs
            .last()
            .expect("a network has layers")
            .slice(s![..n, ..])
    }

    /// Forward, loss and backward for one batch: afterwards every parameter's `grad` holds the gradient
    /// of the batch's mean loss. Returns the batch's loss and accuracy.
    pub fn compute_gradients(
        &mut self,
        x: ArrayView2<f32>,
        labels: &[u8],
        loss: Loss,
    ) -> BatchStats {
        let n = x.nrows();
        self.forward(x);
        let last = self.layers.len() - 1;
        let stats = loss.evaluate(
            self.outputs[last].slice(s![..n, ..]),
            labels,
            Some(self.douts[last].slice_mut(s![..n, ..])),
        );
        for i in (0..self.layers.len()).rev() {
            let (douts_before, douts_after) = self.douts.split_at_mut(i);
            let inp = if i == 0 {
                x
            } else {
                self.outputs[i - 1].slice(s![..n, ..])
            };
            let dinp = if i == 0 {
                None
            } else {
                Some(douts_before[i - 1].slice_mut(s![..n, ..]))
            };
            self.layers[i].backward(
                inp,
                self.outputs[i].slice(s![..n, ..]),
                douts_after[0].slice(s![..n, ..]),
                dinp,
            );
        }
        stats
    }

    /// Applies one SGD step to every parameter.
    pub fn update(&mut self, sgd: &Sgd) {
        for param in self.params_mut() {
            sgd.step(param);
        }
    }

    /// Loss and accuracy of a batch without touching gradients.
    pub fn evaluate(&mut self, x: ArrayView2<f32>, labels: &[u8], loss: Loss) -> BatchStats {
        let outputs = self.forward(x);
        loss.evaluate(outputs, labels, None)
    }
}
