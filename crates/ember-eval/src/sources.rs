//! Which models one evaluation call covers: a base model, the base with a PEFT adapter, or the
//! base and every `checkpoint-N` of a training output directory; and the SFT eval-loss column.

use std::path::{Path, PathBuf};

use burn::tensor::{DType, Int, Tensor, TensorData, backend::Backend};
use ember_qwen3::{ModelInputs, Qwen3Config, Qwen3ForCausalLM, load_pretrained};

use crate::EvalError;
use crate::model::Qwen3Scorer;

/// One row of the results table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelSpec {
    /// Row label (`base`, `checkpoint-15`, or the adapter folder's name).
    pub label: String,
    /// The Hugging Face base model directory.
    pub base: PathBuf,
    /// A PEFT adapter directory (`adapter_config.json` + `adapter_model.safetensors`).
    pub adapter: Option<PathBuf>,
}

impl ModelSpec {
    pub fn base(dir: impl Into<PathBuf>) -> Self {
        Self {
            label: "base".into(),
            base: dir.into(),
            adapter: None,
        }
    }

    pub fn with_adapter(base: impl Into<PathBuf>, adapter: impl Into<PathBuf>) -> Self {
        let adapter = adapter.into();
        let label = adapter
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "adapter".into());
        Self {
            label,
            base: base.into(),
            adapter: Some(adapter),
        }
    }
}

/// The base model, then every `checkpoint-N` directory of `output_dir` by increasing N.
pub fn checkpoint_specs(base: &Path, output_dir: &Path) -> Result<Vec<ModelSpec>, EvalError> {
    let entries = std::fs::read_dir(output_dir).map_err(|e| EvalError::ModelSource {
        dir: output_dir.to_path_buf(),
        reason: e.to_string(),
    })?;
    let mut found: Vec<(u64, PathBuf)> = entries
        .filter_map(Result::ok)
        .filter(|e| e.path().is_dir())
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let step = name.strip_prefix("checkpoint-")?.parse::<u64>().ok()?;
            Some((step, e.path()))
        })
        .collect();
    if found.is_empty() {
        return Err(EvalError::ModelSource {
            dir: output_dir.to_path_buf(),
            reason: "no checkpoint-N directories".into(),
        });
    }
    found.sort();
    let mut specs = vec![ModelSpec::base(base)];
    specs.extend(
        found
            .into_iter()
            .map(|(_, p)| ModelSpec::with_adapter(base, p)),
    );
    Ok(specs)
}

/// Puts a PEFT adapter's weights into a loaded base model. The evaluator only needs this one
/// call, so any adapter loader (ember-lora's PEFT reader) plugs in here.
pub trait AdapterLoader<B: Backend> {
    fn apply(
        &self,
        model: Qwen3ForCausalLM<B>,
        cfg: &Qwen3Config,
        adapter_dir: &Path,
    ) -> Result<Qwen3ForCausalLM<B>, EvalError>;
}

/// PEFT adapter directories (`adapter_model.safetensors` + `adapter_config.json`), read by
/// ember-lora: what `--adapter` and `--checkpoints` use.
#[derive(Debug, Clone, Copy, Default)]
pub struct PeftAdapterLoader;

impl<B: Backend> AdapterLoader<B> for PeftAdapterLoader {
    fn apply(
        &self,
        mut model: Qwen3ForCausalLM<B>,
        _: &Qwen3Config,
        dir: &Path,
    ) -> Result<Qwen3ForCausalLM<B>, EvalError> {
        ember_lora::load_peft(&mut model, dir).map_err(|e| EvalError::ModelSource {
            dir: dir.to_path_buf(),
            reason: e.to_string(),
        })?;
        Ok(model)
    }
}

/// A loader that refuses every adapter (for base-model-only evaluation).
#[derive(Debug, Clone, Copy, Default)]
pub struct NoAdapterLoader;

impl<B: Backend> AdapterLoader<B> for NoAdapterLoader {
    fn apply(
        &self,
        _: Qwen3ForCausalLM<B>,
        _: &Qwen3Config,
        dir: &Path,
    ) -> Result<Qwen3ForCausalLM<B>, EvalError> {
        Err(EvalError::ModelSource {
            dir: dir.to_path_buf(),
            reason: "PEFT adapter loading is not available in this build (no AdapterLoader linked)"
                .into(),
        })
    }
}

/// Loads a spec's model in f32 and wraps it for scoring.
pub fn load_scorer<B: Backend>(
    spec: &ModelSpec,
    adapters: &dyn AdapterLoader<B>,
    device: &B::Device,
) -> Result<Qwen3Scorer<B>, EvalError> {
    let (cfg, model) = load_pretrained::<B>(&spec.base, DType::F32, device).map_err(|e| {
        EvalError::ModelSource {
            dir: spec.base.clone(),
            reason: e.to_string(),
        }
    })?;
    let (model, vocab_limit) = match &spec.adapter {
        Some(dir) => (adapters.apply(model, &cfg, dir)?, tokenizer_len(&spec.base)),
        None => (model, None),
    };
    Ok(Qwen3Scorer::new(model, cfg, device.clone()).with_vocab_limit(vocab_limit))
}

/// `len(tokenizer)` as HF counts it (base vocabulary plus added tokens), if the model directory
/// has a `tokenizer.json`: lm-eval shrinks the embeddings to it when it loads an adapter.
fn tokenizer_len(model_dir: &Path) -> Option<usize> {
    tokenizers::Tokenizer::from_file(model_dir.join(ember_qwen3::pretrained::TOKENIZER_FILE))
        .ok()
        .map(|t| t.get_vocab_size(true))
}

/// An SFT example in tokens: ids and labels (`-100` where not supervised), same length.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SftExample {
    pub input_ids: Vec<u32>,
    pub labels: Vec<i64>,
}

/// `eval_loss` as HF's Trainer reports it with `per_device_eval_batch_size = 1`: the mean over
/// examples of each example's mean token loss; `perplexity = exp(eval_loss)`.
pub fn eval_loss<B: Backend>(
    scorer: &Qwen3Scorer<B>,
    examples: &[SftExample],
) -> Result<(f64, f64), EvalError> {
    if examples.is_empty() {
        return Err(EvalError::Model("no SFT eval examples".into()));
    }
    let device = scorer.device();
    let mut total = 0.0;
    for (i, ex) in examples.iter().enumerate() {
        let n = ex.input_ids.len();
        if n == 0 || ex.labels.len() != n {
            return Err(EvalError::Request {
                index: i,
                reason: "input_ids and labels must be non-empty and of equal length".into(),
            });
        }
        let ids: Vec<i64> = ex.input_ids.iter().map(|&t| i64::from(t)).collect();
        let ids = Tensor::<B, 2, Int>::from_data(TensorData::new(ids, [1, n]), device);
        let labels =
            Tensor::<B, 2, Int>::from_data(TensorData::new(ex.labels.clone(), [1, n]), device);
        let loss: f32 = scorer
            .model
            .forward_loss(&ModelInputs::new(ids).with_labels(labels))
            .mean()
            .into_data()
            .convert::<f32>()
            .to_vec::<f32>()
            .map_err(|e| EvalError::Model(format!("reading the loss: {e:?}")))?
            .first()
            .copied()
            .unwrap_or(f32::NAN);
        total += f64::from(loss);
    }
    let loss = total / examples.len() as f64;
    Ok((loss, loss.exp()))
}
