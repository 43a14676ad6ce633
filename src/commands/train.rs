//! `mlp train`: train a network into its run folder.

use std::io::Write;

use crate::cli::args::TrainArgs;
use crate::cli::resources::{configure_threads, on_pool};
use crate::error::{Error, Result};
use crate::interrupt::StopFlag;
use crate::run::run_train;
use crate::train::Status;

/// Trains; the exit code is 0, or says how the run stopped early: 130 (SIGINT), 143 (SIGTERM), 3
/// (diverged).
pub fn run(args: TrainArgs, command: Vec<String>) -> Result<u8> {
    let cfg = args.into_config(command)?;
    configure_threads(cfg.threads)?;
    let stop = StopFlag::install().map_err(|e| Error::io("signal handlers", e))?;
    let outcome = on_pool(|| run_train(&cfg, &stop))?;
    let code = match outcome.status {
        Status::Interrupted => stop.requested().map_or(130, |s| s.exit_code()),
        Status::Diverged => 3,
        _ => 0,
    };
    if code != 0 {
        let signal = stop
            .requested()
            .map(|s| format!(" by {}", s.name()))
            .unwrap_or_default();
        let _ = writeln!(
            std::io::stderr(),
            "{}{signal}; every row so far is in {} (status: {:?})",
            outcome.stopped,
            cfg.out_dir.join(crate::run_folder::METRICS_FILE).display(),
            outcome.status
        );
    }
    let _ = writeln!(
        std::io::stdout(),
        "{}: train loss {:.5} acc {:.5} | test loss {:.5} acc {:.5} | {} epochs in {:.1} s -> {}",
        cfg.name,
        outcome.train_loss,
        outcome.train_acc,
        outcome.test_loss,
        outcome.test_acc,
        cfg.settings.max_epoch,
        outcome.train_time_s,
        cfg.out_dir.display()
    );
    Ok(code)
}
