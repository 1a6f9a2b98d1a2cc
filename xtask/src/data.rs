//! `cargo xtask data`: load and tokenize a run's data as training would; print statistics and one
//! rendered example; optionally export `{"input_ids": [...], "labels": [...]}` lines.

use std::path::PathBuf;

use anyhow::Context;

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
    let tok_path = cfg.model.model_name_or_path.join("tokenizer.json");
    let tok = ember_data::Tokenizer::from_file(&tok_path)?;
    let data = ember_data::load_sft(&cfg.data, &tok).context("loading the data")?;
    println!("{}", data.stats);
    if let Some(first) = data.train.first() {
        println!("{}", ember_data::preview(first, &tok)?);
    }
    if let Some(path) = args.export {
        ember_data::export_jsonl(&data.train, &path)?;
        println!("wrote {} samples to {}", data.train.len(), path.display());
    }
    Ok(())
}
