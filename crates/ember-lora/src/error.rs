//! Errors of the LoRA crate; each names the field, file or tensor key at fault.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum LoraError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("lora config: `{field}`: {reason}")]
    InvalidConfig { field: String, reason: String },
    #[error("{context}: `{field}` = {value} is not supported{}", hint.as_deref().map(|h| format!(" ({h})")).unwrap_or_default())]
    Unsupported {
        /// `lora config` or the adapter_config.json path.
        context: String,
        field: String,
        value: String,
        hint: Option<String>,
    },
    #[error(
        "lora_target {targets} matches no linear layer of the model (its linear layers: {available})"
    )]
    NoTargets { targets: String, available: String },
    #[error(
        "lora_target: {names} matches no linear layer of the model (its linear layers: {available})"
    )]
    UnknownTargets { names: String, available: String },
    #[error("layers_to_transform: {missing} not in the model, which has {present}")]
    MissingLayers { missing: String, present: String },
    #[error("the model has no LoRA adapter")]
    NoAdapters,
    #[error("{dir}: not a PEFT adapter directory: {reason}")]
    NotAnAdapterDir { dir: PathBuf, reason: String },
    #[error("{path}: not a valid adapter_config.json: {reason}")]
    AdapterConfig { path: PathBuf, reason: String },
    #[error("{path}: not a readable safetensors file: {reason}")]
    Safetensors { path: PathBuf, reason: String },
    #[error("{path}: tensor `{key}` has dtype {dtype}, expected f32, bf16 or f16")]
    UnsupportedDtype {
        path: PathBuf,
        key: String,
        dtype: String,
    },
    /// A key that should be in the adapter (or base checkpoint) is not.
    #[error("{path}: missing tensor `{key}`: {reason}")]
    MissingKey {
        path: PathBuf,
        key: String,
        reason: String,
    },
    /// A key that does not belong: not a LoRA factor, a module the base model does not have, or a
    /// module the adapter config does not target.
    #[error("{path}: unexpected tensor `{key}`: {reason}")]
    UnexpectedKey {
        path: PathBuf,
        key: String,
        reason: String,
    },
    #[error(
        "{path}: tensor `{key}` has rank {found}, but the adapter config says {rank_from} = {expected}"
    )]
    RankMismatch {
        path: PathBuf,
        key: String,
        expected: usize,
        found: usize,
        /// Where the expected rank comes from: `r`, or a `rank_pattern` key.
        rank_from: String,
    },
    #[error(
        "{path}: tensor `{key}` has shape {found:?}, the base model needs {expected:?} (an adapter for another base model?)"
    )]
    ShapeMismatch {
        path: PathBuf,
        key: String,
        expected: Vec<usize>,
        found: Vec<usize>,
    },
    #[error("{dir}: {reason}")]
    Export { dir: PathBuf, reason: String },
}

pub(crate) fn io_err(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> LoraError {
    let path = path.into();
    move |source| LoraError::Io { path, source }
}
