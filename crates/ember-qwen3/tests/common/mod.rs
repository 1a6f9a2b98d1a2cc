//! Helpers shared by ember-qwen3's integration tests (each test binary uses a subset).
#![allow(dead_code)]

use std::path::PathBuf;

use burn::module::{ModuleMapper, Param};
use burn::tensor::{Tensor, TensorData, backend::Backend};
use ember_qwen3::Qwen3Config;

/// The repository's `fixtures/`.
pub fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures")
}

/// The config of a shipped tiny model: `qwen3-tiny` (untied, GQA) or `qwen3-tiny-tied`.
pub fn tiny_config(tied: bool) -> Qwen3Config {
    let dir = if tied {
        "qwen3-tiny-tied"
    } else {
        "qwen3-tiny"
    };
    Qwen3Config::from_file(fixtures().join("tiny").join(dir).join("config.json")).expect("config")
}

/// A small deterministic pseudo-random stream (no backend RNG, so every backend sees the same data).
pub struct Lcg(pub u64);
impl Lcg {
    pub fn next(&mut self) -> f32 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((self.0 >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }
    pub fn vec(&mut self, n: usize, scale: f32) -> Vec<f32> {
        (0..n).map(|_| self.next() * scale).collect()
    }
}

// NaN-aware: any non-finite element fails, naming its index.
#[allow(unused_imports)] // each test binary uses a subset
pub use ember_testing::{max_abs, max_abs_diff, max_rel_diff};

pub fn to_vec<B: Backend, const D: usize>(t: Tensor<B, D>) -> Vec<f32> {
    t.into_data().convert::<f32>().to_vec().expect("f32")
}

/// Adds small pseudo-random values to every trainable (LoRA) parameter: B factors start at zero,
/// which would hide every mistake in them.
pub struct Perturb(pub Lcg);
impl<B: Backend> ModuleMapper<B> for Perturb {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
        if !param.val().is_require_grad() {
            return param;
        }
        let (id, t, mapper) = param.consume();
        let shape = t.dims();
        let n: usize = shape.iter().product();
        let device = t.device();
        let v: Vec<f32> = to_vec(t)
            .iter()
            .zip(self.0.vec(n, 0.1))
            .map(|(x, e)| x + e)
            .collect();
        let fresh = Tensor::<B, D>::from_data(TensorData::new(v, shape), &device).require_grad();
        Param::from_mapped_value(id, fresh, mapper)
    }
}

ember_testing::backend_coverage_test!();
