//! `grad_norms.csv` (with `--grad-norms`): the L2 norm of every Linear layer's weight gradient, every
//! `--disp-freq` iterations, in long form so that any number of layers fits one fixed header:
//!
//! ```text
//! step,epoch,layer,grad_norm
//! 50,0.08333333333333333,fc1,0.00022083940633880848
//! 50,0.08333333333333333,fc2,0.0025717604780565602
//! ```

use std::io::Write;

use crate::records::GradNormRecord;

pub const HEADER: [&str; 4] = ["step", "epoch", "layer", "grad_norm"];

pub struct GradNormWriter<W: Write> {
    csv: csv::Writer<W>,
}

impl<W: Write> GradNormWriter<W> {
    pub fn new(out: W) -> csv::Result<Self> {
        let mut csv = csv::Writer::from_writer(out);
        csv.write_record(HEADER)?;
        Ok(GradNormWriter { csv })
    }

    /// Continues an existing file: no header.
    pub fn append(out: W) -> Self {
        GradNormWriter {
            csv: csv::Writer::from_writer(out),
        }
    }

    pub fn write(&mut self, records: &[GradNormRecord]) -> csv::Result<()> {
        for r in records {
            let epoch = r.step as f64 / r.iters_per_epoch as f64;
            self.csv.write_record([
                r.step.to_string(),
                epoch.to_string(),
                r.layer.clone(),
                r.norm.to_string(),
            ])?;
        }
        self.csv.flush()?;
        Ok(())
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
    fn one_row_per_layer() {
        let mut w = GradNormWriter::new(Vec::new()).unwrap();
        let rec = |layer: &str, norm| GradNormRecord {
            step: 50,
            iters_per_epoch: 100,
            layer: layer.into(),
            norm,
        };
        w.write(&[rec("fc1", 0.25), rec("fc2", 2.0)]).unwrap();
        let text = String::from_utf8(w.into_inner().unwrap()).unwrap();
        assert_eq!(
            text,
            "step,epoch,layer,grad_norm\n50,0.5,fc1,0.25\n50,0.5,fc2,2\n"
        );
    }
}
