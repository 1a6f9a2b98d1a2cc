//! Qwen3 for Burn, numerically equal to Hugging Face transformers' `Qwen3ForCausalLM`.
//!
//! - [`config`]: [`Qwen3Config`] from an HF `config.json`, validated.
//! - [`model`]: the model; module names are HF checkpoint keys. [`ModelInputs`] (ids, attention
//!   mask or a dense 4D mask, position ids, labels) is what forward, the loss and backprop take;
//!   the rotary embedding is derived from the config once and kept in the module;
//!   `decode_layers` is the one decoder loop. Forward to logits, and the shifted cross-entropy
//!   loss over labels that are not -100.
//! - [`attention`]: plain and memory-efficient chunked attention (a custom autodiff op where
//!   `ember_backend::dispatch_autodiff` says ember's ops apply); [`AttentionImpl`] parses from text.
//! - [`loss`]: chunked head + cross-entropy (custom autodiff op); [`LossChoice`] parses from text.
//! - [`backprop`]: one micro-batch's loss and gradients, full graph or with layer recompute.
//! - [`weights`]: where tensors come from: an HF checkpoint (single or sharded safetensors,
//!   memory-mapped) or seeded random initialisation.
//! - [`generate`]: KV-cached greedy and temperature/top-p generation.
//! - [`pretrained`]: one call to load a model directory; [`tokenizer_file`] finds its tokenizer.

// No unwrap/expect on anything a user controls: library code returns errors. An `expect` on an
// invariant the code itself establishes carries `#[allow(clippy::expect_used, reason = ...)]`.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod attention;
#[cfg(feature = "tch")]
mod attention_torch;
pub mod backprop;
pub mod config;
pub mod error;
pub mod generate;
pub mod lora;
pub mod loss;
pub mod model;
pub mod pretrained;
pub mod weights;

pub use attention::{AttentionImpl, AttnMask};
pub use backprop::Backprop;
pub use config::Qwen3Config;
pub use error::Qwen3Error;
pub use generate::{
    GENERATION_CONFIG_FILE, Generation, GenerationConfig, GenerationDefaults, Sampling, StopReason,
};
pub use loss::{LossChoice, LossImpl};
pub use model::{
    DecoderInput, IGNORE_INDEX, LossSum, ModelInputs, Qwen3ForCausalLM, RotaryEmbedding,
    shifted_cross_entropy,
};
pub use pretrained::{check_model_dir, load_pretrained, random_model, tokenizer_file};
pub use weights::{RandomInit, SafetensorsSource, WeightSource};
