//! The command line: [`args`] holds the flags, [`check`] turns them into a checked configuration before
//! any work starts, [`resources`] picks threads and kernels; each subcommand runs in
//! [`crate::commands`]. [`run`] is `main` without the exit.

pub mod args;
pub mod check;
pub mod resources;

use std::ffi::OsString;
use std::io::Write;

use clap::Parser;

use crate::commands;
use crate::error::clipped;
pub use args::{Cli, Command, DEFAULT_LAYER, DEFAULT_MAX_EPOCH, DEFAULT_SEED, default_data_dir};

/// Accepts the report's single-dash `-layer` (and `-layer=SPEC`) as `--layer`.
fn normalise_args(args: impl IntoIterator<Item = OsString>) -> Vec<OsString> {
    args.into_iter()
        .map(|arg| match arg.to_str() {
            Some("-layer") => "--layer".into(),
            Some(s) if s.starts_with("-layer=") => format!("-{s}").into(),
            _ => arg,
        })
        .collect()
}

/// Parses `args` (program name first) and runs the command. Returns the process exit code; errors are
/// printed here as one line.
pub fn run(args: impl IntoIterator<Item = OsString>) -> u8 {
    let args = normalise_args(args);
    let command: Vec<String> = args
        .iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let cli = match Cli::try_parse_from(&args) {
        Ok(cli) => cli,
        Err(e) if !e.use_stderr() => {
            // --help and --version
            let _ = e.print();
            return 0;
        }
        Err(e) if e.kind() == clap::error::ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            // bare `mlp`: the command list
            let _ = e.print();
            return 2;
        }
        Err(e) => {
            report_clap_error(&e, &args);
            return 2;
        }
    };
    let result = match cli.command {
        Command::Train(args) => commands::train::run(args, command),
        Command::Bench(args) => commands::bench::run(args),
        Command::Summarize(args) => commands::summarize::run(args),
        Command::Plot(args) => commands::plot::run(args),
        Command::Eval(args) => commands::eval::run(args),
        Command::Predict(args) => commands::predict::run(args),
        Command::Export(args) => commands::export::run(args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "{}", clipped(&format!("error: {e}")));
            e.exit_code()
        }
    }
}

/// clap's message is several lines (error, its detail and tips, usage); they go on one line, without
/// the usage, pointing at the subcommand's --help.
fn report_clap_error(e: &clap::Error, args: &[OsString]) {
    let rendered = e.render().to_string();
    let parts: Vec<&str> = rendered
        .lines()
        .take_while(|l| !l.starts_with("Usage:") && !l.starts_with("For more information"))
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let message = match parts.as_slice() {
        [] => "error: bad arguments".to_string(),
        [first, rest @ ..] => rest.iter().fold(first.to_string(), |mut m, part| {
            m.push_str(if m.ends_with(':') { " " } else { "; " });
            m.push_str(part);
            m
        }),
    };
    let subcommand = args
        .get(1)
        .and_then(|a| a.to_str())
        .filter(|a| Cli::is_subcommand(a))
        .map(|a| format!(" {a}"))
        .unwrap_or_default();
    let _ = writeln!(
        std::io::stderr(),
        "{} (see 'mlp{subcommand} --help')",
        clipped(&message)
    );
}
