//! `config.json`: every setting of a run, defaults included, so that it can be repeated exactly.

use std::path::PathBuf;

use serde::Serialize;

use crate::batch::InputPath;
use crate::loss::Loss;
use crate::train::Status;

#[derive(Debug, Clone, Serialize)]
pub struct RunConfig {
    pub tool: &'static str,
    pub version: &'static str,
    pub name: String,
    pub status: Status,
    /// The spec in canonical form; `mlp train --layer "<this>"` rebuilds the same network.
    pub layer: String,
    pub loss: Loss,
    pub lr: f32,
    pub weight_decay: f32,
    pub momentum: f32,
    pub batch_size: usize,
    pub max_epoch: usize,
    pub disp_freq: usize,
    pub test_epoch: usize,
    pub seed: u64,
    pub allow_nan: bool,
    pub grad_norms: bool,
    /// Speed only: the numbers do not depend on these two.
    pub threads: usize,
    pub input_path: InputPath,
    pub data: PathBuf,
    pub out: PathBuf,
    /// The command line as given.
    pub command: Vec<String>,
}
