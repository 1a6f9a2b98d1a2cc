//! Benchmark evaluation of Qwen3 models, adapters and checkpoints on KMMLU, KoBEST and HAE-RAE,
//! with the prompts, requests and metrics of lm-evaluation-harness (v0.4.9.2 task definitions),
//! so the numbers are the ones `lm_eval --model hf` prints.
//!
//! - [`command`]: [`run_eval`], `cargo xtask eval` as one call; [`generate`]: [`run_generate`],
//!   a prompt continued by a model (and adapter); [`chat`]: [`chat_interactive`] (`xtask chat`)
//!   and [`chat_once`] (`generate --chat`), prompts by the training template.
//! - [`tasks`]: task and group names, KMMLU's 45 subjects and categories, selecting by name.
//! - [`data`]: documents from local CSV/TSV/JSON/JSONL files, rendered with lm-eval's prompts.
//! - [`prompt`]: zero- and k-shot contexts; [`pyrandom`]: CPython's `random` for the sampler.
//! - [`encode`]: `(context, " " + choice)` to token requests, as `_encode_pair`.
//! - [`model`]: the [`LogLikelihoodModel`] trait and [`Qwen3Scorer`], which computes each
//!   document's context once for all its choices.
//! - [`metrics`]: acc, acc_norm, macro-F1, size-weighted groups.
//! - [`evaluate`]: [`prepare`] once, then [`evaluate()`] per model.
//! - [`report`]: per-model results and the cross-model table (JSON, Markdown).
//! - [`sources`]: base / adapter / checkpoint-N model specs, the adapter seam, SFT eval loss.

// No unwrap/expect on anything a user controls: library code returns errors. An `expect` on an
// invariant the code itself establishes carries `#[allow(clippy::expect_used, reason = ...)]`.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod chat;
pub mod command;
pub mod data;
pub mod encode;
pub mod error;
pub mod evaluate;
pub mod generate;
pub mod metrics;
pub mod model;
pub mod prompt;
pub mod pyrandom;
pub mod report;
pub mod sources;
pub mod tasks;

pub use chat::{ChatCommand, Reply, SamplingOverrides, chat_interactive, chat_once};
pub use command::{EvalCommand, TaskOptions, run_eval};
pub use encode::Encoder;
pub use error::EvalError;
pub use evaluate::{EvalOptions, Prepared, evaluate, prepare};
pub use generate::{GenerateCommand, Generated, run_generate};
pub use model::{LogLikelihood, LogLikelihoodModel, Qwen3Scorer, Request, Strategy};
pub use report::{EvalReport, ScoreTable};
pub use sources::{
    AdapterLoader, ModelSpec, NoAdapterLoader, PeftAdapterLoader, checkpoint_specs, load_scorer,
};
pub use tasks::{Selection, select};
