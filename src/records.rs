//! What the training loop reports, row by row, and how a run ended: the types the loop, the run
//! folder's writers and the progress share, kept here so that each depends on this leaf alone.

use serde::Serialize;

/// One row of `metrics.csv`, made after iteration `iter` of epoch `epoch`: a training iteration (its
/// batch's mean loss and accuracy, measured before the update), or a whole-test-set evaluation.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    /// Global iteration, from 1, never reset.
    pub step: usize,
    /// Epoch, from 1.
    pub epoch: usize,
    /// Iteration within the epoch, from 1.
    pub iter: usize,
    pub iters_per_epoch: usize,
    pub lr: f32,
    pub loss: f64,
    pub acc: f64,
    /// Seconds since training started.
    pub time_s: f64,
}

/// The L2 norm of one Linear layer's weight gradient at one step (report, section 3.4).
#[derive(Debug, Clone, PartialEq)]
pub struct GradNormRecord {
    pub step: usize,
    pub iters_per_epoch: usize,
    /// The layer's NAME from the spec.
    pub layer: String,
    pub norm: f64,
}

/// How a run ended; `running` is what the files say while it trains.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Running,
    Completed,
    Interrupted,
    Diverged,
    Failed,
}

impl Status {
    /// The word the run's files use.
    pub fn word(self) -> &'static str {
        match self {
            Status::Running => "running",
            Status::Completed => "completed",
            Status::Interrupted => "interrupted",
            Status::Diverged => "diverged",
            Status::Failed => "failed",
        }
    }
}
