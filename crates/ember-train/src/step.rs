//! One optimizer step: the only training step in ember. The run loop ([`crate::trainer`]), the
//! speed bench and the planner's calibration all call [`train_step`], so what they measure is what
//! a run does.
//!
//! A step is one gradient-accumulation window, as HF `Trainer` computes it: each micro-batch's
//! summed token loss is divided by the supervised tokens of the whole window
//! (`num_items_in_batch`), gradients are accumulated, clipped to a global norm, and AdamW steps at
//! the scheduler's learning rate, which then advances.

use burn::optim::GradientsAccumulator;
use burn::tensor::{ElementConversion, Tensor, backend::AutodiffBackend};
use ember_data::Batch;
use ember_optim::{AdamW, LrScheduler, clip_grad_norm};
use ember_qwen3::{Backprop, ModelInputs, Qwen3ForCausalLM};

use crate::TrainError;

/// How a step computes, besides the model and its optimizer.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepSettings {
    pub backprop: Backprop,
    /// Global gradient-norm clipping threshold (`max_grad_norm`; 0 or less: no clipping).
    pub max_grad_norm: f64,
    /// The run seed; dropout masks derive from it and the micro-batch number.
    pub seed: u64,
}

/// The micro-batches of one accumulation window.
#[derive(Debug, Clone, Copy)]
pub struct Window<'a> {
    pub batches: &'a [Batch],
    /// The run-wide number of the first micro-batch (its dropout masks derive from it, so a
    /// resumed run draws the masks the uninterrupted run drew).
    pub first_micro_batch: u64,
}

/// What one step did.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepOutput {
    /// The window's loss: the sum of its micro-batches' losses, each divided by the window's
    /// supervised tokens (HF's logged `loss` before averaging over logging steps).
    pub loss: f64,
    /// The gradient norm before clipping.
    pub grad_norm: f64,
    /// The learning rate the optimizer stepped with.
    pub learning_rate: f64,
    /// Real (non-padding) tokens of the window.
    pub tokens: u64,
    /// Supervised tokens of the window (the loss divisor).
    pub supervised_tokens: usize,
}

/// Called at named points of a step (a bench times the phases; the default does nothing).
pub trait StepProbe {
    /// Every micro-batch's gradients are computed and accumulated; clipping and the optimizer are
    /// next.
    fn gradients_ready(&mut self) {}
}

impl StepProbe for () {}

/// The dropout seed of one micro-batch (SplitMix64 of the run seed and the micro-batch number).
pub fn dropout_seed(seed: u64, micro_batch: u64) -> u64 {
    ember_lora::seed::mix64(seed ^ micro_batch.wrapping_mul(ember_lora::seed::GOLDEN_GAMMA))
}

/// LoRA+'s parameter groups as LLaMA-Factory builds them (`_create_loraplus_optimizer`): the B
/// matrices and every 1-D trainable parameter (DoRA's magnitude) at `lr × ratio`, the rest (the A
/// matrices) at `lr`, all under one schedule and with the same weight-decay rule. The logged
/// learning rate stays the base one (HF logs the first group's).
pub fn loraplus_lr_scale(ratio: f64) -> impl Fn(&str, usize) -> f64 + Send + Sync + 'static {
    move |path: &str, dims: usize| {
        if path.ends_with(".lora_b") || dims == 1 {
            ratio
        } else {
            1.0
        }
    }
}

/// One optimizer step over `window`; returns the updated model.
///
/// A non-finite loss or gradient norm stops before the optimizer touches the model
/// ([`TrainError::NonFinite`] names which; the step number is the scheduler's next step).
pub fn train_step<B: AutodiffBackend>(
    mut model: Qwen3ForCausalLM<B>,
    opt: &mut AdamW<B>,
    sched: &mut LrScheduler,
    window: &Window<'_>,
    settings: &StepSettings,
    probe: &mut dyn StepProbe,
    device: &B::Device,
) -> Result<(Qwen3ForCausalLM<B>, StepOutput), TrainError> {
    let supervised = ember_data::count_target_tokens(window.batches);
    let tokens = window.batches.iter().map(|b| b.real_tokens() as u64).sum();
    let mut acc = GradientsAccumulator::<Qwen3ForCausalLM<B>>::new();
    let mut loss = Tensor::<B::InnerBackend, 1>::zeros([1], device);
    for (i, batch) in window.batches.iter().enumerate() {
        let micro = window.first_micro_batch + i as u64;
        ember_lora::set_dropout_seed(&mut model, dropout_seed(settings.seed, micro));
        let inputs = ModelInputs::from_batch(batch, device);
        // HF divides each micro-batch's summed token loss by the whole window's count.
        let (l, grads) = model.loss_and_grads(inputs, supervised.max(1) as f64, settings.backprop);
        loss = loss + l;
        acc.accumulate(&model, grads);
    }
    probe.gradients_ready();
    let mut grads = acc.grads();
    let grad_norm = clip_grad_norm(&model, &mut grads, settings.max_grad_norm);
    let loss: f64 = loss.into_scalar().elem::<f64>();
    let step = sched.step + 1;
    if !loss.is_finite() {
        return Err(TrainError::NonFinite {
            what: "loss",
            value: loss,
            step,
        });
    }
    if !grad_norm.is_finite() {
        return Err(TrainError::NonFinite {
            what: "gradient norm",
            value: grad_norm,
            step,
        });
    }
    let learning_rate = sched.lr();
    let model = opt.step(learning_rate, model, grads);
    sched.step();
    Ok((
        model,
        StepOutput {
            loss,
            grad_norm,
            learning_rate,
            tokens,
            supervised_tokens: supervised,
        },
    ))
}
