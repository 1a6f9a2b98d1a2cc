//! AdamW with `torch.optim.AdamW` numerics (single-tensor, `foreach=False` implementation).
//!
//! Burn's `AdamW` is not reused: besides other defaults (eps 1e-5, wd 1e-4) it computes
//! `1 - beta2` and the bias corrections in f32 (`1 - 0.999f32` is 1.3e-5 off), divides before the
//! square root and keys state by `ParamId`. Here every scalar is formed in f64 like torch's Python
//! floats and the tensor ops run in torch's order; `tests/adamw_torch.rs` shows the difference.

use std::collections::BTreeMap;

use burn::module::{AutodiffModule, ModuleMapper, Param};
use burn::optim::GradientsParams;
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{FloatDType, Tensor, TensorPrimitive};
use serde::{Deserialize, Serialize};

use crate::params::{PathStack, hf_no_decay};

/// AdamW hyper-parameters. Defaults are torch's (`betas=(0.9, 0.999)`, `eps=1e-8`,
/// `weight_decay=0.01`); note that HF `TrainingArguments.weight_decay` defaults to 0. HF's key
/// names (`adam_beta1`, `adam_beta2`, `adam_epsilon`) are accepted when deserializing.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct AdamWConfig {
    #[serde(alias = "adam_beta1")]
    pub beta1: f64,
    #[serde(alias = "adam_beta2")]
    pub beta2: f64,
    #[serde(alias = "adam_epsilon")]
    pub eps: f64,
    pub weight_decay: f64,
}

impl Default for AdamWConfig {
    fn default() -> Self {
        Self {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.01,
        }
    }
}

/// Which parameters skip weight decay, by path name.
pub type NoDecayFn = Box<dyn Fn(&str) -> bool + Send + Sync>;

/// A parameter's learning-rate factor from its path and number of dimensions: torch's parameter
/// groups with their own `lr` under one schedule (LambdaLR scales every group's initial `lr` by the
/// same factor), as LoRA+ builds them.
pub type LrScaleFn = Box<dyn Fn(&str, usize) -> f64 + Send + Sync>;

/// Per-parameter state, as torch's `state[p]`: its own step count and f32 moments.
pub(crate) struct ParamState<B: Backend> {
    pub(crate) step: u64,
    pub(crate) exp_avg: TensorPrimitive<B>,
    pub(crate) exp_avg_sq: TensorPrimitive<B>,
}

/// A parameter's AdamW moments (torch's `exp_avg`, `exp_avg_sq`), on the inner backend.
pub struct Moments<B: Backend, const D: usize> {
    pub exp_avg: Tensor<B, D>,
    pub exp_avg_sq: Tensor<B, D>,
}

/// AdamW over the trainable parameters of a Burn module; state is keyed by parameter path.
pub struct AdamW<B: AutodiffBackend> {
    pub(crate) config: AdamWConfig,
    no_decay: NoDecayFn,
    lr_scale: Option<LrScaleFn>,
    pub(crate) state: BTreeMap<String, ParamState<B::InnerBackend>>,
}

impl<B: AutodiffBackend> AdamW<B> {
    /// An optimizer with no state yet, exempting parameters from decay by HF's rule
    /// ([`hf_no_decay`]).
    pub fn new(config: AdamWConfig) -> Self {
        Self {
            config,
            no_decay: Box::new(hf_no_decay),
            lr_scale: None,
            state: BTreeMap::new(),
        }
    }

    /// Replaces the no-decay rule: parameters whose path makes `no_decay` true get weight decay 0.
    pub fn with_no_decay(
        mut self,
        no_decay: impl Fn(&str) -> bool + Send + Sync + 'static,
    ) -> Self {
        self.no_decay = Box::new(no_decay);
        self
    }

    /// Gives each parameter the step's `lr` times `lr_scale(path, dims)` (its group's lr); the
    /// decoupled weight decay uses that lr too, as torch's does. Without it every factor is 1.
    pub fn with_lr_scale(
        mut self,
        lr_scale: impl Fn(&str, usize) -> f64 + Send + Sync + 'static,
    ) -> Self {
        self.lr_scale = Some(Box::new(lr_scale));
        self
    }

    /// The learning-rate factor of the parameter at `path` with `dims` dimensions.
    pub fn lr_scale(&self, path: &str, dims: usize) -> f64 {
        self.lr_scale.as_ref().map_or(1.0, |f| f(path, dims))
    }

    pub fn config(&self) -> &AdamWConfig {
        &self.config
    }

    /// Whether the parameter at `path` is decayed (when `weight_decay` > 0).
    pub fn decays(&self, path: &str) -> bool {
        !(self.no_decay)(path)
    }

    /// One optimizer step at learning rate `lr` (the scheduler's current value).
    ///
    /// Every trainable parameter with a gradient in `grads` is updated; frozen parameters and
    /// parameters without a gradient are returned untouched and get no state, as in torch.
    pub fn step<M: AutodiffModule<B>>(&mut self, lr: f64, module: M, grads: GradientsParams) -> M {
        let mut mapper = StepMapper {
            opt: self,
            lr,
            grads,
            path: PathStack::default(),
        };
        module.map(&mut mapper)
    }

    /// Paths of the parameters that have state, in sorted order.
    pub fn state_paths(&self) -> impl Iterator<Item = &str> {
        self.state.keys().map(String::as_str)
    }

    /// Number of steps taken by the parameter at `path` (`None` if it has no state).
    pub fn param_step(&self, path: &str) -> Option<u64> {
        self.state.get(path).map(|s| s.step)
    }

    /// The moments of the parameter at `path` (`None` without state or if it is not of rank `D`).
    pub fn moments<const D: usize>(&self, path: &str) -> Option<Moments<B::InnerBackend, D>> {
        let s = self.state.get(path)?;
        let exp_avg = Tensor::<B::InnerBackend, D>::from_primitive(s.exp_avg.clone());
        let exp_avg_sq = Tensor::<B::InnerBackend, D>::from_primitive(s.exp_avg_sq.clone());
        (exp_avg.shape().num_dims() == D).then_some(Moments {
            exp_avg,
            exp_avg_sq,
        })
    }

    fn update<const D: usize>(
        &mut self,
        path: String,
        lr: f64,
        param: Tensor<B::InnerBackend, D>,
        grad: Tensor<B::InnerBackend, D>,
    ) -> Tensor<B::InnerBackend, D> {
        let weight_decay = if self.decays(&path) {
            self.config.weight_decay
        } else {
            0.0
        };
        let lr = lr * self.lr_scale(&path, D);
        // Moments and arithmetic are f32 whatever the parameter's storage type.
        let dtype = param.dtype();
        let param = param.cast(FloatDType::F32);
        let grad = grad.cast(FloatDType::F32);
        let (step, exp_avg, exp_avg_sq) = match self.state.remove(&path) {
            Some(s) => (
                s.step,
                Tensor::from_primitive(s.exp_avg),
                Tensor::from_primitive(s.exp_avg_sq),
            ),
            // torch starts from zeros; the first update then gives exactly (1-b1)·g, (1-b2)·g².
            None => (0, grad.zeros_like(), grad.zeros_like()),
        };
        let step = step + 1;
        let (param, exp_avg, exp_avg_sq) = adamw_update(
            &self.config,
            weight_decay,
            lr,
            step,
            param,
            grad,
            exp_avg,
            exp_avg_sq,
        );
        self.state.insert(
            path,
            ParamState {
                step,
                exp_avg: exp_avg.into_primitive(),
                exp_avg_sq: exp_avg_sq.into_primitive(),
            },
        );
        param.cast(dtype)
    }
}

/// torch `_single_tensor_adam` with `decoupled_weight_decay=True`, op for op. Scalars are f64
/// (Python floats) and become f32 inside each tensor op, as in torch's CPU kernels.
#[allow(clippy::too_many_arguments)]
fn adamw_update<B: Backend, const D: usize>(
    cfg: &AdamWConfig,
    weight_decay: f64,
    lr: f64,
    step: u64,
    param: Tensor<B, D>,
    grad: Tensor<B, D>,
    exp_avg: Tensor<B, D>,
    exp_avg_sq: Tensor<B, D>,
) -> (Tensor<B, D>, Tensor<B, D>, Tensor<B, D>) {
    // param.mul_(1 - lr * weight_decay)
    let param = if weight_decay != 0.0 {
        param.mul_scalar(1.0 - lr * weight_decay)
    } else {
        param
    };
    // exp_avg.lerp_(grad, 1 - beta1): for weights < 0.5 torch computes self + w * (end - self).
    let exp_avg = exp_avg.clone() + (grad.clone() - exp_avg).mul_scalar(1.0 - cfg.beta1);
    // exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2): self + (value * t1) * t2.
    let exp_avg_sq =
        exp_avg_sq.mul_scalar(cfg.beta2) + grad.clone().mul_scalar(1.0 - cfg.beta2) * grad;

    // The step count is a float in torch (`step_t.item()`), and `**` is C `pow`.
    let t = step as f64;
    let bias_correction1 = 1.0 - cfg.beta1.powf(t);
    let bias_correction2 = 1.0 - cfg.beta2.powf(t);
    let step_size = lr / bias_correction1;
    let bias_correction2_sqrt = bias_correction2.sqrt();

    // denom = (exp_avg_sq.sqrt() / bias_correction2_sqrt).add_(eps)
    let denom = exp_avg_sq
        .clone()
        .sqrt()
        .div_scalar(bias_correction2_sqrt)
        .add_scalar(cfg.eps);
    // param.addcdiv_(exp_avg, denom, value=-step_size): self + (value * t1) / t2.
    let param = param + exp_avg.clone().mul_scalar(-step_size).div(denom);
    (param, exp_avg, exp_avg_sq)
}

struct StepMapper<'a, B: AutodiffBackend> {
    opt: &'a mut AdamW<B>,
    lr: f64,
    grads: GradientsParams,
    path: PathStack,
}

impl<B: AutodiffBackend> ModuleMapper<B> for StepMapper<'_, B> {
    fn enter_module(&mut self, name: &str, _container_type: &str) {
        self.path.enter(name);
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.exit();
    }

    fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
        let (id, tensor, mapper) = param.consume();
        if !tensor.is_require_grad() {
            return Param::from_mapped_value(id, tensor, mapper);
        }
        let Some(grad) = self.grads.remove::<B::InnerBackend, D>(id) else {
            return Param::from_mapped_value(id, tensor, mapper);
        };
        let updated = self
            .opt
            .update(self.path.current(), self.lr, tensor.inner(), grad);
        Param::from_mapped_value(id, Tensor::from_inner(updated).require_grad(), mapper)
    }
}
