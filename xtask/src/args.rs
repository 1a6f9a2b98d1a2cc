//! Arguments several commands share.

use std::path::{Path, PathBuf};

use ember_backend::BackendChoice;
use ember_train::FinetuneConfig;

/// The demo config, shipped in the repository; its paths are relative to the repository root.
const DEMO_CONFIG: &str = include_str!("../../fixtures/demo/finetune.toml");

/// A run config and overrides of its keys.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct ConfigArgs {
    /// A run config: ember TOML, or a LLaMA-Factory YAML (`.yaml`/`.yml`) as it is. Without it,
    /// the embedded demo (sweep: the shipped study, fixtures/study/finetune.toml).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Override a key: `--set learning_rate=1e-4` or `--set train.learning_rate=1e-4` (repeatable;
    /// for a YAML config a bare key is LLaMA-Factory's, as on `llamafactory-cli`'s command line).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
}

impl ConfigArgs {
    /// The config these arguments name, with overrides applied: the file's, or the demo's with its
    /// inputs in the repository (its outputs go under the current directory).
    pub fn load(&self) -> anyhow::Result<FinetuneConfig> {
        Ok(match &self.config {
            Some(path) => {
                let (cfg, notes) = FinetuneConfig::load(path, &self.set)?;
                for note in notes {
                    eprintln!("note: {note}");
                }
                cfg
            }
            None => {
                let mut table: toml::Table = DEMO_CONFIG.parse()?;
                ember_study::sweep::root_paths(&mut table, &repo_root());
                FinetuneConfig::from_table(table, Path::new("<embedded demo config>"), &self.set)?
            }
        })
    }
}

/// The compute backend.
#[derive(clap::Args, Debug, Clone)]
pub struct BackendArgs {
    /// flex | tch | tch-cuda:N | cuda:N | wgpu | wgpu:N
    #[arg(long, default_value_t = BackendChoice::default_compiled())]
    pub backend: BackendChoice,
}

impl Default for BackendArgs {
    fn default() -> Self {
        Self {
            backend: BackendChoice::default_compiled(),
        }
    }
}

/// The repository root (xtask lives one level below it).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Decoding settings; each one left out is the model's `generation_config.json`'s (HF's defaults
/// where it has none: greedy).
#[derive(clap::Args, Debug, Clone)]
pub struct SamplingArgs {
    /// Argmax decoding, whatever generation_config.json says.
    #[arg(long)]
    pub greedy: bool,
    /// Sample with this temperature (the model's `temperature` otherwise).
    #[arg(long)]
    pub temperature: Option<f32>,
    /// Keep the k most likely tokens (0: all; the model's `top_k` otherwise).
    #[arg(long)]
    pub top_k: Option<usize>,
    /// Nucleus sampling's probability mass (the model's `top_p` otherwise).
    #[arg(long)]
    pub top_p: Option<f32>,
    /// The seed every reply is sampled with.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
}

impl From<SamplingArgs> for ember_eval::SamplingOverrides {
    fn from(a: SamplingArgs) -> Self {
        Self {
            greedy: a.greedy,
            temperature: a.temperature,
            top_k: a.top_k,
            top_p: a.top_p,
            seed: a.seed,
        }
    }
}

/// A model and the adapter on it (`generate`, `chat`).
#[derive(clap::Args, Debug, Clone)]
pub struct ModelAdapterArgs {
    /// Hugging Face model directory (config.json, safetensors, tokenizer.json) or hub id.
    #[arg(long)]
    pub model: PathBuf,
    /// A PEFT-format LoRA adapter directory (adapter_config.json, adapter_model.safetensors), or
    /// hub id, to apply.
    #[arg(long)]
    pub adapter: Option<PathBuf>,
}

/// The conversation settings `chat` and `generate --chat` share.
#[derive(clap::Args, Debug, Clone)]
pub struct ChatArgs {
    /// The chat template: qwen3 or qwen3_nothink (LLaMA-Factory's names; the one trained with).
    #[arg(long, default_value = "qwen3")]
    pub template: String,
    /// A system prompt.
    #[arg(long, default_value = "")]
    pub system: String,
    /// Qwen3's thinking (`enable_thinking`): `false` puts the empty thought in the prompt.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub enable_thinking: bool,
}

impl ChatArgs {
    /// The chat these arguments, and the ones beside them, ask for.
    pub fn command(
        self,
        model: ModelAdapterArgs,
        max_new_tokens: Option<usize>,
        sampling: SamplingArgs,
        backend: BackendArgs,
    ) -> ember_eval::ChatCommand {
        ember_eval::ChatCommand {
            model: model.model,
            adapter: model.adapter,
            template: self.template,
            enable_thinking: self.enable_thinking,
            system: self.system,
            max_new_tokens,
            sampling: sampling.into(),
            backend: backend.backend,
        }
    }
}
