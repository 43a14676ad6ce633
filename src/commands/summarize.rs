//! `mlp summarize`: the runs' summaries as one table.

use std::io::Write;

use crate::cli::args::SummarizeArgs;
use crate::error::Result;

pub fn run(args: SummarizeArgs) -> Result<u8> {
    use crate::summarize::{collect, to_csv, to_markdown};
    let runs = collect(&args.runs)?;
    let markdown = to_markdown(&runs, args.report)?;
    if let Some(path) = &args.csv {
        let csv = to_csv(&runs)?;
        crate::output::write_atomically(path, |w| w.write_all(csv.as_bytes()))?;
    }
    if let Some(path) = &args.markdown {
        crate::output::write_atomically(path, |w| w.write_all(markdown.as_bytes()))?;
    }
    let _ = write!(std::io::stdout(), "{markdown}");
    Ok(0)
}
