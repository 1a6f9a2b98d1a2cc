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
    #[error(
        "{}{}{}: {message}",
        file.display(),
        line.map(|l| format!(":{l}")).unwrap_or_default(),
        if key.is_empty() { String::new() } else { format!(": `{key}`") }
    )]
    Config {
        file: PathBuf,
        /// The line of `key` in `file`, where the file's text is at hand.
        line: Option<usize>,
        /// `section.key` (empty for the file as a whole).
        key: String,
        message: String,
    },
    #[error(transparent)]
    Model(#[from] ember_qwen3::Qwen3Error),
    #[error(transparent)]
    Hub(#[from] ember_hub::HubError),
    #[error(transparent)]
    Lora(#[from] ember_lora::LoraError),
    #[error(transparent)]
    Data(#[from] ember_data::DataError),
    #[error(transparent)]
    Optim(#[from] ember_optim::OptimError),
    #[error(transparent)]
    Backend(#[from] ember_backend::BackendError),
    #[error(
        "{what}: token id {id} is outside the model's vocabulary (vocab_size {vocab} in {}/config.json): the tokenizer does not belong to this model",
        model_dir.display()
    )]
    TokenOutOfVocabulary {
        what: String,
        id: u32,
        vocab: usize,
        model_dir: PathBuf,
    },
    #[error("the training set is empty after loading {0}")]
    EmptyDataset(String),
    #[error(
        "the training set ({dataset}) has no supervised token: every label is masked (cutoff_len = {cutoff_len} leaves no room for the responses?); nothing would be learned"
    )]
    NothingSupervised { dataset: String, cutoff_len: usize },
    #[error(
        "eval.eval_strategy = \"{strategy}\" but there is no evaluation data: set data.val_size or data.eval_dataset, or eval_strategy = \"no\" (HF refuses this too)"
    )]
    NoEvalData { strategy: String },
    #[error(
        "non-finite {what} ({value}) at step {step}: training stopped (checkpoints saved before it are kept)"
    )]
    NonFinite {
        what: &'static str,
        value: f64,
        step: u64,
    },
    #[error(
        "resume_from_checkpoint = true, but {0} holds no complete checkpoint-N to resume from; train without it to start the run"
    )]
    NothingToResume(PathBuf),
    #[error("{dir}: cannot resume from it: {reason}")]
    NotACheckpoint { dir: PathBuf, reason: String },
    #[error("{dir}: the checkpoint was written by a different run:\n  {}", differences.join("\n  "))]
    CheckpointMismatch {
        dir: PathBuf,
        differences: Vec<String>,
    },
    #[error(
        "{0} already holds a run; set resume_from_checkpoint = true to continue it, overwrite_output_dir = true to start over, or choose another output_dir"
    )]
    OutputExists(PathBuf),
    #[error(
        "{source}\n{dir}: this run saved nothing, so the previous run it was to replace (overwrite_output_dir) was put back as it was"
    )]
    PreviousRunKept {
        #[source]
        source: Box<TrainError>,
        dir: PathBuf,
    },
    #[error("{0}")]
    Other(String),
}

impl TrainError {
    /// A config error in `file` at `key` (`section.key`; empty for the file as a whole), without
    /// its line: [`TrainError::at_line_in`] adds that where the file's text is at hand.
    pub fn config(
        file: impl Into<PathBuf>,
        key: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        TrainError::Config {
            file: file.into(),
            line: None,
            key: key.into(),
            message: message.into(),
        }
    }

    /// A config error given the line of its key in `text`, the file's contents.
    pub fn at_line_in(self, text: &str) -> Self {
        match self {
            TrainError::Config {
                file,
                line: None,
                key,
                message,
            } => TrainError::Config {
                line: crate::config::line_of(text, &key),
                file,
                key,
                message,
            },
            other => other,
        }
    }
}
