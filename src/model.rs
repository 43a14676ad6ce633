//! A trained model read back from its run folder: the network of `config.json`'s spec with the
//! parameters of `model.ckpt`, ready to evaluate, predict or export.

use std::path::{Path, PathBuf};

use rand::SeedableRng;

use crate::batch::InputBatch;
use crate::checkpoint::Checkpoint;
use crate::error::{Error, Result};
use crate::loss::Loss;
use crate::network::Network;
use crate::output::config::RunConfig;
use crate::run_folder::{CONFIG_FILE, MODEL_FILE, file_in};
use crate::spec::NetSpec;

pub use crate::fit::EVAL_BATCH;

pub struct Model {
    pub dir: PathBuf,
    pub config: RunConfig,
    pub spec: NetSpec,
    pub checkpoint: Checkpoint,
    pub network: Network,
}

impl Model {
    /// Loads the run in `dir`; batches of up to `capacity` rows.
    pub fn load(dir: &Path, capacity: usize) -> Result<Model> {
        let ckpt_path = file_in(dir, MODEL_FILE)?;
        let config = RunConfig::load(&dir.join(CONFIG_FILE))?;
        let checkpoint = Checkpoint::load(&ckpt_path)?;
        let spec: NetSpec = checkpoint
            .header
            .spec
            .parse()
            .map_err(|e| Error::data(&ckpt_path, format!("spec: {e}")))?;
        // Initial weights are overwritten by the checkpoint; the seed only has to be some seed.
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
        let mut network = Network::from_spec(&spec, &mut rng, capacity);
        checkpoint
            .restore(&mut network)
            .map_err(|problem| Error::data(&ckpt_path, problem))?;
        Ok(Model {
            dir: dir.to_path_buf(),
            config,
            spec,
            checkpoint,
            network,
        })
    }

    pub fn loss(&self) -> Loss {
        self.checkpoint.header.loss
    }

    /// An input batch this model's network can read.
    pub fn batch(&self, capacity: usize) -> InputBatch {
        InputBatch::new(
            capacity,
            self.spec.input_width(),
            self.network.input_path(self.config.input_path),
        )
    }
}
