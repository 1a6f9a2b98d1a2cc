//! Time per step from a few measured steps on this machine: the run's own first windows of data,
//! on the real weights or on a random-weight model of the config's shape. Also times one
//! evaluation and one adapter save, since HF's `train_runtime` (and so its s/step) includes both.

use std::path::PathBuf;
use std::time::Instant;

use burn::module::AutodiffModule;
use burn::tensor::backend::AutodiffBackend;
use ember_backend::{BackendChoice, BackendOp};
use ember_data::SftData;
use ember_train::config::Strategy;
use ember_train::report::Reporter;
use ember_train::trainer::compute_dtype;
use ember_train::{FinetuneConfig, Run};
use serde::Serialize;

use crate::StudyError;
use crate::memory::GPU_RUNTIME_BYTES;
use crate::plan::{Plan, PlanOptions, has_weights, plan};

/// Which weights the calibration steps run on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Weights {
    /// The model directory's checkpoint.
    Pretrained,
    /// HF-style random initialisation of the config's shape (no checkpoint needed).
    Random,
}

/// Measured figures and the estimate they give.
#[derive(Debug, Clone, Serialize)]
pub struct Timing {
    pub weights: Weights,
    pub steps_measured: usize,
    /// The first step (allocation, warm-up), measured alone.
    pub first_step_s: f64,
    /// Mean of the later measured steps.
    pub seconds_per_step: f64,
    /// One evaluation pass over the eval set.
    pub eval_s: f64,
    /// One checkpoint save (adapter and optimizer state), estimated as three adapter saves.
    pub save_s: f64,
    /// `first + (steps-1)·s/step + evaluations·eval + saves·save`: what `train_runtime` will be.
    pub total_s: f64,
    /// `total / steps`: the s/step HF reports.
    pub reported_seconds_per_step: f64,
    /// The process's peak resident size after calibrating (CPU backends).
    pub measured_peak_rss: Option<u64>,
}

impl std::fmt::Display for Timing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "  Calibration ({} steps, {:?} weights): first step {:.3} s, then {:.3} s/step; eval {:.3} s, save {:.3} s",
            self.steps_measured,
            self.weights,
            self.first_step_s,
            self.seconds_per_step,
            self.eval_s,
            self.save_s
        )?;
        write!(
            f,
            "  Estimated train time = {:.1} s ({:.3} s/step as HF reports it)",
            self.total_s, self.reported_seconds_per_step
        )?;
        if let Some(p) = self.measured_peak_rss {
            write!(
                f,
                "\n  Measured peak resident memory while calibrating = {}",
                crate::memory::human_bytes(p)
            )?;
        }
        Ok(())
    }
}

/// Records, at each step, the seconds since the banner (training starts right after it).
struct StepTimes {
    start: Instant,
    times: Vec<f64>,
}

impl Reporter for StepTimes {
    fn banner(&mut self, _: &ember_train::Banner) {
        self.start = Instant::now();
    }

    fn step(&mut self, _step: u64, _max: u64, _elapsed: f64) {
        self.times.push(self.start.elapsed().as_secs_f64());
    }
}

/// A scratch directory removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> Result<Self, StudyError> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let dir =
            std::env::temp_dir().join(format!("ember-calibrate-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir).map_err(StudyError::io(&dir))?;
        Ok(Self(dir))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs `steps` real optimizer steps of `cfg` on `data` and fills in `plan.timing`.
pub fn calibrate<B: AutodiffBackend>(
    cfg: &FinetuneConfig,
    data: &SftData,
    plan: &mut Plan,
    steps: usize,
    weights: Weights,
    device: &B::Device,
) -> Result<Timing, StudyError> {
    let steps = steps.max(1);
    let scratch = Scratch::new()?;
    let mut c = cfg.clone();
    c.train.max_steps = steps as i64;
    c.train.logging_steps = 1;
    c.eval.eval_strategy = Strategy::No;
    c.output.save_strategy = Strategy::No;
    c.output.plot_loss = false;
    c.output.overwrite_output_dir = true;
    c.output.output_dir = scratch.0.join("run");
    let mut train_only = data.clone();
    train_only.eval.clear();
    train_only.stats.eval = None;
    let run = match weights {
        Weights::Pretrained => Run::<B>::with_data(&c, train_only, device)?,
        Weights::Random => random_run::<B>(&c, train_only, device)?,
    };
    let eval_s = if data.eval.is_empty() {
        0.0
    } else {
        let start = Instant::now();
        ember_train::eval_loss(
            &run.model.valid(),
            &data.eval,
            cfg.eval.per_device_eval_batch_size,
            data.pad_id,
            cfg.data.pad_to_multiple_of,
            device,
        );
        start.elapsed().as_secs_f64()
    };
    let save_dir = scratch.0.join("save");
    std::fs::create_dir_all(&save_dir).map_err(StudyError::io(&save_dir))?;
    let start = Instant::now();
    ember_train::adapter::save(&run.model, &run.adapter_cfg, &save_dir)?;
    let save_s = 3.0 * start.elapsed().as_secs_f64();
    let mut times = StepTimes {
        start: Instant::now(),
        times: Vec::new(),
    };
    run.train(&mut times)?;
    let t = &times.times;
    let first = t.first().copied().unwrap_or(0.0);
    let per_step = if t.len() >= 2 {
        (t[t.len() - 1] - first) / (t.len() - 1) as f64
    } else {
        first
    };
    let max_steps = plan.banner.plan.max_steps;
    let total = first
        + max_steps.saturating_sub(1) as f64 * per_step
        + plan.evaluations as f64 * eval_s
        + plan.saves as f64 * save_s;
    let timing = Timing {
        weights,
        steps_measured: t.len(),
        first_step_s: first,
        seconds_per_step: per_step,
        eval_s,
        save_s,
        total_s: total,
        reported_seconds_per_step: total / max_steps.max(1) as f64,
        measured_peak_rss: crate::memory::peak_rss(),
    };
    plan.timing = Some(timing.clone());
    Ok(timing)
}

/// A [`Run`] on a random-weight model of the config's shape, with the run's adapter.
pub fn random_run<B: AutodiffBackend>(
    cfg: &FinetuneConfig,
    data: SftData,
    device: &B::Device,
) -> Result<Run<B>, StudyError> {
    let model_cfg = crate::plan::model_config(cfg)?;
    let model = ember_qwen3::random_model::<B>(
        &model_cfg,
        cfg.train.seed,
        compute_dtype(&cfg.model.dtype),
        device,
    );
    Ok(Run::with_model(cfg, model_cfg, model, data, device)?)
}

/// What `cargo xtask plan` was asked (its help describes each).
#[derive(Debug, Clone)]
pub struct PlanCommand {
    pub samples: Option<usize>,
    pub eval_samples: Option<usize>,
    pub tokens_per_sample: Option<usize>,
    /// The memory estimate and calibration use it.
    pub backend: BackendChoice,
    /// Steps to time; `None`: 6 when the model directory has weights, else none.
    pub calibrate_steps: Option<usize>,
    /// Print the plan as JSON.
    pub json: bool,
}

/// Plans `cfg`, calibrates it on `cmd.backend` when asked (or the model has weights), and prints
/// the plan.
pub fn run_plan(cfg: &FinetuneConfig, cmd: &PlanCommand) -> Result<(), StudyError> {
    let on_gpu = matches!(
        cmd.backend,
        BackendChoice::Cuda(_) | BackendChoice::TchCuda(_)
    );
    let opts = PlanOptions {
        samples: cmd.samples,
        eval_samples: cmd.eval_samples,
        tokens_per_sample: cmd.tokens_per_sample,
        runtime_bytes: on_gpu.then_some(GPU_RUNTIME_BYTES),
    };
    let mut planned = plan(cfg, &opts)?;
    // Weights already at hand (a local directory, or a Hub snapshot cached with them).
    let pretrained = cfg.model.config_dir().is_ok_and(|dir| has_weights(&dir));
    let steps = cmd
        .calibrate_steps
        .unwrap_or(if pretrained { 6 } else { 0 });
    if steps > 0 {
        let weights = if pretrained {
            Weights::Pretrained
        } else {
            Weights::Random
        };
        eprintln!(
            "calibrating: {steps} steps on {} ({weights:?} weights)",
            cmd.backend
        );
        ember_backend::run(
            cmd.backend,
            Calibrate {
                cfg,
                data: &planned.data,
                plan: &mut planned.plan,
                steps,
                weights,
            },
        )??;
    }
    if cmd.json {
        let json = serde_json::to_string_pretty(&planned.plan)
            .map_err(|e| StudyError::Plan(e.to_string()))?;
        println!("{json}");
    } else {
        println!("{}", planned.plan);
        if steps == 0 {
            println!(
                "  (no timing: the model directory has no weights; add --calibrate-steps N to time a random-weight model)"
            );
        }
    }
    Ok(())
}

struct Calibrate<'a> {
    cfg: &'a FinetuneConfig,
    data: &'a SftData,
    plan: &'a mut Plan,
    steps: usize,
    weights: Weights,
}

impl BackendOp for Calibrate<'_> {
    type Output = Result<(), StudyError>;
    fn run<B: AutodiffBackend>(self, device: B::Device) -> Self::Output {
        calibrate::<B>(
            self.cfg,
            self.data,
            self.plan,
            self.steps,
            self.weights,
            &device,
        )?;
        Ok(())
    }
}
