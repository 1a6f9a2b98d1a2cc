//! `cargo xtask generate` as one call: a prompt tokenized as is (no chat template) and continued
//! by a Qwen3 model directory, optionally with a PEFT-format LoRA adapter on it.

use std::path::PathBuf;

use burn::tensor::DType;
use burn::tensor::backend::AutodiffBackend;
use ember_backend::{BackendChoice, BackendOp};
use ember_qwen3::{GenerationConfig, Sampling, load_pretrained};

use crate::EvalError;

/// What `cargo xtask generate` was asked (its help describes each).
#[derive(Debug, Clone)]
pub struct GenerateCommand {
    /// Hugging Face model directory (config.json, safetensors, tokenizer.json).
    pub model: PathBuf,
    pub adapter: Option<PathBuf>,
    pub prompt: String,
    pub max_new_tokens: usize,
    /// `None`: argmax decoding.
    pub sampling: Option<Sampling>,
    pub backend: BackendChoice,
}

/// The prompt's ids, the generated ids and their text.
#[derive(Debug, Clone)]
pub struct Generated {
    pub prompt_ids: Vec<u32>,
    pub ids: Vec<u32>,
    pub text: String,
}

/// Tokenizes the prompt, generates and decodes the new tokens.
pub fn run_generate(cmd: &GenerateCommand) -> Result<Generated, EvalError> {
    use ember_hub::{Files, resolve};
    // Hub ids to directories (local paths win).
    let cmd = &GenerateCommand {
        model: resolve(&cmd.model, None, Files::Model)?,
        adapter: cmd
            .adapter
            .as_deref()
            .map(|a| resolve(a, None, Files::Adapter))
            .transpose()?,
        ..cmd.clone()
    };
    let tok_path =
        ember_qwen3::tokenizer_file(&cmd.model).map_err(|e| EvalError::Model(e.to_string()))?;
    let tokenizer = tokenizers::Tokenizer::from_file(&tok_path)
        .map_err(|e| EvalError::Tokenizer(format!("{}: {e}", tok_path.display())))?;
    let prompt_ids = tokenizer
        .encode(cmd.prompt.as_str(), false)
        .map_err(|e| EvalError::Tokenizer(format!("tokenizing the prompt: {e}")))?
        .get_ids()
        .to_vec();
    let ids = ember_backend::run(
        cmd.backend,
        Generate {
            cmd,
            prompt_ids: &prompt_ids,
        },
    )??;
    let text = tokenizer
        .decode(&ids, false)
        .map_err(|e| EvalError::Tokenizer(format!("decoding: {e}")))?;
    Ok(Generated {
        prompt_ids,
        ids,
        text,
    })
}

struct Generate<'a> {
    cmd: &'a GenerateCommand,
    prompt_ids: &'a [u32],
}

impl BackendOp for Generate<'_> {
    type Output = Result<Vec<u32>, EvalError>;
    fn run<B: AutodiffBackend>(self, device: B::Device) -> Self::Output {
        let c = self.cmd;
        let source = |dir: &PathBuf, what: &str, e: String| EvalError::ModelSource {
            dir: dir.clone(),
            reason: format!("loading the {what}: {e}"),
        };
        // Generation needs no gradients: the inner backend.
        let (cfg, mut model) = load_pretrained::<B::InnerBackend>(&c.model, DType::F32, &device)
            .map_err(|e| source(&c.model, "model", e.to_string()))?;
        if let Some(dir) = &c.adapter {
            ember_lora::load_peft(&mut model, dir)
                .map_err(|e| source(dir, "adapter", e.to_string()))?;
        }
        let settings = GenerationConfig {
            max_new_tokens: c.max_new_tokens,
            sampling: c.sampling.clone(),
            eos_token_ids: cfg.eos_ids(),
        };
        let generation = model
            .generate(self.prompt_ids, &settings, &device)
            .map_err(|e| EvalError::Model(e.to_string()))?;
        Ok(generation.ids)
    }
}
