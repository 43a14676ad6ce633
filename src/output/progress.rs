//! Progress on stderr. On a terminal: one indicatif bar per epoch (iterations, rate, ETA, the latest
//! window's loss and accuracy), left behind as one line per epoch, Keras-style. Elsewhere (CI, `| tee`,
//! a log file): plain lines every `disp_freq` iterations, like the reference's `train_net`:
//!
//! ```text
//! [epoch 1/50] Training iter 50/600, batch loss 1.2345, batch acc 0.6420
//! [epoch 1/50] Testing, total mean loss 0.29412, total acc 0.91830
//! ```
//!
//! A window is the iterations `k - disp_freq + 1 ..= k` of one epoch (the counter restarts each epoch,
//! as in `train_net`); the numbers printed are exactly the mean of those rows of `metrics.csv`.

use std::io::{IsTerminal, Write};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::train::{GradNormRecord, StepRecord, TestRecord};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Bar,
    Lines,
    Quiet,
}

impl Mode {
    /// A bar when stderr is a terminal, lines otherwise, nothing when `quiet`.
    pub fn detect(quiet: bool) -> Mode {
        if quiet {
            Mode::Quiet
        } else if std::io::stderr().is_terminal() {
            Mode::Bar
        } else {
            Mode::Lines
        }
    }
}

pub struct Progress {
    mode: Mode,
    disp_freq: usize,
    max_epoch: usize,
    bar: Option<ProgressBar>,
    window_loss: f64,
    window_acc: f64,
    window_len: usize,
    latest: String,
}

impl Progress {
    pub fn new(mode: Mode, disp_freq: usize, max_epoch: usize) -> Self {
        Progress {
            mode,
            disp_freq,
            max_epoch,
            bar: None,
            window_loss: 0.0,
            window_acc: 0.0,
            window_len: 0,
            latest: String::new(),
        }
    }

    pub fn epoch_started(&mut self, epoch: usize, iters: usize) {
        self.finish_bar();
        self.window_loss = 0.0;
        self.window_acc = 0.0;
        self.window_len = 0;
        self.latest.clear();
        if self.mode == Mode::Bar {
            let bar =
                ProgressBar::with_draw_target(Some(iters as u64), ProgressDrawTarget::stderr());
            let template =
                "{prefix} {bar:30.cyan/blue} {pos:>5}/{len} it {per_sec:>12} ETA {eta:>3} {msg}";
            bar.set_style(
                ProgressStyle::with_template(template)
                    .expect("valid template")
                    .progress_chars("=> "),
            );
            bar.set_prefix(format!(
                "epoch {epoch:>width$}/{}",
                self.max_epoch,
                width = digits(self.max_epoch)
            ));
            bar.enable_steady_tick(Duration::from_millis(200));
            self.bar = Some(bar);
        }
    }

    pub fn step(&mut self, r: &StepRecord) {
        self.window_loss += r.loss;
        self.window_acc += r.acc;
        self.window_len += 1;
        if let Some(bar) = &self.bar {
            bar.inc(1);
        }
        if !r.iter.is_multiple_of(self.disp_freq) {
            return;
        }
        let (loss, acc) = (
            self.window_loss / self.window_len as f64,
            self.window_acc / self.window_len as f64,
        );
        (self.window_loss, self.window_acc, self.window_len) = (0.0, 0.0, 0);
        match self.mode {
            Mode::Bar => {
                self.latest = format!("loss {loss:.4} acc {acc:.4}");
                if let Some(bar) = &self.bar {
                    bar.set_message(self.latest.clone());
                }
            }
            Mode::Lines => self.line(&format!(
                "[epoch {}/{}] Training iter {}/{}, batch loss {loss:.4}, batch acc {acc:.4}",
                r.epoch, self.max_epoch, r.iter, r.iters_per_epoch
            )),
            Mode::Quiet => {}
        }
    }

    pub fn tested(&mut self, r: &TestRecord) {
        match self.mode {
            Mode::Bar => {
                if let Some(bar) = self.bar.take() {
                    bar.finish_with_message(format!(
                        "{} | test loss {:.4} acc {:.4}",
                        self.latest, r.loss, r.acc
                    ));
                }
            }
            Mode::Lines => self.line(&format!(
                "[epoch {}/{}] Testing, total mean loss {:.5}, total acc {:.5}",
                r.epoch, self.max_epoch, r.loss, r.acc
            )),
            Mode::Quiet => {}
        }
    }

    /// In line mode, the weight-gradient norms as one line (report, section 3.4).
    pub fn grad_norms(&mut self, records: &[GradNormRecord]) {
        if self.mode != Mode::Lines || records.is_empty() {
            return;
        }
        let norms: Vec<String> = records
            .iter()
            .map(|r| format!("{} {:.3e}", r.layer, r.norm))
            .collect();
        self.line(&format!(
            "  step {}: L2 norm of weight gradient: {}",
            records[0].step,
            norms.join(", ")
        ));
    }

    /// Leaves the last bar on screen.
    pub fn finish(&mut self) {
        self.finish_bar();
    }

    fn finish_bar(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish();
        }
    }

    fn line(&self, text: &str) {
        // Progress is a courtesy: a closed stderr must not stop training.
        let _ = writeln!(std::io::stderr(), "{text}");
    }
}

fn digits(n: usize) -> usize {
    n.to_string().len()
}
