//! One file per subcommand: each takes its checked flags, calls the library and prints the result.

pub mod bench;
pub mod eval;
pub mod export;
pub mod plot;
pub mod predict;
pub mod summarize;
pub mod train;
