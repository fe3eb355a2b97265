//! The latency–throughput plot of a `raftmq bench` sweep: one point per step (throughput,
//! latency), one line per percentile, latency on a log scale. PNG through plotters' bitmap
//! backend; its text needs a TrueType font, read at run time from `RAFTMQ_PLOT_FONT` or the
//! usual system paths (Debian: `fonts-dejavu-core`).

use std::path::Path;

use anyhow::Context;
use plotters::prelude::*;

use super::Step;

/// Where a sans-serif TrueType font usually is.
const FONTS: &[&str] = &[
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
];

/// Registers a font for plotters once per process.
fn load_font() -> anyhow::Result<()> {
    static LOADED: std::sync::OnceLock<Result<(), String>> = std::sync::OnceLock::new();
    LOADED
        .get_or_init(|| {
            let candidates: Vec<String> = std::env::var("RAFTMQ_PLOT_FONT")
                .into_iter()
                .chain(FONTS.iter().map(|s| s.to_string()))
                .collect();
            let path = candidates
                .iter()
                .find(|p| Path::new(p).exists())
                .ok_or_else(|| {
                    format!(
                        "no font for the plot: install fonts-dejavu-core or set RAFTMQ_PLOT_FONT \
                         to a .ttf file (looked at {})",
                        candidates.join(", ")
                    )
                })?;
            let bytes = std::fs::read(path).map_err(|e| format!("reading {path}: {e}"))?;
            // plotters keeps fonts for the life of the process.
            let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
            plotters::style::register_font("sans-serif", FontStyle::Normal, bytes)
                .map_err(|_| format!("{path} is not a usable TrueType font"))
        })
        .clone()
        .map_err(anyhow::Error::msg)
}

/// One line of the plot: a label and the latency (ms) of each step.
type Line = (&'static str, fn(&Step) -> Option<f64>, RGBColor);

/// Draws `steps` (in sweep order) to `path` as a PNG.
pub fn write(path: &Path, title: &str, steps: &[Step]) -> anyhow::Result<()> {
    anyhow::ensure!(!steps.is_empty(), "nothing to plot");
    load_font()?;
    let lines: [Line; 4] = [
        ("send p50", |s| Some(s.send_ms.p50), RGBColor(31, 119, 180)),
        ("send p99", |s| Some(s.send_ms.p99), RGBColor(255, 127, 14)),
        (
            "end-to-end p50",
            |s| s.e2e_ms.as_ref().map(|l| l.p50),
            RGBColor(44, 160, 44),
        ),
        (
            "end-to-end p99",
            |s| s.e2e_ms.as_ref().map(|l| l.p99),
            RGBColor(214, 39, 40),
        ),
    ];
    let x_max = steps.iter().map(|s| s.sent_per_s).fold(1.0, f64::max) * 1.1;
    let ys: Vec<f64> = steps
        .iter()
        .flat_map(|s| lines.iter().filter_map(move |(_, f, _)| f(s)))
        .filter(|y| *y > 0.0)
        .collect();
    let y_min = ys.iter().copied().fold(f64::MAX, f64::min).max(0.01) / 1.5;
    let y_max = ys.iter().copied().fold(0.0, f64::max).max(y_min * 10.0) * 1.5;

    let root = BitMapBackend::new(path, (1000, 640)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 24))
        .margin(16)
        .x_label_area_size(48)
        .y_label_area_size(72)
        .build_cartesian_2d(0f64..x_max, (y_min..y_max).log_scale())?;
    chart
        .configure_mesh()
        .x_desc("throughput (messages/s)")
        .y_desc("latency (ms, log scale)")
        .x_label_formatter(&|x| format!("{x:.0}"))
        .y_label_formatter(&|y| {
            if *y >= 10.0 {
                format!("{y:.0}")
            } else {
                format!("{y:.1}")
            }
        })
        .y_labels(12)
        .label_style(("sans-serif", 15))
        .draw()?;
    for (label, f, color) in lines {
        let points: Vec<(f64, f64)> = steps
            .iter()
            .filter_map(|s| f(s).filter(|y| *y > 0.0).map(|y| (s.sent_per_s, y)))
            .collect();
        if points.is_empty() {
            continue;
        }
        chart
            .draw_series(LineSeries::new(points.clone(), color.stroke_width(2)))?
            .label(label)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
        chart.draw_series(points.iter().map(|p| Circle::new(*p, 4, color.filled())))?;
    }
    chart
        .configure_series_labels()
        .label_font(("sans-serif", 15))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperLeft)
        .draw()?;
    root.present()
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}
