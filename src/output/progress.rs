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

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressState, ProgressStyle};

use crate::records::{GradNormRecord, Record};

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
    /// Where bars are drawn: stderr, or a test's screen.
    target: Box<dyn Fn() -> ProgressDrawTarget + Send>,
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
            target: Box::new(ProgressDrawTarget::stderr),
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
            let bar = ProgressBar::with_draw_target(Some(iters as u64), (self.target)());
            let template = format!(
                "{{prefix}} [{{bar:14.cyan/blue}}] {{pos:>{}}}/{{len}} {{rate}} ETA {{eta}} run {{run_eta}} {{msg}}",
                digits(iters)
            );
            let epochs_after = (self.max_epoch - epoch) as f64;
            let run_eta = move |state: &ProgressState, w: &mut dyn std::fmt::Write| {
                let len = state.len().unwrap_or(0) as f64;
                let left = len - state.pos() as f64 + epochs_after * len;
                let rate = state.per_sec();
                let _ = match rate > 0.0 && rate.is_finite() {
                    true => w.write_str(&short_duration(left / rate)),
                    false => w.write_str("?"),
                };
            };
            bar.set_style(
                ProgressStyle::with_template(&template)
                    .expect("valid template")
                    .with_key("rate", rate)
                    .with_key("eta", |s: &ProgressState, w: &mut dyn std::fmt::Write| {
                        let _ = w.write_str(&short_duration(s.eta().as_secs_f64()));
                    })
                    .with_key("run_eta", run_eta)
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

    pub fn step(&mut self, r: &Record) {
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

    pub fn tested(&mut self, r: &Record) {
        match self.mode {
            Mode::Bar => {
                if let Some(bar) = self.bar.take() {
                    // The epoch's line stays: what it took, then its numbers.
                    let template = "{prefix} {len} it {rate} {took} | {msg}";
                    bar.set_style(
                        ProgressStyle::with_template(template)
                            .expect("valid template")
                            .with_key("rate", rate)
                            .with_key("took", |s: &ProgressState, w: &mut dyn std::fmt::Write| {
                                let _ = w.write_str(&short_duration(s.elapsed().as_secs_f64()));
                            }),
                    );
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

/// Iterations a second, to three significant figures at most: "2468 it/s", "12.3 it/s".
fn rate(state: &ProgressState, w: &mut dyn std::fmt::Write) {
    let r = state.per_sec();
    let _ = match r {
        r if !r.is_finite() => write!(w, "? it/s"),
        r if r >= 100.0 => write!(w, "{r:.0} it/s"),
        r if r >= 10.0 => write!(w, "{r:.1} it/s"),
        r => write!(w, "{r:.2} it/s"),
    };
}

/// Seconds as "0.4s", "42s", "3m07s" or "2h05m".
fn short_duration(seconds: f64) -> String {
    if !seconds.is_finite() || seconds < 0.0 {
        return "?".into();
    }
    let whole = seconds.round() as u64;
    match whole {
        _ if seconds < 10.0 => format!("{seconds:.1}s"),
        0..60 => format!("{whole}s"),
        60..3600 => format!("{}m{:02}s", whole / 60, whole % 60),
        _ => format!("{}h{:02}m", whole / 3600, whole / 60 % 60),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use indicatif::TermLike;

    use super::*;

    /// A terminal that keeps what is written to it.
    #[derive(Debug, Clone, Default)]
    struct Screen(Arc<Mutex<Vec<String>>>);

    impl TermLike for Screen {
        fn width(&self) -> u16 {
            300
        }
        fn move_cursor_up(&self, _: usize) -> std::io::Result<()> {
            Ok(())
        }
        fn move_cursor_down(&self, _: usize) -> std::io::Result<()> {
            Ok(())
        }
        fn move_cursor_right(&self, _: usize) -> std::io::Result<()> {
            Ok(())
        }
        fn move_cursor_left(&self, _: usize) -> std::io::Result<()> {
            Ok(())
        }
        fn write_line(&self, s: &str) -> std::io::Result<()> {
            self.0.lock().unwrap().push(s.to_string());
            Ok(())
        }
        fn write_str(&self, s: &str) -> std::io::Result<()> {
            self.write_line(s)
        }
        fn clear_line(&self) -> std::io::Result<()> {
            Ok(())
        }
        fn flush(&self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn without_colour(s: &str) -> String {
        let mut out = String::new();
        let mut chars = s.chars();
        while let Some(c) = chars.next() {
            if c == '\u{1b}' {
                chars.by_ref().find(|&c| c == 'm');
            } else {
                out.push(c);
            }
        }
        out
    }

    #[test]
    fn bar_lines_stay_within_100_columns_with_a_rounded_rate_and_the_run_eta() {
        let screen = Screen::default();
        let shown = screen.clone();
        let mut progress = Progress::new(Mode::Bar, 50, 1000);
        progress.target = Box::new(move || ProgressDrawTarget::term_like(Box::new(shown.clone())));
        let iters = 60_000;
        progress.epoch_started(999, iters);
        for iter in 1..=200 {
            let loss = 1234.56789 / iter as f64;
            progress.step(&Record {
                step: 998 * iters + iter,
                epoch: 999,
                iter,
                iters_per_epoch: iters,
                lr: 0.01,
                loss,
                acc: 0.123456,
                time_s: 0.0,
            });
            std::thread::sleep(Duration::from_millis(3));
        }
        std::thread::sleep(Duration::from_millis(450));
        progress.tested(&Record {
            step: 998 * iters + 200,
            epoch: 999,
            iter: 200,
            iters_per_epoch: iters,
            lr: 0.01,
            loss: 0.2941234,
            acc: 0.918,
            time_s: 0.0,
        });
        progress.finish();
        // What the terminal shows: each write without colours and the padding that clears a line.
        let lines: Vec<String> = (screen.0.lock().unwrap().iter())
            .map(|l| without_colour(l).trim_end().to_string())
            .filter(|l| !l.is_empty())
            .collect();
        let running = lines
            .iter()
            .find(|l| l.contains(" run "))
            .expect("a running bar was drawn");
        let last = lines.last().expect("the epoch's line stays");
        for line in [running, last] {
            assert!(
                line.chars().count() <= 100,
                "{} columns: {line}",
                line.chars().count()
            );
            let rate = line
                .split(" it/s")
                .next()
                .unwrap()
                .rsplit(' ')
                .next()
                .unwrap();
            assert!(
                rate.len() <= 5 && rate.parse::<f64>().is_ok(),
                "rate {rate:?} in {line}"
            );
        }
        assert!(
            running.contains(" ETA ") && running.contains(" run "),
            "{running}"
        );
        assert!(last.contains("test loss 0.2941 acc 0.9180"), "{last}");
    }

    #[test]
    fn durations_are_short() {
        assert_eq!(short_duration(0.42), "0.4s");
        assert_eq!(short_duration(42.4), "42s");
        assert_eq!(short_duration(187.0), "3m07s");
        assert_eq!(short_duration(7500.0), "2h05m");
        assert_eq!(short_duration(f64::INFINITY), "?");
    }
}
