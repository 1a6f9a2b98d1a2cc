//! The crate's error type.

use std::path::PathBuf;

/// Everything that can go wrong building a schedule or saving/loading optimizer state.
#[derive(Debug, thiserror::Error)]
pub enum OptimError {
    #[error("unknown lr_scheduler_type `{name}`: expected one of {valid}")]
    UnknownScheduler { name: String, valid: String },

    #[error("invalid scheduler arguments for `{scheduler}`: {reason}")]
    SchedulerArgs { scheduler: String, reason: String },

    #[error("I/O error on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("malformed state file {path}: {reason}")]
    Format { path: PathBuf, reason: String },

    #[error("optimizer state has no entry for trainable parameter `{0}` (was the model changed?)")]
    MissingParam(String),

    #[error(
        "optimizer state has parameter `{0}`, which is not a trainable parameter of the module"
    )]
    UnexpectedParam(String),

    #[error(
        "optimizer state for `{name}` has shape {state:?} but the parameter has shape {param:?}"
    )]
    ShapeMismatch {
        name: String,
        state: Vec<usize>,
        param: Vec<usize>,
    },

    #[error("saved optimizer config {saved} differs from the current one {current}")]
    ConfigMismatch { saved: String, current: String },
}

/// Short alias used throughout the crate.
pub type Result<T> = std::result::Result<T, OptimError>;
