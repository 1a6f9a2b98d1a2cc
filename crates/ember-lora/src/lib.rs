//! LoRA for Burn models, interchangeable with PEFT.
//!
//! - [`linear`]: [`LoraLinear`], a frozen linear layer that can carry an adapter, computed as PEFT
//!   does (`x Wᵀ + b + scaling · B(A(dropout(x)))`, f32 factors); models use it for every projection
//!   so that they gain adapters without a second copy of their code. How dropout masks are seeded.
//! - [`model`]: [`LoraModel`], what a model exposes (its linear layers by HF module path);
//!   [`apply_lora`] adds seeded, PEFT-initialised adapters; [`set_dropout_seed`].
//! - [`config`]: [`LoraConfig`], the settings under LLaMA-Factory's names (a TOML `[lora]` section).
//! - [`targets`]: PEFT's rules for which modules an adapter covers.
//! - [`report`]: [`ParamReport`], the trainable-parameter line PEFT prints, from shapes alone.
//! - [`peft`]: the PEFT adapter directory: [`save_peft`], [`load_peft`], [`AdapterConfig`].
//! - [`merge`]: [`merge`](merge::merge) / [`unmerge`] in memory, [`export_merged`] to an HF model
//!   directory.
//! - [`error`]: the error type, [`LoraError`].

pub mod config;
pub mod error;
pub mod linear;
pub mod merge;
pub mod model;
pub mod peft;
pub mod report;
mod st;
pub mod targets;

pub use config::{InitLoraWeights, LoraConfig};
pub use error::LoraError;
pub use linear::LoraLinear;
pub use merge::{export_merged, merge, merge_and_unload, unmerge};
pub use model::{
    LinearShape, LoraModel, ModelShape, adapted_modules, apply_lora, remove_adapters,
    set_dropout_seed,
};
pub use peft::{AdapterConfig, load_peft, save_peft};
pub use report::ParamReport;
pub use targets::TargetModules;
