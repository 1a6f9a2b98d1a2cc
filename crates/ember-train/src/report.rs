//! What the user sees: the start banner, a progress bar, per-log lines, the end summary with the
//! reference study's columns, and the JSONL log (`trainer_log.jsonl`, LLaMA-Factory's name).

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::TrainError;
use crate::plan::StepPlan;
use crate::state::LogEntry;

/// The figures printed before training.
#[derive(Debug, Clone, Serialize)]
pub struct Banner {
    pub train_samples: usize,
    pub eval_samples: usize,
    pub plan: StepPlan,
    pub warmup_steps: u64,
    pub trainable_line: String,
    pub trainable_params: u64,
    pub train_tokens: usize,
    pub supervised_tokens: usize,
}

impl Banner {
    /// Training tokens (over all epochs) per trainable parameter: a reported figure, not a target.
    pub fn tokens_per_param(&self) -> f64 {
        self.train_tokens as f64 * self.plan.epochs as f64 / self.trainable_params.max(1) as f64
    }
}

impl Banner {
    /// The figures, one indented line each, without a heading or a final newline: the training
    /// banner and `cargo xtask plan` print them under their own.
    pub fn write_figures(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let p = &self.plan;
        writeln!(
            f,
            "  Num examples = {} (eval {})",
            self.train_samples, self.eval_samples
        )?;
        writeln!(f, "  Num epochs = {}", p.epochs)?;
        writeln!(
            f,
            "  Batch size = {} x gradient accumulation {} = {}",
            p.batch_size,
            p.grad_accum,
            p.batch_size * p.grad_accum
        )?;
        writeln!(
            f,
            "  Micro-batches per epoch = {}, optimizer steps per epoch = {}",
            p.micro_batches_per_epoch, p.steps_per_epoch
        )?;
        writeln!(
            f,
            "  Total optimization steps = {} (warm-up {})",
            p.max_steps, self.warmup_steps
        )?;
        writeln!(f, "  {}", self.trainable_line)?;
        writeln!(
            f,
            "  Training tokens = {} (supervised {}) per epoch",
            self.train_tokens, self.supervised_tokens
        )?;
        write!(
            f,
            "  Tokens per trainable parameter = {:.4} over {} epochs",
            self.tokens_per_param(),
            p.epochs
        )
    }
}

impl std::fmt::Display for Banner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "***** Running training *****")?;
        self.write_figures(f)
    }
}

/// The end-of-run figures, as the reference study tabulates them.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub train_samples: usize,
    pub eval_samples: usize,
    pub steps: u64,
    pub train_runtime: f64,
    pub seconds_per_step: f64,
    pub train_loss: f64,
    pub eval_loss: Option<f64>,
    pub tokens_per_second: f64,
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "| samples (train/eval) | steps | train time | s/step | train_loss | eval_loss | tokens/s |"
        )?;
        writeln!(f, "|---|---|---|---|---|---|---|")?;
        write!(
            f,
            "| {} / {} | {} | {:.1} s | {:.3} | {:.4} | {} | {:.0} |",
            self.train_samples,
            self.eval_samples,
            self.steps,
            self.train_runtime,
            self.seconds_per_step,
            self.train_loss,
            self.eval_loss
                .map_or("-".to_string(), |e| format!("{e:.4}")),
            self.tokens_per_second
        )
    }
}

/// Receives progress; the CLI prints it, a library caller may collect or ignore it.
pub trait Reporter {
    fn banner(&mut self, _banner: &Banner) {}
    /// After each optimizer step; `secs_per_step` is the mean over this invocation's steps.
    fn step(&mut self, _step: u64, _max_steps: u64, _secs_per_step: f64) {}
    fn log(&mut self, _entry: &LogEntry) {}
    fn summary(&mut self, _summary: &Summary, _output_dir: &Path) {}
}

/// Prints nothing.
pub struct Silent;
impl Reporter for Silent {}

/// A progress bar with step, loss, learning rate, s/step and ETA; banner and summary on stdout.
#[derive(Default)]
pub struct Console {
    bar: Option<indicatif::ProgressBar>,
    last_loss: Option<f64>,
    last_lr: Option<f64>,
}

impl Reporter for Console {
    fn banner(&mut self, banner: &Banner) {
        println!("{banner}");
        let bar = indicatif::ProgressBar::new(banner.plan.max_steps);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{bar:30} {pos}/{len} [{elapsed_precise}<{eta_precise}] {msg}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        self.bar = Some(bar);
    }

    fn step(&mut self, step: u64, _max: u64, secs_per_step: f64) {
        if let Some(bar) = &self.bar {
            bar.set_position(step);
            bar.set_message(format!(
                "loss {} lr {} {:.2} s/step",
                self.last_loss.map_or("-".into(), |l| format!("{l:.4}")),
                self.last_lr.map_or("-".into(), |l| format!("{l:.3e}")),
                secs_per_step
            ));
        }
    }

    fn log(&mut self, e: &LogEntry) {
        if e.loss.is_some() {
            self.last_loss = e.loss;
            self.last_lr = e.learning_rate;
        }
        let line = serde_json::to_string(e).unwrap_or_default();
        match &self.bar {
            Some(bar) => bar.println(line),
            None => println!("{line}"),
        }
    }

    fn summary(&mut self, s: &Summary, out: &Path) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
        println!("{s}");
        println!("outputs written to {}", out.display());
    }
}

/// `trainer_log.jsonl`: one JSON object per log entry (plus notes such as a stop on NaN).
pub struct JsonlLog {
    path: PathBuf,
    file: File,
}

/// The JSONL log's file name (LLaMA-Factory's).
pub const TRAINER_LOG_FILE: &str = "trainer_log.jsonl";

impl JsonlLog {
    /// Creates the log, or appends to it when resuming.
    pub fn open(dir: &Path, append: bool) -> Result<Self, TrainError> {
        let path = dir.join(TRAINER_LOG_FILE);
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(append)
            .write(true)
            .truncate(!append)
            .open(&path)
            .map_err(|source| TrainError::Io {
                path: path.clone(),
                source,
            })?;
        Ok(Self { path, file })
    }

    fn line(&mut self, value: serde_json::Value) -> Result<(), TrainError> {
        writeln!(self.file, "{value}").map_err(|source| TrainError::Io {
            path: self.path.clone(),
            source,
        })
    }

    pub fn write(
        &mut self,
        e: &LogEntry,
        total_steps: u64,
        elapsed: f64,
    ) -> Result<(), TrainError> {
        let mut v = serde_json::to_value(e).map_err(|e| TrainError::Other(e.to_string()))?;
        v["current_steps"] = e.step.into();
        v["total_steps"] = total_steps.into();
        v["percentage"] = (100.0 * e.step as f64 / total_steps.max(1) as f64).into();
        v["elapsed_time"] = elapsed.into();
        self.line(v)
    }

    pub fn note(&mut self, message: &str) -> Result<(), TrainError> {
        self.line(serde_json::json!({ "note": message }))
    }
}
