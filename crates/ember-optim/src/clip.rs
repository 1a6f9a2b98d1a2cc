//! Global gradient-norm clipping, as `torch.nn.utils.clip_grad_norm_` with HF's `max_grad_norm`.
//!
//! Burn's own clipping is per parameter; HF clips by one norm over every trainable parameter.

use burn::module::{AutodiffModule, ModuleVisitor, Param};
use burn::optim::GradientsParams;
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::{ElementConversion, Tensor};

/// HF `TrainingArguments.max_grad_norm` default.
pub const DEFAULT_MAX_GRAD_NORM: f64 = 1.0;

/// Clips `grads` in place to a global 2-norm of at most `max_norm` and returns the norm *before*
/// clipping (what HF logs as `grad_norm`).
///
/// Numerics follow torch: the total is the 2-norm of the per-tensor 2-norms in f32, the factor is
/// `max_norm / (total + 1e-6)` clamped to 1, and every gradient is multiplied by it. A `max_norm`
/// of 0 (or less) disables clipping, as in HF; the norm is still computed and returned. Only
/// trainable parameters of `module` that have a gradient take part.
pub fn clip_grad_norm<B: AutodiffBackend, M: AutodiffModule<B>>(
    module: &M,
    grads: &mut GradientsParams,
    max_norm: f64,
) -> f64 {
    let mut norms = NormVisitor::<B> {
        grads,
        norms: Vec::new(),
    };
    module.visit(&mut norms);
    let NormVisitor { grads, norms } = norms;
    if norms.is_empty() {
        return 0.0;
    }
    // One device round trip for the whole model, not one per parameter.
    let total: f32 = Tensor::cat(norms, 0)
        .square()
        .sum()
        .sqrt()
        .into_scalar()
        .elem();

    if max_norm > 0.0 {
        let coef = clip_coef(max_norm, total);
        // torch multiplies by the clamped factor even when it is 1; that is exact, so skip it.
        // A NaN factor (non-finite norm) still propagates, as in torch.
        if coef.is_nan() || coef < 1.0 {
            module.visit(&mut ScaleVisitor::<B> {
                grads,
                coef,
                _b: Default::default(),
            });
        }
    }
    f64::from(total)
}

/// torch computes `max_norm / (total + 1e-6)` on f32 tensors, and a scalar divided by a tensor is
/// `tensor.reciprocal() * scalar`; then `clamp(max=1.0)`.
fn clip_coef(max_norm: f64, total: f32) -> f32 {
    let coef = (1.0f32 / (total + 1e-6f32)) * max_norm as f32;
    if coef > 1.0 { 1.0 } else { coef }
}

struct NormVisitor<'a, B: AutodiffBackend> {
    grads: &'a mut GradientsParams,
    norms: Vec<Tensor<B::InnerBackend, 1>>,
}

impl<B: AutodiffBackend> ModuleVisitor<B> for NormVisitor<'_, B> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        if !param.val().is_require_grad() {
            return;
        }
        if let Some(grad) = self.grads.get::<B::InnerBackend, D>(param.id) {
            let norm = grad
                .cast(burn::tensor::FloatDType::F32)
                .square()
                .sum()
                .sqrt();
            self.norms.push(norm);
        }
    }
}

struct ScaleVisitor<'a, B: AutodiffBackend> {
    grads: &'a mut GradientsParams,
    coef: f32,
    _b: std::marker::PhantomData<B>,
}

impl<B: AutodiffBackend> ModuleVisitor<B> for ScaleVisitor<'_, B> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        if !param.val().is_require_grad() {
            return;
        }
        if let Some(grad) = self.grads.remove::<B::InnerBackend, D>(param.id) {
            self.grads.register(param.id, grad.mul_scalar(self.coef));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::clip_coef;

    #[test]
    fn coefficient_is_clamped_to_one() {
        assert_eq!(clip_coef(1.0, 0.5), 1.0);
        assert!(clip_coef(1.0, 4.0) < 0.25 && clip_coef(1.0, 4.0) > 0.2499999);
        assert!(clip_coef(1.0, f32::NAN).is_nan());
        assert_eq!(clip_coef(1.0, f32::INFINITY), 0.0);
    }
}
