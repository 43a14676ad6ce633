//! `mlp`: multilayer perceptrons on MNIST-style data, from a one-line layer spec, trained with SGD,
//! momentum and weight decay exactly as the reference framework of the course report does.
//!
//! The dependency direction is one way: `cli` → `run` → `train` → `network` → `layers` / `loss` /
//! `optim`, with `data` and `idx` below `train` and `output` beside `run`.

pub mod activation;
pub mod alloc;
pub mod batch;
pub mod bench;
pub mod checkpoint;
pub mod cli;
pub mod data;
pub mod error;
pub mod eval;
pub mod exp;
pub mod export;
pub mod idx;
pub mod interrupt;
pub mod kernels;
pub mod layers;
pub mod loss;
pub mod model;
pub mod network;
pub mod optim;
pub mod output;
pub mod param;
pub mod peak;
pub mod plot;
pub mod predict;
pub mod reference;
pub mod run;
pub mod spec;
pub mod summarize;
pub mod train;

pub use error::{Error, Result};
pub use loss::Loss;
pub use spec::NetSpec;
