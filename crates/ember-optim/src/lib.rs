//! Optimizer and learning-rate schedules for ember, with PyTorch/transformers numerics.
//!
//! The trainer's loss curve can only match Hugging Face's if every update and every learning rate
//! does, so each piece mirrors its reference op for op:
//!
//! | module       | what                                                    | reference                                  |
//! |--------------|---------------------------------------------------------|--------------------------------------------|
//! | [`adamw`]    | [`AdamW`] over trainable params, state keyed by path    | `torch.optim.AdamW` (`foreach=False`)      |
//! | [`clip`]     | [`clip_grad_norm`]: global norm clipping, returns norm  | `torch.nn.utils.clip_grad_norm_`           |
//! | [`schedule`] | [`LrScheduler`], [`SchedulerArgs`]: HF schedules by name | `transformers.get_scheduler` + `LambdaLR`  |
//! | [`state`]    | save/load of optimizer and scheduler state              | resume continues bit for bit               |
//! | [`params`]   | [`trainable_params`], [`hf_no_decay`]                   | HF `get_decay_parameter_names`             |
//!
//! A training step:
//!
//! ```ignore
//! let mut opt = AdamW::new(AdamWConfig { weight_decay: 0.01, ..Default::default() });
//! let mut sched = SchedulerArgs { lr_scheduler_type: "cosine".into(), warmup_ratio: 0.03, ..Default::default() }
//!     .build(2e-5, total_steps)?;
//! // per optimizer step:
//! let mut grads = GradientsParams::from_grads(loss.backward(), &module);
//! let grad_norm = clip_grad_norm(&module, &mut grads, 1.0);
//! let lr = sched.lr(); // 0 on the first step under warm-up, as HF
//! module = opt.step(lr, module, grads);
//! sched.step();
//! // checkpoint, and resume in a new process (state is keyed by parameter path):
//! opt.save(dir)?;
//! sched.save(dir)?;
//! opt.load(dir, &module)?;
//! let sched = LrScheduler::load(dir)?;
//! ```
//!
//! burn-optim's `AdamW` is not reused: it rounds its scalars to f32 (an order of magnitude further
//! from torch on the fixtures), keys state by `ParamId` and has no no-decay group.
//!
//! This crate never depends on the model crates: it sees modules only through Burn's visitor.

// No unwrap/expect on anything a user controls: library code returns errors. An `expect` on an
// invariant the code itself establishes carries `#[allow(clippy::expect_used, reason = ...)]`.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod adamw;
pub mod clip;
pub mod error;
pub mod params;
pub mod schedule;
pub mod state;

pub use adamw::{AdamW, AdamWConfig, Moments, NoDecayFn};
pub use clip::{DEFAULT_MAX_GRAD_NORM, clip_grad_norm};
pub use error::{OptimError, Result};
pub use params::{TrainableParam, hf_no_decay, trainable_params};
pub use schedule::{LrScheduler, Schedule, SchedulerArgs, SchedulerType, schedule_from_kwargs};
pub use state::{OPTIMIZER_JSON_FILE, OPTIMIZER_TENSORS_FILE, SCHEDULER_JSON_FILE};
