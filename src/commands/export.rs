//! `mlp export`: a saved model as a numpy archive.

use std::io::Write;

use crate::cli::args::ExportArgs;
use crate::error::Result;

pub fn run(args: ExportArgs) -> Result<u8> {
    let ckpt_path = crate::run_folder::file_in(&args.run, crate::run_folder::MODEL_FILE)?;
    let ckpt = crate::checkpoint::Checkpoint::load(&ckpt_path)?;
    let path = args.out.unwrap_or_else(|| args.run.join("weights.npz"));
    let bytes = crate::export::npz(&ckpt);
    crate::output::write_atomically(&path, |w| w.write_all(&bytes))?;
    let _ = writeln!(std::io::stdout(), "{}", path.display());
    Ok(0)
}
