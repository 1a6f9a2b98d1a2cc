//! A run directory read back into one report row: the plan figures the sweep wrote before training
//! (`study_run.json`), and what the trainer wrote (`trainer_state.json`, `all_results.json`,
//! `checkpoint-N/`). Every figure comes from those files, so a report can be rebuilt from shared
//! storage without the runs' processes.

use std::path::{Path, PathBuf};

use ember_eval::ScoreTable;
use ember_train::{Banner, TrainerState};
use serde::{Deserialize, Serialize};

use crate::analysis::{self, CurveAnalysis};
use crate::error::{read_json, write_json};
use crate::{Axis, Grid, RunSpec, StudyError};

/// Written by the sweep into each run directory before training.
pub const STUDY_RUN_FILE: &str = "study_run.json";
/// HF's final metrics file; its presence (with the final `train_loss` log entry) marks a finished run.
pub use ember_train::trainer::ALL_RESULTS_FILE;
/// Benchmark scores of the run's checkpoints (with `--eval-tasks`).
pub const BENCHMARKS_FILE: &str = "benchmarks.json";

/// The planned figures of a run, as the trainer's banner computes them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlannedFigures {
    pub train_samples: usize,
    pub eval_samples: usize,
    pub micro_batches_per_epoch: usize,
    pub steps_per_epoch: usize,
    pub max_steps: u64,
    pub epochs: u64,
    pub warmup_steps: u64,
    pub trainable_line: String,
    pub trainable_params: u64,
    /// Training tokens per epoch, and the supervised ones among them.
    pub train_tokens: usize,
    pub supervised_tokens: usize,
    /// Training tokens over all epochs per trainable parameter.
    pub tokens_per_param: f64,
}

impl From<&Banner> for PlannedFigures {
    fn from(b: &Banner) -> Self {
        Self {
            train_samples: b.train_samples,
            eval_samples: b.eval_samples,
            micro_batches_per_epoch: b.plan.micro_batches_per_epoch,
            steps_per_epoch: b.plan.steps_per_epoch,
            max_steps: b.plan.max_steps,
            epochs: b.plan.epochs,
            warmup_steps: b.warmup_steps,
            trainable_line: b.trainable_line.clone(),
            trainable_params: b.trainable_params,
            train_tokens: b.train_tokens,
            supervised_tokens: b.supervised_tokens,
            tokens_per_param: b.tokens_per_param(),
        }
    }
}

/// `study_run.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StudyRunFile {
    pub spec: RunSpec,
    pub planned: PlannedFigures,
}

impl StudyRunFile {
    pub fn write(&self, dir: &Path) -> Result<(), StudyError> {
        write_json(&dir.join(STUDY_RUN_FILE), self)
    }

    pub fn read(dir: &Path) -> Result<Self, StudyError> {
        read_json(&dir.join(STUDY_RUN_FILE))
    }
}

/// Where a run directory stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    NotStarted,
    /// Started and stopped; `checkpoint` is the newest complete one to resume from.
    Interrupted {
        checkpoint: Option<u64>,
    },
    Finished,
}

/// Complete `checkpoint-N` directories (with their `trainer_state.json`), by increasing N.
pub fn checkpoints(dir: &Path) -> Vec<u64> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut steps: Vec<u64> = entries
        .filter_map(Result::ok)
        .filter(|e| {
            e.path()
                .join(ember_train::state::TRAINER_STATE_FILE)
                .is_file()
        })
        .filter_map(|e| {
            e.file_name()
                .to_str()?
                .strip_prefix("checkpoint-")?
                .parse()
                .ok()
        })
        .collect();
    steps.sort_unstable();
    steps
}

/// Finished: `all_results.json` and a `trainer_state.json` whose last entry has `train_loss`.
pub fn status(dir: &Path) -> RunStatus {
    let finished = dir.join(ALL_RESULTS_FILE).is_file()
        && TrainerState::load(dir)
            .ok()
            .and_then(|s| s.log_history.last().map(|e| e.train_loss.is_some()))
            .unwrap_or(false);
    if finished {
        return RunStatus::Finished;
    }
    let started = std::fs::read_dir(dir)
        .map(|mut d| d.next().is_some())
        .unwrap_or(false);
    if !started {
        return RunStatus::NotStarted;
    }
    RunStatus::Interrupted {
        checkpoint: checkpoints(dir).last().copied(),
    }
}

/// One row of the report.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunRecord {
    pub name: String,
    pub settings: Vec<(String, String)>,
    pub output_dir: PathBuf,
    pub planned: PlannedFigures,
    /// Optimizer steps taken (`global_step`).
    pub total_steps: u64,
    pub train_runtime: f64,
    /// `train_runtime / max_steps`, as the reference study reports it.
    pub seconds_per_step: f64,
    pub train_loss: f64,
    /// `eval_loss` after training (`all_results.json`), else the last logged one.
    pub final_eval_loss: Option<f64>,
    pub best_eval_loss: Option<f64>,
    pub best_eval_step: Option<u64>,
    /// Tokens the run trained on (`num_input_tokens_seen`).
    pub tokens_seen: u64,
    pub checkpoints: Vec<u64>,
    pub analysis: CurveAnalysis,
    /// `(step, loss)` and `(step, eval_loss)` from `log_history`.
    pub train_curve: Vec<(u64, f64)>,
    pub eval_curve: Vec<(u64, f64)>,
    /// Benchmark scores per checkpoint (rows `checkpoint-N` and `final`), with `--eval-tasks`.
    pub benchmarks: Option<ScoreTable>,
}

impl RunRecord {
    /// Reads a finished run directory.
    pub fn load(dir: &Path, patience: usize) -> Result<Self, StudyError> {
        let bad = |reason: String| StudyError::Run {
            run: dir.display().to_string(),
            reason,
        };
        if status(dir) != RunStatus::Finished {
            return Err(bad(
                "not finished (no all_results.json, or no final train_loss entry)".into(),
            ));
        }
        let study = StudyRunFile::read(dir)?;
        let state = TrainerState::load(dir)?;
        let results: serde_json::Value = read_json(&dir.join(ALL_RESULTS_FILE))?;
        let last = state
            .log_history
            .last()
            .ok_or_else(|| bad("empty log_history".into()))?;
        let train_loss = last.train_loss.ok_or_else(|| bad("no train_loss".into()))?;
        let train_runtime = last.train_runtime.unwrap_or(0.0);
        let checkpoints = checkpoints(dir);
        let analysis = analysis::analyse(&state, &checkpoints, patience);
        let eval_curve = state.eval_losses();
        let final_eval_loss = results
            .get("eval_loss")
            .and_then(serde_json::Value::as_f64)
            .or_else(|| eval_curve.last().map(|p| p.1));
        let benchmarks = if dir.join(BENCHMARKS_FILE).is_file() {
            Some(read_json::<ScoreTable>(&dir.join(BENCHMARKS_FILE))?)
        } else {
            None
        };
        Ok(Self {
            name: study.spec.name,
            settings: study.spec.settings,
            output_dir: dir.to_path_buf(),
            total_steps: state.global_step,
            seconds_per_step: train_runtime / state.max_steps.max(1) as f64,
            train_runtime,
            train_loss,
            final_eval_loss,
            best_eval_loss: analysis.min_eval_loss,
            best_eval_step: analysis.min_eval_step,
            tokens_seen: state.num_input_tokens_seen,
            planned: study.planned,
            checkpoints,
            train_curve: state.losses(),
            eval_curve,
            analysis,
            benchmarks,
        })
    }

    /// The value of a grid key in this run.
    pub fn setting(&self, key: &str) -> Option<&str> {
        self.settings
            .iter()
            .find(|(k, _)| k == key || k.rsplit('.').next() == Some(key))
            .map(|(_, v)| v.as_str())
    }

    /// `(step, value)` of a benchmark column (`kobest/acc`) over the run's checkpoints.
    pub fn metric_by_step(&self, column: &str) -> Vec<(u64, f64)> {
        let Some(table) = &self.benchmarks else {
            return Vec::new();
        };
        table
            .rows
            .iter()
            .filter_map(|r| {
                let step = r.model.strip_prefix("checkpoint-")?.parse().ok()?;
                let v = r.columns().into_iter().find(|(c, _)| c == column)?.1;
                Some((step, v))
            })
            .collect()
    }
}

impl Grid {
    /// The grid the finished runs' `study_run.json` files describe (for `--report-only`); runs
    /// without one are left out.
    pub fn from_run_files(dirs: &[PathBuf]) -> Grid {
        let mut grid = Grid::default();
        for d in dirs {
            let Ok(f) = StudyRunFile::read(d) else {
                continue;
            };
            for (k, v) in f.spec.settings {
                match grid.axes.iter_mut().find(|a| a.key == k) {
                    Some(a) if !a.values.contains(&v) => a.values.push(v),
                    Some(_) => {}
                    None => grid.axes.push(Axis {
                        key: k,
                        values: vec![v],
                    }),
                }
            }
        }
        grid
    }
}
