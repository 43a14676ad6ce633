//! The one error type of the crate. Each variant says what went wrong and where; `main` turns it into a
//! single line on stderr and an exit status chosen in [`Error::exit_code`].

use std::io;
use std::path::PathBuf;

use crate::spec::SpecError;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A flag value that is out of range or inconsistent with the data (exit status 2).
    #[error("{flag}: {problem}")]
    Usage { flag: &'static str, problem: String },

    /// A layer spec that does not parse or does not fit the data (exit status 2).
    #[error(transparent)]
    Spec(#[from] SpecError),

    /// A data file that is missing, malformed or inconsistent with its partner.
    #[error("{}: {problem}", path.display())]
    Data { path: PathBuf, problem: String },

    /// Reading or writing a file failed.
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: io::Error },

    /// The output folder already holds a run.
    #[error("{}: {problem}", path.display())]
    OutputExists { path: PathBuf, problem: String },
}

impl Error {
    pub fn usage(flag: &'static str, problem: impl Into<String>) -> Self {
        Error::Usage {
            flag,
            problem: problem.into(),
        }
    }

    pub fn data(path: impl Into<PathBuf>, problem: impl Into<String>) -> Self {
        Error::Data {
            path: path.into(),
            problem: problem.into(),
        }
    }

    pub fn io(path: impl Into<PathBuf>, source: io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    /// 2 for what the user typed (flags, spec), 1 for everything else, as clap and most Unix tools do.
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Usage { .. } | Error::Spec(_) => 2,
            _ => 1,
        }
    }
}

/// The most characters of one piece of user input (a path, a spec, a value) an error message shows.
pub const SHOWN: usize = 60;
/// The longest error line, in characters.
pub const LONGEST_LINE: usize = 600;

/// At most [`SHOWN`] characters of `text`, cut with "..." and the full length.
pub fn shown(text: &str) -> String {
    match text.char_indices().nth(SHOWN) {
        Some((end, _)) => format!("{}... ({} bytes)", &text[..end], text.len()),
        None => text.to_string(),
    }
}

/// An error line for the terminal: every word longer than [`SHOWN`] characters (a long path, spec or
/// value the user gave) is cut, and so is the whole line past [`LONGEST_LINE`] characters, so that
/// no input is echoed whole.
pub fn clipped(line: &str) -> String {
    let words: Vec<String> = line
        .split(' ')
        .map(|w| {
            if w.chars().count() <= SHOWN + 20 {
                return w.to_string();
            }
            // Quotes and punctuation that close the word stay, so the message still reads.
            let body = w.trim_end_matches(['"', '\'', ':', ',', ';', ')']);
            format!("{}{}", shown(body), &w[body.len()..])
        })
        .collect();
    let line = words.join(" ");
    match line.char_indices().nth(LONGEST_LINE) {
        Some((end, _)) => format!("{}...", &line[..end]),
        None => line,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_input_is_cut_in_messages() {
        assert_eq!(shown("short"), "short");
        let long = "a".repeat(5000);
        assert_eq!(shown(&long), format!("{}... (5000 bytes)", "a".repeat(60)));
        let line = clipped(&format!("error: {long}: not found"));
        assert!(line.len() < 120 && line.ends_with(": not found"), "{line}");
        let spaced = clipped(&"x ".repeat(5000));
        assert!(spaced.len() <= 603, "{}", spaced.len());
    }
}
