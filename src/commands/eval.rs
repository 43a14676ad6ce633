//! `mlp eval`: a saved model on a test set.

use std::io::Write;

use crate::cli::args::EvalArgs;
use crate::error::Result;

pub fn run(args: EvalArgs) -> Result<u8> {
    use crate::model::{EVAL_BATCH, Model};
    let probe = crate::output::config::RunConfig::load(&args.run.join(crate::run::CONFIG_FILE))?;
    let data_dir = args.data.clone().unwrap_or_else(|| probe.data.clone());
    let data = crate::data::Dataset::load(&data_dir)?;
    // The chunking of the training run's own evaluation, so the numbers match it exactly.
    let capacity = probe.batch_size.max(EVAL_BATCH.min(data.test.len()));
    let mut model = Model::load(&args.run, capacity)?;
    model.spec.check_data(data.input_width(), data.classes)?;
    let mut batch = model.batch(capacity);
    let loss = model.loss();
    let result = crate::eval::evaluate(
        &mut model.network,
        &data.test,
        loss,
        data.classes,
        &mut batch,
    );
    let csv_path = args.csv.unwrap_or_else(|| args.run.join("confusion.csv"));
    crate::output::write_atomically(&csv_path, |w| {
        result.write_confusion_csv(w).map_err(Into::into)
    })?;
    let mut out = std::io::stdout().lock();
    let _ = result.write_report(&mut out);
    let _ = writeln!(out, "\nconfusion matrix written to {}", csv_path.display());
    Ok(0)
}
