//! `trainer_state.json` and its `log_history`, with Hugging Face's key names, so tools that read HF
//! or LLaMA-Factory output directories read ember's.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::TrainError;

/// One `log_history` entry. Fields are HF's keys; absent ones are not written.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LogEntry {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub loss: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub grad_norm: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub learning_rate: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub eval_loss: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub eval_runtime: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub eval_samples_per_second: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub eval_steps_per_second: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub train_runtime: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub train_samples_per_second: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub train_steps_per_second: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub total_flos: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub train_loss: Option<f64>,
    pub epoch: f64,
    pub step: u64,
}

/// HF `TrainerState`, the fields ember fills.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TrainerState {
    pub best_global_step: Option<u64>,
    pub best_metric: Option<f64>,
    pub best_model_checkpoint: Option<String>,
    pub epoch: f64,
    pub eval_steps: Option<usize>,
    pub global_step: u64,
    pub is_hyper_param_search: bool,
    pub is_local_process_zero: bool,
    pub is_world_process_zero: bool,
    pub log_history: Vec<LogEntry>,
    pub logging_steps: usize,
    pub max_steps: u64,
    pub num_input_tokens_seen: u64,
    pub num_train_epochs: u64,
    pub save_steps: usize,
    pub total_flos: f64,
    pub train_batch_size: usize,
}

/// The HF file name.
pub const TRAINER_STATE_FILE: &str = "trainer_state.json";

impl TrainerState {
    pub fn save(&self, dir: &Path) -> Result<(), TrainError> {
        write_json(&dir.join(TRAINER_STATE_FILE), self)
    }

    pub fn load(dir: &Path) -> Result<Self, TrainError> {
        let path = dir.join(TRAINER_STATE_FILE);
        let text = std::fs::read_to_string(&path).map_err(|source| TrainError::Io {
            path: path.clone(),
            source,
        })?;
        serde_json::from_str(&text).map_err(|e| TrainError::config(path, "", e.to_string()))
    }

    /// `(step, loss)` of the training-loss entries.
    pub fn losses(&self) -> Vec<(u64, f64)> {
        self.log_history
            .iter()
            .filter_map(|e| e.loss.map(|l| (e.step, l)))
            .collect()
    }

    /// `(step, eval_loss)` of the evaluation entries.
    pub fn eval_losses(&self) -> Vec<(u64, f64)> {
        self.log_history
            .iter()
            .filter_map(|e| e.eval_loss.map(|l| (e.step, l)))
            .collect()
    }
}

/// Writes pretty JSON through a temporary file and a rename, so a reader never sees half a file.
pub fn write_json(path: &Path, value: &impl Serialize) -> Result<(), TrainError> {
    let text = serde_json::to_string_pretty(value).map_err(|e| TrainError::Other(e.to_string()))?;
    write_atomic(path, text.as_bytes())
}

/// Writes `bytes` to `path` via `path.tmp` and a rename.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), TrainError> {
    let tmp = path.with_extension("tmp");
    let io = |source| TrainError::Io {
        path: path.to_path_buf(),
        source,
    };
    std::fs::write(&tmp, bytes).map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)
}
