//! `config.json`: every setting of a run, defaults included, so that it can be repeated exactly.

use std::path::PathBuf;

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

use crate::batch::InputPath;
use crate::loss::Loss;
use crate::records::Status;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunConfig {
    pub tool: String,
    pub version: String,
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
    pub checkpoint_every: usize,
    /// Speed only: the numbers do not depend on these three.
    pub threads: usize,
    #[serde(default)]
    pub kernels: Option<crate::kernels::Backend>,
    pub input_path: InputPath,
    pub data: PathBuf,
    pub out: PathBuf,
    /// The command line as given.
    pub command: Vec<String>,
}

impl RunConfig {
    /// Reads a run folder's `config.json`.
    pub fn load(path: &Path) -> Result<RunConfig> {
        let text = crate::files::read_regular_text(path, "a run's config.json")?;
        serde_json::from_str(&text)
            .map_err(|e| Error::data(path, format!("not a run configuration: {e}")))
    }
}
