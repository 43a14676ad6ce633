//! The training loop of the reference's `run_mlp.py`: for each epoch, shuffle the training set, run SGD
//! over its batches (the last, partial batch included), and every `test_epoch` epochs (and after the last)
//! evaluate the whole test set. What happens is told to an [`Observer`], which writes files and progress;
//! the loop itself does no I/O.

use std::time::Instant;

use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

use crate::batch::{InputBatch, InputPath};
use crate::checkpoint::Checkpoint;
use crate::data::Dataset;
use crate::error::{Error, Result};
use crate::eval::evaluate;
use crate::loss::Loss;
use crate::network::{Network, UpdatePlan};
use crate::optim::Sgd;
pub use crate::records::{GradNormRecord, Record, Status};
use crate::spec::NetSpec;

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
    /// Keep training through a non-finite loss instead of stopping with status `diverged`.
    pub allow_nan: bool,
    /// Report the weight-gradient norms every this many iterations (`--grad-norms`).
    pub grad_norm_every: Option<usize>,
}

/// Receives the loop's records as they are made; an error stops training.
pub trait Observer {
    fn epoch_started(&mut self, _epoch: usize, _iters_per_epoch: usize) {}
    fn step(&mut self, record: &Record) -> Result<()>;
    fn tested(&mut self, record: &Record) -> Result<()>;
    /// Called every `Settings::grad_norm_every` iterations with every Linear layer's norm, in spec order.
    fn grad_norms(&mut self, _records: &[GradNormRecord]) -> Result<()> {
        Ok(())
    }
    /// Called at the end of every epoch (after its evaluation, if any) with a checkpoint of the run, to
    /// save or ignore.
    fn epoch_ended(&mut self, _checkpoint: &Checkpoint) -> Result<()> {
        Ok(())
    }

    /// Asked after every iteration: true ends the run there (Ctrl-C), with status `interrupted`.
    fn stop_requested(&self) -> bool {
        false
    }
}

/// What a run reports (the report's Table 3 row), also when it stopped early.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub status: Status,
    /// Where and why the run stopped early, for the user; empty when it completed.
    pub stopped: String,
    /// Mean of the last epoch's per-iteration batch losses and accuracies (the iterations run so far
    /// when the run stopped inside an epoch).
    pub train_loss: f64,
    pub train_acc: f64,
    /// The last test evaluation; NaN when the run stopped before the first.
    pub test_loss: f64,
    pub test_acc: f64,
    /// Seconds spent training, evaluation excluded.
    pub train_time_s: f64,
    pub steps: usize,
    /// Whole epochs done, and the epoch the last step belongs to.
    pub epochs: usize,
    pub last_epoch: usize,
    /// The steps of the whole run, had it completed.
    pub total_steps: usize,
}

/// Trains a network built from `spec` on `data` and returns its final numbers. The same `settings`
/// (seed included) give the same numbers on every run: the seed draws the initial weights, then the
/// shuffles, from one ChaCha8 stream.
///
/// A non-finite batch loss stops the run at that iteration (status `diverged`, before the update, so the
/// parameters stay finite) unless `settings.allow_nan`.
pub fn train(
    spec: &NetSpec,
    settings: &Settings,
    data: &Dataset,
    observer: &mut dyn Observer,
    resume: Option<&Checkpoint>,
) -> Result<Outcome> {
    let mut rng = ChaCha8Rng::seed_from_u64(settings.seed);
    let width = data.input_width();
    let capacity = crate::fit::capacity(settings.batch_size, data.test.len());
    let mut network = Network::from_spec(spec, &mut rng, capacity);

    let train = &data.train;
    let iters_per_epoch = train.len().div_ceil(settings.batch_size);
    let mut order: Vec<u32> = (0..train.len() as u32).collect();
    let mut batch = InputBatch::new(capacity, width, network.input_path(settings.input_path));
    // The next training batch, built while the current one trains (Network::train_step).
    // The same capacity, as the two are swapped and `batch` also holds test batches.
    let mut next_batch = InputBatch::new(capacity, width, network.input_path(settings.input_path));

    // Resuming: the same initialisation (it draws from the RNG), then the saved parameters, velocities
    // and RNG position, so the run continues as if it had never stopped.
    let (first_epoch, mut step, earlier_time_s, earlier_train_s) = match resume {
        None => (1, 0, 0.0, 0.0),
        Some(ckpt) => {
            let bad = |problem: String| Error::usage("--resume", problem);
            ckpt.restore(&mut network).map_err(bad)?;
            rng.set_word_pos(ckpt.rng_word_pos().map_err(bad)?);
            let h = &ckpt.header;
            (h.epoch + 1, h.step, h.time_s, h.train_time_s)
        }
    };
    let start = Instant::now();
    let elapsed = || earlier_time_s + start.elapsed().as_secs_f64();
    let mut eval_seconds = 0.0;
    let mut test = (f64::NAN, f64::NAN);
    let (mut epoch_loss_sum, mut epoch_acc_sum, mut epoch_iters) = (0.0, 0.0, 0);
    let mut status = Status::Completed;
    let mut stopped = String::new();
    let (mut epochs_done, mut last_epoch) = (first_epoch - 1, first_epoch - 1);
    'epochs: for epoch in first_epoch..=settings.max_epoch {
        last_epoch = epoch;
        observer.epoch_started(epoch, iters_per_epoch);
        // A fresh permutation of 0..n every epoch, as the reference's data_iterator draws one; it
        // depends on the RNG position alone, so a resumed run shuffles exactly as an unbroken one.
        order
            .iter_mut()
            .enumerate()
            .for_each(|(i, o)| *o = i as u32);
        order.shuffle(&mut rng);
        (epoch_loss_sum, epoch_acc_sum, epoch_iters) = (0.0, 0.0, 0);
        let mut batches = order.chunks(settings.batch_size).peekable();
        if let Some(first) = batches.peek() {
            batch.fill(train, first);
        }
        // The iteration within the epoch, from 1.
        let mut iter = 0;
        while batches.next().is_some() {
            step += 1;
            iter += 1;
            let next = batches.peek().copied();
            let build_next = || next.map_or((), |next| next_batch.fill(train, next));
            let grad_norms = settings
                .grad_norm_every
                .is_some_and(|every| step.is_multiple_of(every));
            let plan = UpdatePlan {
                sgd: settings.sgd,
                allow_nan: settings.allow_nan,
                keep_gradients: grad_norms,
            };
            let (stats, updated) =
                network.train_step(&batch, settings.loss, &plan, build_next, &mut ());
            if next.is_some() {
                std::mem::swap(&mut batch, &mut next_batch);
            }
            let diverged = !updated;
            epoch_loss_sum += stats.mean_loss();
            epoch_acc_sum += stats.accuracy();
            epoch_iters += 1;
            observer.step(&Record {
                step,
                epoch,
                iter,
                iters_per_epoch,
                lr: settings.sgd.lr,
                loss: stats.mean_loss(),
                acc: stats.accuracy(),
                time_s: elapsed(),
            })?;
            // This step kept its gradients (the plan's keep_gradients), so they can be read after it.
            if grad_norms {
                let records: Vec<GradNormRecord> = network
                    .weight_grad_norms()
                    .map(|(layer, norm)| GradNormRecord {
                        step,
                        iters_per_epoch,
                        layer: layer.to_string(),
                        norm,
                    })
                    .collect();
                observer.grad_norms(&records)?;
            }
            // Only formatted when the run stops here: the loop allocates nothing per iteration itself.
            let place = || {
                format!(
                    "step {step} (epoch {epoch}, iteration {}/{iters_per_epoch})",
                    iter
                )
            };
            if diverged {
                status = Status::Diverged;
                stopped = format!(
                    "diverged at {}: the batch loss is {}; first non-finite value: {} \
                     (lower --lr, or pass --allow-nan to keep going)",
                    place(),
                    stats.mean_loss(),
                    network
                        .first_non_finite()
                        .unwrap_or_else(|| "the network's output".into())
                );
                break 'epochs;
            }
            if observer.stop_requested() {
                status = Status::Interrupted;
                stopped = format!("interrupted after {}", place());
                break 'epochs;
            }
        }
        if epoch.is_multiple_of(settings.test_epoch) || epoch == settings.max_epoch {
            let eval_start = Instant::now();
            let stats = evaluate(
                &mut network,
                &data.test,
                settings.loss,
                data.classes,
                &mut batch,
            )
            .stats;
            test = (stats.mean_loss(), stats.accuracy());
            eval_seconds += eval_start.elapsed().as_secs_f64();
            observer.tested(&Record {
                step,
                epoch,
                iter,
                iters_per_epoch,
                lr: settings.sgd.lr,
                loss: test.0,
                acc: test.1,
                time_s: elapsed(),
            })?;
        }
        let train_time_s = earlier_train_s + start.elapsed().as_secs_f64() - eval_seconds;
        let ckpt = Checkpoint::capture(
            &network,
            spec.to_string(),
            settings.loss,
            (epoch, step),
            settings.seed,
        );
        observer.epoch_ended(&ckpt.at(rng.get_word_pos(), elapsed(), train_time_s))?;
        epochs_done = epoch;
    }
    Ok(Outcome {
        status,
        stopped,
        train_loss: epoch_loss_sum / epoch_iters.max(1) as f64,
        train_acc: epoch_acc_sum / epoch_iters.max(1) as f64,
        test_loss: test.0,
        test_acc: test.1,
        train_time_s: earlier_train_s + start.elapsed().as_secs_f64() - eval_seconds,
        steps: step,
        epochs: epochs_done,
        last_epoch,
        total_steps: settings.max_epoch.saturating_mul(iters_per_epoch),
    })
}
