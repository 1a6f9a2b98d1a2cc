//! `cargo xtask generate`: tokenize a prompt as is (no chat template), continue it, print the text;
//! optionally with a PEFT-format LoRA adapter on the model.

use std::path::PathBuf;

use anyhow::{Context, anyhow};
use burn::tensor::DType;
use ember_backend::{AutodiffBackend, BackendOp};
use ember_qwen3::{GenerationConfig, Sampling, load_pretrained};

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

struct Generate {
    args: Args,
    prompt_ids: Vec<u32>,
}

impl BackendOp for Generate {
    type Output = anyhow::Result<Vec<u32>>;
    fn run<B: AutodiffBackend>(self, device: B::Device) -> Self::Output {
        let a = &self.args;
        let (cfg, mut model) = load_pretrained::<B::InnerBackend>(&a.model, DType::F32, &device)
            .with_context(|| format!("loading the model from {}", a.model.display()))?;
        if let Some(dir) = &a.adapter {
            ember_lora::load_peft(&mut model, dir)
                .with_context(|| format!("loading the adapter from {}", dir.display()))?;
        }
        let settings = GenerationConfig {
            max_new_tokens: a.max_new_tokens,
            sampling: (!a.greedy).then_some(Sampling {
                temperature: a.temperature,
                top_p: a.top_p,
                seed: a.seed,
            }),
            eos_token_ids: cfg.eos_ids(),
        };
        Ok(model
            .generate(&cfg, &self.prompt_ids, &settings, &device)?
            .ids)
    }
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let tok_path = args.model.join("tokenizer.json");
    let tokenizer = tokenizers::Tokenizer::from_file(&tok_path)
        .map_err(|e| anyhow!("{}: {e}", tok_path.display()))?;
    let prompt_ids = tokenizer
        .encode(args.prompt.as_str(), false)
        .map_err(|e| anyhow!("tokenizing the prompt: {e}"))?
        .get_ids()
        .to_vec();
    let (json, backend) = (args.json, args.backend.backend);
    let ids = ember_backend::run(
        backend,
        Generate {
            args,
            prompt_ids: prompt_ids.clone(),
        },
    )??;
    let text = tokenizer
        .decode(&ids, false)
        .map_err(|e| anyhow!("decoding: {e}"))?;
    if json {
        println!(
            "{}",
            serde_json::json!({"prompt_ids": prompt_ids, "ids": ids, "text": text})
        );
    } else {
        println!("{text}");
    }
    Ok(())
}
