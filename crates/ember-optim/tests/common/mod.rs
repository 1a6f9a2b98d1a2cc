//! Shared test helpers: the torch fixtures and a toy module whose parameter paths look like a LoRA
//! model's (`layers.0.q_proj.lora_a`, `norm.weight`).

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::PathBuf;

use burn::module::{Module, Param};
use burn::optim::GradientsParams;
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{Tensor, TensorData};
use serde::Deserialize;

pub fn fixture_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../fixtures/optim")
        .join(name)
}

#[derive(Debug, Deserialize)]
pub struct Trajectory {
    pub config: TrajectoryConfig,
    pub params: Vec<FixtureParam>,
    pub steps: Vec<FixtureStep>,
}

#[derive(Debug, Deserialize)]
pub struct TrajectoryConfig {
    pub lr: f64,
    pub betas: [f64; 2],
    pub eps: f64,
    pub weight_decay: f64,
    pub max_grad_norm: f64,
    pub lr_scheduler_type: String,
    pub warmup_ratio: f64,
    pub num_warmup_steps: u64,
    pub total_steps: u64,
}

#[derive(Debug, Deserialize)]
pub struct FixtureParam {
    pub name: String,
    pub shape: Vec<usize>,
    pub decay: bool,
    pub init: Vec<f32>,
}

#[derive(Debug, Deserialize)]
pub struct FixtureStep {
    pub lr: f64,
    pub grads: BTreeMap<String, Vec<f32>>,
    pub grad_norm: f64,
    pub clipped: bool,
    pub params: BTreeMap<String, Vec<f32>>,
    pub exp_avg: BTreeMap<String, Vec<f32>>,
    pub exp_avg_sq: BTreeMap<String, Vec<f32>>,
}

pub fn trajectory() -> Trajectory {
    let text = std::fs::read_to_string(fixture_path("adamw_trajectory.json")).expect("fixture");
    serde_json::from_str(&text).expect("fixture parses")
}

impl Trajectory {
    pub fn param(&self, name: &str) -> &FixtureParam {
        self.params
            .iter()
            .find(|p| p.name == name)
            .unwrap_or_else(|| panic!("fixture has no {name}"))
    }

    pub fn adamw_config(&self) -> ember_optim::AdamWConfig {
        ember_optim::AdamWConfig {
            beta1: self.config.betas[0],
            beta2: self.config.betas[1],
            eps: self.config.eps,
            weight_decay: self.config.weight_decay,
        }
    }

    pub fn scheduler(&self) -> ember_optim::LrScheduler {
        ember_optim::SchedulerArgs {
            lr_scheduler_type: self.config.lr_scheduler_type.clone(),
            warmup_ratio: self.config.warmup_ratio,
            ..Default::default()
        }
        .build(self.config.lr, self.config.total_steps)
        .expect("fixture schedule")
    }
}

pub const LORA_A: &str = "layers.0.q_proj.lora_a";
pub const LORA_B: &str = "layers.0.q_proj.lora_b";
pub const BIAS: &str = "layers.0.q_proj.bias";
pub const NORM: &str = "norm.weight";
pub const FROZEN: &str = "layers.0.q_proj.base";

#[derive(Module, Debug)]
pub struct QProj<B: Backend> {
    pub base: Param<Tensor<B, 2>>,
    pub lora_a: Param<Tensor<B, 2>>,
    pub lora_b: Param<Tensor<B, 2>>,
    pub bias: Param<Tensor<B, 1>>,
}

#[derive(Module, Debug)]
pub struct Layer<B: Backend> {
    pub q_proj: QProj<B>,
}

#[derive(Module, Debug)]
pub struct Norm<B: Backend> {
    pub weight: Param<Tensor<B, 1>>,
}

#[derive(Module, Debug)]
pub struct Toy<B: Backend> {
    pub layers: Vec<Layer<B>>,
    pub norm: Norm<B>,
}

/// How to build a [`Toy`]: per path, the values, shape and whether it is trainable.
#[derive(Clone)]
pub struct ToySpec {
    pub tensors: BTreeMap<String, (Vec<f32>, Vec<usize>, bool)>,
}

impl ToySpec {
    /// The fixture's initial values, plus a frozen 6x6 base weight.
    pub fn from_fixture(fx: &Trajectory) -> Self {
        let mut tensors = BTreeMap::new();
        for p in &fx.params {
            tensors.insert(p.name.clone(), (p.init.clone(), p.shape.clone(), true));
        }
        let base: Vec<f32> = (0..36).map(|i| (i as f32 * 0.37).sin()).collect();
        tensors.insert(FROZEN.to_string(), (base, vec![6, 6], false));
        Self { tensors }
    }

    pub fn set(mut self, name: &str, values: Vec<f32>, shape: Vec<usize>, trainable: bool) -> Self {
        self.tensors
            .insert(name.to_string(), (values, shape, trainable));
        self
    }

    pub fn build<B: Backend>(&self, device: &B::Device) -> Toy<B> {
        let p2 = |name: &str| -> Param<Tensor<B, 2>> {
            let (v, s, trainable) = &self.tensors[name];
            let t = Tensor::from_data(TensorData::new(v.clone(), s.clone()), device);
            Param::from_tensor(t).set_require_grad(*trainable)
        };
        let p1 = |name: &str| -> Param<Tensor<B, 1>> {
            let (v, s, trainable) = &self.tensors[name];
            let t = Tensor::from_data(TensorData::new(v.clone(), s.clone()), device);
            Param::from_tensor(t).set_require_grad(*trainable)
        };
        Toy {
            layers: vec![Layer {
                q_proj: QProj {
                    base: p2(FROZEN),
                    lora_a: p2(LORA_A),
                    lora_b: p2(LORA_B),
                    bias: p1(BIAS),
                },
            }],
            norm: Norm { weight: p1(NORM) },
        }
    }
}

impl<B: Backend> Toy<B> {
    /// Values of the parameter at `path`, as f32.
    pub fn values(&self, path: &str) -> Vec<f32> {
        let q = &self.layers[0].q_proj;
        let data = match path {
            LORA_A => q.lora_a.val().into_data(),
            LORA_B => q.lora_b.val().into_data(),
            BIAS => q.bias.val().into_data(),
            NORM => self.norm.weight.val().into_data(),
            FROZEN => q.base.val().into_data(),
            other => panic!("no parameter {other}"),
        };
        data.convert::<f32>().to_vec::<f32>().expect("f32 data")
    }

    /// A spec that rebuilds this module with its current values (fresh `ParamId`s, as in a new
    /// process).
    pub fn respec(&self, like: &ToySpec) -> ToySpec {
        let mut spec = like.clone();
        for (name, (values, _, _)) in spec.tensors.iter_mut() {
            *values = self.values(name);
        }
        spec
    }
}

/// The fixture's gradients for one step, registered for the toy module's parameters.
pub fn fixture_grads<B: AutodiffBackend>(
    module: &Toy<B>,
    fx: &Trajectory,
    step: &FixtureStep,
    device: &B::Device,
) -> GradientsParams {
    let mut grads = GradientsParams::new();
    let q = &module.layers[0].q_proj;
    let g = |name: &str| TensorData::new(step.grads[name].clone(), fx.param(name).shape.clone());
    grads.register::<B::InnerBackend, 2>(q.lora_a.id, Tensor::from_data(g(LORA_A), device));
    grads.register::<B::InnerBackend, 2>(q.lora_b.id, Tensor::from_data(g(LORA_B), device));
    grads.register::<B::InnerBackend, 1>(q.bias.id, Tensor::from_data(g(BIAS), device));
    grads.register::<B::InnerBackend, 1>(module.norm.weight.id, Tensor::from_data(g(NORM), device));
    grads
}

/// Largest elementwise error relative to the reference tensor's largest magnitude (as
/// `torch.testing` with `atol = rtol * max|ref|`). Elementwise relative error is meaningless for
/// entries that pass near zero: one f32 ulp of a 0.05-sized update is 4e-9, i.e. 4e-6 of a 1e-3
/// entry.
/// (NaN-aware: any non-finite element fails, naming its index.)
#[allow(unused_imports)] // each test binary uses a subset
pub use ember_testing::max_rel_diff as max_rel_err;

ember_testing::backend_coverage_test!();
