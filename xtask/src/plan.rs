//! `cargo xtask plan`: what a run will be before it runs (samples, tokens, steps, trainable
//! parameters, memory, time), from `config.json` alone; `--samples N` plans without a dataset.

use anyhow::Context;
use ember_backend::{AutodiffBackend, BackendChoice, BackendOp};
use ember_data::SftData;
use ember_study::calibrate::{Weights, calibrate};
use ember_study::memory::GPU_RUNTIME_BYTES;
use ember_study::plan::{Plan, PlanOptions, has_weights, plan};
use ember_train::FinetuneConfig;

use crate::args::{BackendArgs, ConfigArgs};

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    config: ConfigArgs,
    // The memory estimate and calibration use the backend.
    #[command(flatten)]
    backend: BackendArgs,
    /// Plan for N training samples without reading the dataset.
    #[arg(long)]
    samples: Option<usize>,
    /// With --samples: evaluation samples (default 0).
    #[arg(long, requires = "samples")]
    eval_samples: Option<usize>,
    /// With --samples: tokens per sample (default cutoff_len), half of them supervised.
    #[arg(long, requires = "samples")]
    tokens_per_sample: Option<usize>,
    /// Measure N real steps on this machine (default 6 when the model directory has weights;
    /// without weights, N steps on a random-weight model of the config's shape; 0: no timing).
    #[arg(long)]
    calibrate_steps: Option<usize>,
    /// Print the plan as JSON.
    #[arg(long)]
    json: bool,
}

struct Calibrate<'a> {
    cfg: &'a FinetuneConfig,
    data: &'a SftData,
    plan: &'a mut Plan,
    steps: usize,
    weights: Weights,
}

impl BackendOp for Calibrate<'_> {
    type Output = anyhow::Result<()>;
    fn run<B: AutodiffBackend>(self, device: B::Device) -> Self::Output {
        calibrate::<B>(
            self.cfg,
            self.data,
            self.plan,
            self.steps,
            self.weights,
            &device,
        )
        .context("calibrating")?;
        Ok(())
    }
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let cfg = args.config.load()?;
    let backend = args.backend.backend;
    let on_gpu = matches!(backend, BackendChoice::Cuda(_) | BackendChoice::TchCuda(_));
    let opts = PlanOptions {
        samples: args.samples,
        eval_samples: args.eval_samples,
        tokens_per_sample: args.tokens_per_sample,
        runtime_bytes: on_gpu.then_some(GPU_RUNTIME_BYTES),
    };
    let mut planned = plan(&cfg, &opts).context("planning")?;
    let weights = has_weights(&cfg.model.model_name_or_path);
    let steps = args.calibrate_steps.unwrap_or(if weights { 6 } else { 0 });
    if steps > 0 {
        let weights = if weights {
            Weights::Pretrained
        } else {
            Weights::Random
        };
        eprintln!(
            "calibrating: {steps} steps on {} ({weights:?} weights)",
            backend
        );
        ember_backend::run(
            backend,
            Calibrate {
                cfg: &cfg,
                data: &planned.data,
                plan: &mut planned.plan,
                steps,
                weights,
            },
        )??;
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&planned.plan)?);
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
