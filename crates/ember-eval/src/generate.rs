//! `cargo xtask generate` as one call: a prompt tokenized as is (no chat template) and continued
//! by a Qwen3 model directory, optionally with a PEFT-format LoRA adapter on it. (With the chat
//! template: [`crate::chat`].)

use std::path::{Path, PathBuf};

use burn::tensor::DType;
use burn::tensor::backend::{AutodiffBackend, Backend};
use ember_backend::{BackendChoice, BackendOp};
use ember_qwen3::{
    GenerationConfig, GenerationDefaults, Qwen3Config, Qwen3ForCausalLM, StopReason,
    load_pretrained,
};

use crate::EvalError;
use crate::chat::SamplingOverrides;

/// What `cargo xtask generate` was asked (its help describes each).
#[derive(Debug, Clone)]
pub struct GenerateCommand {
    /// Hugging Face model directory (config.json, safetensors, tokenizer.json).
    pub model: PathBuf,
    pub adapter: Option<PathBuf>,
    pub prompt: String,
    pub max_new_tokens: usize,
    /// Replacing `generation_config.json`'s decoding settings.
    pub sampling: SamplingOverrides,
    pub backend: BackendChoice,
}

/// The prompt's ids, the generated ids and their text.
#[derive(Debug, Clone)]
pub struct Generated {
    pub prompt_ids: Vec<u32>,
    pub ids: Vec<u32>,
    pub text: String,
    pub stop: StopReason,
}

/// Tokenizes the prompt, generates and decodes the new tokens.
pub fn run_generate(cmd: &GenerateCommand) -> Result<Generated, EvalError> {
    let (model, adapter) = resolve_dirs(&cmd.model, cmd.adapter.as_deref())?;
    let cmd = &GenerateCommand {
        model,
        adapter,
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
    let defaults =
        GenerationDefaults::load(&cmd.model).map_err(|e| EvalError::Model(e.to_string()))?;
    let (ids, stop) = ember_backend::run(
        cmd.backend,
        Generate {
            cmd,
            defaults,
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
        stop,
    })
}

/// Hub ids to directories (local paths win): the model's and the adapter's.
pub(crate) fn resolve_dirs(
    model: &Path,
    adapter: Option<&Path>,
) -> Result<(PathBuf, Option<PathBuf>), EvalError> {
    use ember_hub::{Files, resolve};
    let model = resolve(model, None, Files::Model)?;
    let adapter = adapter
        .map(|a| resolve(a, None, Files::Adapter))
        .transpose()?;
    Ok((model, adapter))
}

/// The model of `dir` in f32, with the PEFT adapter of `adapter` on it.
pub(crate) fn load_model<B: Backend>(
    dir: &PathBuf,
    adapter: Option<&PathBuf>,
    device: &B::Device,
) -> Result<(Qwen3Config, Qwen3ForCausalLM<B>), EvalError> {
    let source = |dir: &PathBuf, what: &str, e: String| EvalError::ModelSource {
        dir: dir.clone(),
        reason: format!("loading the {what}: {e}"),
    };
    let (cfg, mut model) = load_pretrained::<B>(dir, DType::F32, device)
        .map_err(|e| source(dir, "model", e.to_string()))?;
    if let Some(a) = adapter {
        ember_lora::load_peft(&mut model, a).map_err(|e| source(a, "adapter", e.to_string()))?;
    }
    Ok((cfg, model))
}

struct Generate<'a> {
    cmd: &'a GenerateCommand,
    defaults: GenerationDefaults,
    prompt_ids: &'a [u32],
}

impl BackendOp for Generate<'_> {
    type Output = Result<(Vec<u32>, StopReason), EvalError>;
    fn run<B: AutodiffBackend>(self, device: B::Device) -> Self::Output {
        let c = self.cmd;
        // Generation needs no gradients: the inner backend.
        let (cfg, model) = load_model::<B::InnerBackend>(&c.model, c.adapter.as_ref(), &device)?;
        let mut eos_token_ids = self.defaults.eos_ids();
        if eos_token_ids.is_empty() {
            eos_token_ids = cfg.eos_ids();
        }
        let settings = GenerationConfig {
            max_new_tokens: c.max_new_tokens,
            sampling: c.sampling.resolve(&self.defaults),
            eos_token_ids,
        };
        let generation = model
            .generate(self.prompt_ids, &settings, &device)
            .map_err(|e| EvalError::Model(e.to_string()))?;
        Ok((generation.ids, generation.stop))
    }
}
