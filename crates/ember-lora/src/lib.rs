//! LoRA for Burn models, interchangeable with PEFT.
//!
//! - [`linear`]: [`LoraLinear`], a frozen linear layer that can carry a LoRA adapter; models use
//!   it for every projection so that they gain adapters without a second copy of their code.

pub mod linear;

pub use linear::LoraLinear;
