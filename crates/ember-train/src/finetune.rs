//! One run from its config to its output directory, on the backend the caller names
//! (`cargo xtask finetune`).

use burn::tensor::backend::AutodiffBackend;
use ember_backend::{BackendChoice, BackendOp};

use crate::report::Reporter;
use crate::{FinetuneConfig, Run, RunOutput, TrainError};

/// Loads the run `cfg` describes and trains it on `backend`, reporting to `reporter`.
pub fn finetune(
    cfg: &FinetuneConfig,
    backend: BackendChoice,
    reporter: &mut dyn Reporter,
) -> Result<RunOutput, TrainError> {
    ember_backend::run(backend, Finetune { cfg, reporter })?
}

struct Finetune<'a> {
    cfg: &'a FinetuneConfig,
    reporter: &'a mut dyn Reporter,
}

impl BackendOp for Finetune<'_> {
    type Output = Result<RunOutput, TrainError>;
    fn run<B: AutodiffBackend>(self, device: B::Device) -> Self::Output {
        Run::<B>::load(self.cfg, &device)?.train(self.reporter)
    }
}
