//! `cargo xtask finetune`: train a LoRA adapter from a TOML config (or the embedded demo).

use ember_train::report::Console;

use crate::args::{BackendArgs, ConfigArgs};

#[derive(clap::Args, Default)]
pub struct Args {
    #[command(flatten)]
    config: ConfigArgs,
    #[command(flatten)]
    backend: BackendArgs,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let cfg = args.config.load()?;
    println!("backend: {}", args.backend.backend);
    ember_train::finetune(&cfg, args.backend.backend, &mut Console::default())?;
    Ok(())
}
