//! `metrics.csv`: one row per training iteration and one per test evaluation, for pandas, gnuplot or a
//! spreadsheet as it is.
//!
//! ```text
//! step,epoch,split,lr,loss,acc,time_s
//! 1,0.0016666666666666668,train,0.01,2.3051,0.08,0.0012
//! ...
//! 600,1,test,0.01,0.30112,0.9161,0.71
//! ```
//! `step` is the global iteration (from 1, never reset), `epoch` is `step / iterations per epoch`,
//! `split` is `train` (that iteration's batch mean loss and accuracy, before its update) or `test` (the
//! whole test set after the step), `time_s` the seconds since training started. Every cell is filled.

use std::io::Write;

use crate::records::Record;

pub const HEADER: [&str; 7] = ["step", "epoch", "split", "lr", "loss", "acc", "time_s"];

pub struct MetricsWriter<W: Write> {
    csv: csv::Writer<W>,
}

impl<W: Write> MetricsWriter<W> {
    /// Starts a new file: writes the header.
    pub fn new(out: W) -> csv::Result<Self> {
        let mut csv = csv::Writer::from_writer(out);
        csv.write_record(HEADER)?;
        Ok(MetricsWriter { csv })
    }

    /// Continues an existing file: no header.
    pub fn append(out: W) -> Self {
        MetricsWriter {
            csv: csv::Writer::from_writer(out),
        }
    }

    pub fn train(&mut self, r: &Record) -> csv::Result<()> {
        self.row(
            r.step,
            r.iters_per_epoch,
            "train",
            r.lr,
            r.loss,
            r.acc,
            r.time_s,
        )
    }

    pub fn test(&mut self, r: &Record) -> csv::Result<()> {
        self.row(
            r.step,
            r.iters_per_epoch,
            "test",
            r.lr,
            r.loss,
            r.acc,
            r.time_s,
        )
    }

    #[allow(clippy::too_many_arguments)]
    fn row(
        &mut self,
        step: usize,
        per_epoch: usize,
        split: &str,
        lr: f32,
        loss: f64,
        acc: f64,
        time_s: f64,
    ) -> csv::Result<()> {
        let epoch = step as f64 / per_epoch as f64;
        self.csv.write_record([
            step.to_string(),
            epoch.to_string(),
            split.to_string(),
            lr.to_string(),
            loss.to_string(),
            acc.to_string(),
            format!("{time_s:.4}"),
        ])
    }

    /// Pushes the buffered rows to the underlying writer (and the file to the kernel).
    pub fn flush(&mut self) -> std::io::Result<()> {
        self.csv.flush()
    }

    /// Flushes and returns the underlying writer.
    pub fn into_inner(self) -> std::io::Result<W> {
        self.csv.into_inner().map_err(|e| e.into_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_are_dense_and_exact() {
        let mut w = MetricsWriter::new(Vec::new()).unwrap();
        let step = Record {
            step: 3,
            epoch: 1,
            iter: 3,
            iters_per_epoch: 4,
            lr: 0.01,
            loss: 2.5,
            acc: 0.125,
            time_s: 0.5,
        };
        w.train(&step).unwrap();
        w.test(&Record {
            step: 4,
            epoch: 1,
            iter: 4,
            iters_per_epoch: 4,
            lr: 0.01,
            loss: 0.25,
            acc: 0.9,
            time_s: 1.0,
        })
        .unwrap();
        let text = String::from_utf8(w.into_inner().unwrap()).unwrap();
        assert_eq!(
            text,
            "step,epoch,split,lr,loss,acc,time_s\n3,0.75,train,0.01,2.5,0.125,0.5000\n4,1,test,0.01,0.25,0.9,1.0000\n"
        );
    }
}
