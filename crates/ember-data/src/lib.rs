//! Supervised fine-tuning data for ember, identical to LLaMA-Factory: datasets described by
//! `dataset_info.json`, the Qwen3 chat template, label masking, truncation, splits and batching.
//! No tensors here: batches are plain vectors that the trainer converts.
//!
//! Entry points: [`load_sft`] (config -> tokenized train/eval + statistics), [`Loader`] (batches),
//! [`report`], [`preview`] and [`export_jsonl`] (for `xtask data`). docs/data.md describes the data order.

// No unwrap/expect on anything a user controls: library code returns errors. An `expect` on an
// invariant the code itself establishes carries `#[allow(clippy::expect_used, reason = ...)]`.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

/// `DataArgs`, the `[data]` config section (LLaMA-Factory key names).
pub mod args;
/// Padding/collation, resumable seeded epoch order, length grouping, label-token counts.
pub mod batch;
/// Rows -> conversations: alpaca, sharegpt and openai formats.
pub mod convert;
/// Supervised encoding: `infer_seqlen` truncation and -100 label masking.
pub mod encode;
/// The error enum and row-level errors naming file, line/index and field.
pub mod error;
/// `dataset_info.json` entries and their resolution.
pub mod info;
/// Insertion-ordered JSON and Python-compatible `json.dumps`.
pub mod json;
/// The pipeline: load, split, tokenize; preview and export.
pub mod load;
/// numpy-compatible `default_rng(seed).permutation(n)`.
pub mod rng;
/// Reading JSON, JSON Lines and CSV files into located rows.
pub mod source;
/// Dataset statistics and their table.
pub mod stats;
/// The qwen3 / qwen3_nothink chat templates.
pub mod template;
/// HF `tokenizer.json` with special-token lookup.
pub mod tokenizer;

pub use args::{DataArgs, ValSize};
pub use batch::{
    Batch, Loader, LoaderConfig, Position, collate, count_label_tokens, count_target_tokens,
};
pub use convert::{Conversation, Message, Role};
pub use encode::{EncodeOptions, Example, IGNORE_INDEX};
pub use error::{DataError, Location, RowError};
pub use load::{SftData, export_jsonl, export_line, inspect, load_sft, preview, report};
pub use stats::{DataStats, SftStats};
pub use template::Template;
pub use tokenizer::Tokenizer;
