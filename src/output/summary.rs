//! `summary.csv`: one header and one row per run, the run's settings and its Table 3 row, so that the
//! summaries of many runs concatenate into one table (`mlp summarize`, or `csvstack`, or pandas).

use std::io::Write;

use serde::Serialize;

use crate::loss::Loss;
use crate::records::Status;

/// The one row. Field order is column order.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub name: String,
    pub status: Status,
    pub loss: Loss,
    pub layer: String,
    pub lr: f32,
    pub weight_decay: f32,
    pub momentum: f32,
    pub batch_size: usize,
    pub max_epoch: usize,
    pub seed: u64,
    pub steps: usize,
    /// Mean of the last epoch's train rows in `metrics.csv`.
    pub train_loss: f64,
    pub train_acc: f64,
    /// The last test row in `metrics.csv`.
    pub test_loss: f64,
    pub test_acc: f64,
    /// Training only: evaluation excluded.
    pub train_time_s: f64,
    /// Whole epochs trained (`max_epoch` when the run completed).
    pub epochs: usize,
}

/// Writes the header and the row.
pub fn write_summary(out: impl Write, summary: &Summary) -> csv::Result<()> {
    let mut csv = csv::Writer::from_writer(out);
    csv.serialize(summary)?;
    csv.flush()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_header_one_row_spec_quoted() {
        let summary = Summary {
            name: "MLP1_ReLU_CE".into(),
            status: Status::Completed,
            loss: Loss::SoftmaxCe,
            layer: "linear,fc1,784,256,0.01; relu,relu1; linear,fc2,256,10,0.01".into(),
            lr: 0.01,
            weight_decay: 0.0005,
            momentum: 0.9,
            batch_size: 100,
            max_epoch: 1,
            seed: 7,
            steps: 600,
            train_loss: 0.5,
            train_acc: 0.875,
            test_loss: 0.25,
            test_acc: 0.9375,
            train_time_s: 1.5,
            epochs: 1,
        };
        let mut out = Vec::new();
        write_summary(&mut out, &summary).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "name,status,loss,layer,lr,weight_decay,momentum,batch_size,max_epoch,seed,steps,train_loss,train_acc,test_loss,test_acc,train_time_s,epochs\n\
             MLP1_ReLU_CE,completed,ce,\"linear,fc1,784,256,0.01; relu,relu1; linear,fc2,256,10,0.01\",0.01,0.0005,0.9,100,1,7,600,0.5,0.875,0.25,0.9375,1.5,1\n"
        );
    }
}
