//! [`LoraConfig`]: the adapter settings under LLaMA-Factory's / PEFT's names, read from a TOML
//! `[lora]` section (or any serde format). Unknown fields are rejected.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::LoraError;
use crate::adapter::LoraVariant;
use crate::targets::{Patterns, TargetModules, TargetSelector};

/// How the adapter factors start (PEFT `init_lora_weights`).
#[derive(Debug, Clone, PartialEq, Default)]
pub enum InitLoraWeights {
    /// `true` (PEFT's default): A ~ kaiming-uniform, i.e. U(-1/sqrt(in), 1/sqrt(in)); B = 0.
    #[default]
    Kaiming,
    /// `"gaussian"`: A ~ N(0, (1/r)²) (PEFT's `normal_(std=1/r)`); B = 0.
    Gaussian,
    /// `false`: both factors keep torch `nn.Linear`'s default, U(-1/sqrt(fan_in), 1/sqrt(fan_in)), so the
    /// adapter changes the model from the start (PEFT uses this for tests).
    Random,
    /// Any other PEFT initialisation (`pissa`, `olora`, `loftq`, ...): rejected by validation.
    Other(String),
}

impl InitLoraWeights {
    pub fn as_json(&self) -> serde_json::Value {
        match self {
            InitLoraWeights::Kaiming => true.into(),
            InitLoraWeights::Random => false.into(),
            InitLoraWeights::Gaussian => "gaussian".into(),
            InitLoraWeights::Other(s) => s.clone().into(),
        }
    }

    pub fn from_json(v: &serde_json::Value) -> Self {
        match v {
            serde_json::Value::Bool(true) => InitLoraWeights::Kaiming,
            serde_json::Value::Bool(false) => InitLoraWeights::Random,
            serde_json::Value::String(s) if s.eq_ignore_ascii_case("gaussian") => {
                InitLoraWeights::Gaussian
            }
            serde_json::Value::String(s) => InitLoraWeights::Other(s.clone()),
            other => InitLoraWeights::Other(other.to_string()),
        }
    }
}

impl<'de> Deserialize<'de> for InitLoraWeights {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Bool(bool),
            Str(String),
        }
        Ok(match Raw::deserialize(d)? {
            Raw::Bool(b) => InitLoraWeights::from_json(&b.into()),
            Raw::Str(s) => InitLoraWeights::from_json(&s.into()),
        })
    }
}

impl Serialize for InitLoraWeights {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.as_json().serialize(s)
    }
}

impl<'de> Deserialize<'de> for TargetModules {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            One(String),
            Many(Vec<String>),
        }
        Ok(match Raw::deserialize(d)? {
            Raw::One(s) => TargetModules::parse_llama_factory(&s),
            Raw::Many(v) if v.len() == 1 && (v[0] == "all" || v[0] == "all-linear") => {
                TargetModules::AllLinear
            }
            Raw::Many(v) => TargetModules::Names(v),
        })
    }
}

impl Serialize for TargetModules {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            TargetModules::Names(n) => n.serialize(s),
            TargetModules::Regex(r) => r.serialize(s),
            TargetModules::AllLinear => "all".serialize(s),
        }
    }
}

/// LoRA settings with LLaMA-Factory's names and defaults.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LoraConfig {
    /// The rank r (LLaMA-Factory default 8).
    #[serde(default = "default_rank")]
    pub lora_rank: usize,
    /// Defaults to `2 * lora_rank`, as in LLaMA-Factory.
    #[serde(default)]
    pub lora_alpha: Option<f64>,
    /// Dropout on the adapter input during training (default 0).
    #[serde(default)]
    pub lora_dropout: f64,
    /// `"all"` (every linear layer except the output layer), `"q_proj,v_proj"` or a list of names.
    #[serde(default = "default_target")]
    pub lora_target: TargetModules,
    /// Only `"none"` is supported.
    #[serde(default = "default_bias")]
    pub bias: String,
    /// Scale by `alpha / sqrt(r)` instead of `alpha / r`.
    #[serde(default)]
    pub use_rslora: bool,
    #[serde(default)]
    pub init_lora_weights: InitLoraWeights,
    /// Adapt only these layer indices.
    #[serde(default)]
    pub layers_to_transform: Option<Vec<usize>>,
    /// DoRA instead of plain LoRA (PEFT `use_dora`; [`crate::adapter::Dora`]).
    #[serde(default)]
    pub use_dora: bool,
    /// Per-module ranks, PEFT's `rank_pattern` (`{"mlp.down_proj" = 32}`; see [`Patterns`]). Keys
    /// that give one module different values are refused ([`LoraConfig::check_patterns_for`]), so
    /// their order never matters here.
    #[serde(default, skip_serializing_if = "Patterns::is_empty")]
    pub rank_pattern: Patterns<usize>,
    /// Per-module alphas, PEFT's `alpha_pattern`.
    #[serde(default, skip_serializing_if = "Patterns::is_empty")]
    pub alpha_pattern: Patterns<f64>,
}

/// The rank, alpha and scaling of the adapter on one module, after `rank_pattern` /
/// `alpha_pattern` (PEFT's `_create_and_replace`: the pattern's value, else `r` / `lora_alpha`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ModuleRank {
    pub r: usize,
    pub alpha: f64,
    /// `alpha / r`, or `alpha / sqrt(r)` with rsLoRA, with this module's `r` and `alpha`.
    pub scaling: f64,
}

impl ModuleRank {
    pub(crate) fn resolve(
        path: &str,
        (r, alpha, use_rslora): (usize, f64, bool),
        rank_pattern: &Patterns<usize>,
        alpha_pattern: &Patterns<f64>,
    ) -> Self {
        let r = rank_pattern.lookup(path).copied().unwrap_or(r);
        let alpha = alpha_pattern.lookup(path).copied().unwrap_or(alpha);
        Self {
            r,
            alpha,
            scaling: scaling(alpha, r, use_rslora),
        }
    }
}

/// The checks both config forms share: pattern keys compile, ranks and alphas are positive.
pub(crate) fn check_patterns(
    rank_pattern: &Patterns<usize>,
    alpha_pattern: &Patterns<f64>,
) -> Result<(), (String, String)> {
    for (field, bad) in [
        ("rank_pattern", rank_pattern.invalid_keys()),
        ("alpha_pattern", alpha_pattern.invalid_keys()),
    ] {
        if let Some((k, e)) = bad.into_iter().next() {
            return Err((
                field.into(),
                format!("key `{k}` is not a valid regular expression: {e}"),
            ));
        }
    }
    if let Some((k, _)) = rank_pattern.0.iter().find(|(_, r)| *r == 0) {
        return Err((
            "rank_pattern".into(),
            format!("`{k}`: a rank must be positive"),
        ));
    }
    if let Some((k, a)) = alpha_pattern
        .0
        .iter()
        .find(|(_, a)| !(a.is_finite() && *a > 0.0))
    {
        return Err((
            "alpha_pattern".into(),
            format!("`{k}`: alpha {a} must be positive"),
        ));
    }
    Ok(())
}

fn default_rank() -> usize {
    8
}
fn default_target() -> TargetModules {
    TargetModules::AllLinear
}
fn default_bias() -> String {
    "none".into()
}

impl Default for LoraConfig {
    fn default() -> Self {
        Self {
            lora_rank: default_rank(),
            lora_alpha: None,
            lora_dropout: 0.0,
            lora_target: default_target(),
            bias: default_bias(),
            use_rslora: false,
            init_lora_weights: InitLoraWeights::Kaiming,
            layers_to_transform: None,
            use_dora: false,
            rank_pattern: Patterns::default(),
            alpha_pattern: Patterns::default(),
        }
    }
}

fn invalid(field: &str, reason: impl Into<String>) -> LoraError {
    LoraError::InvalidConfig {
        field: field.into(),
        reason: reason.into(),
    }
}

impl LoraConfig {
    /// Rank `r`, alpha `2r`, all linear layers, PEFT's default initialisation.
    pub fn with_rank(r: usize) -> Self {
        Self {
            lora_rank: r,
            ..Self::default()
        }
    }

    /// Parses a TOML table such as the body of a `[lora]` section.
    pub fn from_toml_str(text: &str) -> Result<Self, LoraError> {
        let cfg: Self = toml::from_str(text).map_err(|e| invalid("lora", e.to_string()))?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// `lora_alpha`, or `2 * lora_rank` when unset.
    pub fn alpha(&self) -> f64 {
        self.lora_alpha.unwrap_or(2.0 * self.lora_rank as f64)
    }

    /// The factor on `B(A(x))`: `alpha / r`, or `alpha / sqrt(r)` with rsLoRA.
    pub fn scaling(&self) -> f64 {
        scaling(self.alpha(), self.lora_rank, self.use_rslora)
    }

    /// The rank and scaling of the adapter on the module at `path`.
    pub fn module_rank(&self, path: &str) -> ModuleRank {
        ModuleRank::resolve(
            path,
            (self.lora_rank, self.alpha(), self.use_rslora),
            &self.rank_pattern,
            &self.alpha_pattern,
        )
    }

    /// Refuses `rank_pattern` / `alpha_pattern` keys that give one of the modules at `paths`
    /// different values ([`Patterns::conflict`]): the saved adapter would not reload as trained.
    pub fn check_patterns_for<'a>(
        &self,
        paths: impl IntoIterator<Item = &'a str>,
    ) -> Result<(), LoraError> {
        for path in paths {
            let conflict = |field: &str, (a, b): (&str, &str)| {
                invalid(
                    field,
                    format!(
                        "keys `{a}` and `{b}` both match {path} with different values; PEFT saves \
                         adapter_config.json with sorted keys, so the adapter would reload with the \
                         other one: make the keys match disjoint modules"
                    ),
                )
            };
            if let Some(c) = self.rank_pattern.conflict(path) {
                return Err(conflict("rank_pattern", c));
            }
            if let Some(c) = self.alpha_pattern.conflict(path) {
                return Err(conflict("alpha_pattern", c));
            }
        }
        Ok(())
    }

    /// The adapter variant these settings ask for.
    pub fn variant(&self) -> LoraVariant {
        if self.use_dora {
            LoraVariant::Dora
        } else {
            LoraVariant::Lora
        }
    }

    /// Rejects settings that ember does not implement, naming the field.
    pub fn validate(&self) -> Result<(), LoraError> {
        if self.lora_rank == 0 {
            return Err(invalid("lora_rank", "must be positive"));
        }
        let alpha = self.alpha();
        if !(alpha.is_finite() && alpha > 0.0) {
            return Err(invalid("lora_alpha", format!("{alpha} must be positive")));
        }
        if !(0.0..1.0).contains(&self.lora_dropout) {
            return Err(invalid(
                "lora_dropout",
                format!("{} must be in [0, 1)", self.lora_dropout),
            ));
        }
        if matches!(&self.lora_target, TargetModules::Names(n) if n.is_empty()) {
            return Err(invalid("lora_target", "names no module"));
        }
        if self.bias != "none" {
            return Err(LoraError::Unsupported {
                context: "lora config".into(),
                field: "bias".into(),
                value: format!("\"{}\"", self.bias),
                hint: Some("only \"none\" is implemented".into()),
            });
        }
        if let InitLoraWeights::Other(v) = &self.init_lora_weights {
            return Err(LoraError::Unsupported {
                context: "lora config".into(),
                field: "init_lora_weights".into(),
                value: v.clone(),
                hint: Some("use true, false or \"gaussian\"".into()),
            });
        }
        check_patterns(&self.rank_pattern, &self.alpha_pattern)
            .map_err(|(field, reason)| invalid(&field, reason))?;
        self.selector()?;
        Ok(())
    }

    /// PEFT's module matching for these settings.
    pub fn selector(&self) -> Result<TargetSelector, LoraError> {
        TargetSelector::new(
            self.lora_target.clone(),
            None,
            self.layers_to_transform.clone(),
            None,
        )
        .map_err(|e| invalid("lora_target", e))
    }
}

/// `alpha / r`, or `alpha / sqrt(r)` with rsLoRA (PEFT `update_layer`).
pub fn scaling(alpha: f64, r: usize, use_rslora: bool) -> f64 {
    if use_rslora {
        alpha / (r as f64).sqrt()
    } else {
        alpha / r as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn llama_factory_defaults() {
        let c = LoraConfig::from_toml_str("").expect("empty section");
        assert_eq!(c.lora_rank, 8);
        assert_eq!(c.alpha(), 16.0);
        assert_eq!(c.scaling(), 2.0);
        assert_eq!(c.lora_target, TargetModules::AllLinear);
        assert_eq!(c.init_lora_weights, InitLoraWeights::Kaiming);
    }

    #[test]
    fn reads_the_reference_run() {
        let c = LoraConfig::from_toml_str(
            "lora_rank = 16\nlora_alpha = 32\nlora_dropout = 0.05\n\
             lora_target = \"q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj\"\nbias = \"none\"",
        )
        .expect("parses");
        assert_eq!(c.scaling(), 2.0);
        assert_eq!(c.lora_dropout, 0.05);
        let TargetModules::Names(n) = &c.lora_target else {
            panic!("names")
        };
        assert_eq!(n.len(), 7);
        let list = LoraConfig::from_toml_str(
            "lora_target = [\"q_proj\", \"v_proj\"]\ninit_lora_weights = \"gaussian\"",
        )
        .expect("list");
        assert_eq!(
            list.lora_target,
            TargetModules::Names(vec!["q_proj".into(), "v_proj".into()])
        );
        assert_eq!(list.init_lora_weights, InitLoraWeights::Gaussian);
    }

    #[test]
    fn rslora_scales_by_the_square_root_of_the_rank() {
        let c = LoraConfig::from_toml_str("lora_rank = 16\nlora_alpha = 32\nuse_rslora = true")
            .expect("parses");
        assert_eq!(c.scaling(), 8.0);
    }

    #[test]
    fn dora_and_per_module_ranks() {
        let c = LoraConfig::from_toml_str(
            "lora_rank = 8\nuse_dora = true\n[rank_pattern]\n\"mlp.down_proj\" = 32\n\
             \"layers.0.self_attn.q_proj\" = 2\n[alpha_pattern]\n\"down_proj\" = 8",
        )
        .expect("parses");
        assert_eq!(c.variant(), LoraVariant::Dora);
        let down = c.module_rank("model.layers.3.mlp.down_proj");
        assert_eq!((down.r, down.alpha, down.scaling), (32, 8.0, 0.25));
        let q0 = c.module_rank("model.layers.0.self_attn.q_proj");
        assert_eq!((q0.r, q0.alpha, q0.scaling), (2, 16.0, 8.0));
        let q1 = c.module_rank("model.layers.1.self_attn.q_proj");
        assert_eq!((q1.r, q1.scaling), (8, 2.0));
        c.check_patterns_for(["model.layers.1.mlp.down_proj"])
            .expect("one key per module");
        let e = LoraConfig::from_toml_str(
            "[rank_pattern]\ndown_proj = 4\n\"layers.0.mlp.down_proj\" = 8",
        )
        .expect("valid alone")
        .check_patterns_for(["model.layers.0.mlp.down_proj"])
        .expect_err("conflict");
        assert!(
            e.to_string().contains(
                "`down_proj` and `layers.0.mlp.down_proj` both match model.layers.0.mlp.down_proj"
            ),
            "{e}"
        );
    }

    #[test]
    fn bad_settings_name_the_field() {
        let err = |t: &str| {
            LoraConfig::from_toml_str(t)
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default()
        };
        assert!(
            err("lora_rnak = 4").contains("lora_rnak"),
            "{}",
            err("lora_rnak = 4")
        );
        assert!(err("bias = \"all\"").contains("bias"));
        assert!(err("bias = \"all\"").contains("not supported"));
        assert!(err("init_lora_weights = \"pissa\"").contains("init_lora_weights"));
        assert!(err("lora_rank = 0").contains("lora_rank"));
        assert!(err("lora_dropout = 1.0").contains("lora_dropout"));
        assert!(err("lora_alpha = -1.0").contains("lora_alpha"));
        assert!(err("lora_target = \"\"").contains("lora_target"));
        assert!(err("[rank_pattern]\n\"q_proj\" = 0").contains("rank_pattern"));
        assert!(err("[rank_pattern]\n\"(\" = 4").contains("not a valid regular expression"));
        assert!(err("[alpha_pattern]\nq_proj = -1.0").contains("alpha_pattern"));
    }
}
