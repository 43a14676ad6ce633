//! `mlp bench`: seconds per training epoch and where they go, stage by stage, on the real data.
//!
//! It runs the training loop of `mlp train` (same batches, same arithmetic) with a clock read between
//! stages: batch gathering, each layer's forward and backward (with its parameters' update, which is
//! fused into the gradient), the loss, and the test evaluation. Reading the clock costs about 20 ns a
//! stage, far below any stage here.
//!
//! An activation folded into its neighbours has no stage of its own ([`Network`]): "forward fc1"
//! includes ReLU r1 and "backward fc2" r1's derivative. With more than one thread the next batch is
//! built while the step runs; its stage then reads "gather batch (beside)".

use std::io::Write;
use std::time::Instant;

use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

use crate::batch::InputBatch;
use crate::data::Dataset;
use crate::error::Result;
use crate::eval::evaluate;
use crate::network::{Laps, Network, Stage, UpdatePlan};
use crate::spec::NetSpec;
use crate::train::Settings;

/// Seconds spent in each stage, summed over a run.
struct StageClock {
    last: Instant,
    forward: Vec<f64>,
    backward: Vec<f64>,
    loss: f64,
}

impl Laps for StageClock {
    fn lap(&mut self, stage: Stage) {
        let now = Instant::now();
        let dt = (now - self.last).as_secs_f64();
        self.last = now;
        match stage {
            Stage::Forward(i) => self.forward[i] += dt,
            Stage::Backward(i) => self.backward[i] += dt,
            Stage::Loss => self.loss += dt,
            // Timed by the batch's own clock ("gather batch").
            Stage::Beside => {}
        }
    }
}

/// What one benchmark measured.
pub struct BenchReport {
    pub load_s: f64,
    pub epochs: usize,
    /// `(stage, seconds over all epochs)`, in the order a step runs them.
    pub stages: Vec<(String, f64)>,
    pub train_s: f64,
    pub eval_s: f64,
    pub test_acc: f64,
}

impl BenchReport {
    pub fn seconds_per_epoch(&self) -> f64 {
        self.train_s / self.epochs as f64
    }

    /// A plain table: stage, seconds per epoch, share of the training time.
    pub fn write(&self, out: &mut impl Write) -> std::io::Result<()> {
        writeln!(out, "{:<26} {:>10} {:>7}", "stage", "s/epoch", "share")?;
        for (name, secs) in &self.stages {
            let per_epoch = secs / self.epochs as f64;
            writeln!(
                out,
                "{name:<26} {per_epoch:>10.4} {:>6.1}%",
                100.0 * secs / self.train_s
            )?;
        }
        writeln!(
            out,
            "{:<26} {:>10.4} {:>6.1}%",
            "training (all stages)",
            self.seconds_per_epoch(),
            100.0
        )?;
        writeln!(
            out,
            "{:<26} {:>10.4}",
            "test evaluation",
            self.eval_s / self.epochs as f64
        )?;
        writeln!(
            out,
            "{:<26} {:>10.4}  (once)",
            "loading the data", self.load_s
        )?;
        writeln!(
            out,
            "test accuracy after {} epochs: {:.4}",
            self.epochs, self.test_acc
        )
    }
}

/// Trains `spec` for `settings.max_epoch` epochs on the data in `data_dir`, timing every stage.
pub fn bench(
    spec: &NetSpec,
    settings: &Settings,
    data_dir: &std::path::Path,
) -> Result<BenchReport> {
    let start = Instant::now();
    let data = Dataset::load(data_dir)?;
    let load_s = start.elapsed().as_secs_f64();
    let capacity = crate::fit::capacity(settings.batch_size, data.test.len());
    crate::fit::check(spec, &data, capacity)?;

    let mut rng = ChaCha8Rng::seed_from_u64(settings.seed);
    let mut network = Network::from_spec(spec, &mut rng, capacity);
    let names: Vec<String> = spec.layers().iter().map(|l| l.name().to_string()).collect();
    let path = network.input_path(settings.input_path);
    let mut batch = InputBatch::new(capacity, data.input_width(), path);
    let mut next_batch = InputBatch::new(capacity, data.input_width(), path);
    let mut order: Vec<u32> = (0..data.train.len() as u32).collect();
    let mut clock = StageClock {
        last: Instant::now(),
        forward: vec![0.0; names.len()],
        backward: vec![0.0; names.len()],
        loss: 0.0,
    };
    let (mut gather_s, mut eval_s, mut test_acc) = (0.0, 0.0, 0.0);
    let plan = UpdatePlan {
        sgd: settings.sgd,
        allow_nan: true,
        keep_gradients: false,
    };
    let train_start = Instant::now();
    for _ in 0..settings.max_epoch {
        // A fresh permutation of 0..n every epoch, as the reference's data_iterator draws one; it
        // depends on the RNG position alone, so a resumed run shuffles exactly as an unbroken one.
        order
            .iter_mut()
            .enumerate()
            .for_each(|(i, o)| *o = i as u32);
        order.shuffle(&mut rng);
        // As `mlp train` does: the next batch is built beside the layers after the first.
        let mut batches = order.chunks(settings.batch_size).peekable();
        if let Some(first) = batches.peek() {
            let t0 = Instant::now();
            batch.fill(&data.train, first);
            gather_s += t0.elapsed().as_secs_f64();
        }
        while batches.next().is_some() {
            let next = batches.peek().copied();
            let mut build_next = || {
                let t0 = Instant::now();
                if let Some(next) = next {
                    next_batch.fill(&data.train, next);
                }
                t0.elapsed().as_secs_f64()
            };
            clock.last = Instant::now();
            let mut built_s = 0.0;
            network.train_step(
                &batch,
                settings.loss,
                &plan,
                || built_s = build_next(),
                &mut clock,
            );
            gather_s += built_s;
            if next.is_some() {
                std::mem::swap(&mut batch, &mut next_batch);
            }
        }
        let t2 = Instant::now();
        test_acc = evaluate(
            &mut network,
            &data.test,
            settings.loss,
            data.classes,
            &mut batch,
        )
        .stats
        .accuracy();
        eval_s += t2.elapsed().as_secs_f64();
    }
    let train_s = train_start.elapsed().as_secs_f64() - eval_s;

    let gather = if crate::kernels::threads() > 1 {
        "gather batch (beside)"
    } else {
        "gather batch"
    };
    // A folded activation has no stage of its own: it is in its neighbours'.
    let own = |i: &usize| !network.folded(*i);
    let mut stages = vec![(gather.to_string(), gather_s)];
    stages.extend(
        (0..names.len())
            .filter(own)
            .map(|i| (format!("forward {}", names[i]), clock.forward[i])),
    );
    stages.push(("loss".to_string(), clock.loss));
    stages.extend(
        (0..names.len())
            .rev()
            .filter(own)
            .map(|i| (format!("backward {}", names[i]), clock.backward[i])),
    );
    Ok(BenchReport {
        load_s,
        epochs: settings.max_epoch,
        stages,
        train_s,
        eval_s,
        test_acc,
    })
}
