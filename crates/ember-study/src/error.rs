//! Errors of planning, sweeping and reporting; each names the file, run or argument at fault.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum StudyError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Json { path: PathBuf, message: String },
    #[error("--grid `{spec}`: {reason}")]
    Grid { spec: String, reason: String },
    #[error("run `{run}`: {reason}")]
    Run { run: String, reason: String },
    #[error("plan: {0}")]
    Plan(String),
    #[error(transparent)]
    Train(#[from] ember_train::TrainError),
    #[error(transparent)]
    Data(#[from] ember_data::DataError),
    #[error(transparent)]
    Model(#[from] ember_qwen3::Qwen3Error),
    #[error(transparent)]
    Lora(#[from] ember_lora::LoraError),
    #[error(transparent)]
    Eval(#[from] ember_eval::EvalError),
    #[error(transparent)]
    Optim(#[from] ember_optim::OptimError),
    #[error(transparent)]
    Backend(#[from] ember_backend::BackendError),
    /// Options that contradict each other or name nothing.
    #[error("{0}")]
    Options(String),
    /// A bad bench case, option or child spec.
    #[error("bench: {0}")]
    Bench(String),
    /// A measuring process (ember child or HF script) that failed or printed no result.
    #[error("{what} failed ({status}): {stderr}")]
    Measurement {
        what: String,
        status: String,
        stderr: String,
    },
    #[error("running {what}: {source}")]
    Spawn {
        what: String,
        #[source]
        source: std::io::Error,
    },
    /// Runs that failed in a sweep (the others finished and are in the report).
    #[error("{} run(s) failed:\n  {}", .0.len(), .0.join("\n  "))]
    RunsFailed(Vec<String>),
}

impl StudyError {
    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> StudyError {
        let path = path.into();
        move |source| StudyError::Io { path, source }
    }
}

/// Reads and parses a JSON file.
pub(crate) fn read_json<T: serde::de::DeserializeOwned>(
    path: &std::path::Path,
) -> Result<T, StudyError> {
    let text = std::fs::read_to_string(path).map_err(StudyError::io(path))?;
    serde_json::from_str(&text).map_err(|e| StudyError::Json {
        path: path.to_path_buf(),
        message: e.to_string(),
    })
}

/// Writes pretty JSON atomically (temporary file and rename).
pub(crate) fn write_json(
    path: &std::path::Path,
    value: &impl serde::Serialize,
) -> Result<(), StudyError> {
    Ok(ember_train::state::write_json(path, value)?)
}
