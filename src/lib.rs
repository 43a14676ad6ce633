//! `mlp`: multilayer perceptrons on MNIST-style data, from a one-line layer spec, trained with SGD,
//! momentum and weight decay exactly as the reference framework of the course report does.
//!
//! The data flows one way:
//!
//! ```text
//! flags (cli) -> checked config (cli::check) -> a subcommand (commands) -> run folder (run, run_folder,
//!   output) -> training loop (train) -> network plan (network) -> layers (layers, activation), loss,
//!   optimiser (optim) -> kernels
//! ```
//!
//! with `spec` the layer grammar as plain data, `files` (only regular files are read), `data`, `idx`,
//! `batch` and `fit` (does a network fit its data and memory) below the loop, `records` the rows the loop reports, `load` how busy the machine is,
//! and `kernels` at the bottom: the arithmetic, one source per kernel instantiated for each instruction
//! set, which gives the same numbers on every backend and thread count. `tests/layering.rs` checks that
//! no module imports one that imports it back.

pub mod activation;
pub mod alloc;
pub mod batch;
pub mod bench;
pub mod checkpoint;
pub mod cli;
pub mod commands;
pub mod data;
pub mod error;
pub mod eval;
pub mod exp;
pub mod export;
pub mod files;
pub mod fit;
pub mod idx;
pub mod interrupt;
pub mod kernels;
pub mod layers;
pub mod load;
pub mod loss;
pub mod model;
pub mod network;
pub mod optim;
pub mod output;
pub mod param;
pub mod peak;
pub mod plot;
pub mod predict;
pub mod records;
pub mod reference;
pub mod run;
pub mod run_folder;
pub mod spec;
pub mod summarize;
pub mod train;

pub use error::{Error, Result};
pub use loss::Loss;
pub use spec::NetSpec;
