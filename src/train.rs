//! The training loop of the reference's `run_mlp.py`: for each epoch, shuffle the training set, run SGD
//! over its batches (the last, partial batch included), and every `test_epoch` epochs (and after the last)
//! evaluate the whole test set. What happens is told to an [`Observer`], which writes files and progress;
//! the loop itself does no I/O.

use std::time::Instant;

use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

use crate::batch::{InputBatch, InputPath};
use crate::data::{Dataset, Split};
use crate::error::Result;
use crate::loss::{BatchStats, Loss};
use crate::network::Network;
use crate::optim::Sgd;
use crate::spec::NetSpec;

/// Rows per forward pass when evaluating: larger than a training batch for speed; the mean loss and
/// accuracy do not depend on it.
const EVAL_BATCH: usize = 1000;

/// Everything that decides the numbers of a run.
#[derive(Debug, Clone)]
pub struct Settings {
    pub loss: Loss,
    pub sgd: Sgd,
    pub batch_size: usize,
    pub max_epoch: usize,
    pub test_epoch: usize,
    pub seed: u64,
    /// Dense or sparse first layer; the numbers agree to float rounding, only the speed differs.
    pub input_path: InputPath,
}

/// One training iteration: the batch's mean loss and accuracy, measured before the update.
#[derive(Debug, Clone, PartialEq)]
pub struct StepRecord {
    /// Global iteration, from 1, never reset.
    pub step: usize,
    /// Epoch, from 1.
    pub epoch: usize,
    /// Iteration within the epoch, from 1.
    pub iter: usize,
    pub iters_per_epoch: usize,
    pub lr: f32,
    pub loss: f64,
    pub acc: f64,
    /// Seconds since training started.
    pub time_s: f64,
}

/// A whole-test-set evaluation after epoch `epoch`.
#[derive(Debug, Clone, PartialEq)]
pub struct TestRecord {
    pub step: usize,
    pub epoch: usize,
    pub iters_per_epoch: usize,
    pub lr: f32,
    pub loss: f64,
    pub acc: f64,
    pub time_s: f64,
}

/// Receives the loop's records as they are made; an error stops training.
pub trait Observer {
    fn epoch_started(&mut self, _epoch: usize, _iters_per_epoch: usize) {}
    fn step(&mut self, record: &StepRecord) -> Result<()>;
    fn tested(&mut self, record: &TestRecord) -> Result<()>;
}

/// What a finished run reports (the report's Table 3 row).
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    /// Mean of the last epoch's per-iteration batch losses and accuracies.
    pub train_loss: f64,
    pub train_acc: f64,
    pub test_loss: f64,
    pub test_acc: f64,
    /// Seconds spent training, evaluation excluded.
    pub train_time_s: f64,
    pub steps: usize,
}

/// Trains a network built from `spec` on `data` and returns its final numbers. The same `settings`
/// (seed included) give the same numbers on every run: the seed draws the initial weights, then the
/// shuffles, from one ChaCha8 stream.
pub fn train(
    spec: &NetSpec,
    settings: &Settings,
    data: &Dataset,
    observer: &mut dyn Observer,
) -> Result<Outcome> {
    let mut rng = ChaCha8Rng::seed_from_u64(settings.seed);
    let width = data.input_width();
    let capacity = settings.batch_size.max(EVAL_BATCH.min(data.test.len()));
    let mut network = Network::new(spec.build(&mut rng), width, capacity);

    let train = &data.train;
    let iters_per_epoch = train.len().div_ceil(settings.batch_size);
    let mut order: Vec<u32> = (0..train.len() as u32).collect();
    let mut batch = InputBatch::new(capacity, width, network.input_path(settings.input_path));

    let start = Instant::now();
    let mut eval_seconds = 0.0;
    let mut step = 0;
    let mut last_test = BatchStats::default();
    let (mut epoch_loss_sum, mut epoch_acc_sum) = (0.0, 0.0);
    for epoch in 1..=settings.max_epoch {
        observer.epoch_started(epoch, iters_per_epoch);
        order.shuffle(&mut rng);
        (epoch_loss_sum, epoch_acc_sum) = (0.0, 0.0);
        for (iter, indices) in order.chunks(settings.batch_size).enumerate() {
            step += 1;
            batch.fill(train, indices);
            let stats = network.compute_gradients(&batch, settings.loss);
            network.update(&settings.sgd);
            epoch_loss_sum += stats.mean_loss();
            epoch_acc_sum += stats.accuracy();
            observer.step(&StepRecord {
                step,
                epoch,
                iter: iter + 1,
                iters_per_epoch,
                lr: settings.sgd.lr,
                loss: stats.mean_loss(),
                acc: stats.accuracy(),
                time_s: start.elapsed().as_secs_f64(),
            })?;
        }
        if epoch.is_multiple_of(settings.test_epoch) || epoch == settings.max_epoch {
            let eval_start = Instant::now();
            last_test = evaluate(&mut network, &data.test, settings.loss, &mut batch);
            eval_seconds += eval_start.elapsed().as_secs_f64();
            observer.tested(&TestRecord {
                step,
                epoch,
                iters_per_epoch,
                lr: settings.sgd.lr,
                loss: last_test.mean_loss(),
                acc: last_test.accuracy(),
                time_s: start.elapsed().as_secs_f64(),
            })?;
        }
    }
    Ok(Outcome {
        train_loss: epoch_loss_sum / iters_per_epoch as f64,
        train_acc: epoch_acc_sum / iters_per_epoch as f64,
        test_loss: last_test.mean_loss(),
        test_acc: last_test.accuracy(),
        train_time_s: start.elapsed().as_secs_f64() - eval_seconds,
        steps: step,
    })
}

/// Mean loss and accuracy of `network` over the whole of `split`, in order.
pub fn evaluate(
    network: &mut Network,
    split: &Split,
    loss: Loss,
    batch: &mut InputBatch,
) -> BatchStats {
    let mut total = BatchStats::default();
    let all: Vec<u32> = (0..split.len() as u32).collect();
    for indices in all.chunks(batch.capacity()) {
        batch.fill(split, indices);
        total.add(network.evaluate(batch, loss));
    }
    total
}
