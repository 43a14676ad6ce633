//! `mlp train`: train a network into its run folder.

use std::io::Write;

use crate::cli::args::TrainArgs;
use crate::cli::resources::configure_threads;
use crate::error::{Error, Result};
use crate::interrupt::StopFlag;
use crate::records::Status;
use crate::run::run_train;

/// Trains; the exit code is 0, or says how the run stopped early: 130 (SIGINT), 143 (SIGTERM), 3
/// (diverged).
pub fn run(args: TrainArgs, command: Vec<String>) -> Result<u8> {
    let cfg = args.into_config(command)?;
    configure_threads(cfg.threads)?;
    let stop = StopFlag::install().map_err(|e| Error::io("signal handlers", e))?;
    let outcome = run_train(&cfg, &stop)?;
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
        // `--resume` continues from the last checkpoint, written at the end of each epoch.
        let checkpointed = cfg.out_dir.join(crate::run_folder::MODEL_FILE).is_file();
        let resume = match outcome.status {
            Status::Interrupted if checkpointed => format!(
                "; continue with: mlp train --resume {}",
                cfg.out_dir.display()
            ),
            Status::Interrupted => {
                "; no epoch had ended, so there is no checkpoint to resume from".to_string()
            }
            _ => String::new(),
        };
        let _ = writeln!(
            std::io::stderr(),
            "{}{signal}; every row so far is in {}{resume}",
            outcome.stopped,
            cfg.out_dir.join(crate::run_folder::METRICS_FILE).display(),
        );
    }
    let extent = match outcome.status {
        Status::Completed if outcome.epochs == 1 => "1 epoch".to_string(),
        Status::Completed => format!("{} epochs", outcome.epochs),
        status => format!(
            "{} at epoch {}, step {} of {}",
            status.word(),
            outcome.last_epoch,
            thousands(outcome.steps),
            thousands(outcome.total_steps)
        ),
    };
    let _ = writeln!(
        std::io::stdout(),
        "{}: train loss {:.5} acc {:.5} | test loss {:.5} acc {:.5} | {extent} in {:.1} s -> {}",
        cfg.name,
        outcome.train_loss,
        outcome.train_acc,
        outcome.test_loss,
        outcome.test_acc,
        outcome.train_time_s,
        cfg.out_dir.display()
    );
    Ok(code)
}

/// `n` with a comma between each group of three digits: 3,600.
fn thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, d) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(d);
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn thousands_are_grouped() {
        assert_eq!(super::thousands(7), "7");
        assert_eq!(super::thousands(3600), "3,600");
        assert_eq!(super::thousands(1234567), "1,234,567");
    }
}
