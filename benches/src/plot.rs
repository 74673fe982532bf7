//! The picture: one panel per latency scenario, the cumulative distribution of
//! Warden's samples beside its baseline's, on a log time axis (SVG, via plotters).

use crate::Scenario;
use anyhow::{Context as _, Result};
use plotters::prelude::*;
use std::path::Path;

/// Fonts tried for the labels, in order (plotters draws text with ab_glyph and needs
/// one; Debian's fonts-dejavu-core has the first).
const FONTS: &[&str] = &[
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
];

/// Most points drawn for one distribution.
const POINTS: usize = 400;

/// Draws `scenarios` that have samples into an SVG file at `path`.
pub(crate) fn draw(path: &Path, scenarios: &[Scenario]) -> Result<()> {
    let font = FONTS
        .iter()
        .find_map(|f| std::fs::read(f).ok())
        .context("no TrueType font found for the plot's labels (install fonts-dejavu-core)")?;
    plotters::style::register_font(
        "sans-serif",
        FontStyle::Normal,
        Box::leak(font.into_boxed_slice()),
    )
    .map_err(|_| anyhow::anyhow!("the font could not be read"))?;
    let panels: Vec<&Scenario> =
        scenarios.iter().filter(|s| !s.warden_samples.is_empty()).collect();
    let rows = panels.len().div_ceil(2) as u32;
    let root = SVGBackend::new(path, (1200, 320 * rows)).into_drawing_area();
    root.fill(&WHITE)?;
    for (area, s) in root.split_evenly((rows as usize, 2)).iter().zip(&panels) {
        panel(area, s)?;
    }
    root.present()?;
    Ok(())
}

fn panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    s: &Scenario,
) -> Result<()>
where
    DB::ErrorType: 'static,
{
    let all = s.warden_samples.iter().chain(&s.baseline_samples);
    let (lo, hi) = all.fold((f64::MAX, 0f64), |(lo, hi), &x| (lo.min(x), hi.max(x)));
    let (lo, hi) = ((lo * 0.8).max(1e-3), hi * 1.25);
    let mut chart = ChartBuilder::on(area)
        .caption(format!("{} ({})", s.name, s.unit), ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(32)
        .y_label_area_size(44)
        .build_cartesian_2d((lo..hi).log_scale(), 0f64..100f64)?;
    chart
        .configure_mesh()
        .x_desc(s.unit)
        .x_labels(6)
        .x_label_formatter(&|v| short(*v))
        .y_desc("percentile")
        .y_label_formatter(&|v| format!("{v:.0}"))
        .label_style(("sans-serif", 12))
        .draw()?;
    let series = [
        ("warden", &s.warden_samples, RGBColor(0xd6, 0x27, 0x28)),
        (s.baseline.unwrap_or("baseline"), &s.baseline_samples, RGBColor(0x1f, 0x77, 0xb4)),
    ];
    for (label, samples, colour) in series {
        if samples.is_empty() {
            continue;
        }
        // At most POINTS points a line, at evenly spaced ranks: the file stays small
        // and the curve is the same at this size.
        let n = samples.len();
        let step = n.div_ceil(POINTS).max(1);
        let ranks = (0..n).step_by(step).chain(std::iter::once(n - 1));
        let points = ranks.map(|i| (samples[i], 100.0 * (i as f64 + 1.0) / n as f64));
        chart
            .draw_series(LineSeries::new(points, colour.stroke_width(2)))?
            .label(label.to_owned())
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 16, y)], colour.stroke_width(2)));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .label_font(("sans-serif", 11))
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()?;
    Ok(())
}

/// A tick label with as few digits as its size needs.
fn short(v: f64) -> String {
    match v {
        v if v >= 10.0 => format!("{v:.0}"),
        v if v >= 1.0 => format!("{v:.1}"),
        v => format!("{v:.2}"),
    }
}
