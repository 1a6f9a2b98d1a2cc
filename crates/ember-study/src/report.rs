//! The study's report: `report.json` (every figure), `report.md` (the reference study's table,
//! the loss-curve analysis, benchmark scores) and PNG plots: training and eval loss curves
//! overlaid, best eval loss against training samples, benchmark score against samples.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use ember_eval::ScoreTable;
use ember_lora::report::thousands;
use ember_train::plot::{Axes, PALETTE, Series, line_plot};
use serde::{Deserialize, Serialize};

use crate::analysis::recommend_by_metric;
use crate::error::write_json;
use crate::record::RunRecord;
use crate::{Grid, StudyError};

/// File names in the study directory.
pub const REPORT_MD: &str = "report.md";
pub const REPORT_JSON: &str = "report.json";
pub const TRAIN_LOSS_PNG: &str = "train_loss_curves.png";
pub const EVAL_LOSS_PNG: &str = "eval_loss_curves.png";
pub const BEST_EVAL_PNG: &str = "best_eval_loss_vs_samples.png";
pub const BENCH_PNG: &str = "benchmark_vs_samples.png";

/// Everything the report shows.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report {
    pub grid: Grid,
    pub runs: Vec<RunRecord>,
    /// Runs of the grid that have not finished (left out of the table).
    pub unfinished: Vec<String>,
    pub base_benchmarks: Option<ScoreTable>,
    /// The benchmark column plotted against samples and, when chosen, used to recommend
    /// checkpoints (`kobest/acc`).
    pub metric: Option<String>,
}

impl Report {
    /// Builds the report; with `select_metric`, each run's recommended checkpoint is the one
    /// with the highest value of that benchmark column.
    pub fn new(
        grid: Grid,
        mut runs: Vec<RunRecord>,
        unfinished: Vec<String>,
        base_benchmarks: Option<ScoreTable>,
        select_metric: Option<String>,
    ) -> Self {
        if let Some(m) = &select_metric {
            for r in &mut runs {
                let scores = r.metric_by_step(m);
                recommend_by_metric(&mut r.analysis, m, &scores);
            }
        }
        let metric = select_metric.or_else(|| {
            runs.iter()
                .filter_map(|r| r.benchmarks.as_ref())
                .flat_map(|t| t.header())
                .next()
        });
        Self {
            grid,
            runs,
            unfinished,
            base_benchmarks,
            metric,
        }
    }

    /// Writes `report.md`, `report.json` and the plots into `dir`; returns the files written.
    pub fn write(&self, dir: &Path) -> Result<Vec<PathBuf>, StudyError> {
        std::fs::create_dir_all(dir).map_err(StudyError::io(dir))?;
        let mut written = self.plots(dir)?;
        let json = dir.join(REPORT_JSON);
        write_json(&json, self)?;
        let md = dir.join(REPORT_MD);
        let names: Vec<String> = written
            .iter()
            .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .collect();
        std::fs::write(&md, self.markdown(&names)).map_err(StudyError::io(&md))?;
        written.push(json);
        written.push(md);
        Ok(written)
    }

    /// The grid keys other than `train_samples`: runs sharing their values form one series
    /// in the against-samples plots.
    fn series_key(&self, r: &RunRecord) -> String {
        let parts: Vec<String> = r
            .settings
            .iter()
            .filter(|(k, _)| k.rsplit('.').next() != Some("train_samples"))
            .map(|(k, v)| format!("{}={v}", k.rsplit('.').next().unwrap_or(k)))
            .collect();
        if parts.is_empty() {
            "runs".into()
        } else {
            parts.join(", ")
        }
    }

    /// `(series, [(train_samples, value)])`, x ascending.
    fn against_samples(
        &self,
        value: impl Fn(&RunRecord) -> Option<f64>,
    ) -> Vec<(String, Vec<(f64, f64)>)> {
        let mut by: BTreeMap<String, Vec<(f64, f64)>> = BTreeMap::new();
        for r in &self.runs {
            if let Some(v) = value(r).filter(|v| v.is_finite()) {
                by.entry(self.series_key(r))
                    .or_default()
                    .push((r.planned.train_samples as f64, v));
            }
        }
        by.into_iter()
            .map(|(k, mut pts)| {
                pts.sort_by(|a, b| a.0.total_cmp(&b.0));
                (k, pts)
            })
            .collect()
    }

    /// The benchmark value of a run's recommended checkpoint (or of `final`).
    pub fn recommended_score(&self, r: &RunRecord) -> Option<f64> {
        let m = self.metric.as_ref()?;
        let label = r
            .analysis
            .recommended_checkpoint
            .clone()
            .unwrap_or_else(|| "final".into());
        let row = r
            .benchmarks
            .as_ref()?
            .rows
            .iter()
            .find(|row| row.model == label)?;
        row.columns().into_iter().find(|(c, _)| c == m).map(|p| p.1)
    }

    fn plots(&self, dir: &Path) -> Result<Vec<PathBuf>, StudyError> {
        let mut out = Vec::new();
        let curves =
            |f: &dyn Fn(&RunRecord) -> &Vec<(u64, f64)>| -> Vec<(String, Vec<(f64, f64)>)> {
                self.runs
                    .iter()
                    .map(|r| {
                        (
                            r.name.clone(),
                            f(r).iter().map(|&(s, l)| (s as f64, l)).collect::<Vec<_>>(),
                        )
                    })
                    .filter(|(_, p)| !p.is_empty())
                    .collect()
            };
        let train: Vec<(String, Vec<(f64, f64)>)> = curves(&|r| &r.train_curve)
            .into_iter()
            .map(|(n, pts)| {
                let ys: Vec<f64> = pts.iter().map(|p| p.1).collect();
                let smooth = ember_train::plot::smooth(&ys);
                (n, pts.iter().map(|p| p.0).zip(smooth).collect())
            })
            .collect();
        for (file, title, series) in [
            (TRAIN_LOSS_PNG, "training loss (smoothed)", train),
            (EVAL_LOSS_PNG, "evaluation loss", curves(&|r| &r.eval_curve)),
        ] {
            if !series.is_empty() {
                let path = dir.join(file);
                plot(&path, title, "step", "loss", false, &series)?;
                out.push(path);
            }
        }
        let best = self.against_samples(|r| r.best_eval_loss.or(r.final_eval_loss));
        if !best.is_empty() {
            let path = dir.join(BEST_EVAL_PNG);
            plot(
                &path,
                "best eval loss against training samples",
                "training samples (log scale)",
                "best eval_loss",
                true,
                &best,
            )?;
            out.push(path);
        }
        if let Some(m) = &self.metric {
            let mut series = self.against_samples(|r| self.recommended_score(r));
            let base = self
                .base_benchmarks
                .as_ref()
                .and_then(|t| t.rows.first())
                .and_then(|row| row.columns().into_iter().find(|(c, _)| c == m).map(|p| p.1));
            if let (Some(b), false) = (base, series.is_empty()) {
                let xs: Vec<f64> = series
                    .iter()
                    .flat_map(|s| s.1.iter().map(|p| p.0))
                    .collect();
                let (lo, hi) = xs
                    .iter()
                    .fold((f64::MAX, f64::MIN), |(lo, hi), &x| (lo.min(x), hi.max(x)));
                series.push(("base model".into(), vec![(lo, b), (hi, b)]));
            }
            if !series.is_empty() {
                let path = dir.join(BENCH_PNG);
                plot(
                    &path,
                    &format!("{m} (recommended checkpoint) against training samples"),
                    "training samples (log scale)",
                    m,
                    true,
                    &series,
                )?;
                out.push(path);
            }
        }
        Ok(out)
    }

    /// The Markdown report; `plots` are the image files to embed.
    pub fn markdown(&self, plots: &[String]) -> String {
        let mut s = String::from("# Training study\n\n");
        let axes: Vec<String> = self
            .grid
            .axes
            .iter()
            .map(|a| format!("`{}` = {}", a.key, a.values.join(", ")))
            .collect();
        s.push_str(&format!(
            "Grid: {}. {} finished run(s){}.\n\n",
            if axes.is_empty() {
                "none".into()
            } else {
                axes.join("; ")
            },
            self.runs.len(),
            if self.unfinished.is_empty() {
                String::new()
            } else {
                format!("; not finished: {}", self.unfinished.join(", "))
            }
        ));
        s.push_str("## Runs\n\n");
        s.push_str("| run | samples (train/eval) | steps/epoch | total steps | train time | s/step | train_loss | final eval_loss | best eval_loss (step) | best checkpoint | tokens (epoch / run) | supervised tokens / epoch | trainable params | tokens per trainable param |\n");
        s.push_str("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n");
        let f4 = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.4}"));
        for r in &self.runs {
            let p = &r.planned;
            s.push_str(&format!(
                "| {} | {} / {} | {} | {} | {:.1} s | {:.3} | {:.4} | {} | {}{} | {} | {} / {} | {} | {} | {:.4} |\n",
                r.name,
                p.train_samples,
                p.eval_samples,
                p.steps_per_epoch,
                r.total_steps,
                r.train_runtime,
                r.seconds_per_step,
                r.train_loss,
                f4(r.final_eval_loss),
                f4(r.best_eval_loss),
                r.best_eval_step.map_or(String::new(), |s| format!(" ({s})")),
                r.analysis.recommended_checkpoint.as_deref().unwrap_or("-"),
                thousands(p.train_tokens as u64),
                thousands(r.tokens_seen),
                thousands(p.supervised_tokens as u64),
                thousands(p.trainable_params),
                p.tokens_per_param,
            ));
        }
        s.push_str("\n## Loss curves\n\n");
        s.push_str("| run | min eval_loss at step | longest eval_loss rise | overfitting | recommended checkpoint | chosen by |\n|---|---|---|---|---|---|\n");
        for r in &self.runs {
            let a = &r.analysis;
            s.push_str(&format!(
                "| {} | {} | {} | {} | {} | {} |\n",
                r.name,
                a.min_eval_step.map_or("-".into(), |s| s.to_string()),
                a.longest_rise,
                if a.overfitting {
                    format!("yes, from step {}", a.overfit_from_step.unwrap_or(0))
                } else {
                    "no".into()
                },
                a.recommended_checkpoint
                    .as_deref()
                    .unwrap_or("final adapter"),
                if a.recommended_by.is_empty() {
                    "-"
                } else {
                    &a.recommended_by
                },
            ));
        }
        s.push_str("\nOverfitting: eval loss rose at several consecutive evaluations while the training loss fell over the same steps.\n");
        if self.runs.iter().any(|r| r.benchmarks.is_some()) || self.base_benchmarks.is_some() {
            s.push_str("\n## Benchmarks\n\n");
            if let Some(b) = &self.base_benchmarks {
                s.push_str("Base model:\n\n");
                s.push_str(&b.to_markdown());
                s.push('\n');
            }
            for r in &self.runs {
                if let Some(t) = &r.benchmarks {
                    s.push_str(&format!("`{}`:\n\n{}\n", r.name, t.to_markdown()));
                }
            }
        }
        if !plots.is_empty() {
            s.push_str("## Plots\n\n");
            for p in plots {
                s.push_str(&format!("![{p}]({p})\n\n"));
            }
        }
        s
    }
}

/// Lines with point markers, one per series in the palette's colours; `log_x` for a logarithmic x
/// axis.
fn plot(
    path: &Path,
    title: &str,
    x_label: &str,
    y_label: &str,
    log_x: bool,
    series: &[(String, Vec<(f64, f64)>)],
) -> Result<(), StudyError> {
    let coloured: Vec<Series<'_>> = series
        .iter()
        .zip(PALETTE.iter().cycle())
        .map(|((label, points), &color)| (label.as_str(), points.clone(), color))
        .collect();
    let axes = Axes {
        title,
        x_label,
        y_label,
        log_x,
        markers: true,
    };
    Ok(line_plot(path, &axes, &coloured)?)
}
