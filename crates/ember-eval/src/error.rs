//! Everything that can go wrong in an evaluation, naming the task, file and row where there is one.

use std::path::PathBuf;

/// Errors from loading benchmark data, building requests, scoring and writing reports.
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    #[error(transparent)]
    Hub(#[from] ember_hub::HubError),

    #[error(
        "unknown task or group `{name}`; known groups: kobest, kmmlu, haerae (and kmmlu_stem, kmmlu_other, kmmlu_applied_science, kmmlu_humss); tasks: kobest_boolq, kobest_copa, kobest_hellaswag, kobest_sentineg, kobest_wic, kmmlu_<subject>, haerae_<subset>"
    )]
    UnknownTask { name: String },

    #[error(
        "no task selected: --tasks is empty; name groups or tasks, e.g. kobest,kmmlu,haerae (or kobest_boolq)"
    )]
    NoTasks,

    #[error(
        "`{option}` (--{option}) must be at least 1, got 0; leave it out to score every document"
    )]
    ZeroLimit { option: &'static str },

    #[error("task {task}: no {split} data under the data directory; looked for {}", paths(.tried))]
    MissingData {
        task: String,
        split: &'static str,
        tried: Vec<PathBuf>,
    },

    #[error("task {task}: reading {}: {source}", .path.display())]
    Io {
        task: String,
        path: PathBuf,
        source: std::io::Error,
    },

    /// A problem with the whole file (its encoding, header or JSON syntax).
    #[error("task {task}: {}: {reason}", .path.display())]
    BadFile {
        task: String,
        path: PathBuf,
        reason: String,
    },

    /// A data file without documents: the task would score nothing (lm-eval fails on it too).
    #[error("task {task}: {}: no documents in the file (only a header, or empty)", .path.display())]
    NoDocuments { task: String, path: PathBuf },

    /// With `--skip-missing`, every selected task was left out: there is nothing to score.
    #[error("nothing to score: every task was skipped for missing data ({})", .skipped.join(", "))]
    NothingToScore { skipped: Vec<String> },

    /// `row` is 1-based over data rows (the header of a CSV/TSV file is not counted; for JSONL it is
    /// the line number).
    #[error("task {task}: {}, row {row}: {reason}", .path.display())]
    Malformed {
        task: String,
        path: PathBuf,
        row: usize,
        reason: String,
    },

    #[error("task {task}: {num_fewshot}-shot prompts need {needed} few-shot documents but {} has {available}", .path.display())]
    FewShotPool {
        task: String,
        path: PathBuf,
        num_fewshot: usize,
        needed: usize,
        available: usize,
    },

    #[error("tokenizer: {0}")]
    Tokenizer(String),

    #[error("bad request {index}: {reason}")]
    Request { index: usize, reason: String },

    #[error("model: {0}")]
    Model(String),

    /// Reading the user's lines or writing the replies (`xtask chat`).
    #[error("the terminal: {0}")]
    Terminal(std::io::Error),

    #[error("{}: {reason}", .dir.display())]
    ModelSource { dir: PathBuf, reason: String },

    #[error("writing {}: {source}", .path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },

    #[error(transparent)]
    Backend(#[from] ember_backend::BackendError),
}

fn paths(p: &[PathBuf]) -> String {
    p.iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}
