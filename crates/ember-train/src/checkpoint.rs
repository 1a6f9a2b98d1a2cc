//! `output_dir/checkpoint-N/`: everything needed to continue a run — the PEFT adapter, optimizer
//! and scheduler state, `trainer_state.json`, and ember's loop state (running loss sums, the
//! fingerprint of the run's settings). The data order and dropout masks are functions of the seed
//! and the step, so the step alone restores them.
//!
//! Each checkpoint is written to a hidden temporary directory and renamed into place, so a crash at
//! any moment leaves either the previous checkpoints or the new one, never half of one.

use std::path::{Path, PathBuf};

use burn::tensor::backend::AutodiffBackend;
use ember_lora::AdapterConfig;
use ember_optim::{AdamW, LrScheduler};
use ember_qwen3::Qwen3ForCausalLM;
use serde::{Deserialize, Serialize};

use crate::config::FinetuneConfig;
use crate::state::{TrainerState, write_json};
use crate::{TrainError, adapter};

/// A checkpoint directory's name: this prefix and the step.
pub const CHECKPOINT_PREFIX: &str = "checkpoint-";
/// Where a checkpoint is written before it is renamed into place.
pub const TMP_CHECKPOINT_PREFIX: &str = ".tmp-checkpoint-";

/// ember's own loop state in a checkpoint.
pub const LOOP_STATE_FILE: &str = "ember_state.json";

/// The files a checkpoint must hold to be resumable.
pub const REQUIRED_FILES: [&str; 7] = [
    ember_lora::peft::ADAPTER_WEIGHTS,
    ember_lora::peft::ADAPTER_CONFIG,
    ember_optim::OPTIMIZER_TENSORS_FILE,
    ember_optim::OPTIMIZER_JSON_FILE,
    ember_optim::SCHEDULER_JSON_FILE,
    crate::state::TRAINER_STATE_FILE,
    LOOP_STATE_FILE,
];

/// The settings a resumed run must share with the run that wrote the checkpoint: anything that
/// changes which batches come next or what a step computes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Fingerprint {
    pub model: String,
    pub lora_rank: usize,
    pub lora_alpha: f64,
    pub lora_dropout: f64,
    pub lora_target: String,
    pub dataset: Vec<String>,
    pub train_examples: usize,
    pub cutoff_len: usize,
    pub per_device_train_batch_size: usize,
    pub gradient_accumulation_steps: usize,
    pub max_steps: u64,
    pub learning_rate: f64,
    pub lr_scheduler_type: String,
    pub weight_decay: f64,
    pub seed: u64,
    pub disable_shuffling: bool,
    // Later additions: a checkpoint written before them reads as the defaults.
    #[serde(default)]
    pub use_dora: bool,
    /// `rank_pattern` and `alpha_pattern` as adapter_config.json writes them.
    #[serde(default)]
    pub rank_pattern: String,
    #[serde(default)]
    pub alpha_pattern: String,
    #[serde(default)]
    pub loraplus_lr_ratio: Option<f64>,
}

impl Fingerprint {
    pub fn of(
        cfg: &FinetuneConfig,
        adapter: &AdapterConfig,
        train_examples: usize,
        max_steps: u64,
    ) -> Self {
        Self {
            model: cfg.model.model_name_or_path.display().to_string(),
            lora_rank: adapter.r,
            lora_alpha: adapter.lora_alpha,
            lora_dropout: adapter.lora_dropout,
            lora_target: adapter.target_modules.describe(),
            dataset: cfg.data.dataset.clone(),
            train_examples,
            cutoff_len: cfg.data.cutoff_len,
            per_device_train_batch_size: cfg.train.per_device_train_batch_size,
            gradient_accumulation_steps: cfg.train.gradient_accumulation_steps,
            max_steps,
            learning_rate: cfg.train.learning_rate,
            lr_scheduler_type: cfg.train.lr_scheduler_type.clone(),
            weight_decay: cfg.train.weight_decay,
            seed: cfg.train.seed,
            disable_shuffling: cfg.train.disable_shuffling,
            use_dora: adapter.use_dora,
            rank_pattern: adapter.to_json()["rank_pattern"].to_string(),
            alpha_pattern: adapter.to_json()["alpha_pattern"].to_string(),
            loraplus_lr_ratio: cfg.train.loraplus_lr_ratio,
        }
    }

    /// `key: checkpoint value -> this run's value` for every setting that differs.
    pub fn differences(&self, now: &Fingerprint) -> Vec<String> {
        let (a, b) = (
            serde_json::to_value(self).unwrap_or_default(),
            serde_json::to_value(now).unwrap_or_default(),
        );
        let (Some(a), Some(b)) = (a.as_object(), b.as_object()) else {
            return vec!["unreadable fingerprint".into()];
        };
        a.iter()
            .filter(|(k, v)| b.get(*k) != Some(v))
            .map(|(k, v)| {
                format!(
                    "{k}: checkpoint {v} -> now {}",
                    b.get(k).cloned().unwrap_or_default()
                )
            })
            .collect()
    }
}

/// Running sums the loop needs to continue exactly (HF keeps them in memory only).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LoopState {
    /// Sum of all step losses so far (`train_loss` = this / steps).
    pub total_loss: f64,
    /// Sum of step losses since the last log entry.
    pub loss_since_log: f64,
    pub last_logged: u64,
    pub tokens_seen: u64,
    pub fingerprint: Option<Fingerprint>,
}

/// HF's checkpoint directory name.
pub fn checkpoint_dir(output_dir: &Path, step: u64) -> PathBuf {
    output_dir.join(format!("{CHECKPOINT_PREFIX}{step}"))
}

pub(crate) fn io(path: &Path) -> impl FnOnce(std::io::Error) -> TrainError + '_ {
    move |source| TrainError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Fault injection for the crash-safety tests: sleep this many milliseconds in the middle of
/// writing a checkpoint, so a test can kill the process there.
const SLOW_SAVE_ENV: &str = "EMBER_TEST_SLOW_CHECKPOINT_MS";

/// Writes `checkpoint-{global_step}` atomically.
#[allow(clippy::too_many_arguments)]
pub fn save<B: AutodiffBackend>(
    output_dir: &Path,
    model: &Qwen3ForCausalLM<B>,
    adapter_cfg: &AdapterConfig,
    opt: &AdamW<B>,
    sched: &LrScheduler,
    state: &TrainerState,
    loop_state: &LoopState,
) -> Result<PathBuf, TrainError> {
    let dir = checkpoint_dir(output_dir, state.global_step);
    let tmp = output_dir.join(format!("{TMP_CHECKPOINT_PREFIX}{}", state.global_step));
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(io(&tmp))?;
    }
    std::fs::create_dir_all(&tmp).map_err(io(&tmp))?;
    adapter::save(model, adapter_cfg, &tmp)?;
    opt.save(&tmp)?;
    if let Some(ms) = std::env::var(SLOW_SAVE_ENV)
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
    {
        std::thread::sleep(std::time::Duration::from_millis(ms));
    }
    sched.save(&tmp)?;
    state.save(&tmp)?;
    write_json(&tmp.join(LOOP_STATE_FILE), loop_state)?;
    if dir.exists() {
        std::fs::remove_dir_all(&dir).map_err(io(&dir))?;
    }
    std::fs::rename(&tmp, &dir).map_err(io(&dir))?;
    Ok(dir)
}

/// The step of a `checkpoint-N` directory name.
pub fn step_of(dir: &Path) -> Option<u64> {
    dir.file_name()?
        .to_str()?
        .strip_prefix(CHECKPOINT_PREFIX)?
        .parse()
        .ok()
}

/// Why `dir` is not a complete checkpoint, if it is not.
pub fn incomplete(dir: &Path) -> Option<String> {
    if dir.is_file() {
        return Some("a file, not a checkpoint-N directory".into());
    }
    if !dir.is_dir() {
        return Some("no such directory".into());
    }
    if step_of(dir).is_none() {
        return Some("the name is not checkpoint-<step>".into());
    }
    let missing: Vec<&str> = REQUIRED_FILES
        .iter()
        .copied()
        .filter(|f| !dir.join(f).is_file())
        .collect();
    (!missing.is_empty()).then(|| format!("missing {}", missing.join(", ")))
}

/// Complete checkpoints in `output_dir`, oldest first. Partial directories (e.g. left by a copy
/// that was interrupted) are ignored.
pub fn list(output_dir: &Path) -> Vec<(u64, PathBuf)> {
    let Ok(entries) = std::fs::read_dir(output_dir) else {
        return Vec::new();
    };
    let mut v: Vec<(u64, PathBuf)> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| incomplete(p).is_none())
        .filter_map(|p| step_of(&p).map(|s| (s, p)))
        .collect();
    v.sort();
    v
}

/// Deletes the oldest checkpoints beyond `limit`, never the best one (HF `_rotate_checkpoints`).
pub fn rotate(
    output_dir: &Path,
    limit: Option<usize>,
    best: Option<&Path>,
) -> Result<(), TrainError> {
    let Some(limit) = limit else { return Ok(()) };
    let all = list(output_dir);
    // As HF: with a limit of 1 and a best checkpoint that is not the newest, keep two.
    let limit = if limit == 1 && best.is_some_and(|b| all.last().is_some_and(|(_, p)| p != b)) {
        2
    } else {
        limit
    };
    let excess = all.len().saturating_sub(limit);
    let mut deleted = 0;
    for (_, path) in &all {
        if deleted == excess {
            break;
        }
        if best == Some(path.as_path()) {
            continue;
        }
        std::fs::remove_dir_all(path).map_err(io(path))?;
        deleted += 1;
    }
    Ok(())
}

/// Reads the loop state of a checkpoint.
pub fn load_loop_state(dir: &Path) -> Result<LoopState, TrainError> {
    let path = dir.join(LOOP_STATE_FILE);
    let text = std::fs::read_to_string(&path).map_err(io(&path))?;
    serde_json::from_str(&text).map_err(|e| TrainError::config(path, "", e.to_string()))
}
