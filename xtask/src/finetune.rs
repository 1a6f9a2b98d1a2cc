//! `cargo xtask finetune`: train a LoRA adapter from a TOML config (or the embedded demo).

use anyhow::Context;
use ember_backend::{AutodiffBackend, BackendOp};
use ember_train::{FinetuneConfig, Run, report::Console};

use crate::args::{BackendArgs, ConfigArgs};

#[derive(clap::Args, Default)]
pub struct Args {
    #[command(flatten)]
    config: ConfigArgs,
    #[command(flatten)]
    backend: BackendArgs,
}

struct Finetune(FinetuneConfig);

impl BackendOp for Finetune {
    type Output = anyhow::Result<()>;
    fn run<B: AutodiffBackend>(self, device: B::Device) -> Self::Output {
        let run = Run::<B>::load(&self.0, &device).context("preparing the run")?;
        run.train(&mut Console::default()).context("training")?;
        Ok(())
    }
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let cfg = args.config.load()?;
    println!("backend: {}", args.backend.backend);
    ember_backend::run(args.backend.backend, Finetune(cfg))?
}
