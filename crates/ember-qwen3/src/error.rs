//! Errors of the Qwen3 crate; each names the file, field or tensor at fault.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Qwen3Error {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: not a valid config.json: {source}")]
    ConfigJson {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("{path}: field `{field}`: {reason}")]
    InvalidConfig {
        path: PathBuf,
        field: String,
        reason: String,
    },
    #[error("{dir}: not a Hugging Face model directory: {reason}")]
    NotAModelDir { dir: PathBuf, reason: String },
    #[error("{path}: not a readable safetensors file: {reason}")]
    Safetensors { path: PathBuf, reason: String },
    #[error("{path}: tensor `{name}` has dtype {dtype}, expected bf16, f16 or f32")]
    UnsupportedDtype {
        path: PathBuf,
        name: String,
        dtype: String,
    },
    #[error("{dir}: the checkpoint does not match the config:{}", format_mismatch(.missing, .unexpected, .wrong_shape))]
    WeightMismatch {
        dir: PathBuf,
        missing: Vec<String>,
        unexpected: Vec<String>,
        /// `(name, expected, found)`
        wrong_shape: Vec<(String, Vec<usize>, Vec<usize>)>,
    },
    #[error("token id {id} is outside the vocabulary (vocab_size = {vocab})")]
    TokenOutOfRange { id: u32, vocab: usize },
    #[error("{what} `{value}`: expected {expected}")]
    UnknownChoice {
        what: &'static str,
        value: String,
        expected: &'static str,
    },
    #[error("invalid generation settings: {0}")]
    Generation(String),
}

fn format_mismatch(
    missing: &[String],
    unexpected: &[String],
    wrong_shape: &[(String, Vec<usize>, Vec<usize>)],
) -> String {
    let mut s = String::new();
    if !missing.is_empty() {
        s.push_str(&format!("\n  missing keys: {}", missing.join(", ")));
    }
    if !unexpected.is_empty() {
        s.push_str(&format!("\n  unexpected keys: {}", unexpected.join(", ")));
    }
    for (name, want, got) in wrong_shape {
        s.push_str(&format!(
            "\n  wrong shape: {name}: expected {want:?}, found {got:?}"
        ));
    }
    s
}
