//! `mlp train` from a checked configuration to the files of a run folder:
//!
//! - `config.json`: every setting (written first, rewritten with the final status);
//! - `metrics.csv`: a row per iteration and per test evaluation, flushed every `disp_freq` iterations;
//! - `summary.csv`: the run's Table 3 row, written when it ends.

use std::fs::{self, File};
use std::path::{Path, PathBuf};

use crate::checkpoint::Checkpoint;
use crate::data::Dataset;
use crate::error::{Error, Result};
use crate::interrupt::StopFlag;
use crate::output::config::RunConfig;
use crate::output::grad_norms::GradNormWriter;
use crate::output::metrics::MetricsWriter;
use crate::output::progress::{Mode, Progress};
use crate::output::summary::{Summary, write_summary};
use crate::output::{WholeLines, keep_rows_up_to, write_atomically};
use crate::spec::NetSpec;
use crate::train::{GradNormRecord, Observer, Outcome, Record, Settings, Status, train};

pub use crate::run_folder::{
    CONFIG_FILE, GRAD_NORMS_FILE, LOCK_FILE, METRICS_FILE, MODEL_FILE, SUMMARY_FILE,
};

/// A validated `mlp train` invocation.
#[derive(Debug, Clone)]
pub struct TrainConfig {
    pub spec: NetSpec,
    pub settings: Settings,
    /// Threads for the matrix products and sparse kernels.
    pub threads: usize,
    /// `--threads` was not given: use the cores other programs leave idle, re-read every epoch.
    pub threads_beside: bool,
    pub disp_freq: usize,
    pub data_dir: PathBuf,
    pub out_dir: PathBuf,
    pub name: String,
    pub overwrite: bool,
    /// Continue the run in `out_dir` from its `model.ckpt`, appending to its files.
    pub resume: bool,
    /// Save `model.ckpt` every this many epochs (and after the last).
    pub checkpoint_every: usize,
    pub progress: Mode,
    /// The command line, recorded in `config.json`.
    pub command: Vec<String>,
}

/// Loads the data, checks the spec against it, trains, and leaves the run's files in `out_dir`. A run
/// that stops early (`stop` raised, divergence) still writes its summary, with its status; one that fails
/// (say, a full disk) marks its config `failed` if it still can.
pub fn run_train(cfg: &TrainConfig, stop: &StopFlag) -> Result<Outcome> {
    let threads_beside = match cfg.threads_beside {
        true => crate::load::ThreadsBeside::start(cfg.threads),
        false => None,
    };
    let data = Dataset::load(&cfg.data_dir)?;
    let capacity = crate::fit::capacity(cfg.settings.batch_size, data.test.len());
    crate::fit::check(&cfg.spec, &data, capacity)?;
    if cfg.settings.batch_size > data.train.len() {
        return Err(Error::usage(
            "--batch-size",
            format!(
                "{} is larger than the {} training images in {}",
                cfg.settings.batch_size,
                data.train.len(),
                cfg.data_dir.display()
            ),
        ));
    }
    let per_epoch = data.train.len().div_ceil(cfg.settings.batch_size);
    if cfg.settings.max_epoch.checked_mul(per_epoch).is_none() {
        return Err(Error::usage(
            "--max-epoch",
            format!(
                "{} epochs of {per_epoch} steps would count past the largest step number ({})",
                cfg.settings.max_epoch,
                usize::MAX
            ),
        ));
    }
    // Held until this function returns; the kernel releases it if the process dies.
    let _lock = lock_folder(&cfg.out_dir)?;
    let resume = match cfg.resume {
        false => {
            prepare_folder(&cfg.out_dir, cfg.overwrite)?;
            None
        }
        true => Some(prepare_resume(cfg, data.train.len())?),
    };
    write_config(cfg, Status::Running)?;

    // A new run starts its CSV files with a header; a resumed one appends to the rows it kept.
    let open = |name: &str| -> Result<(WholeLines<File>, PathBuf)> {
        let path = cfg.out_dir.join(name);
        let mut options = fs::OpenOptions::new();
        options.create(true);
        if cfg.resume {
            options.append(true)
        } else {
            options.write(true).truncate(true)
        };
        let file = options.open(&path).map_err(|e| Error::io(&path, e))?;
        Ok((WholeLines::new(file), path))
    };
    let (file, metrics_path) = open(METRICS_FILE)?;
    let metrics = match cfg.resume {
        true => MetricsWriter::append(file),
        false => MetricsWriter::new(file).map_err(|e| Error::io(&metrics_path, e.into()))?,
    };
    let grad_norms = match cfg.settings.grad_norm_every {
        None => None,
        Some(_) => {
            let (file, path) = open(GRAD_NORMS_FILE)?;
            let writer = match cfg.resume {
                true => GradNormWriter::append(file),
                false => GradNormWriter::new(file).map_err(|e| Error::io(&path, e.into()))?,
            };
            Some((writer, path))
        }
    };
    let mut observer = RunObserver {
        threads: threads_beside,
        metrics,
        metrics_path,
        grad_norms,
        progress: Progress::new(cfg.progress, cfg.disp_freq, cfg.settings.max_epoch),
        disp_freq: cfg.disp_freq,
        stop,
        checkpoint_every: cfg.checkpoint_every,
        max_epoch: cfg.settings.max_epoch,
        model_path: cfg.out_dir.join(MODEL_FILE),
    };
    let outcome = train(
        &cfg.spec,
        &cfg.settings,
        &data,
        &mut observer,
        resume.as_ref(),
    );
    observer.progress.finish();
    let flushed = observer
        .metrics
        .flush()
        .map_err(|e| Error::io(&observer.metrics_path, e));
    let finished = outcome
        .and_then(|outcome| flushed.map(|()| outcome))
        .and_then(|outcome| {
            write_summary_file(cfg, &outcome)?;
            write_config(cfg, outcome.status)?;
            Ok(outcome)
        });
    if finished.is_err() {
        let _ = write_config(cfg, Status::Failed);
    }
    finished
}

/// Takes the run folder's lock (creating the folder), or says which process holds it: two processes
/// appending to one run's files would lose rows.
fn lock_folder(dir: &Path) -> Result<File> {
    fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let path = dir.join(LOCK_FILE);
    let mut file = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|e| Error::io(&path, e))?;
    match file.try_lock() {
        Ok(()) => {}
        Err(fs::TryLockError::WouldBlock) => {
            let holder = fs::read_to_string(&path).unwrap_or_default();
            let holder = match holder.trim() {
                "" => "another process".to_string(),
                pid => format!("process {pid:.20}"),
            };
            return Err(Error::OutputExists {
                path: dir.to_path_buf(),
                problem: format!(
                    "run folder in use by {holder}; wait for it to finish or train elsewhere (--out)"
                ),
            });
        }
        Err(fs::TryLockError::Error(e)) => return Err(Error::io(&path, e)),
    }
    use std::io::{Seek, Write};
    let written = file
        .set_len(0)
        .and_then(|()| file.seek(std::io::SeekFrom::Start(0)))
        .and_then(|_| writeln!(file, "{}", std::process::id()));
    written.map_err(|e| Error::io(&path, e))?;
    Ok(file)
}

/// Loads the run folder's checkpoint for `--resume`, checks it against the configuration, and drops the
/// rows its files hold beyond it (an interrupted run may have gone on past its last checkpoint).
fn prepare_resume(cfg: &TrainConfig, train_len: usize) -> Result<Checkpoint> {
    let ckpt = Checkpoint::load(&crate::run_folder::file_in(&cfg.out_dir, MODEL_FILE)?)?;
    let h = &ckpt.header;
    let per_epoch = train_len.div_ceil(cfg.settings.batch_size);
    if Some(h.step) != h.epoch.checked_mul(per_epoch) {
        return Err(Error::data(
            cfg.out_dir.join(CONFIG_FILE),
            format!(
                "batch_size {} gives {per_epoch} steps an epoch, but the checkpoint is at step {} \
                 after {} epochs; fix config.json or start a new run",
                cfg.settings.batch_size, h.step, h.epoch
            ),
        ));
    }
    if h.spec != cfg.spec.to_string() || h.seed != cfg.settings.seed || h.loss != cfg.settings.loss
    {
        return Err(Error::usage(
            "--resume",
            format!(
                "{}: the checkpoint (spec \"{}\", seed {}, loss {}) does not belong to the run in config.json",
                cfg.out_dir.display(),
                h.spec,
                h.seed,
                h.loss.tag()
            ),
        ));
    }
    if h.epoch >= cfg.settings.max_epoch {
        return Err(Error::usage(
            "--resume",
            format!(
                "{} has trained {} of {} epochs already; give --max-epoch above {} to train on",
                cfg.out_dir.display(),
                h.epoch,
                cfg.settings.max_epoch,
                h.epoch
            ),
        ));
    }
    let grad_norms = cfg.settings.grad_norm_every.is_some();
    for (name, wanted) in [(METRICS_FILE, true), (GRAD_NORMS_FILE, grad_norms)] {
        let path = cfg.out_dir.join(name);
        if path.exists() {
            keep_rows_up_to(&path, h.step)?;
        } else if wanted {
            // Appending to a new file would leave a table without its header and first rows.
            return Err(Error::data(
                &cfg.out_dir,
                format!("the run has no {name}, so it cannot be continued; start a new run"),
            ));
        }
    }
    let summary = cfg.out_dir.join(SUMMARY_FILE);
    if summary.exists() {
        fs::remove_file(&summary).map_err(|e| Error::io(&summary, e))?;
    }
    Ok(ckpt)
}

/// Creates `dir`; refuses one that already holds a run unless `overwrite`, which removes its files.
fn prepare_folder(dir: &Path, overwrite: bool) -> Result<()> {
    fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let existing: Vec<&str> = [SUMMARY_FILE, METRICS_FILE]
        .into_iter()
        .filter(|f| dir.join(f).exists())
        .collect();
    if existing.is_empty() {
        return Ok(());
    }
    if !overwrite {
        let what = if existing.contains(&SUMMARY_FILE) {
            "a finished run"
        } else {
            "an unfinished run"
        };
        return Err(Error::OutputExists {
            path: dir.to_path_buf(),
            problem: format!(
                "already holds {what} ({}); pass --overwrite to replace it, or --name/--out to train elsewhere",
                existing.join(", ")
            ),
        });
    }
    for file in [
        SUMMARY_FILE,
        METRICS_FILE,
        CONFIG_FILE,
        GRAD_NORMS_FILE,
        MODEL_FILE,
    ] {
        let path = dir.join(file);
        if path.exists() {
            fs::remove_file(&path).map_err(|e| Error::io(&path, e))?;
        }
    }
    Ok(())
}

fn write_config(cfg: &TrainConfig, status: Status) -> Result<()> {
    let s = &cfg.settings;
    let config = RunConfig {
        tool: "mlp".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        name: cfg.name.clone(),
        status,
        layer: cfg.spec.to_string(),
        loss: s.loss,
        lr: s.sgd.lr,
        weight_decay: s.sgd.weight_decay,
        momentum: s.sgd.momentum,
        batch_size: s.batch_size,
        max_epoch: s.max_epoch,
        disp_freq: cfg.disp_freq,
        test_epoch: s.test_epoch,
        seed: s.seed,
        allow_nan: s.allow_nan,
        grad_norms: s.grad_norm_every.is_some(),
        checkpoint_every: cfg.checkpoint_every,
        threads: cfg.threads,
        kernels: Some(crate::kernels::current()),
        input_path: s.input_path,
        data: fs::canonicalize(&cfg.data_dir).unwrap_or_else(|_| cfg.data_dir.clone()),
        out: cfg.out_dir.clone(),
        command: cfg.command.clone(),
    };
    write_atomically(&cfg.out_dir.join(CONFIG_FILE), |w| {
        serde_json::to_writer_pretty(&mut *w, &config)?;
        writeln!(w)
    })
}

fn write_summary_file(cfg: &TrainConfig, outcome: &Outcome) -> Result<()> {
    let s = &cfg.settings;
    let summary = Summary {
        name: cfg.name.clone(),
        status: outcome.status,
        loss: s.loss,
        layer: cfg.spec.to_string(),
        lr: s.sgd.lr,
        weight_decay: s.sgd.weight_decay,
        momentum: s.sgd.momentum,
        batch_size: s.batch_size,
        max_epoch: s.max_epoch,
        seed: s.seed,
        steps: outcome.steps,
        train_loss: outcome.train_loss,
        train_acc: outcome.train_acc,
        test_loss: outcome.test_loss,
        test_acc: outcome.test_acc,
        train_time_s: outcome.train_time_s,
        epochs: outcome.epochs,
    };
    write_atomically(&cfg.out_dir.join(SUMMARY_FILE), |w| {
        write_summary(w, &summary).map_err(Into::into)
    })
}

struct RunObserver<'a> {
    stop: &'a StopFlag,
    threads: Option<crate::load::ThreadsBeside>,
    metrics: MetricsWriter<WholeLines<File>>,
    metrics_path: PathBuf,
    grad_norms: Option<(GradNormWriter<WholeLines<File>>, PathBuf)>,
    progress: Progress,
    disp_freq: usize,
    checkpoint_every: usize,
    max_epoch: usize,
    model_path: PathBuf,
}

impl RunObserver<'_> {
    fn fail(&self, e: csv::Error) -> Error {
        Error::io(&self.metrics_path, e.into())
    }
}

impl Observer for RunObserver<'_> {
    fn stop_requested(&self) -> bool {
        self.stop.requested().is_some()
    }

    fn epoch_started(&mut self, epoch: usize, iters_per_epoch: usize) {
        if let Some(n) = self.threads.as_mut().and_then(|t| t.reread()) {
            crate::kernels::limit_threads(n);
        }
        self.progress.epoch_started(epoch, iters_per_epoch);
    }

    fn step(&mut self, record: &Record) -> Result<()> {
        self.metrics.train(record).map_err(|e| self.fail(e))?;
        if record.step.is_multiple_of(self.disp_freq) {
            self.metrics
                .flush()
                .map_err(|e| Error::io(&self.metrics_path, e))?;
        }
        self.progress.step(record);
        Ok(())
    }

    fn tested(&mut self, record: &Record) -> Result<()> {
        self.metrics.test(record).map_err(|e| self.fail(e))?;
        self.metrics
            .flush()
            .map_err(|e| Error::io(&self.metrics_path, e))?;
        self.progress.tested(record);
        Ok(())
    }

    fn epoch_ended(&mut self, checkpoint: &Checkpoint) -> Result<()> {
        let epoch = checkpoint.header.epoch;
        if epoch.is_multiple_of(self.checkpoint_every) || epoch == self.max_epoch {
            // Rows first: a checkpoint must never be ahead of the metrics it resumes.
            self.metrics
                .flush()
                .map_err(|e| Error::io(&self.metrics_path, e))?;
            checkpoint.save(&self.model_path)?;
        }
        Ok(())
    }

    fn grad_norms(&mut self, records: &[GradNormRecord]) -> Result<()> {
        if let Some((writer, path)) = &mut self.grad_norms {
            writer
                .write(records)
                .map_err(|e| Error::io(&*path, e.into()))?;
        }
        self.progress.grad_norms(records);
        Ok(())
    }
}
