//! `Qwen3Config`, read from a Hugging Face `config.json`.

use std::path::Path;

use serde::Deserialize;

use crate::Qwen3Error;

/// The fields of HF's `Qwen3Config` that the model uses. Unknown fields are ignored (HF configs carry
/// many that do not change the math); defaults are HF's `Qwen3Config` defaults.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Qwen3Config {
    #[serde(default = "d::vocab_size")]
    pub vocab_size: usize,
    #[serde(default = "d::hidden_size")]
    pub hidden_size: usize,
    #[serde(default = "d::intermediate_size")]
    pub intermediate_size: usize,
    #[serde(default = "d::num_hidden_layers")]
    pub num_hidden_layers: usize,
    #[serde(default = "d::num_attention_heads")]
    pub num_attention_heads: usize,
    /// Defaults to `num_attention_heads` (no grouping) when absent, as in HF.
    #[serde(default)]
    pub num_key_value_heads: Option<usize>,
    #[serde(default = "d::head_dim")]
    pub head_dim: usize,
    #[serde(default = "d::hidden_act")]
    pub hidden_act: String,
    #[serde(default = "d::max_position_embeddings")]
    pub max_position_embeddings: usize,
    #[serde(default = "d::rope_theta")]
    pub rope_theta: f64,
    #[serde(default)]
    pub rope_scaling: Option<RopeScaling>,
    /// transformers 5 writes `rope_theta` and the scaling type here instead; folded into
    /// `rope_theta` / `rope_scaling` on load.
    #[serde(default)]
    pub rope_parameters: Option<RopeParameters>,
    #[serde(default = "d::rms_norm_eps")]
    pub rms_norm_eps: f64,
    #[serde(default)]
    pub tie_word_embeddings: bool,
    #[serde(default)]
    pub attention_bias: bool,
    /// `torch_dtype` (older transformers) or `dtype` (newer): the dtype the weights were saved in.
    #[serde(default, alias = "dtype")]
    pub torch_dtype: Option<String>,
    #[serde(default)]
    pub bos_token_id: Option<u32>,
    #[serde(default)]
    pub eos_token_id: Option<EosTokenId>,
    #[serde(default)]
    pub use_sliding_window: bool,
}

/// `eos_token_id` is an int or a list of ints in HF configs.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum EosTokenId {
    One(u32),
    Many(Vec<u32>),
}

impl EosTokenId {
    pub fn ids(&self) -> Vec<u32> {
        match self {
            Self::One(i) => vec![*i],
            Self::Many(v) => v.clone(),
        }
    }
}

/// `rope_scaling`: only the types whose math ember implements are accepted.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct RopeScaling {
    /// `rope_type` (current HF) or `type` (older configs).
    #[serde(alias = "type")]
    pub rope_type: String,
    #[serde(default)]
    pub factor: Option<f64>,
}

/// `rope_parameters` (transformers >= 5): `{"rope_type": "default", "rope_theta": 1e6, ...}`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct RopeParameters {
    #[serde(default, alias = "type")]
    pub rope_type: Option<String>,
    #[serde(default)]
    pub rope_theta: Option<f64>,
    #[serde(default)]
    pub factor: Option<f64>,
}

/// RoPE variants whose math ember implements.
pub const SUPPORTED_ROPE_TYPES: &[&str] = &["default", "linear"];

/// The `model_type` of the one architecture this crate implements. A config without the key is
/// taken as Qwen3 (hand-written and random-weight configs leave it out).
pub const MODEL_TYPE: &str = "qwen3";

/// Another architecture's config (`llama`, `qwen2`, `qwen3_moe`) would load with the wrong layers
/// (no q/k norms, biases, experts) or fail later on a weight name: refuse it by its `model_type`.
fn check_model_type(text: &str) -> Result<(), Qwen3Error> {
    #[derive(Deserialize)]
    struct Kind {
        model_type: Option<serde_json::Value>,
    }
    let kind: Kind = serde_json::from_str(text).map_err(|source| Qwen3Error::ConfigJson {
        path: "config.json".into(),
        source,
    })?;
    match kind.model_type {
        None => Ok(()),
        Some(serde_json::Value::String(t)) if t == MODEL_TYPE => Ok(()),
        Some(other) => Err(Qwen3Error::InvalidConfig {
            path: "config.json".into(),
            field: "model_type".into(),
            reason: format!("{other} is not supported: ember implements `{MODEL_TYPE}` only"),
        }),
    }
}

/// HF `Qwen3Config` defaults, one place.
mod d {
    pub fn vocab_size() -> usize {
        151_936
    }
    pub fn hidden_size() -> usize {
        4096
    }
    pub fn intermediate_size() -> usize {
        22_016
    }
    pub fn num_hidden_layers() -> usize {
        32
    }
    pub fn num_attention_heads() -> usize {
        32
    }
    pub fn head_dim() -> usize {
        128
    }
    pub fn hidden_act() -> String {
        "silu".into()
    }
    pub fn max_position_embeddings() -> usize {
        32_768
    }
    pub fn rope_theta() -> f64 {
        10_000.0
    }
    pub fn rms_norm_eps() -> f64 {
        1e-6
    }
}

impl Qwen3Config {
    /// Reads and validates `config.json`.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, Qwen3Error> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| Qwen3Error::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_json_str(&text).map_err(|e| match e {
            Qwen3Error::ConfigJson { source, .. } => Qwen3Error::ConfigJson {
                path: path.to_path_buf(),
                source,
            },
            Qwen3Error::InvalidConfig { field, reason, .. } => Qwen3Error::InvalidConfig {
                path: path.to_path_buf(),
                field,
                reason,
            },
            other => other,
        })
    }

    /// Parses and validates the text of a `config.json`.
    pub fn from_json_str(text: &str) -> Result<Self, Qwen3Error> {
        let mut cfg: Qwen3Config =
            serde_json::from_str(text).map_err(|source| Qwen3Error::ConfigJson {
                path: "config.json".into(),
                source,
            })?;
        if let Some(rp) = cfg.rope_parameters.take() {
            if let Some(theta) = rp.rope_theta {
                cfg.rope_theta = theta;
            }
            if let Some(rope_type) = rp.rope_type {
                if !SUPPORTED_ROPE_TYPES.contains(&rope_type.as_str()) {
                    return Err(Qwen3Error::InvalidConfig {
                        path: "config.json".into(),
                        field: "rope_parameters.rope_type".into(),
                        reason: format!(
                            "`{rope_type}` is not supported (supported: {})",
                            SUPPORTED_ROPE_TYPES.join(", ")
                        ),
                    });
                }
                cfg.rope_scaling = Some(RopeScaling {
                    rope_type,
                    factor: rp.factor,
                });
            }
        }
        check_model_type(text)?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Rejects configurations the model cannot run, naming the field.
    pub fn validate(&self) -> Result<(), Qwen3Error> {
        let bad = |field: &str, reason: String| {
            Err(Qwen3Error::InvalidConfig {
                path: "config.json".into(),
                field: field.to_string(),
                reason,
            })
        };
        for (field, v) in [
            ("vocab_size", self.vocab_size),
            ("hidden_size", self.hidden_size),
            ("intermediate_size", self.intermediate_size),
            ("num_hidden_layers", self.num_hidden_layers),
            ("num_attention_heads", self.num_attention_heads),
            ("head_dim", self.head_dim),
            ("max_position_embeddings", self.max_position_embeddings),
        ] {
            if v == 0 {
                return bad(field, "must be positive".into());
            }
        }
        let kv = self.kv_heads();
        if kv == 0 || !self.num_attention_heads.is_multiple_of(kv) {
            return bad(
                "num_key_value_heads",
                format!(
                    "{kv} does not divide num_attention_heads = {}",
                    self.num_attention_heads
                ),
            );
        }
        if !self.head_dim.is_multiple_of(2) {
            return bad(
                "head_dim",
                format!("{} must be even for RoPE", self.head_dim),
            );
        }
        if self.hidden_act != "silu" {
            return bad(
                "hidden_act",
                format!("`{}` is not supported (Qwen3 uses silu)", self.hidden_act),
            );
        }
        if self.rope_theta.is_nan() || self.rope_theta <= 0.0 {
            return bad(
                "rope_theta",
                format!("{} must be positive", self.rope_theta),
            );
        }
        if self.rms_norm_eps.is_nan() || self.rms_norm_eps <= 0.0 {
            return bad(
                "rms_norm_eps",
                format!("{} must be positive", self.rms_norm_eps),
            );
        }
        if self.use_sliding_window {
            return bad(
                "use_sliding_window",
                "sliding-window attention is not supported".into(),
            );
        }
        if let Some(rs) = &self.rope_scaling {
            match rs.rope_type.as_str() {
                "default" => {}
                "linear" => match rs.factor {
                    Some(f) if f > 0.0 => {}
                    _ => {
                        return bad(
                            "rope_scaling.factor",
                            "linear scaling needs factor > 0".into(),
                        );
                    }
                },
                other => {
                    return bad(
                        "rope_scaling.rope_type",
                        format!(
                            "`{other}` is not supported (supported: {})",
                            SUPPORTED_ROPE_TYPES.join(", ")
                        ),
                    );
                }
            }
        }
        Ok(())
    }

    /// Key/value heads (grouped-query attention).
    pub fn kv_heads(&self) -> usize {
        self.num_key_value_heads.unwrap_or(self.num_attention_heads)
    }

    /// The eos ids generation stops at.
    pub fn eos_ids(&self) -> Vec<u32> {
        self.eos_token_id
            .as_ref()
            .map_or_else(Vec::new, EosTokenId::ids)
    }

    /// Positions are divided by this factor before RoPE (1 without linear scaling).
    pub fn rope_position_scale(&self) -> f64 {
        match &self.rope_scaling {
            Some(RopeScaling {
                rope_type,
                factor: Some(f),
            }) if rope_type == "linear" => *f,
            _ => 1.0,
        }
    }
}
