//! LoRA for Burn models, interchangeable with PEFT. What lives where:
//!
//! - [`linear`]: [`LoraLinear`], a frozen linear layer that can carry an adapter; models use it for
//!   every projection so that they gain adapters without a second copy of their code. How dropout
//!   masks are seeded ([`linear::DROPOUT_DRAW`]), and why the adapter's parameters keep the paths
//!   `q_proj.lora_a` / `q_proj.lora_b`.
//! - [`adapter`]: [`LoraAdapter`] (factors, scaling, dropout) and the variant seam, PEFT's
//!   `LoraVariant`: [`LoraVariant`] says which computation an adapter performs, [`AdapterVariant`]
//!   is that computation (init, forward, merge), [`PlainLora`] and [`Dora`] the two there are. **A
//!   new variant goes there**: its steps are listed in that module's documentation.
//! - [`model`]: [`LoraModel`], what a model exposes (its linear layers by HF module path);
//!   [`apply_lora`] adds seeded, PEFT-initialised adapters; [`set_dropout_seed`].
//! - [`seed`]: the seeded randomness shared with other crates (FNV-1a name hash, SplitMix64,
//!   Box-Muller normals); committed fixtures depend on its exact bits.
//! - [`config`]: [`LoraConfig`], the settings under LLaMA-Factory's names (a TOML `[lora]` section);
//!   [`ModuleRank`], one module's rank and scaling after `rank_pattern` / `alpha_pattern`.
//! - [`targets`]: PEFT's rules for which modules an adapter covers, and for which pattern key
//!   applies to a module ([`Patterns`]).
//! - [`report`]: [`ParamReport`], the trainable-parameter line PEFT prints, from shapes alone.
//! - [`peft`]: the PEFT adapter directory: [`save_peft`], [`load_peft`], [`AdapterConfig`]
//!   (`adapter_config.json`, read with serde and validated); the PEFT tensor keys
//!   ([`peft::adapter_key`], DoRA's [`peft::magnitude_key`]).
//! - [`merge`]: [`merge`](merge::merge) / [`unmerge`] in memory, [`export_merged`] to an HF model
//!   directory.
//! - [`error`]: the error type, [`LoraError`].

// No unwrap/expect on anything a user controls: library code returns errors. An `expect` on an
// invariant the code itself establishes carries `#[allow(clippy::expect_used, reason = ...)]`.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod adapter;
pub mod config;
pub mod error;
pub mod linear;
pub mod merge;
pub mod model;
pub mod peft;
pub mod report;
pub mod seed;
mod st;
pub mod targets;

pub use adapter::{AdapterVariant, BaseLayer, Dora, LoraAdapter, LoraVariant, PlainLora};
pub use config::{InitLoraWeights, LoraConfig, ModuleRank};
pub use error::LoraError;
pub use linear::LoraLinear;
pub use merge::{export_merged, merge, merge_and_unload, unmerge};
pub use model::{
    LinearShape, LoraModel, ModelShape, adapted_modules, apply_lora, remove_adapters,
    set_dropout_seed,
};
pub use peft::{AdapterConfig, load_peft, save_peft};
pub use report::ParamReport;
pub use targets::{Patterns, TargetModules};
