//! Trainable parameters by stable path name.
//!
//! Optimizer state is keyed by the dotted path the module visitor reports
//! (`model.layers.0.self_attn.q_proj.lora_a`), never by `ParamId`: ids are random per process, and a
//! resumed run must find its moments again.

use burn::module::{AutodiffModule, ModuleVisitor, Param, ParamId};
use burn::tensor::Tensor;
use burn::tensor::backend::{AutodiffBackend, Backend};

/// One trainable (`require_grad`) float parameter of a module.
#[derive(Debug, Clone)]
pub struct TrainableParam<B: Backend> {
    /// Dotted path, e.g. `layers.0.q_proj.lora_a`.
    pub path: String,
    pub id: ParamId,
    pub shape: Vec<usize>,
    pub device: B::Device,
}

impl<B: Backend> TrainableParam<B> {
    pub fn num_elements(&self) -> usize {
        self.shape.iter().product()
    }
}

/// The module's trainable float parameters in visiting order. Frozen ones are left out: they get
/// no optimizer state and are never touched.
pub fn trainable_params<B: AutodiffBackend, M: AutodiffModule<B>>(
    module: &M,
) -> Vec<TrainableParam<B>> {
    let mut visitor = Collect {
        path: PathStack::default(),
        out: Vec::new(),
    };
    module.visit(&mut visitor);
    visitor.out
}

/// Hugging Face's rule for which parameters get no weight decay (`Trainer.get_decay_parameter_names`):
/// any path that, lower-cased, contains `bias`, `layernorm` or `rmsnorm`, or has a segment `norm`
/// or ending in `_norm`. LoRA A/B matrices are decayed.
pub fn hf_no_decay(path: &str) -> bool {
    let p = path.to_lowercase();
    ["bias", "layernorm", "rmsnorm"]
        .iter()
        .any(|pat| p.contains(pat))
        || p.split('.')
            .any(|seg| seg == "norm" || seg.ends_with("_norm"))
}

/// Tracks the dotted path through `enter_module`/`exit_module` calls. Burn calls `enter_module`
/// for the parameter's own field too, so the stack already ends with the parameter's name.
#[derive(Debug, Default)]
pub(crate) struct PathStack(Vec<String>);

impl PathStack {
    pub(crate) fn enter(&mut self, name: &str) {
        self.0.push(name.to_string());
    }

    pub(crate) fn exit(&mut self) {
        self.0.pop();
    }

    pub(crate) fn current(&self) -> String {
        self.0.join(".")
    }
}

struct Collect<B: Backend> {
    path: PathStack,
    out: Vec<TrainableParam<B>>,
}

impl<B: Backend> ModuleVisitor<B> for Collect<B> {
    fn enter_module(&mut self, name: &str, _container_type: &str) {
        self.path.enter(name);
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.exit();
    }

    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        let tensor = param.val();
        if tensor.is_require_grad() {
            self.out.push(TrainableParam {
                path: self.path.current(),
                id: param.id,
                shape: tensor.shape().to_vec(),
                device: tensor.device(),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::hf_no_decay;

    #[test]
    fn hf_decay_rule_matches_transformers_patterns() {
        for exempt in [
            "model.layers.0.input_layernorm.weight",
            "model.layers.0.post_attention_layernorm.weight",
            "model.layers.3.self_attn.q_norm.weight",
            "model.norm.weight",
            "norm.gamma",
            "encoder.LayerNorm.weight",
            "proj.bias",
            "model.rmsnorm_final.weight",
        ] {
            assert!(hf_no_decay(exempt), "{exempt} should be exempt");
        }
        for decayed in [
            "model.layers.0.self_attn.q_proj.lora_a",
            "model.layers.0.mlp.down_proj.lora_b",
            "model.embed_tokens.weight",
            "normalizer.weight",
            "norms.weight",
            "lm_head.weight",
        ] {
            assert!(!hf_no_decay(decayed), "{decayed} should be decayed");
        }
    }
}
