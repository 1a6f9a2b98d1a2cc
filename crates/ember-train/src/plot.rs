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

/// Draws one or more series into a PNG.
pub fn line_plot(
    path: &Path,
    title: &str,
    x_label: &str,
    series: &[Series<'_>],
) -> Result<(), TrainError> {
    register_font();
    let err = |e: String| TrainError::Other(format!("{}: {e}", path.display()));
    let pts = series.iter().flat_map(|s| s.1.iter());
    let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
    for &(x, y) in pts {
        if y.is_finite() {
            (x0, x1, y0, y1) = (x0.min(x), x1.max(x), y0.min(y), y1.max(y));
        }
    }
    if x0 > x1 {
        return Ok(());
    }
    if x1 <= x0 {
        x1 = x0 + 1.0;
    }
    let pad = ((y1 - y0) * 0.05).max(1e-3);
    let root = BitMapBackend::new(path, (800, 500)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(e.to_string()))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 24))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(x0..x1, (y0 - pad)..(y1 + pad))
        .map_err(|e| err(e.to_string()))?;
    chart
        .configure_mesh()
        .x_desc(x_label)
        .y_desc("loss")
        .draw()
        .map_err(|e| err(e.to_string()))?;
    for (label, points, color) in series {
        let color = *color;
        chart
            .draw_series(LineSeries::new(
                points.iter().copied(),
                color.stroke_width(2),
            ))
            .map_err(|e| err(e.to_string()))?
            .label(*label)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(|e| err(e.to_string()))?;
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
    line_plot(
        &dir.join(LOSS_PLOT_FILE),
        "training loss",
        "step",
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
            "evaluation loss",
            "step",
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
