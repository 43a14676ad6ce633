//! `mlp plot`: curves of runs as PNG or SVG.

use std::io::Write;

use crate::cli::args::PlotArgs;
use crate::error::{Error, Result};

pub fn run(args: PlotArgs) -> Result<u8> {
    use crate::plot::{Figure, series};
    let size = args
        .size
        .split_once('x')
        .and_then(|(w, h)| Some((w.parse::<u32>().ok()?, h.parse::<u32>().ok()?)))
        .filter(|&(w, h)| (100..=10_000).contains(&w) && (100..=10_000).contains(&h))
        .ok_or_else(|| {
            Error::usage(
                "--size",
                format!(
                    "\"{}\" is not WIDTHxHEIGHT in 100..=10000 pixels",
                    args.size
                ),
            )
        })?;
    if args.smooth == 0 {
        return Err(Error::usage("--smooth", "must be at least 1, got 0"));
    }
    let names = || {
        args.runs
            .iter()
            .map(|r| r.file_name().unwrap_or_default().to_string_lossy())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let title = args.title.clone().unwrap_or_else(names);
    let draw = |figure: &Figure| -> Result<()> {
        let left_out = crate::plot::left_out(figure);
        if left_out > 0 {
            let _ = writeln!(
                std::io::stderr(),
                "note: {left_out} {} not drawn (not finite, beyond ±{:e}, or not positive on a \
                 log axis)",
                if left_out == 1 { "point" } else { "points" },
                crate::plot::MAX_PLOTTED
            );
        }
        crate::plot::draw(figure, &args.out, size)
    };
    if args.sigmoid {
        draw(&Figure::Sigmoid)?;
    } else if args.grad_norms {
        let [run] = args.runs.as_slice() else {
            return Err(Error::usage(
                "--grad-norms",
                format!("charts one run, got {}", args.runs.len()),
            ));
        };
        let layers = series::read_grad_norms(run)?;
        draw(&Figure::GradNorms {
            layers: &layers,
            title: &title,
        })?;
    } else {
        let runs = args
            .runs
            .iter()
            .map(|r| series::read_run(r, args.smooth))
            .collect::<Result<Vec<_>>>()?;
        draw(&Figure::Curves {
            runs: &runs,
            log_loss: args.log_loss,
            title: &title,
        })?;
    }
    let _ = writeln!(std::io::stdout(), "{}", args.out.display());
    Ok(0)
}
