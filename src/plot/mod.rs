//! `mlp plot`: PNG or SVG charts from run folders, drawn with plotters and a bundled font (DejaVu Sans,
//! licence beside it), so nothing beyond cargo is needed.
//!
//! - curves: loss (left) and accuracy (right) against iteration, every run's train curve (windowed
//!   means) and test points, one colour per run: the report's Figures 1-3;
//! - gradient norms: each Linear layer's weight-gradient norm against iteration, log scale (section 3.4);
//! - sigmoid: the sigmoid and its derivative (Figure 4).

mod layout;
pub mod series;

use std::path::Path;

use image::ImageEncoder;

use plotters::coord::Shift;
use plotters::prelude::*;

use crate::error::{Error, Result};
use layout::{LEGEND_INSIDE_UP_TO, colour, dashed, legend_strip, legend_width, tick, titled};
use series::{Points, RunCurves};

static FONT: &[u8] = include_bytes!("DejaVuSans.ttf");

/// What to draw.
pub enum Figure<'a> {
    Curves {
        runs: &'a [RunCurves],
        log_loss: bool,
        title: &'a str,
    },
    GradNorms {
        layers: &'a [(String, Points)],
        title: &'a str,
    },
    Sigmoid,
}

/// Draws `figure` into `out` (`.png` or `.svg`) at `size` pixels.
pub fn draw(figure: &Figure, out: &Path, size: (u32, u32)) -> Result<()> {
    // Registering twice is harmless: the second replaces the first.
    let _ = plotters::style::register_font("sans-serif", FontStyle::Normal, FONT);
    let ext = out
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    let fail = |e: String| Error::data(out, format!("drawing failed: {e}"));
    // Drawn in memory, then written whole: a failed or interrupted plot leaves no partial image.
    let bytes = match ext.as_deref() {
        Some("png") => {
            let mut rgb = vec![0u8; size.0 as usize * size.1 as usize * 3];
            {
                let root = BitMapBackend::with_buffer(&mut rgb, size).into_drawing_area();
                draw_on(figure, &root).map_err(|e| fail(e.to_string()))?;
                root.present().map_err(|e| fail(e.to_string()))?;
            }
            let mut png = Vec::new();
            image::codecs::png::PngEncoder::new(&mut png)
                .write_image(&rgb, size.0, size.1, image::ColorType::Rgb8)
                .map_err(|e| fail(e.to_string()))?;
            png
        }
        Some("svg") => {
            let mut svg = String::new();
            {
                let root = SVGBackend::with_string(&mut svg, size).into_drawing_area();
                draw_on(figure, &root).map_err(|e| fail(e.to_string()))?;
                root.present().map_err(|e| fail(e.to_string()))?;
            }
            svg.into_bytes()
        }
        _ => {
            return Err(Error::usage(
                "--out",
                format!("{} must end in .png or .svg", out.display()),
            ));
        }
    };
    crate::output::write_atomically(out, |w| w.write_all(&bytes))
}

pub(crate) type DrawResult<DB> =
    std::result::Result<(), DrawingAreaErrorKind<<DB as DrawingBackend>::ErrorType>>;

fn draw_on<DB: DrawingBackend>(figure: &Figure, root: &DrawingArea<DB, Shift>) -> DrawResult<DB> {
    root.fill(&WHITE)?;
    match figure {
        Figure::Curves {
            runs,
            log_loss,
            title,
        } => {
            let root = titled(root, title)?;
            // Many runs get one legend beside both charts, where it covers no curve.
            let inside = runs.len() <= LEGEND_INSIDE_UP_TO;
            let root = if inside {
                root
            } else {
                let names: Vec<&str> = runs.iter().map(|r| r.name.as_str()).collect();
                let width = root.dim_in_pixel().0;
                let (charts, legend) = root.split_horizontally(width - legend_width(&names, width));
                legend_strip(&legend, &names)?;
                charts
            };
            let (left, right) = root.split_horizontally(root.dim_in_pixel().0 / 2);
            let loss = |r: &RunCurves| (r.train_loss.clone(), r.test_loss.clone());
            let acc = |r: &RunCurves| (r.train_acc.clone(), r.test_acc.clone());
            curves_panel(&left, runs, "loss", *log_loss, inside, &loss)?;
            curves_panel(&right, runs, "accuracy", false, inside, &acc)
        }
        Figure::GradNorms { layers, title } => grad_norm_panel(&titled(root, title)?, layers),
        Figure::Sigmoid => sigmoid_panel(root),
    }
}

/// Values beyond this are not drawn: a diverged run's loss would squash every other curve flat, and
/// near f64's limit the axis arithmetic overflows.
pub const MAX_PLOTTED: f64 = 1e15;

/// Whether a point can be drawn on a linear (or, with `log`, a log) axis.
fn plottable(p: &(f64, f64), log: bool) -> bool {
    p.0.is_finite() && p.1.is_finite() && p.1.abs() <= MAX_PLOTTED && (!log || p.1 > 0.0)
}

/// How many of `figure`'s points are left out as not plottable.
pub fn left_out(figure: &Figure) -> usize {
    let count =
        |points: &[(f64, f64)], log: bool| points.iter().filter(|p| !plottable(p, log)).count();
    match figure {
        Figure::Curves { runs, log_loss, .. } => runs
            .iter()
            .map(|r| {
                count(&r.train_loss, *log_loss)
                    + count(&r.test_loss, *log_loss)
                    + count(&r.train_acc, false)
                    + count(&r.test_acc, false)
            })
            .sum(),
        Figure::GradNorms { layers, .. } => layers.iter().map(|(_, p)| count(p, true)).sum(),
        Figure::Sigmoid => 0,
    }
}

fn bounds<'a>(points: impl Iterator<Item = &'a (f64, f64)>, log: bool) -> (f64, f64, f64, f64) {
    points.filter(|p| plottable(p, log)).fold(
        (
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::INFINITY,
            f64::NEG_INFINITY,
        ),
        |(x0, x1, y0, y1), &(x, y)| (x0.min(x), x1.max(x), y0.min(y), y1.max(y)),
    )
}

/// A (low, high) range that plotters can draw, widened when empty or flat.
fn range(low: f64, high: f64, log: bool) -> (f64, f64) {
    if !(low.is_finite() && high.is_finite()) {
        return if log { (1e-3, 1.0) } else { (0.0, 1.0) };
    }
    if log {
        let low = low.max(1e-12);
        return (low / 1.5, high.max(low * 10.0) * 1.5);
    }
    let pad = ((high - low) * 0.05).max(1e-6);
    (low - pad, high + pad)
}

fn curves_panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    runs: &[RunCurves],
    what: &str,
    log: bool,
    legend: bool,
    pick: &dyn Fn(&RunCurves) -> (Points, Points),
) -> DrawResult<DB> {
    let picked: Vec<(Points, Points)> = runs.iter().map(pick).collect();
    let all = picked.iter().flat_map(|(a, b)| a.iter().chain(b.iter()));
    let (x0, x1, y0, y1) = bounds(all, log);
    let (x0, x1) = range(x0.min(0.0), x1, false);
    let (y0, y1) = range(y0, y1, log);
    let mut builder = ChartBuilder::on(area);
    builder
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .caption(
            format!("{what} (thin: train, window means; dots: test)"),
            ("sans-serif", 18),
        );
    let corner = if what == "loss" {
        SeriesLabelPosition::UpperRight
    } else {
        SeriesLabelPosition::MiddleRight
    };
    macro_rules! series {
        ($chart:ident) => {{
            $chart
                .configure_mesh()
                .x_desc("iteration")
                .y_desc(if log {
                    format!("{what} (log scale)")
                } else {
                    what.to_string()
                })
                .x_label_formatter(&|x| format!("{x:.0}"))
                .y_label_formatter(&|y| tick(*y))
                .label_style(("sans-serif", 13))
                .draw()?;
            for (i, (run, (train, test))) in runs.iter().zip(&picked).enumerate() {
                let c = colour(i);
                let finite = |p: &&(f64, f64)| plottable(p, log);
                let train: Vec<(f64, f64)> = train.iter().filter(finite).copied().collect();
                if dashed(i) {
                    $chart.draw_series(DashedLineSeries::new(
                        train,
                        6,
                        4,
                        c.mix(0.7).stroke_width(1),
                    ))?;
                } else {
                    $chart.draw_series(LineSeries::new(train, c.mix(0.55).stroke_width(1)))?;
                }
                $chart
                    .draw_series(
                        LineSeries::new(test.iter().filter(finite).copied(), c.stroke_width(2))
                            .point_size(3),
                    )?
                    .label(run.name.clone())
                    .legend(move |(x, y)| {
                        PathElement::new(vec![(x, y), (x + 18, y)], c.stroke_width(3))
                    });
            }
            if legend {
                $chart
                    .configure_series_labels()
                    .position(corner)
                    .background_style(WHITE.mix(0.85))
                    .border_style(BLACK)
                    .label_font(("sans-serif", 13))
                    .draw()?;
            }
        }};
    }
    if log {
        let mut chart = builder.build_cartesian_2d(x0..x1, (y0..y1).log_scale())?;
        series!(chart);
    } else {
        let mut chart = builder.build_cartesian_2d(x0..x1, y0..y1)?;
        series!(chart);
    }
    Ok(())
}

fn grad_norm_panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    layers: &[(String, Points)],
) -> DrawResult<DB> {
    let (x0, x1, y0, y1) = bounds(layers.iter().flat_map(|(_, p)| p.iter()), true);
    let (x0, x1) = range(x0.min(0.0), x1, false);
    let (y0, y1) = range(y0, y1, true);
    let mut chart = ChartBuilder::on(area)
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .caption(
            "L2 norm of each layer's weight gradient",
            ("sans-serif", 20),
        )
        .build_cartesian_2d(x0..x1, (y0..y1).log_scale())?;
    chart
        .configure_mesh()
        .x_desc("iteration")
        .y_desc("‖dW‖₂ (log scale)")
        .x_label_formatter(&|x| format!("{x:.0}"))
        .y_label_formatter(&|y| tick(*y))
        .label_style(("sans-serif", 13))
        .draw()?;
    for (i, (name, points)) in layers.iter().enumerate() {
        let c = colour(i);
        let positive = points.iter().filter(|p| plottable(p, true)).copied();
        chart
            .draw_series(LineSeries::new(positive, c.stroke_width(2)))?
            .label(name.clone())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], c.stroke_width(3)));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font(("sans-serif", 13))
        .draw()
}

fn sigmoid_panel<DB: DrawingBackend>(area: &DrawingArea<DB, Shift>) -> DrawResult<DB> {
    let sigmoid = |x: f64| 1.0 / (1.0 + (-x).exp());
    let xs = (0..=400).map(|i| -8.0 + 16.0 * i as f64 / 400.0);
    let mut chart = ChartBuilder::on(area)
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(50)
        .caption("Sigmoid and its derivative", ("sans-serif", 22))
        .build_cartesian_2d(-8f64..8f64, -0.05f64..1.05f64)?;
    chart
        .configure_mesh()
        .x_desc("x")
        .label_style(("sans-serif", 13))
        .draw()?;
    chart
        .draw_series(LineSeries::new(
            xs.clone().map(|x| (x, sigmoid(x))),
            colour(0).stroke_width(2),
        ))?
        .label("σ(x) = 1 / (1 + e^-x)")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], colour(0).stroke_width(3)));
    chart
        .draw_series(LineSeries::new(
            xs.map(|x| (x, sigmoid(x) * (1.0 - sigmoid(x)))),
            colour(1).stroke_width(2),
        ))?
        .label("σ'(x) = σ(x)(1 - σ(x)), at most 0.25")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], colour(1).stroke_width(3)));
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font(("sans-serif", 14))
        .draw()
}
