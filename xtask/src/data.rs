//! `cargo xtask data`: load and tokenize a run's data as training would; print statistics and one
//! rendered example; optionally export `{"input_ids": [...], "labels": [...]}` lines.

use std::path::PathBuf;

use crate::args::ConfigArgs;

#[derive(clap::Args)]
pub struct Args {
    // The run config: its [model] gives the tokenizer and [data] the datasets.
    #[command(flatten)]
    config: ConfigArgs,
    /// Write the tokenized training samples as JSON lines.
    #[arg(long)]
    export: Option<PathBuf>,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let cfg = args.config.load()?;
    let tokenizer = ember_qwen3::tokenizer_file(cfg.model.config_dir()?)?;
    let text = ember_data::inspect(&cfg.data, &tokenizer, args.export.as_deref())?;
    println!("{text}");
    Ok(())
}
