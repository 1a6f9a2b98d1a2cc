//! The PEFT adapter format: a directory with `adapter_model.safetensors` (keys
//! `base_model.model.<module path>.lora_A.weight` `[r, in]` and `.lora_B.weight` `[out, r]`, f32,
//! with DoRA also `.lora_magnitude_vector` `[out]`; `r` per module after `rank_pattern`) and
//! `adapter_config.json` (a dump of PEFT's `LoraConfig`). What ember saves PEFT, vLLM and
//! LLaMA-Factory load, and adapters they wrote load here; anything that does not fit the model is an
//! error naming the key.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use burn::tensor::{Tensor, backend::Backend};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::LoraError;
use crate::adapter::{LoraAdapter, LoraVariant};
use crate::config::{InitLoraWeights, LoraConfig, ModuleRank, check_patterns};
use crate::error::io_err;
use crate::model::{LoraModel, adapted_modules};
use crate::st::{self, MappedFile, OwnedTensor};
use crate::targets::{Patterns, TargetModules, TargetSelector};

/// File names PEFT uses (`peft/utils/constants.py`).
pub const ADAPTER_WEIGHTS: &str = "adapter_model.safetensors";
pub const ADAPTER_CONFIG: &str = "adapter_config.json";
/// The prefix of every key: `PeftModel.base_model` (`LoraModel`) `.model` (the HF model).
pub const KEY_PREFIX: &str = "base_model.model.";

/// The key of factor `A` or `B` of the module at `path`.
pub fn adapter_key(path: &str, factor: char) -> String {
    format!("{KEY_PREFIX}{path}.lora_{factor}.weight")
}

/// The key of DoRA's magnitude of the module at `path` (PEFT saves it without a `.weight`).
pub fn magnitude_key(path: &str) -> String {
    format!("{KEY_PREFIX}{path}.{MAGNITUDE}")
}

/// The last component of [`magnitude_key`], also the parameter's name in ember.
const MAGNITUDE: &str = "lora_magnitude_vector";

/// The fields of PEFT's `adapter_config.json` that decide what the adapter computes.
#[derive(Debug, Clone, PartialEq)]
pub struct AdapterConfig {
    pub r: usize,
    pub lora_alpha: f64,
    pub lora_dropout: f64,
    pub use_rslora: bool,
    pub target_modules: TargetModules,
    pub exclude_modules: Option<TargetModules>,
    pub layers_to_transform: Option<Vec<usize>>,
    pub layers_pattern: Option<Vec<String>>,
    pub init_lora_weights: InitLoraWeights,
    pub use_dora: bool,
    pub rank_pattern: Patterns<usize>,
    pub alpha_pattern: Patterns<f64>,
    pub base_model_name_or_path: Option<String>,
    pub task_type: Option<String>,
}

/// Settings PEFT supports and ember does not: present with a non-empty value, they are an error.
const UNSUPPORTED_WHEN_SET: &[&str] = &[
    "fan_in_fan_out",
    "lora_bias",
    "modules_to_save",
    "layer_replication",
    "target_parameters",
    "trainable_token_indices",
    "use_qalora",
    "alora_invocation_tokens",
    "use_bdlora",
    "arrow_config",
];

fn is_unset(v: &Value) -> bool {
    match v {
        Value::Null | Value::Bool(false) => true,
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
        Value::String(s) => s.is_empty(),
        Value::Number(_) => false,
        Value::Bool(true) => false,
    }
}

impl AdapterConfig {
    /// The PEFT view of ember's settings. With `lora_target = "all"`, `target_modules` lists the
    /// names of the `adapted` modules (as LLaMA-Factory writes them).
    pub fn from_lora_config(
        cfg: &LoraConfig,
        adapted: &[String],
        base_model_name_or_path: Option<&str>,
    ) -> Self {
        let target_modules = match &cfg.lora_target {
            TargetModules::AllLinear => {
                let names: BTreeSet<String> = adapted
                    .iter()
                    .map(|p| p.rsplit('.').next().unwrap_or(p).to_string())
                    .collect();
                TargetModules::Names(names.into_iter().collect())
            }
            other => other.clone(),
        };
        Self {
            r: cfg.lora_rank,
            lora_alpha: cfg.alpha(),
            lora_dropout: cfg.lora_dropout,
            use_rslora: cfg.use_rslora,
            target_modules,
            exclude_modules: None,
            layers_to_transform: cfg.layers_to_transform.clone(),
            layers_pattern: None,
            init_lora_weights: cfg.init_lora_weights.clone(),
            use_dora: cfg.use_dora,
            rank_pattern: cfg.rank_pattern.clone(),
            alpha_pattern: cfg.alpha_pattern.clone(),
            base_model_name_or_path: base_model_name_or_path.map(str::to_string),
            task_type: Some("CAUSAL_LM".into()),
        }
    }

    /// The rank and scaling of the adapter on the module at `path` (after the patterns).
    pub fn module_rank(&self, path: &str) -> ModuleRank {
        ModuleRank::resolve(
            path,
            (self.r, self.lora_alpha, self.use_rslora),
            &self.rank_pattern,
            &self.alpha_pattern,
        )
    }

    pub fn variant(&self) -> LoraVariant {
        if self.use_dora {
            LoraVariant::Dora
        } else {
            LoraVariant::Lora
        }
    }

    pub fn selector(&self) -> Result<TargetSelector, String> {
        TargetSelector::new(
            self.target_modules.clone(),
            self.exclude_modules.clone(),
            self.layers_to_transform.clone(),
            self.layers_pattern.clone(),
        )
    }

    /// The complete `adapter_config.json` PEFT 0.21 writes, with these settings.
    pub fn to_json(&self) -> Value {
        let targets = |t: &TargetModules| match t {
            TargetModules::Names(n) => json!(n),
            TargetModules::Regex(r) => json!(r),
            TargetModules::AllLinear => json!("all-linear"),
        };
        // PEFT writes integral alphas as ints.
        let number = |x: f64| {
            if x.fract() == 0.0 && x.abs() < 1e15 {
                json!(x as i64)
            } else {
                json!(x)
            }
        };
        let alpha = number(self.lora_alpha);
        // Keys sorted, as PEFT writes them (`json.dump(..., sort_keys=True)`), the patterns' too.
        let rank_pattern: serde_json::Map<String, Value> = self
            .rank_pattern
            .0
            .iter()
            .map(|(k, r)| (k.clone(), json!(r)))
            .collect();
        let alpha_pattern: serde_json::Map<String, Value> = self
            .alpha_pattern
            .0
            .iter()
            .map(|(k, a)| (k.clone(), number(*a)))
            .collect();
        json!({
            "alora_invocation_tokens": null,
            "alpha_pattern": alpha_pattern,
            "arrow_config": null,
            "auto_mapping": null,
            "base_model_name_or_path": self.base_model_name_or_path,
            "bias": "none",
            "corda_config": null,
            "ensure_weight_tying": false,
            "eva_config": null,
            "exclude_modules": self.exclude_modules.as_ref().map(targets),
            "fan_in_fan_out": false,
            "inference_mode": true,
            "init_lora_weights": self.init_lora_weights.as_json(),
            "layer_replication": null,
            "layers_pattern": self.layers_pattern,
            "layers_to_transform": self.layers_to_transform,
            "loftq_config": {},
            "lora_alpha": alpha,
            "lora_bias": false,
            "lora_dropout": self.lora_dropout,
            "megatron_config": null,
            "megatron_core": "megatron.core",
            "modules_to_save": null,
            "peft_type": "LORA",
            "qalora_group_size": 16,
            "r": self.r,
            "rank_pattern": rank_pattern,
            "revision": null,
            "target_modules": targets(&self.target_modules),
            "target_parameters": null,
            "task_type": self.task_type,
            "trainable_token_indices": null,
            "use_dora": self.use_dora,
            "use_qalora": false,
            "use_rslora": self.use_rslora,
        })
    }

    /// Reads the fields ember uses from an `adapter_config.json` of any PEFT version; settings ember
    /// does not implement are an error naming the field. `path` is for messages.
    pub fn from_json(v: &Value, path: &Path) -> Result<Self, LoraError> {
        let bad = |reason: String| LoraError::AdapterConfig {
            path: path.to_path_buf(),
            reason,
        };
        if !v.is_object() {
            return Err(bad("not a JSON object".into()));
        }
        // Every field accepts any JSON (`Shape::Other`), so this fails only on a non-object.
        let raw = PeftJson::deserialize(v).map_err(|e| bad(e.to_string()))?;
        raw.validate(path)
    }

    /// As [`AdapterConfig::from_json`], from the file's text: the patterns keep the file's order,
    /// which decides where two keys match one module (PEFT's files have them sorted).
    pub fn from_json_text(text: &str, path: &Path) -> Result<Self, LoraError> {
        let bad = |reason: String| LoraError::AdapterConfig {
            path: path.to_path_buf(),
            reason,
        };
        let v: Value = serde_json::from_str(text).map_err(|e| bad(e.to_string()))?;
        if !v.is_object() {
            return Err(bad("not a JSON object".into()));
        }
        let raw: PeftJson = serde_json::from_str(text).map_err(|e| bad(e.to_string()))?;
        raw.validate(path)
    }

    /// Reads `dir/adapter_config.json`.
    pub fn from_dir(dir: &Path) -> Result<Self, LoraError> {
        let path = dir.join(ADAPTER_CONFIG);
        let text = std::fs::read_to_string(&path).map_err(io_err(&path))?;
        Self::from_json_text(&text, &path)
    }
}

/// A field PEFT writes in one of a few shapes. Anything else lands in `Other`, kept for the message
/// [`PeftJson::validate`] gives (serde's own would not name the field).
#[derive(Deserialize)]
#[serde(untagged)]
enum Shape<T> {
    Ok(T),
    Other(Value),
}

/// A value or a list of them (PEFT accepts both for several fields).
#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany<T> {
    One(T),
    Many(Vec<T>),
}

/// `adapter_config.json` as written, the fields ember reads typed; `null` reads as absent (as in
/// PEFT). [`PeftJson::validate`] turns it into an [`AdapterConfig`].
#[derive(Deserialize)]
struct PeftJson {
    peft_type: Option<Shape<String>>,
    r: Option<Shape<u64>>,
    lora_alpha: Option<Shape<f64>>,
    lora_dropout: Option<Shape<f64>>,
    use_rslora: Option<Shape<bool>>,
    bias: Option<Shape<String>>,
    target_modules: Option<Shape<OneOrMany<String>>>,
    exclude_modules: Option<Shape<OneOrMany<String>>>,
    layers_to_transform: Option<Shape<OneOrMany<u64>>>,
    layers_pattern: Option<Shape<OneOrMany<String>>>,
    init_lora_weights: Option<Shape<InitLoraWeights>>,
    use_dora: Option<Shape<bool>>,
    rank_pattern: Option<Shape<Patterns<u64>>>,
    alpha_pattern: Option<Shape<Patterns<f64>>>,
    base_model_name_or_path: Option<Shape<String>>,
    task_type: Option<Shape<String>>,
    /// Everything else, checked against [`UNSUPPORTED_WHEN_SET`].
    #[serde(flatten)]
    rest: BTreeMap<String, Value>,
}

impl PeftJson {
    /// The checks and defaults of PEFT's `LoraConfig`, as far as ember implements them.
    fn validate(self, path: &Path) -> Result<AdapterConfig, LoraError> {
        let bad = |reason: String| LoraError::AdapterConfig {
            path: path.to_path_buf(),
            reason,
        };
        let unsupported = |field: &str, value: &Value, hint: Option<&str>| LoraError::Unsupported {
            context: path.display().to_string(),
            field: field.to_string(),
            value: value.to_string(),
            hint: hint.map(str::to_string),
        };
        match self.peft_type {
            Some(Shape::Ok(t)) if t == "LORA" => {}
            Some(Shape::Ok(t)) => {
                return Err(unsupported(
                    "peft_type",
                    &Value::String(t),
                    Some("only LORA adapters"),
                ));
            }
            Some(Shape::Other(v)) => {
                return Err(unsupported("peft_type", &v, Some("only LORA adapters")));
            }
            None => return Err(bad("`peft_type` is missing".into())),
        }
        for field in UNSUPPORTED_WHEN_SET {
            if let Some(v) = self.rest.get(*field).filter(|v| !is_unset(v)) {
                return Err(unsupported(field, v, None));
            }
        }
        match self.bias {
            None => {}
            Some(Shape::Ok(b)) if b == "none" => {}
            Some(Shape::Ok(b)) => {
                return Err(unsupported(
                    "bias",
                    &Value::String(b),
                    Some("only \"none\" is implemented"),
                ));
            }
            Some(Shape::Other(v)) => {
                return Err(unsupported(
                    "bias",
                    &v,
                    Some("only \"none\" is implemented"),
                ));
            }
        }
        let number = |k: &str, v: Option<Shape<f64>>, default: f64| match v {
            None => Ok(default),
            Some(Shape::Ok(x)) => Ok(x),
            Some(Shape::Other(v)) => Err(bad(format!("`{k}` is not a number: {v}"))),
        };
        let r = match self.r {
            None => 8,
            Some(Shape::Ok(r)) if r > 0 => r as usize,
            Some(Shape::Ok(r)) => {
                return Err(bad(format!("`r` must be a positive integer, found {r}")));
            }
            Some(Shape::Other(v)) => {
                return Err(bad(format!("`r` must be a positive integer, found {v}")));
            }
        };
        let targets = |k: &str, v: Option<Shape<OneOrMany<String>>>| match v {
            None => Ok(None),
            Some(Shape::Ok(OneOrMany::One(s))) if s == "all-linear" => {
                Ok(Some(TargetModules::AllLinear))
            }
            Some(Shape::Ok(OneOrMany::One(s))) => Ok(Some(TargetModules::Regex(s))),
            Some(Shape::Ok(OneOrMany::Many(n))) => Ok(Some(TargetModules::Names(n))),
            Some(Shape::Other(v)) => Err(bad(match first_not(&v, Value::is_string) {
                Some(x) => format!("`{k}` holds a non-string: {x}"),
                None => format!("`{k}` must be a list or a string, found {v}"),
            })),
        };
        let target_modules = targets("target_modules", self.target_modules)?.ok_or_else(|| {
            bad(
                "`target_modules` is missing (PEFT's per-architecture defaults are not supported)"
                    .into(),
            )
        })?;
        let layers_to_transform = match self.layers_to_transform {
            None => None,
            Some(Shape::Ok(OneOrMany::One(i))) => Some(vec![i as usize]),
            Some(Shape::Ok(OneOrMany::Many(v))) => {
                Some(v.into_iter().map(|i| i as usize).collect())
            }
            Some(Shape::Other(v)) => {
                return Err(bad(match (&v, first_not(&v, Value::is_u64)) {
                    (Value::Number(n), _) => format!("`layers_to_transform`: {n}"),
                    (_, Some(x)) => format!("`layers_to_transform` holds {x}"),
                    _ => format!("`layers_to_transform` must be an int or a list, found {v}"),
                }));
            }
        };
        let layers_pattern = match self.layers_pattern {
            None => None,
            Some(Shape::Ok(OneOrMany::One(s))) => Some(vec![s]),
            Some(Shape::Ok(OneOrMany::Many(v))) => Some(v),
            Some(Shape::Other(v)) => {
                return Err(bad(match first_not(&v, Value::is_string) {
                    Some(x) => format!("`layers_pattern` holds {x}"),
                    None => format!("`layers_pattern` must be a string or a list, found {v}"),
                }));
            }
        };
        let use_rslora = match self.use_rslora {
            None => false,
            Some(Shape::Ok(b)) => b,
            Some(Shape::Other(v)) => {
                return Err(bad(format!("`use_rslora` is not a boolean: {v}")));
            }
        };
        let use_dora = match self.use_dora {
            None => false,
            Some(Shape::Ok(b)) => b,
            Some(Shape::Other(v)) => {
                return Err(bad(format!("`use_dora` is not a boolean: {v}")));
            }
        };
        let rank_pattern = match self.rank_pattern {
            None => Patterns::default(),
            Some(Shape::Ok(p)) => Patterns(p.0.into_iter().map(|(k, r)| (k, r as usize)).collect()),
            Some(Shape::Other(v)) => {
                return Err(bad(format!(
                    "`rank_pattern` must map module patterns to positive integers, found {v}"
                )));
            }
        };
        let alpha_pattern = match self.alpha_pattern {
            None => Patterns::default(),
            Some(Shape::Ok(p)) => p,
            Some(Shape::Other(v)) => {
                return Err(bad(format!(
                    "`alpha_pattern` must map module patterns to numbers, found {v}"
                )));
            }
        };
        check_patterns(&rank_pattern, &alpha_pattern)
            .map_err(|(field, reason)| bad(format!("`{field}` {reason}")))?;
        // Informational fields: a value of another type is dropped, not an error.
        let text = |v: Option<Shape<String>>| match v {
            Some(Shape::Ok(s)) => Some(s),
            _ => None,
        };
        let cfg = AdapterConfig {
            r,
            lora_alpha: number("lora_alpha", self.lora_alpha, 8.0)?,
            lora_dropout: number("lora_dropout", self.lora_dropout, 0.0)?,
            use_rslora,
            target_modules,
            exclude_modules: targets("exclude_modules", self.exclude_modules)?,
            layers_to_transform,
            layers_pattern,
            init_lora_weights: match self.init_lora_weights {
                None => InitLoraWeights::default(),
                Some(Shape::Ok(i)) => i,
                Some(Shape::Other(v)) => InitLoraWeights::from_json(&v),
            },
            use_dora,
            rank_pattern,
            alpha_pattern,
            base_model_name_or_path: text(self.base_model_name_or_path),
            task_type: text(self.task_type),
        };
        if !(0.0..1.0).contains(&cfg.lora_dropout) {
            return Err(bad(format!(
                "`lora_dropout` = {} must be in [0, 1)",
                cfg.lora_dropout
            )));
        }
        cfg.selector().map_err(bad)?;
        Ok(cfg)
    }
}

/// The first element of the array `v` that fails `ok`; `None` when `v` is no array.
fn first_not(v: &Value, ok: fn(&Value) -> bool) -> Option<&Value> {
    v.as_array()?.iter().find(|x| !ok(x))
}

fn check_adapter_dir(dir: &Path) -> Result<(), LoraError> {
    let not = |reason: String| LoraError::NotAnAdapterDir {
        dir: dir.to_path_buf(),
        reason,
    };
    if !dir.is_dir() {
        return Err(not("no such directory".into()));
    }
    if !dir.join(ADAPTER_CONFIG).is_file() {
        return Err(not(format!("{ADAPTER_CONFIG} not found")));
    }
    if !dir.join(ADAPTER_WEIGHTS).is_file() {
        let legacy = if dir.join("adapter_model.bin").is_file() {
            " (only the legacy adapter_model.bin is there; resave it with safetensors)"
        } else {
            ""
        };
        return Err(not(format!("{ADAPTER_WEIGHTS} not found{legacy}")));
    }
    Ok(())
}

/// Which modules `cfg` adapts in `model`, with their `(in, out)` features.
fn targeted<B: Backend, M: LoraModel<B>>(
    model: &M,
    cfg: &AdapterConfig,
    config_path: &Path,
) -> Result<BTreeMap<String, (usize, usize)>, LoraError> {
    let selector = cfg.selector().map_err(|reason| LoraError::AdapterConfig {
        path: config_path.to_path_buf(),
        reason,
    })?;
    let linears = model.lora_linears();
    crate::model::check_layers(&selector, linears.iter().map(|(p, _)| p.as_str())).map_err(
        |e| LoraError::AdapterConfig {
            path: config_path.to_path_buf(),
            reason: e.to_string(),
        },
    )?;
    let outputs = model.output_layers();
    Ok(linears
        .into_iter()
        .filter(|(p, _)| selector.selects(p, &outputs))
        .map(|(p, l)| (p, l.dims()))
        .collect())
}

/// Writes the model's adapters in PEFT's format to `dir` (created if needed). `cfg` must describe
/// them (rank, targets and scaling are checked), so that PEFT rebuilds the same model.
pub fn save_peft<B: Backend, M: LoraModel<B>>(
    model: &M,
    cfg: &AdapterConfig,
    dir: &Path,
) -> Result<(), LoraError> {
    let adapted = adapted_modules(model);
    if adapted.is_empty() {
        return Err(LoraError::NoAdapters);
    }
    let config_path = dir.join(ADAPTER_CONFIG);
    let wanted = targeted(model, cfg, &config_path)?;
    let mismatch = |reason: String| LoraError::InvalidConfig {
        field: "adapter config".into(),
        reason,
    };
    let have: BTreeSet<&String> = adapted.iter().collect();
    let want: BTreeSet<&String> = wanted.keys().collect();
    if have != want {
        let extra: Vec<_> = have.difference(&want).collect();
        let missing: Vec<_> = want.difference(&have).collect();
        return Err(mismatch(format!(
            "its targets do not match the model's adapters (adapted but not targeted: {extra:?}; targeted but not adapted: {missing:?})"
        )));
    }
    let mut tensors: Vec<(String, OwnedTensor)> = Vec::new();
    for (path, layer) in model.lora_linears() {
        let Some(adapter) = layer.adapter() else {
            continue;
        };
        let want = cfg.module_rank(&path);
        if layer.rank() != Some(want.r) {
            return Err(mismatch(format!(
                "{path} has rank {:?}, the config says r = {}",
                layer.rank(),
                want.r
            )));
        }
        if (adapter.scaling - want.scaling).abs() > 1e-9 * want.scaling.abs() {
            return Err(mismatch(format!(
                "{path} has scaling {}, the config gives {}",
                adapter.scaling, want.scaling
            )));
        }
        if adapter.variant != cfg.variant() {
            return Err(mismatch(format!(
                "{path} is a {:?} adapter, the config says use_dora = {}",
                adapter.variant, cfg.use_dora
            )));
        }
        let f32_data = |data: burn::tensor::TensorData| {
            OwnedTensor::from_data(data.convert::<f32>())
                .ok_or_else(|| mismatch("adapter is not f32".into()))
        };
        for (factor, p) in [('A', &adapter.lora_a), ('B', &adapter.lora_b)] {
            let data = p.val().detach().cast(burn::tensor::DType::F32).into_data();
            tensors.push((adapter_key(&path, factor), f32_data(data)?));
        }
        if let Some(m) = &adapter.lora_magnitude_vector {
            let data = m.val().detach().cast(burn::tensor::DType::F32).into_data();
            tensors.push((magnitude_key(&path), f32_data(data)?));
        }
    }
    std::fs::create_dir_all(dir).map_err(io_err(dir))?;
    tensors.sort_by(|x, y| x.0.cmp(&y.0));
    st::write(
        tensors.iter().map(|(k, t)| (k.clone(), t)),
        st::pt_metadata(),
        &dir.join(ADAPTER_WEIGHTS),
    )?;
    let text = serde_json::to_string_pretty(&cfg.to_json()).map_err(|e| mismatch(e.to_string()))?;
    std::fs::write(&config_path, text + "\n").map_err(io_err(&config_path))?;
    Ok(())
}

/// The factors of one module read from an adapter file, checked against the model.
struct Factors {
    a: burn::tensor::TensorData,
    b: burn::tensor::TensorData,
    /// DoRA's magnitude.
    m: Option<burn::tensor::TensorData>,
}

/// Reads a PEFT adapter directory and checks it against `model` without changing the model.
fn read_checked<B: Backend, M: LoraModel<B>>(
    model: &M,
    dir: &Path,
) -> Result<(AdapterConfig, BTreeMap<String, Factors>), LoraError> {
    check_adapter_dir(dir)?;
    let cfg = AdapterConfig::from_dir(dir)?;
    let weights_path: PathBuf = dir.join(ADAPTER_WEIGHTS);
    let file = MappedFile::open(&weights_path)?;
    let wanted = targeted(model, &cfg, &dir.join(ADAPTER_CONFIG))?;
    let all_linears: BTreeMap<String, (usize, usize)> = model
        .lora_linears()
        .into_iter()
        .map(|(p, l)| (p, l.dims()))
        .collect();
    let unexpected = |key: &str, reason: String| LoraError::UnexpectedKey {
        path: weights_path.clone(),
        key: key.to_string(),
        reason,
    };

    let st = file.tensors()?;
    let mut keys: Vec<String> = st.names().into_iter().map(str::to_string).collect();
    keys.sort();
    type Slot = Option<burn::tensor::TensorData>;
    let mut found: BTreeMap<String, (Slot, Slot, Slot)> = BTreeMap::new();
    for key in &keys {
        let Some(rest) = key.strip_prefix(KEY_PREFIX) else {
            return Err(unexpected(
                key,
                format!("PEFT adapter keys start with `{KEY_PREFIX}`"),
            ));
        };
        let (module, factor) = if let Some(m) = rest.strip_suffix(".lora_A.weight") {
            (m, 'A')
        } else if let Some(m) = rest.strip_suffix(".lora_B.weight") {
            (m, 'B')
        } else if let Some(m) = rest.strip_suffix(&format!(".{MAGNITUDE}")) {
            if !cfg.use_dora {
                return Err(unexpected(
                    key,
                    format!("a DoRA magnitude, but {ADAPTER_CONFIG} does not set `use_dora`"),
                ));
            }
            (m, 'm')
        } else {
            return Err(unexpected(
                key,
                "not a LoRA factor (`.lora_A.weight` / `.lora_B.weight`) or DoRA magnitude (`.lora_magnitude_vector`); LoRA biases, embeddings and modules_to_save are not supported".into(),
            ));
        };
        let Some(&(inp, out)) = all_linears.get(module) else {
            return Err(unexpected(
                key,
                format!(
                    "the base model has no linear layer `{module}` (an adapter for another base model?)"
                ),
            ));
        };
        if !wanted.contains_key(module) {
            return Err(unexpected(
                key,
                format!(
                    "`{module}` is not a target of {ADAPTER_CONFIG} (target_modules {})",
                    cfg.target_modules.describe()
                ),
            ));
        }
        let data = st::read_f32(&file, key)?;
        let shape = data.shape.to_vec();
        let r = cfg.module_rank(module).r;
        let (expected, rank_dim) = match factor {
            'A' => (vec![r, inp], 0),
            'B' => (vec![out, r], 1),
            _ => (vec![out], 0),
        };
        if factor != 'm'
            && shape.len() == 2
            && shape[rank_dim] != r
            && shape[1 - rank_dim] == expected[1 - rank_dim]
        {
            return Err(LoraError::RankMismatch {
                path: weights_path.clone(),
                key: key.clone(),
                expected: r,
                found: shape[rank_dim],
                rank_from: match cfg.rank_pattern.key_for(module) {
                    Some(k) => format!("rank_pattern `{k}`"),
                    None => "r".into(),
                },
            });
        }
        if shape != expected {
            return Err(LoraError::ShapeMismatch {
                path: weights_path.clone(),
                key: key.clone(),
                expected,
                found: shape,
            });
        }
        let slot = found.entry(module.to_string()).or_default();
        match factor {
            'A' => slot.0 = Some(data),
            'B' => slot.1 = Some(data),
            _ => slot.2 = Some(data),
        }
    }
    let mut factors = BTreeMap::new();
    for module in wanted.keys() {
        let missing = |factor: char, reason: &str| LoraError::MissingKey {
            path: weights_path.clone(),
            key: adapter_key(module, factor),
            reason: reason.to_string(),
        };
        match found.remove(module) {
            Some((Some(_), Some(_), None)) if cfg.use_dora => {
                return Err(LoraError::MissingKey {
                    path: weights_path.clone(),
                    key: magnitude_key(module),
                    reason: format!("{ADAPTER_CONFIG} sets `use_dora`"),
                });
            }
            Some((Some(a), Some(b), m)) => {
                factors.insert(module.clone(), Factors { a, b, m });
            }
            Some((None, _, _)) => {
                return Err(missing(
                    'A',
                    "the module has other adapter keys but not lora_A",
                ));
            }
            Some((_, None, _)) => {
                return Err(missing(
                    'B',
                    "the module has other adapter keys but not lora_B",
                ));
            }
            None => {
                return Err(missing(
                    'A',
                    &format!(
                        "{ADAPTER_CONFIG} targets this module (target_modules {})",
                        cfg.target_modules.describe()
                    ),
                ));
            }
        }
    }
    Ok((cfg, factors))
}

/// Loads a PEFT adapter directory into `model`: the targeted layers get its factors (f32) and scaling,
/// every other layer loses its adapter. Nothing changes when the adapter does not fit the model.
pub fn load_peft<B: Backend, M: LoraModel<B>>(
    model: &mut M,
    dir: &Path,
) -> Result<AdapterConfig, LoraError> {
    let (cfg, mut factors) = read_checked(model, dir)?;
    for (path, layer) in model.lora_linears_mut() {
        layer.remove_adapter();
        if let Some(f) = factors.remove(&path) {
            let device = layer.weight.device();
            let mut adapter = LoraAdapter::new(
                cfg.variant(),
                Tensor::from_data(f.a, &device),
                Tensor::from_data(f.b, &device),
                cfg.module_rank(&path).scaling,
                cfg.lora_dropout,
            );
            if let Some(m) = f.m {
                adapter.set_magnitude(Tensor::from_data(m, &device));
            }
            layer.install(adapter);
        }
    }
    Ok(cfg)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(v: Value) -> Result<AdapterConfig, String> {
        AdapterConfig::from_json(&v, Path::new("adapter_config.json")).map_err(|e| e.to_string())
    }

    fn with(key: &str, value: Value) -> Result<AdapterConfig, String> {
        let mut v = json!({"peft_type": "LORA", "r": 4, "target_modules": ["q_proj"]});
        v[key] = value;
        read(v)
    }

    #[test]
    fn reads_peft_defaults_and_shapes() {
        let c = read(json!({
            "peft_type": "LORA",
            "target_modules": "all-linear",
            "layers_to_transform": 1,
            "layers_pattern": "layers",
            "lora_alpha": 16,
            "use_dora": false,
            "modules_to_save": null,
            "task_type": null,
        }))
        .expect("valid");
        assert_eq!(c.r, 8);
        assert_eq!(c.lora_alpha, 16.0);
        assert_eq!(c.target_modules, TargetModules::AllLinear);
        assert_eq!(c.layers_to_transform, Some(vec![1]));
        assert_eq!(c.layers_pattern, Some(vec!["layers".to_string()]));
        assert_eq!(c.init_lora_weights, InitLoraWeights::Kaiming);
        assert_eq!(c.task_type, None);
        let c = with("target_modules", json!("^.*q_proj$")).expect("regex");
        assert_eq!(c.target_modules, TargetModules::Regex("^.*q_proj$".into()));
        let c = with("init_lora_weights", json!("gaussian")).expect("gaussian");
        assert_eq!(c.init_lora_weights, InitLoraWeights::Gaussian);
    }

    #[test]
    fn errors_name_the_field_and_value() {
        let e = |r: Result<AdapterConfig, String>| r.expect_err("invalid");
        assert!(e(read(json!([1]))).contains("not a JSON object"));
        assert!(e(read(json!({"r": 4}))).contains("`peft_type` is missing"));
        let ia3 = e(with("peft_type", json!("IA3")));
        assert!(ia3.contains("`peft_type` = \"IA3\" is not supported (only LORA adapters)"));
        assert!(
            e(with("fan_in_fan_out", json!(true)))
                .contains("`fan_in_fan_out` = true is not supported")
        );
        assert!(e(with("use_dora", json!("yes"))).contains("`use_dora` is not a boolean"));
        assert!(e(with("rank_pattern", json!({"q_proj": 0}))).contains("a rank must be positive"));
        assert!(e(with("rank_pattern", json!([4]))).contains("`rank_pattern` must map"));
        assert!(
            e(with("alpha_pattern", json!({"(": 4}))).contains("not a valid regular expression")
        );
        assert!(e(with("bias", json!("all"))).contains("only \"none\" is implemented"));
        assert!(e(with("r", json!(0))).contains("`r` must be a positive integer, found 0"));
        assert!(e(with("r", json!(2.5))).contains("`r` must be a positive integer, found 2.5"));
        assert!(e(with("lora_alpha", json!("8"))).contains("`lora_alpha` is not a number: \"8\""));
        assert!(e(with("lora_dropout", json!(1.0))).contains("must be in [0, 1)"));
        assert!(
            e(with("target_modules", json!(["q_proj", 3])))
                .contains("`target_modules` holds a non-string: 3")
        );
        assert!(
            e(with("exclude_modules", json!(7)))
                .contains("`exclude_modules` must be a list or a string, found 7")
        );
        assert!(e(with("target_modules", Value::Null)).contains("`target_modules` is missing"));
        assert!(e(with("layers_to_transform", json!(-1))).contains("`layers_to_transform`: -1"));
        assert!(
            e(with("layers_to_transform", json!([0, "a"])))
                .contains("`layers_to_transform` holds \"a\"")
        );
        assert!(e(with("layers_pattern", json!([1]))).contains("`layers_pattern` holds 1"));
        assert!(e(with("use_rslora", json!("yes"))).contains("`use_rslora` is not a boolean"));
    }
}
