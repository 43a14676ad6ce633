//! `mlp bench`: time training stage by stage.

use std::io::Write;

use crate::cli::args::BenchArgs;
use crate::cli::check::Workload;
use crate::cli::resources::configure_threads;
use crate::error::{Error, Result};
use crate::optim::Sgd;

pub fn run(args: BenchArgs) -> Result<u8> {
    let Workload {
        spec,
        threads,
        data_dir,
    } = args.workload.check()?;
    if args.epochs == 0 {
        return Err(Error::usage("--epochs", "must be at least 1, got 0"));
    }
    if args.peak {
        let _ = crate::peak::measure(threads).write(&mut std::io::stdout().lock());
        return Ok(0);
    }
    configure_threads(threads)?;
    let sgd = Sgd {
        lr: 0.01,
        momentum: 0.9,
        weight_decay: 5e-4,
    };
    let settings = args.workload.settings(sgd, args.epochs, 1);
    let report = crate::bench::bench(&spec, &settings, &data_dir)?;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(
        out,
        "{spec}\n{threads} thread(s), {} kernels, batch {}, {} epochs\n",
        crate::kernels::current(),
        settings.batch_size,
        args.epochs
    );
    let _ = report.write(&mut out);
    Ok(0)
}
