//! The run's LoRA adapter: attach it (fresh, or from a PEFT adapter directory), save it in PEFT
//! format, and report the trainable parameters.

use std::path::Path;

use burn::tensor::backend::Backend;
use ember_lora::{AdapterConfig, ParamReport, adapted_modules, apply_lora, load_peft, save_peft};
use ember_qwen3::Qwen3ForCausalLM;

use crate::TrainError;
use crate::config::FinetuneConfig;

/// Gives `model` the run's adapter: `adapter_name_or_path` when set (trained further, with its own
/// rank/alpha, as LLaMA-Factory does), else a fresh one from `[lora]` seeded by `train.seed`.
pub fn attach<B: Backend>(
    mut model: Qwen3ForCausalLM<B>,
    cfg: &FinetuneConfig,
) -> Result<(Qwen3ForCausalLM<B>, AdapterConfig), TrainError> {
    let base = cfg.model.model_name_or_path.display().to_string();
    let adapter_cfg = match cfg.model.adapter_dir()? {
        Some(dir) => load_peft(&mut model, &dir)?,
        None => {
            let adapted = apply_lora(&mut model, &cfg.lora, cfg.train.seed)?;
            AdapterConfig::from_lora_config(&cfg.lora, &adapted, Some(&base))
        }
    };
    Ok((model, adapter_cfg))
}

/// Writes `adapter_model.safetensors` and `adapter_config.json` into `dir`.
pub fn save<B: Backend>(
    model: &Qwen3ForCausalLM<B>,
    adapter_cfg: &AdapterConfig,
    dir: &Path,
) -> Result<(), TrainError> {
    debug_assert!(!adapted_modules(model).is_empty());
    Ok(save_peft(model, adapter_cfg, dir)?)
}

/// PEFT's trainable-parameter figures for the adapted model.
pub fn trainable_report<B: Backend>(model: &Qwen3ForCausalLM<B>) -> ParamReport {
    ParamReport::of_model(model)
}
