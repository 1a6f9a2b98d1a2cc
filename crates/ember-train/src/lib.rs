//! ember's training loop: one loop, generic over Burn's `AutodiffBackend`, with HF Trainer's
//! arithmetic and HF/LLaMA-Factory-shaped outputs.
//!
//! - [`config`]: [`FinetuneConfig`], the TOML run config with LLaMA-Factory/HF key names.
//! - [`plan`]: [`StepPlan`], micro-batches, steps and epochs as HF computes them.
//! - [`trainer`]: [`Run`]: load, then train; evaluation loss as HF computes it.
//! - [`adapter`]: attaching, saving and counting the LoRA adapter of a run.
//! - [`checkpoint`]: `checkpoint-N` directories, written atomically.
//! - [`state`]: `trainer_state.json` and its `log_history` (HF keys).
//! - [`report`]: banner, progress bar, summary, `trainer_log.jsonl`.
//! - [`plot`]: loss plots (PNG).
//!
//! ```no_run
//! # fn main() -> Result<(), ember_train::TrainError> {
//! use ember_train::{FinetuneConfig, Run, report::Console};
//! type B = ember_backend::FlexBackend;
//! let cfg = FinetuneConfig::from_file("finetune.toml".as_ref())?;
//! let out = Run::<B>::load(&cfg, &Default::default())?.train(&mut Console::default())?;
//! println!("train_loss = {}", out.summary.train_loss);
//! # Ok(()) }
//! ```

pub mod adapter;
pub mod checkpoint;
pub mod config;
pub mod error;
pub mod plan;
pub mod plot;
pub mod report;
pub mod state;
pub mod trainer;

pub use config::FinetuneConfig;
pub use error::TrainError;
pub use plan::StepPlan;
pub use report::{Banner, Reporter, Summary};
pub use state::{LogEntry, TrainerState};
pub use trainer::{Run, RunOutput, eval_loss};
