//! `cargo xtask config --to-toml run.yaml`: a LLaMA-Factory YAML config as the equivalent ember
//! TOML, checked as `finetune` would check it.

use std::path::PathBuf;

use ember_train::FinetuneConfig;
use ember_train::llamafactory::translate;

#[derive(clap::Args)]
pub struct Args {
    /// The LLaMA-Factory YAML config to print as ember TOML.
    #[arg(long, value_name = "RUN.yaml")]
    to_toml: PathBuf,
    /// Override a key: `--set learning_rate=1e-4` (LLaMA-Factory's name) or
    /// `--set train.seed=7` (ember's section.key); repeatable.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let path = &args.to_toml;
    let text =
        std::fs::read_to_string(path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    let tr = translate(&text, path, &args.set)?;
    // The printed TOML is a config finetune accepts: check it as finetune would.
    FinetuneConfig::load(path, &args.set)?;
    print!("{}", tr.to_toml(path)?);
    Ok(())
}
