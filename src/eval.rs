//! `mlp eval`: a saved model on a test set: mean loss, accuracy, the confusion matrix and per-class
//! accuracy.

use std::io::Write;

use crate::batch::InputBatch;
use crate::data::Split;
use crate::loss::{BatchStats, Loss, argmax};
use crate::network::Network;

/// The numbers of one evaluation. `confusion[t][p]` counts images of class `t` predicted as `p`.
#[derive(Debug, Clone, PartialEq)]
pub struct Evaluation {
    pub stats: BatchStats,
    pub confusion: Vec<Vec<usize>>,
}

impl Evaluation {
    /// Accuracy on each true class (NaN for a class with no image).
    pub fn per_class_accuracy(&self) -> Vec<f64> {
        self.confusion
            .iter()
            .enumerate()
            .map(|(t, row)| row[t] as f64 / row.iter().sum::<usize>() as f64)
            .collect()
    }

    /// The confusion matrix as CSV: `true,pred_0,...,pred_K-1`, one row per true class.
    pub fn write_confusion_csv(&self, out: impl Write) -> csv::Result<()> {
        let classes = self.confusion.len();
        let mut csv = csv::Writer::from_writer(out);
        let mut header = vec!["true".to_string()];
        header.extend((0..classes).map(|p| format!("pred_{p}")));
        csv.write_record(&header)?;
        for (t, row) in self.confusion.iter().enumerate() {
            let mut record = vec![t.to_string()];
            record.extend(row.iter().map(|c| c.to_string()));
            csv.write_record(&record)?;
        }
        csv.flush()?;
        Ok(())
    }

    /// A plain-text report: totals, the matrix, per-class accuracy.
    pub fn write_report(&self, out: &mut impl Write) -> std::io::Result<()> {
        let s = &self.stats;
        writeln!(
            out,
            "test loss {:.5}, accuracy {:.5} ({} of {} images)",
            s.mean_loss(),
            s.accuracy(),
            s.correct,
            s.samples
        )?;
        writeln!(
            out,
            "\nconfusion matrix (rows: true class, columns: predicted class)"
        )?;
        write!(out, "{:>6}", "")?;
        for p in 0..self.confusion.len() {
            write!(out, "{p:>6}")?;
        }
        writeln!(out)?;
        for (t, row) in self.confusion.iter().enumerate() {
            write!(out, "{t:>6}")?;
            for c in row {
                write!(out, "{c:>6}")?;
            }
            writeln!(out)?;
        }
        writeln!(out, "\nper-class accuracy")?;
        for (t, acc) in self.per_class_accuracy().iter().enumerate() {
            writeln!(out, "{t:>6}  {acc:.4}")?;
        }
        Ok(())
    }
}

/// Evaluates `network` on the whole of `split` in its order, in chunks of `batch.capacity()` rows.
pub fn evaluate(
    network: &mut Network,
    split: &Split,
    loss: Loss,
    classes: usize,
    batch: &mut InputBatch,
) -> Evaluation {
    let mut stats = BatchStats::default();
    let mut confusion = vec![vec![0; classes]; classes];
    let all: Vec<u32> = (0..split.len() as u32).collect();
    for indices in all.chunks(batch.capacity()) {
        batch.fill(split, indices);
        let outputs = network.forward(batch);
        for (row, &label) in outputs.rows().into_iter().zip(batch.labels()) {
            confusion[label as usize][argmax(row)] += 1;
        }
        stats.add(loss.evaluate(outputs, batch.labels(), None));
    }
    Evaluation { stats, confusion }
}
