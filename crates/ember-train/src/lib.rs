//! ember's training loop: one loop, generic over Burn's `AutodiffBackend`, with HF Trainer's
//! arithmetic and HF/LLaMA-Factory-shaped outputs.
//!
//! - [`config`]: [`FinetuneConfig`], the TOML run config with LLaMA-Factory/HF key names.
//! - [`llamafactory`]: LLaMA-Factory YAML configs, translated into ember's sections.
//! - [`plan`]: [`StepPlan`], micro-batches, steps and epochs as HF computes them.
//! - [`trainer`]: [`Run`]: load, then train (the recipe); evaluation loss as HF computes it.
//! - [`step`]: [`train_step`], the one optimizer step (the bench and the planner call it too).
//! - [`finetune`]: [`finetune()`], a run loaded and trained on the backend the caller names.
//! - [`adapter`]: attaching, saving and counting the LoRA adapter of a run.
//! - [`checkpoint`]: `checkpoint-N` directories, written atomically.
//! - [`previous`]: starting over without losing the previous run before its replacement exists.
//! - [`state`]: `trainer_state.json` and its `log_history` (HF keys).
//! - [`report`]: banner, progress bar, summary, `trainer_log.jsonl`.
//! - [`plot`]: loss plots (PNG).
//! - [`tensorboard`]: TensorBoard event files (`report_to = "tensorboard"`), HF's scalar names.
//!
//! Library use: load a config, train, read the results. This example runs (in `cargo test`) two
//! steps of the shipped demo on the pure-Rust CPU backend.
//!
//! ```
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use ember_train::{FinetuneConfig, Run, report::Silent};
//! type B = ember_backend::FlexBackend;
//!
//! let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
//! let out = tempfile::tempdir()?;
//! let toml = format!(
//!     "[model]\nmodel_name_or_path = {:?}\n\
//!      [data]\ndataset_dir = {:?}\ndataset = \"interview_ko\"\n\
//!      [train]\nmax_steps = 2\nper_device_train_batch_size = 2\nlearning_rate = 1e-3\n\
//!      [output]\noutput_dir = {:?}\nsave_strategy = \"no\"\n",
//!     root.join("fixtures/tiny/qwen3-tiny"),
//!     root.join("fixtures/demo"),
//!     out.path(),
//! );
//! let cfg = FinetuneConfig::from_table(toml.parse()?, "example.toml".as_ref(), &[])?;
//! let result = Run::<B>::load(&cfg, &Default::default())?.train(&mut Silent)?;
//! assert_eq!(result.state.global_step, 2);
//! assert!(out.path().join("adapter_model.safetensors").is_file());
//! println!("train_loss = {}", result.summary.train_loss);
//! # Ok(()) }
//! ```

// No unwrap/expect on anything a user controls: library code returns errors. An `expect` on an
// invariant the code itself establishes carries `#[allow(clippy::expect_used, reason = ...)]`.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod adapter;
pub mod checkpoint;
pub mod config;
pub mod error;
pub mod finetune;
pub mod llamafactory;
pub mod plan;
pub mod plot;
pub mod previous;
pub mod report;
pub mod state;
pub mod step;
pub mod tensorboard;
pub mod trainer;

/// The files a finished run leaves in `output_dir` (besides `checkpoint-N/`).
pub const OUTPUT_FILES: [&str; 9] = [
    ember_lora::peft::ADAPTER_WEIGHTS,
    ember_lora::peft::ADAPTER_CONFIG,
    state::TRAINER_STATE_FILE,
    trainer::TRAIN_RESULTS_FILE,
    trainer::EVAL_RESULTS_FILE,
    trainer::ALL_RESULTS_FILE,
    report::TRAINER_LOG_FILE,
    plot::LOSS_PLOT_FILE,
    plot::EVAL_LOSS_PLOT_FILE,
];

pub use config::FinetuneConfig;
pub use error::TrainError;
pub use finetune::finetune;
pub use plan::StepPlan;
pub use report::{Banner, Reporter, Summary};
pub use state::{LogEntry, TrainerState};
pub use step::{StepOutput, StepProbe, StepSettings, Window, dropout_seed, train_step};
pub use trainer::{Run, RunOutput, eval_loss};
