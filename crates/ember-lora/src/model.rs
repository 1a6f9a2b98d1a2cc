//! [`LoraModel`]: what a model exposes so that this crate can add, save, load and merge adapters
//! without knowing the model. A model implements it by listing its [`LoraLinear`] layers under
//! their Hugging Face module paths (`model.layers.0.self_attn.q_proj`); everything else here is
//! generic over it.

use burn::module::Module;
use burn::tensor::{Tensor, TensorData, backend::Backend};
use rand::{Rng, SeedableRng};

use crate::adapter::LoraAdapter;
use crate::config::{InitLoraWeights, LoraConfig};
use crate::seed::{fnv1a, normal, splitmix64};
use crate::targets::TargetSelector;
use crate::{LoraError, LoraLinear};

/// A model whose linear layers can carry LoRA adapters.
pub trait LoraModel<B: Backend>: Module<B> {
    /// Every [`LoraLinear`] of the model with its HF module path, in a stable order.
    fn lora_linears(&self) -> Vec<(String, &LoraLinear<B>)>;

    /// The same layers, mutably, in the same order.
    fn lora_linears_mut(&mut self) -> Vec<(String, &mut LoraLinear<B>)>;

    /// Module names that `lora_target = "all"` leaves out: the output layer (`lm_head` in HF causal
    /// language models, as LLaMA-Factory's `find_all_linear_modules` and PEFT's `all-linear`).
    fn output_layers(&self) -> Vec<String> {
        vec!["lm_head".to_string()]
    }

    /// The shapes the parameter report needs, read from the model.
    fn shape(&self) -> ModelShape {
        let linears = self.lora_linears();
        let adapter_params: usize = linears.iter().map(|(_, l)| adapter_params(l)).sum();
        ModelShape {
            linears: linears
                .iter()
                .map(|(path, l)| {
                    let (in_features, out_features) = l.dims();
                    LinearShape {
                        path: path.clone(),
                        in_features,
                        out_features,
                    }
                })
                .collect(),
            base_params: (self.num_params() - adapter_params) as u64,
            output_layers: self.output_layers(),
        }
    }
}

fn adapter_params<B: Backend>(l: &LoraLinear<B>) -> usize {
    l.adapter().map_or(0, LoraAdapter::num_adapter_params)
}

/// One adaptable linear layer: its HF module path and features.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinearShape {
    pub path: String,
    pub in_features: usize,
    pub out_features: usize,
}

/// What the trainable-parameter report needs, without any weights: a model can compute it from its
/// config alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelShape {
    pub linears: Vec<LinearShape>,
    /// All parameters of the base model, tied ones counted once (as `named_parameters()`).
    pub base_params: u64,
    /// See [`LoraModel::output_layers`].
    pub output_layers: Vec<String>,
}

/// `layers_to_transform` must name layers the model has: PEFT would silently adapt fewer layers.
pub(crate) fn check_layers<'a>(
    selector: &TargetSelector,
    paths: impl Iterator<Item = &'a str>,
) -> Result<(), LoraError> {
    let mut present: Vec<usize> = paths.filter_map(|p| selector.layer_index(p)).collect();
    present.sort();
    present.dedup();
    let missing = selector.missing_layers(&present);
    if missing.is_empty() {
        return Ok(());
    }
    Err(LoraError::MissingLayers {
        missing: format!("{missing:?}"),
        present: match (present.first(), present.last()) {
            (Some(a), Some(b)) => format!("layers {a} to {b}"),
            _ => "no numbered layers".into(),
        },
    })
}

impl ModelShape {
    /// The paths of the linear layers `selector` adapts; an error when there are none.
    pub fn select(&self, selector: &TargetSelector) -> Result<Vec<&LinearShape>, LoraError> {
        let paths = self.linears.iter().map(|l| l.path.as_str());
        let unknown = selector.unmatched_names(paths.clone());
        if !unknown.is_empty() {
            return Err(LoraError::UnknownTargets {
                names: unknown.join(", "),
                available: self.leaf_names().join(", "),
            });
        }
        check_layers(selector, paths)?;
        let chosen: Vec<&LinearShape> = self
            .linears
            .iter()
            .filter(|l| selector.selects(&l.path, &self.output_layers))
            .collect();
        if chosen.is_empty() {
            return Err(LoraError::NoTargets {
                targets: selector.targets().describe(),
                available: self.leaf_names().join(", "),
            });
        }
        Ok(chosen)
    }

    /// The last path component of each linear layer (`q_proj`, ...), sorted, once each.
    fn leaf_names(&self) -> Vec<&str> {
        let mut leaves: Vec<&str> = self
            .linears
            .iter()
            .map(|l| l.path.rsplit('.').next().unwrap_or(&l.path))
            .collect();
        leaves.sort();
        leaves.dedup();
        leaves
    }
}

/// The seed of the layer at `path` for a run-wide `seed`.
pub fn layer_seed(seed: u64, path: &str) -> u64 {
    splitmix64(seed ^ splitmix64(fnv1a(path)))
}

/// `n` draws of U(-bound, bound) in f32.
fn uniform(rng: &mut impl Rng, n: usize, bound: f64) -> Vec<f32> {
    (0..n)
        .map(|_| ((rng.random::<f64>() * 2.0 - 1.0) * bound) as f32)
        .collect()
}

/// The initial `(A [r, in], B [out, r])` of one layer, drawn on the host so that every backend gets the
/// same values for the same `(seed, path)`.
pub fn initial_factors(
    init: &InitLoraWeights,
    r: usize,
    in_features: usize,
    out_features: usize,
    seed: u64,
    path: &str,
) -> (TensorData, TensorData) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(layer_seed(seed, path));
    let a_bound = 1.0 / (in_features as f64).sqrt();
    let a = match init {
        InitLoraWeights::Gaussian => normal(&mut rng, r * in_features, 1.0 / r as f64),
        _ => uniform(&mut rng, r * in_features, a_bound),
    };
    let b = match init {
        InitLoraWeights::Random => uniform(&mut rng, out_features * r, 1.0 / (r as f64).sqrt()),
        _ => vec![0.0; out_features * r],
    };
    (
        TensorData::new(a, [r, in_features]),
        TensorData::new(b, [out_features, r]),
    )
}

/// Adds a freshly initialised adapter to every linear layer `cfg` targets (replacing adapters already
/// there; other layers lose theirs) and returns the adapted paths. The initialisation is seeded and
/// the same on every backend; each module gets its rank and scaling from
/// [`LoraConfig::module_rank`] and its variant from [`LoraConfig::variant`] (DoRA's magnitude starts
/// from the base weight). Only the adapters' parameters are trainable afterwards.
pub fn apply_lora<B: Backend, M: LoraModel<B>>(
    model: &mut M,
    cfg: &LoraConfig,
    seed: u64,
) -> Result<Vec<String>, LoraError> {
    cfg.validate()?;
    let selector = cfg.selector()?;
    let shape = model.shape();
    let chosen: Vec<String> = shape
        .select(&selector)?
        .into_iter()
        .map(|l| l.path.clone())
        .collect();
    cfg.check_patterns_for(chosen.iter().map(String::as_str))?;
    for (path, layer) in model.lora_linears_mut() {
        layer.remove_adapter();
        if !chosen.contains(&path) {
            continue;
        }
        let (inp, out) = layer.dims();
        let rank = cfg.module_rank(&path);
        let (a, b) = initial_factors(&cfg.init_lora_weights, rank.r, inp, out, seed, &path);
        let device = layer.weight.device();
        let mut adapter = LoraAdapter::new(
            cfg.variant(),
            Tensor::from_data(a, &device),
            Tensor::from_data(b, &device),
            rank.scaling,
            cfg.lora_dropout,
        );
        adapter.dropout_seed = layer_seed(seed, &path);
        layer.install(adapter);
    }
    Ok(chosen)
}

/// The paths of the layers that carry an adapter.
pub fn adapted_modules<B: Backend, M: LoraModel<B>>(model: &M) -> Vec<String> {
    model
        .lora_linears()
        .into_iter()
        .filter(|(_, l)| l.has_adapter())
        .map(|(p, _)| p)
        .collect()
}

/// Gives every adapter the dropout seed `layer_seed(seed, path)`. Call it before each training forward
/// with a new `seed` (e.g. derived from the run seed and the micro-batch number); calling it again with
/// the same `seed` replays the same masks. See [`crate::linear`] for how masks are drawn.
pub fn set_dropout_seed<B: Backend, M: LoraModel<B>>(model: &mut M, seed: u64) {
    for (path, layer) in model.lora_linears_mut() {
        if let Some(adapter) = layer.adapter_mut() {
            adapter.dropout_seed = layer_seed(seed, &path);
        }
    }
}

/// Removes every adapter (unmerging merged ones first).
pub fn remove_adapters<B: Backend, M: LoraModel<B>>(model: &mut M) {
    for (_, layer) in model.lora_linears_mut() {
        layer.remove_adapter();
    }
}
