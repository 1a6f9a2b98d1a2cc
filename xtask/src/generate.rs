//! `cargo xtask generate`: tokenize a prompt as is (no chat template), continue it, print the text;
//! optionally with a PEFT-format LoRA adapter on the model.

use std::path::PathBuf;

use ember_eval::{GenerateCommand, run_generate};
use ember_qwen3::Sampling;

use crate::args::BackendArgs;

#[derive(clap::Args)]
pub struct Args {
    /// Hugging Face model directory (config.json, safetensors, tokenizer.json).
    #[arg(long)]
    model: PathBuf,
    /// A PEFT-format LoRA adapter directory (adapter_config.json, adapter_model.safetensors) to apply.
    #[arg(long)]
    adapter: Option<PathBuf>,
    /// The text to continue.
    #[arg(long)]
    prompt: String,
    #[arg(long, default_value_t = 32)]
    max_new_tokens: usize,
    /// Argmax decoding (the default is temperature / top-p sampling).
    #[arg(long)]
    greedy: bool,
    #[arg(long, default_value_t = 0.7)]
    temperature: f32,
    #[arg(long, default_value_t = 0.8)]
    top_p: f32,
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Print `{"prompt_ids": [...], "ids": [...], "text": "..."}`.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    backend: BackendArgs,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let cmd = GenerateCommand {
        model: args.model,
        adapter: args.adapter,
        prompt: args.prompt,
        max_new_tokens: args.max_new_tokens,
        sampling: (!args.greedy).then_some(Sampling {
            temperature: args.temperature,
            top_p: args.top_p,
            seed: args.seed,
        }),
        backend: args.backend.backend,
    };
    let out = run_generate(&cmd)?;
    if args.json {
        println!(
            "{}",
            serde_json::json!({"prompt_ids": out.prompt_ids, "ids": out.ids, "text": out.text})
        );
    } else {
        println!("{}", out.text);
    }
    Ok(())
}
