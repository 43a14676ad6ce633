//! How a figure looks: the palette, the title wrapped to fit, the legend beside the charts, tick labels.

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::DrawResult;

/// Runs up to this many are labelled inside each chart; more get a legend beside the charts.
pub(super) const LEGEND_INSIDE_UP_TO: usize = 4;
const TITLE_LINES: usize = 3;

/// Draws `title` across the top, wrapped at spaces into at most three lines that fit the width, and
/// returns the area below it.
pub(super) fn titled<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    title: &str,
) -> std::result::Result<DrawingArea<DB, Shift>, DrawingAreaErrorKind<DB::ErrorType>> {
    if title.is_empty() {
        return Ok(root.clone());
    }
    let width = root.dim_in_pixel().0;
    let style =
        TextStyle::from(("sans-serif", 22).into_font()).pos(Pos::new(HPos::Center, VPos::Top));
    let fits = |t: &str| {
        root.estimate_text_size(t, &style)
            .map_or(true, |(w, _)| w + 40 <= width)
    };
    let lines = wrap(title, &fits, TITLE_LINES);
    let line_height = 28;
    let (top, rest) = root.split_vertically(lines.len() as u32 * line_height + 12);
    for (i, line) in lines.into_iter().enumerate() {
        let y = 8 + i as i32 * line_height as i32;
        top.draw(&Text::new(line, (width as i32 / 2, y), style.clone()))?;
    }
    Ok(rest)
}

/// `text` in lines that each satisfy `fits`, broken at spaces, at most `max_lines`; what does not fit
/// is cut and ends in "...".
fn wrap(text: &str, fits: &dyn Fn(&str) -> bool, max_lines: usize) -> Vec<String> {
    let mut lines: Vec<String> = Vec::new();
    let mut words = text.split(' ').filter(|w| !w.is_empty()).peekable();
    while let Some(word) = words.next() {
        let mut line = word.to_string();
        while let Some(next) = words.peek() {
            let longer = format!("{line} {next}");
            if !fits(&longer) {
                break;
            }
            line = longer;
            words.next();
        }
        let last = lines.len() + 1 == max_lines;
        if !fits(&line) || (last && words.peek().is_some()) {
            lines.push(cut(&line, fits));
            break;
        }
        lines.push(line);
    }
    lines
}

/// The longest start of `line` that fits with "..." after it.
fn cut(line: &str, fits: &dyn Fn(&str) -> bool) -> String {
    let mut end = line.len();
    loop {
        let candidate = format!("{}...", &line[..end]);
        if end == 0 || fits(&candidate) {
            return candidate;
        }
        end = line[..end].char_indices().last().map_or(0, |(i, _)| i);
    }
}

/// The width of the legend strip for `names`: enough for the longest, at most a third of the figure.
pub(super) fn legend_width(names: &[&str], width: u32) -> u32 {
    let longest = names.iter().map(|n| n.chars().count()).max().unwrap_or(0) as u32;
    (longest * 8 + 60).min(width / 3)
}

/// A legend of one line sample and name per run, top to bottom; names that do not fit are cut.
pub(super) fn legend_strip<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    names: &[&str],
) -> DrawResult<DB> {
    let (width, height) = area.dim_in_pixel();
    let style =
        TextStyle::from(("sans-serif", 13).into_font()).pos(Pos::new(HPos::Left, VPos::Center));
    let fits = |t: &str| {
        area.estimate_text_size(t, &style)
            .map_or(true, |(w, _)| w + 50 <= width)
    };
    let row = 18;
    let rows = ((height as i32 - 40) / row).max(1) as usize;
    for (i, name) in names.iter().enumerate() {
        let y = 40 + i as i32 * row;
        if i + 1 == rows && names.len() > rows {
            let more = format!("and {} more", names.len() - i);
            area.draw(&Text::new(more, (8, y), style.clone()))?;
            break;
        }
        let c = colour(i);
        let sample = [(8, y), (34, y)];
        if dashed(i) {
            area.draw(&PathElement::new(vec![(8, y), (16, y)], c.stroke_width(3)))?;
            area.draw(&PathElement::new(vec![(22, y), (30, y)], c.stroke_width(3)))?;
        } else {
            area.draw(&PathElement::new(sample.to_vec(), c.stroke_width(3)))?;
        }
        let label = if fits(name) {
            name.to_string()
        } else {
            cut(name, &fits)
        };
        area.draw(&Text::new(label, (40, y), style.clone()))?;
    }
    Ok(())
}

/// A tick label: plain for ordinary values, scientific for very small or large ones (log axes).
pub(super) fn tick(y: f64) -> String {
    if y != 0.0 && !(1e-2..1e4).contains(&y.abs()) {
        format!("{y:.0e}")
    } else {
        format!("{y:.2}")
    }
}

/// Twenty colours readable on white and far apart from each other: matplotlib's ten, then ten more
/// distinct hues and shades. Series past twenty repeat them with dashed lines.
const PALETTE: [RGBColor; 20] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
    RGBColor(0, 0, 0),
    RGBColor(0, 0, 128),
    RGBColor(128, 0, 0),
    RGBColor(0, 110, 90),
    RGBColor(255, 215, 0),
    RGBColor(170, 255, 100),
    RGBColor(100, 50, 200),
    RGBColor(255, 110, 255),
    RGBColor(128, 128, 0),
    RGBColor(0, 220, 120),
];

/// A colour per series index.
pub(super) fn colour(i: usize) -> RGBColor {
    PALETTE[i % PALETTE.len()]
}

/// Whether series `i` is drawn dashed (once the palette has been used up).
pub(super) fn dashed(i: usize) -> bool {
    i >= PALETTE.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn titles_wrap_at_spaces_into_three_lines_at_most() {
        let fits = |t: &str| t.len() <= 20;
        assert_eq!(wrap("short title", &fits, 3), ["short title"]);
        let lines = wrap(
            "run_a, run_b, run_c, run_d, run_e, run_f, run_g, run_h",
            &fits,
            3,
        );
        assert_eq!(
            lines,
            [
                "run_a, run_b, run_c,",
                "run_d, run_e, run_f,",
                "run_g, run_h"
            ]
        );
        let many = wrap(&"abcd ".repeat(40), &fits, 3);
        assert_eq!(many.len(), 3);
        assert!(
            many.iter().all(|l| fits(l)) && many[2].ends_with("..."),
            "{many:?}"
        );
        let one_long_word = wrap(&"x".repeat(50), &fits, 3);
        assert_eq!(one_long_word, [format!("{}...", "x".repeat(17))]);
    }

    #[test]
    fn the_palette_tells_fifteen_runs_apart() {
        let distance = |a: RGBColor, b: RGBColor| {
            let d = |x: u8, y: u8| (x as i32 - y as i32).pow(2);
            ((d(a.0, b.0) + d(a.1, b.1) + d(a.2, b.2)) as f64).sqrt()
        };
        for (i, &a) in PALETTE.iter().enumerate() {
            for (j, &b) in PALETTE[..i].iter().enumerate() {
                assert!(distance(a, b) > 60.0, "colours {i} and {j}");
            }
        }
        assert!(dashed(PALETTE.len()) && !dashed(PALETTE.len() - 1));
    }
}
