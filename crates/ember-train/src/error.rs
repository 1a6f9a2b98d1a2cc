//! Errors of a training run; each names the file, key or step at fault.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}{}: {message}", file.display(), if key.is_empty() { String::new() } else { format!(": `{key}`") })]
    Config {
        file: PathBuf,
        key: String,
        message: String,
    },
    #[error(transparent)]
    Model(#[from] ember_qwen3::Qwen3Error),
    #[error(transparent)]
    Lora(#[from] ember_lora::LoraError),
    #[error(transparent)]
    Data(#[from] ember_data::DataError),
    #[error(transparent)]
    Optim(#[from] ember_optim::OptimError),
    #[error("the training set is empty after loading {0}")]
    EmptyDataset(String),
    #[error("non-finite {what} at step {step}: training stopped (the last saved checkpoint is intact)")]
    NonFinite { what: &'static str, step: u64 },
    #[error("{0}")]
    Other(String),
}
