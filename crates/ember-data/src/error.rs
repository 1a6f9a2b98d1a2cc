//! Errors: one enum for the crate, and row-level errors that name file, position and field.

use std::fmt;
use std::path::PathBuf;

/// Where a row lives in its source file, in the terms a user can look it up by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// 1-based line of a JSON Lines file.
    Line(usize),
    /// 0-based index into a top-level JSON array.
    Index(usize),
    /// 1-based line of a CSV record (the header is line 1).
    CsvLine(usize),
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::Line(n) => write!(f, "line {n}"),
            Location::Index(i) => write!(f, "index {i}"),
            Location::CsvLine(n) => write!(f, "line {n}"),
        }
    }
}

/// One bad row: the file, its position, the offending field and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowError {
    pub file: PathBuf,
    pub location: Location,
    /// The field (column, or a path such as `conversations[3].from`); empty when the whole row is bad.
    pub field: String,
    pub reason: String,
}

impl fmt::Display for RowError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}, {}", self.file.display(), self.location)?;
        if !self.field.is_empty() {
            write!(f, ", field `{}`", self.field)?;
        }
        write!(f, ": {}", self.reason)
    }
}

/// A row-level problem before the file and location are known (raised deep in conversion/encoding).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    pub field: String,
    pub reason: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

/// Everything that can go wrong in this crate.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write {path}: {reason}")]
    Write { path: PathBuf, reason: String },
    #[error("{path}: not valid JSON: {message}")]
    FileJson { path: PathBuf, message: String },
    #[error("{path}: not valid CSV: {message}")]
    FileCsv { path: PathBuf, message: String },
    #[error(
        "{path}: no column `{column}` ({role}); the file's columns are: {}",
        .columns.join(", ")
    )]
    MissingColumn {
        path: PathBuf,
        column: String,
        role: String,
        columns: Vec<String>,
    },
    #[error("{path}: unsupported file type (supported: .json, .jsonl, .csv)")]
    UnsupportedFile { path: PathBuf },
    #[error("dataset_info: {0}")]
    DatasetInfo(String),
    #[error("undefined dataset `{name}` in {where_}")]
    UnknownDataset { name: String, where_: String },
    #[error("invalid data config: {0}")]
    Config(String),
    #[error("unknown template `{0}` (supported: qwen3, qwen3_nothink)")]
    UnknownTemplate(String),
    #[error("tokenizer {path}: {message}")]
    Tokenizer { path: PathBuf, message: String },
    #[error("tokenizer has no token `{token}`, which {needed_by} needs")]
    MissingSpecialToken { token: String, needed_by: String },
    #[error("tokenizer failed: {0}")]
    Encode(String),
    #[error("{}", invalid_rows_message(*.count, .first))]
    InvalidRows { count: usize, first: Vec<RowError> },
    #[error("no usable samples: {0}")]
    Empty(String),
}

fn invalid_rows_message(count: usize, first: &[RowError]) -> String {
    let mut s = format!("{count} invalid row(s) (set `skip_invalid = true` to skip them)");
    for e in first {
        s.push_str("\n  ");
        s.push_str(&e.to_string());
    }
    if count > first.len() {
        s.push_str(&format!("\n  ... and {} more", count - first.len()));
    }
    s
}

pub type Result<T, E = DataError> = std::result::Result<T, E>;
