//! `mlp eval`: a saved model on a test set.

use std::io::Write;

use crate::cli::args::EvalArgs;
use crate::error::Result;
use crate::run_folder::{CONFIG_FILE, MODEL_FILE, file_in};

pub fn run(args: EvalArgs) -> Result<u8> {
    use crate::model::Model;
    let config = file_in(&args.run, CONFIG_FILE)?;
    file_in(&args.run, MODEL_FILE)?;
    let probe = crate::output::config::RunConfig::load(&config)?;
    let data_dir = args.data.clone().unwrap_or_else(|| probe.data.clone());
    let data = crate::data::Dataset::load(&data_dir)?;
    // The chunking of the training run's own evaluation, so the numbers match it exactly.
    let capacity = crate::fit::capacity(probe.batch_size, data.test.len());
    let mut model = Model::load(&args.run, capacity)?;
    crate::fit::check(&model.spec, &data, capacity)?;
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
