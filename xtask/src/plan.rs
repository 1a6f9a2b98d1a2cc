//! `cargo xtask plan`: what a run will be before it runs (samples, tokens, steps, trainable
//! parameters, memory, time), from `config.json` alone; `--samples N` plans without a dataset.

use ember_study::calibrate::{PlanCommand, run_plan};

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

pub fn run(args: Args) -> anyhow::Result<()> {
    let cfg = args.config.load()?;
    let cmd = PlanCommand {
        samples: args.samples,
        eval_samples: args.eval_samples,
        tokens_per_sample: args.tokens_per_sample,
        backend: args.backend.backend,
        calibrate_steps: args.calibrate_steps,
        json: args.json,
    };
    Ok(run_plan(&cfg, &cmd)?)
}
