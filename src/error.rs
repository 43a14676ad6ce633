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
