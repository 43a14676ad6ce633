//! `mlp predict`: classify images with a saved model.

use std::io::Write;

use crate::cli::args::PredictArgs;
use crate::error::Result;
use crate::loss::Loss;

pub fn run(args: PredictArgs) -> Result<u8> {
    use crate::model::{EVAL_BATCH, Model};
    use crate::predict::{read_inputs, softmax};
    let mut model = Model::load(&args.run, EVAL_BATCH)?;
    let inputs = read_inputs(&args.files, model.spec.input_width())?;
    let mut batch = model.batch(EVAL_BATCH);
    let probabilities = model.loss() == Loss::SoftmaxCe;
    let classes = model.spec.output_width();
    let mut out = std::io::stdout().lock();
    if args.csv {
        let what = if probabilities { "p" } else { "score" };
        let columns: Vec<String> = (0..classes).map(|k| format!("{what}_{k}")).collect();
        let _ = writeln!(out, "file,index,class,{}", columns.join(","));
    }
    let all: Vec<u32> = (0..inputs.split.len() as u32).collect();
    for indices in all.chunks(EVAL_BATCH) {
        batch.fill(&inputs.split, indices);
        let outputs = model.network.forward(&batch);
        for (row, &i) in outputs.rows().into_iter().zip(indices) {
            let raw: Vec<f32> = row.to_vec();
            let class = crate::loss::argmax(row);
            // Cross-entropy models give probabilities (softmax); MSE models their raw outputs.
            let values: Vec<f64> = if probabilities {
                softmax(&raw)
            } else {
                raw.iter().map(|&v| v as f64).collect()
            };
            let (file, index) = &inputs.origins[i as usize];
            let _ = if args.csv {
                let cells: Vec<String> = values.iter().map(|v| format!("{v:.6}")).collect();
                let name = file.display().to_string().replace('"', "\"\"");
                writeln!(out, "\"{name}\",{index},{class},{}", cells.join(","))
            } else {
                let cells: Vec<String> = values
                    .iter()
                    .enumerate()
                    .map(|(k, v)| format!("{k}:{v:.3}"))
                    .collect();
                writeln!(
                    out,
                    "{}[{index}]: {class}  ({})",
                    file.display(),
                    cells.join(" ")
                )
            };
        }
    }
    Ok(0)
}
