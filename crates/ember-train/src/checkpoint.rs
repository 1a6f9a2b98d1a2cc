//! `output_dir/checkpoint-N/`: the PEFT adapter, optimizer and scheduler state and
//! `trainer_state.json`, written to a temporary directory and renamed into place so that a crash
//! leaves either the previous checkpoint or the new one, never half of one.

use std::path::{Path, PathBuf};

use burn::tensor::backend::AutodiffBackend;
use ember_optim::{AdamW, LrScheduler};
use ember_lora::AdapterConfig;
use ember_qwen3::Qwen3ForCausalLM;

use crate::state::TrainerState;
use crate::{TrainError, adapter};

/// HF's checkpoint directory name.
pub fn checkpoint_dir(output_dir: &Path, step: u64) -> PathBuf {
    output_dir.join(format!("checkpoint-{step}"))
}

/// Writes `checkpoint-{global_step}` atomically.
pub fn save<B: AutodiffBackend>(
    output_dir: &Path,
    model: &Qwen3ForCausalLM<B>,
    adapter_cfg: &AdapterConfig,
    opt: &AdamW<B>,
    sched: &LrScheduler,
    state: &TrainerState,
) -> Result<PathBuf, TrainError> {
    let dir = checkpoint_dir(output_dir, state.global_step);
    let tmp = output_dir.join(format!(".tmp-checkpoint-{}", state.global_step));
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| TrainError::Io { path, source }
    };
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(io(&tmp))?;
    }
    std::fs::create_dir_all(&tmp).map_err(io(&tmp))?;
    adapter::save(model, adapter_cfg, &tmp)?;
    opt.save(&tmp)?;
    sched.save(&tmp)?;
    state.save(&tmp)?;
    if dir.exists() {
        std::fs::remove_dir_all(&dir).map_err(io(&dir))?;
    }
    std::fs::rename(&tmp, &dir).map_err(io(&dir))?;
    Ok(dir)
}
