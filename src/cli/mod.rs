//! The command line: [`args`] holds the flags, [`check`] turns them into a checked configuration before
//! any work starts, [`resources`] picks threads and kernels. [`parse`] reads the words; each
//! subcommand then runs in `crate::commands`, which depends on this module and not the reverse.

pub mod args;
pub mod check;
pub mod resources;

use std::ffi::OsString;
use std::io::Write;

use clap::Parser;

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

/// A parsed command line: the subcommand with its flags, and the words as given (recorded in a run's
/// config.json).
pub struct Parsed {
    pub command: Command,
    pub words: Vec<String>,
}

/// Parses `args` (program name first). `Err` is the exit code when there is nothing to run: 0 after
/// `--help` or `--version`, 2 after a usage error, which is printed here as one line.
pub fn parse(args: impl IntoIterator<Item = OsString>) -> Result<Parsed, u8> {
    let args = normalise_args(args);
    let words: Vec<String> = args
        .iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    match Cli::try_parse_from(&args) {
        Ok(cli) => Ok(Parsed {
            command: cli.command,
            words,
        }),
        Err(e) if !e.use_stderr() => {
            // --help and --version
            let _ = e.print();
            Err(0)
        }
        Err(e) if e.kind() == clap::error::ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            // bare `mlp`: the command list
            let _ = e.print();
            Err(2)
        }
        Err(e) => {
            report_clap_error(&e, &args);
            Err(2)
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
