//! One file per subcommand: each takes its checked flags, calls the library and prints the result.

pub mod bench;
pub mod eval;
pub mod export;
pub mod plot;
pub mod predict;
pub mod summarize;
pub mod train;

use std::io::Write;

use crate::cli::{Command, Parsed};
use crate::error::clipped;

/// Runs a parsed command line; returns the process exit code. An error is printed as one line.
pub fn run(parsed: Parsed) -> u8 {
    let result = match parsed.command {
        Command::Train(args) => train::run(args, parsed.words),
        Command::Bench(args) => bench::run(args),
        Command::Summarize(args) => summarize::run(args),
        Command::Plot(args) => plot::run(args),
        Command::Eval(args) => eval::run(args),
        Command::Predict(args) => predict::run(args),
        Command::Export(args) => export::run(args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "{}", clipped(&format!("error: {e}")));
            e.exit_code()
        }
    }
}
