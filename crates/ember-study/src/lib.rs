//! Plans and sweeps of training runs, and their report: the data-scaling study in one command.
//!
//! - [`plan`]: [`plan::plan`], what a run will be before it runs (samples, tokens, steps, trainable
//!   parameters, tokens per parameter), from `config.json` alone; `--samples` plans without data.
//! - [`memory`]: the peak-memory estimate from shapes (formula in docs/study.md).
//! - [`calibrate`]: time per step from a few measured steps, on the real or random weights.
//! - [`grid`]: `--grid key=v1,v2` axes, their cross product and run names.
//! - [`sweep`]: the runs of a grid, each in its own directory; finished runs skipped, interrupted
//!   ones resumed; `jobs` at once; one command per run for a scheduler.
//! - [`record`]: a run directory read back (`trainer_state.json`, `all_results.json`,
//!   `study_run.json`) into one report row.
//! - [`analysis`]: the loss curves: step of minimum eval loss, overfitting, recommended checkpoint.
//! - [`bench`]: benchmark scores (ember-eval) of each checkpoint of a run.
//! - [`report`]: `report.md`, `report.json` and the PNG plots.
//! - [`speed`]: ember's training step timed next to HF transformers + PEFT (`cargo xtask bench`).
//! - [`error`]: the error type, [`StudyError`].

// No unwrap/expect on anything a user controls: library code returns errors. An `expect` on an
// invariant the code itself establishes carries `#[allow(clippy::expect_used, reason = ...)]`.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod analysis;
pub mod bench;
pub mod calibrate;
pub mod error;
pub mod grid;
pub mod memory;
pub mod plan;
pub mod record;
pub mod report;
pub mod speed;
pub mod sweep;

pub use error::StudyError;
pub use grid::{Axis, Grid, RunSpec};
pub use plan::{Plan, PlanOptions, Planned};
pub use record::{RunRecord, RunStatus};
pub use report::Report;
pub use sweep::{Sweep, SweepRun};
