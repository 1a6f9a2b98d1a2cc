//! Loss plots as LLaMA-Factory's `plot_loss` draws them: `training_loss.png` (raw and smoothed) and
//! `training_eval_loss.png`.

use std::path::Path;

use plotters::prelude::*;

use crate::TrainError;
use crate::state::TrainerState;

/// The training-loss plot (raw and smoothed) in `output_dir`.
pub const LOSS_PLOT_FILE: &str = "training_loss.png";
/// The eval-loss plot, written when the run evaluated.
pub const EVAL_LOSS_PLOT_FILE: &str = "training_eval_loss.png";

/// LLaMA-Factory's `smooth`: an exponential moving average whose weight grows with the series length.
pub fn smooth(values: &[f64]) -> Vec<f64> {
    let Some(&first) = values.first() else {
        return Vec::new();
    };
    let weight = 1.8 * (1.0 / (1.0 + (-0.05 * values.len() as f64).exp()) - 0.5);
    let mut last = first;
    values
        .iter()
        .map(|&v| {
            last = last * weight + (1.0 - weight) * v;
            last
        })
        .collect()
}

/// Registers the embedded font plotters draws text with (once per process).
pub fn register_font() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // An embedded font: plots render the same on machines without system fonts.
        let _ = plotters::style::register_font(
            "sans-serif",
            FontStyle::Normal,
            dejavu::sans::regular(),
        );
    });
}

/// A named line: label, `(x, y)` points, colour.
pub type Series<'a> = (&'a str, Vec<(f64, f64)>, RGBColor);

/// Line colours for plots of many series (matplotlib's `tab10`), in order.
pub const PALETTE: [RGBColor; 8] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
];

/// A plot's title and axes.
#[derive(Debug, Clone, Copy)]
pub struct Axes<'a> {
    pub title: &'a str,
    pub x_label: &'a str,
    pub y_label: &'a str,
    /// A logarithmic x axis (points at x <= 0 are left out).
    pub log_x: bool,
    /// Dots on the points of series with at most 40 of them (few points read better as dots).
    pub markers: bool,
}

/// Draws one or more series into an 800 x 500 PNG; non-finite values are left out, and nothing is
/// written when no point remains.
pub fn line_plot(path: &Path, axes: &Axes<'_>, series: &[Series<'_>]) -> Result<(), TrainError> {
    register_font();
    let err = |e: String| TrainError::Other(format!("plot {}: {e}", path.display()));
    let keep = |p: &(f64, f64)| p.1.is_finite() && (!axes.log_x || p.0 > 0.0);
    let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
    for &(x, y) in series.iter().flat_map(|s| s.1.iter()).filter(|p| keep(p)) {
        (x0, x1, y0, y1) = (x0.min(x), x1.max(x), y0.min(y), y1.max(y));
    }
    if x0 > x1 {
        return Ok(());
    }
    if axes.log_x {
        (x0, x1) = (x0 / 1.25, x1 * 1.25);
    } else if x1 <= x0 {
        x1 = x0 + 1.0;
    }
    let pad = ((y1 - y0) * 0.08).max(1e-3);
    let root = BitMapBackend::new(path, (800, 500)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(e.to_string()))?;
    let mut builder = ChartBuilder::on(&root);
    builder
        .caption(axes.title, ("sans-serif", 22))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(64);
    // The two axis kinds are different types: one body for both.
    macro_rules! draw {
        ($chart:expr) => {{
            let mut chart = $chart.map_err(|e| err(e.to_string()))?;
            chart
                .configure_mesh()
                .x_desc(axes.x_label)
                .y_desc(axes.y_label)
                .draw()
                .map_err(|e| err(e.to_string()))?;
            for (label, points, color) in series {
                let color = *color;
                let pts: Vec<(f64, f64)> = points.iter().copied().filter(|p| keep(p)).collect();
                chart
                    .draw_series(LineSeries::new(pts.iter().copied(), color.stroke_width(2)))
                    .map_err(|e| err(e.to_string()))?
                    .label(*label)
                    .legend(move |(x, y)| {
                        PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
                    });
                if axes.markers && pts.len() <= 40 {
                    chart
                        .draw_series(pts.iter().map(|&p| Circle::new(p, 3, color.filled())))
                        .map_err(|e| err(e.to_string()))?;
                }
            }
            chart
                .configure_series_labels()
                .background_style(WHITE.mix(0.8))
                .border_style(BLACK)
                .draw()
                .map_err(|e| err(e.to_string()))?;
        }};
    }
    if axes.log_x {
        draw!(builder.build_cartesian_2d((x0..x1).log_scale(), (y0 - pad)..(y1 + pad)));
    } else {
        draw!(builder.build_cartesian_2d(x0..x1, (y0 - pad)..(y1 + pad)));
    }
    root.present().map_err(|e| err(e.to_string()))
}

/// The two plots of a finished run.
pub fn plot_losses(state: &TrainerState, dir: &Path) -> Result<(), TrainError> {
    let raw: Vec<(f64, f64)> = state
        .losses()
        .into_iter()
        .map(|(s, l)| (s as f64, l))
        .collect();
    let ys: Vec<f64> = raw.iter().map(|p| p.1).collect();
    let smoothed: Vec<(f64, f64)> = raw.iter().map(|p| p.0).zip(smooth(&ys)).collect();
    let axes = |title| Axes {
        title,
        x_label: "step",
        y_label: "loss",
        log_x: false,
        markers: false,
    };
    line_plot(
        &dir.join(LOSS_PLOT_FILE),
        &axes("training loss"),
        &[
            ("original", raw, RGBColor(150, 190, 230)),
            ("smoothed", smoothed, RGBColor(20, 80, 170)),
        ],
    )?;
    let eval: Vec<(f64, f64)> = state
        .eval_losses()
        .into_iter()
        .map(|(s, l)| (s as f64, l))
        .collect();
    if !eval.is_empty() {
        line_plot(
            &dir.join(EVAL_LOSS_PLOT_FILE),
            &axes("evaluation loss"),
            &[("eval_loss", eval, RGBColor(200, 60, 40))],
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smoothing_matches_llamafactory() {
        // weight for n = 3: 1.8 * (1/(1+e^-0.15) - 0.5)
        let w = 1.8 * (1.0 / (1.0 + (-0.15f64).exp()) - 0.5);
        let s = smooth(&[3.0, 1.0, 2.0]);
        let s1 = 3.0 * w + (1.0 - w) * 1.0;
        let s2 = s1 * w + (1.0 - w) * 2.0;
        assert_eq!(s, vec![3.0, s1, s2]);
        assert!(smooth(&[]).is_empty());
    }
}
