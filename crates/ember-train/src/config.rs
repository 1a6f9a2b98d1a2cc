//! The run configuration: a TOML file whose sections and keys are LLaMA-Factory's / HF's names, so a
//! YAML recipe ports by changing syntax only. Unknown keys are errors that suggest the nearest key.

use std::path::{Path, PathBuf};

use ember_qwen3::{AttentionImpl, LossChoice};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_aux::serde_introspection::serde_introspect;

use crate::TrainError;

/// `[model]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ModelArgs {
    /// An HF model directory, or a Hub id (`Qwen/Qwen3-8B`) resolved as transformers does
    /// (`ember_hub`: the HF cache, then a download).
    pub model_name_or_path: PathBuf,
    /// The Hub revision of a `model_name_or_path` id (LLaMA-Factory's name; default `main`).
    pub model_revision: Option<String>,
    /// Start from an existing PEFT adapter (a directory or a Hub id) instead of a fresh one.
    pub adapter_name_or_path: Option<PathBuf>,
    /// Compute dtype of the frozen base: `f32` or `bf16` (adapters stay f32).
    pub dtype: String,
    /// How attention is computed (`plain`, `chunked[:ROWS]`, `fused[:ROWS]`; default chunked):
    /// the same numbers, different memory and speed.
    pub attention: Option<String>,
    /// How the training loss is computed (`plain`, `chunked[:TOKENS]`; default chunked).
    pub loss: Option<String>,
}

impl Default for ModelArgs {
    fn default() -> Self {
        Self {
            model_name_or_path: PathBuf::new(),
            model_revision: None,
            adapter_name_or_path: None,
            dtype: "f32".into(),
            attention: None,
            loss: None,
        }
    }
}

impl ModelArgs {
    /// The model directory: `model_name_or_path`, or the Hub id's snapshot with its weights.
    pub fn model_dir(&self) -> Result<PathBuf, ember_hub::HubError> {
        self.resolve(ember_hub::Files::Model)
    }

    /// A directory with the model's `config.json` (and tokenizer): enough to plan, no weights
    /// downloaded.
    pub fn config_dir(&self) -> Result<PathBuf, ember_hub::HubError> {
        self.resolve(ember_hub::Files::Config)
    }

    fn resolve(&self, files: ember_hub::Files) -> Result<PathBuf, ember_hub::HubError> {
        ember_hub::resolve(
            &self.model_name_or_path,
            self.model_revision.as_deref(),
            files,
        )
    }

    /// The adapter directory of `adapter_name_or_path` (a Hub id at its `main`), if one is set.
    pub fn adapter_dir(&self) -> Result<Option<PathBuf>, ember_hub::HubError> {
        self.adapter_name_or_path
            .as_deref()
            .filter(|p| !p.as_os_str().is_empty())
            .map(|p| ember_hub::resolve(p, None, ember_hub::Files::Adapter))
            .transpose()
    }

    /// `attention`, parsed (the default when unset).
    pub fn attention_impl(&self) -> Result<AttentionImpl, ember_qwen3::Qwen3Error> {
        self.attention
            .as_deref()
            .map_or(Ok(AttentionImpl::default()), str::parse)
    }

    /// `loss`, parsed (`None` when unset: the model's default).
    pub fn loss_choice(&self) -> Result<Option<LossChoice>, ember_qwen3::Qwen3Error> {
        self.loss.as_deref().map(str::parse).transpose()
    }
}

/// `[train]`: HF `TrainingArguments` names and defaults.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainArgs {
    pub per_device_train_batch_size: usize,
    pub gradient_accumulation_steps: usize,
    pub learning_rate: f64,
    pub num_train_epochs: f64,
    /// Overrides `num_train_epochs` when > 0.
    pub max_steps: i64,
    pub lr_scheduler_type: String,
    pub warmup_ratio: f64,
    pub warmup_steps: f64,
    pub lr_scheduler_kwargs: toml::Table,
    pub weight_decay: f64,
    pub adam_beta1: f64,
    pub adam_beta2: f64,
    pub adam_epsilon: f64,
    /// Global gradient-norm clipping; 0 disables.
    pub max_grad_norm: f64,
    pub logging_steps: usize,
    pub seed: u64,
    /// LLaMA-Factory: train in dataset order instead of a seeded shuffle per epoch.
    pub disable_shuffling: bool,
    pub group_by_length: bool,
    /// Layer recompute: keep only each decoder layer's input and recompute the layer in the
    /// backward (about a third more compute, activation memory of one layer). On by default, as in
    /// LLaMA-Factory.
    pub gradient_checkpointing: bool,
    /// LLaMA-Factory's spelling of `gradient_checkpointing = false`.
    pub disable_gradient_checkpointing: bool,
    /// Continue a run: a `checkpoint-N` path, or `true` for the latest complete checkpoint in
    /// `output_dir` (HF/LLaMA-Factory semantics).
    pub resume_from_checkpoint: Option<ResumeFrom>,
    /// LoRA+ (LLaMA-Factory `loraplus_lr_ratio`): the B matrices, and every 1-D adapter parameter
    /// (DoRA's magnitude), train at `learning_rate × ratio` ([`crate::step::loraplus_lr_scale`]).
    pub loraplus_lr_ratio: Option<f64>,
}

/// `resume_from_checkpoint = "path/to/checkpoint-N"` or `true` / `false`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum ResumeFrom {
    Latest(bool),
    Path(PathBuf),
}

// By hand rather than `untagged`, whose error for anything else ("did not match any variant of
// untagged enum") names neither the value nor what is expected.
impl<'de> Deserialize<'de> for ResumeFrom {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Expect;
        impl serde::de::Visitor<'_> for Expect {
            type Value = ResumeFrom;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a boolean (true, false) or the path of a checkpoint-N directory")
            }
            fn visit_bool<E: serde::de::Error>(self, b: bool) -> Result<ResumeFrom, E> {
                Ok(ResumeFrom::Latest(b))
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<ResumeFrom, E> {
                Ok(ResumeFrom::Path(s.into()))
            }
        }
        d.deserialize_any(Expect)
    }
}

impl TrainArgs {
    /// Whether layer recompute is on (`gradient_checkpointing` and not
    /// `disable_gradient_checkpointing`).
    pub fn gradient_checkpointing(&self) -> bool {
        self.gradient_checkpointing && !self.disable_gradient_checkpointing
    }
}

impl Default for TrainArgs {
    fn default() -> Self {
        Self {
            per_device_train_batch_size: 8,
            gradient_accumulation_steps: 1,
            learning_rate: 5e-5,
            num_train_epochs: 3.0,
            max_steps: -1,
            lr_scheduler_type: "linear".into(),
            warmup_ratio: 0.0,
            warmup_steps: 0.0,
            lr_scheduler_kwargs: toml::Table::new(),
            weight_decay: 0.0,
            adam_beta1: 0.9,
            adam_beta2: 0.999,
            adam_epsilon: 1e-8,
            max_grad_norm: 1.0,
            logging_steps: 500,
            seed: 42,
            disable_shuffling: false,
            group_by_length: false,
            gradient_checkpointing: true,
            disable_gradient_checkpointing: false,
            resume_from_checkpoint: None,
            loraplus_lr_ratio: None,
        }
    }
}

/// When to evaluate (or save).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Strategy {
    No,
    Steps,
    Epoch,
}

impl Strategy {
    /// The config spelling.
    pub fn name(self) -> &'static str {
        match self {
            Strategy::No => "no",
            Strategy::Steps => "steps",
            Strategy::Epoch => "epoch",
        }
    }
}

/// `[eval]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EvalArgs {
    pub eval_strategy: Strategy,
    pub eval_steps: Option<usize>,
    pub per_device_eval_batch_size: usize,
}

impl Default for EvalArgs {
    fn default() -> Self {
        Self {
            eval_strategy: Strategy::No,
            eval_steps: None,
            per_device_eval_batch_size: 8,
        }
    }
}

/// `[output]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OutputArgs {
    pub output_dir: PathBuf,
    pub save_strategy: Strategy,
    pub save_steps: usize,
    pub save_total_limit: Option<usize>,
    pub plot_loss: bool,
    /// Write into an output directory that already holds a run (otherwise that is an error, so
    /// that nothing already written is lost; resuming is always allowed).
    pub overwrite_output_dir: bool,
    /// At the end, load the checkpoint with the best `metric_for_best_model` before saving.
    pub load_best_model_at_end: bool,
    /// `eval_loss` (default) or another logged eval metric.
    pub metric_for_best_model: Option<String>,
    /// Experiment trackers (HF's name and values): `"none"` (default, as transformers 5),
    /// `"tensorboard"`, or `"all"` (every tracker ember has: TensorBoard); a name or a list.
    pub report_to: ReportTo,
    /// Where TensorBoard event files go (default as HF: `output_dir/runs/<time>_<host>`; the
    /// `TENSORBOARD_LOGGING_DIR` environment variable as in transformers 5).
    pub logging_dir: Option<PathBuf>,
    /// Default: false for losses, true otherwise (as HF).
    pub greater_is_better: Option<bool>,
}

impl OutputArgs {
    /// The metric that ranks checkpoints (HF: `eval_` is prefixed when missing).
    pub fn best_metric_name(&self) -> String {
        let m = self
            .metric_for_best_model
            .clone()
            .unwrap_or_else(|| "loss".into());
        if m.starts_with("eval_") {
            m
        } else {
            format!("eval_{m}")
        }
    }

    pub fn greater_is_better(&self) -> bool {
        self.greater_is_better
            .unwrap_or_else(|| !self.best_metric_name().ends_with("loss"))
    }
}

impl Default for OutputArgs {
    fn default() -> Self {
        Self {
            output_dir: PathBuf::from("saves/ember"),
            save_strategy: Strategy::Steps,
            save_steps: 500,
            save_total_limit: None,
            plot_loss: false,
            overwrite_output_dir: false,
            load_best_model_at_end: false,
            metric_for_best_model: None,
            greater_is_better: None,
            report_to: ReportTo::default(),
            logging_dir: None,
        }
    }
}

/// `report_to`: tracker names, written as one name or a list.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
#[serde(transparent)]
pub struct ReportTo(pub Vec<String>);

impl<'de> Deserialize<'de> for ReportTo {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            One(String),
            Many(Vec<String>),
        }
        let names = match Raw::deserialize(d)? {
            Raw::One(s) => vec![s],
            Raw::Many(v) => v,
        };
        // `none` is the empty list (HF's normalisation), however it is written.
        Ok(ReportTo(
            names.into_iter().filter(|n| n != "none").collect(),
        ))
    }
}

impl ReportTo {
    /// The trackers ember writes for.
    pub const SUPPORTED: [&str; 3] = ["none", "all", "tensorboard"];

    /// Whether TensorBoard event files are written.
    pub fn tensorboard(&self) -> bool {
        self.0.iter().any(|n| n == "tensorboard" || n == "all")
    }
}

/// The whole run.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FinetuneConfig {
    pub model: ModelArgs,
    pub lora: ember_lora::LoraConfig,
    pub data: ember_data::DataArgs,
    pub train: TrainArgs,
    pub eval: EvalArgs,
    pub output: OutputArgs,
}

/// Section name -> its valid keys, from the structs themselves (one place for every key name).
pub(crate) fn sections() -> Vec<(&'static str, &'static [&'static str])> {
    vec![
        ("model", serde_introspect::<ModelArgs>()),
        ("lora", serde_introspect::<ember_lora::LoraConfig>()),
        ("data", serde_introspect::<ember_data::DataArgs>()),
        ("train", serde_introspect::<TrainArgs>()),
        ("eval", serde_introspect::<EvalArgs>()),
        ("output", serde_introspect::<OutputArgs>()),
    ]
}

/// The candidate closest to `key` by edit distance, if it is plausibly a typo.
pub(crate) fn nearest<'a>(
    key: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|c| (strsim::damerau_levenshtein(key, c), c))
        .filter(|(d, c)| *d <= (c.len().max(key.len()) / 2).max(2))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// Reads and parses a config file (before any key is checked): TOML, or a LLaMA-Factory YAML
/// translated into ember's sections.
pub fn read_table(path: &Path) -> Result<toml::Table, TrainError> {
    let text = read_text(path)?;
    if crate::llamafactory::is_yaml(path) {
        return Ok(crate::llamafactory::translate(&text, path, &[])?.table);
    }
    parse_table(&text, path)
}

fn read_text(path: &Path) -> Result<String, TrainError> {
    std::fs::read_to_string(path).map_err(|source| TrainError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// The line (1-based) where `section.key` is written in the TOML `text`.
pub fn line_of(text: &str, key: &str) -> Option<usize> {
    use toml::de::{DeTable, DeValue};
    let doc = DeTable::parse(text).ok()?;
    fn find<'t, 'i>(
        t: &'t DeTable<'i>,
        name: &str,
    ) -> Option<(std::ops::Range<usize>, &'t DeValue<'i>)> {
        t.iter()
            .find(|(k, _)| k.get_ref().as_ref() == name)
            .map(|(k, v)| (k.span(), v.get_ref()))
    }
    let line = |span: std::ops::Range<usize>| {
        ember_data::source::line_column(text.as_bytes(), span.start).0
    };
    // Down the dotted path; a table alone is its header's line.
    let mut parts = key.split('.');
    let (mut span, mut value) = find(doc.get_ref(), parts.next()?)?;
    for part in parts {
        let DeValue::Table(t) = value else {
            return None;
        };
        (span, value) = find(t, part)?;
    }
    Some(line(span))
}

fn parse_table(text: &str, path: &Path) -> Result<toml::Table, TrainError> {
    text.parse()
        .map_err(|e: toml::de::Error| TrainError::config(path, "", e.to_string()))
}

impl FinetuneConfig {
    /// Reads a config file plus `--set key=value` overrides; relative paths inside it are
    /// relative to the current directory. Errors name the key's line.
    pub fn from_file(path: &Path, overrides: &[String]) -> Result<Self, TrainError> {
        Ok(Self::load(path, overrides)?.0)
    }

    /// [`FinetuneConfig::from_file`], with the notes a user should read: for a LLaMA-Factory
    /// YAML (`.yaml`, `.yml`), the keys accepted that change nothing in ember.
    pub fn load(path: &Path, overrides: &[String]) -> Result<(Self, Vec<String>), TrainError> {
        use crate::llamafactory::{at_yaml_key, is_yaml, translate};
        let text = read_text(path)?;
        if is_yaml(path) {
            let tr = translate(&text, path, overrides)?;
            let cfg =
                Self::from_table(tr.table.clone(), path, &[]).map_err(|e| at_yaml_key(e, &text))?;
            return Ok((cfg, tr.note(path).into_iter().collect()));
        }
        let cfg = Self::from_table(parse_table(&text, path)?, path, overrides)
            .map_err(|e| e.at_line_in(&text))?;
        Ok((cfg, Vec::new()))
    }

    /// Builds the config from a parsed table plus `--set key=value` overrides.
    pub fn from_table(
        mut table: toml::Table,
        file: &Path,
        overrides: &[String],
    ) -> Result<Self, TrainError> {
        let err = |key: &str, message: String| TrainError::config(file, key, message);
        for ov in overrides {
            apply_override(&mut table, ov).map_err(|m| err(ov, m))?;
        }
        let secs = sections();
        for (name, value) in &table {
            let Some((_, keys)) = secs.iter().find(|(s, _)| s == name) else {
                // A key written before any section header says where it belongs.
                let owner = secs.iter().find(|(_, ks)| ks.contains(&name.as_str()));
                let hint = match owner {
                    Some((s, _)) => format!("; `{name}` is a key of [{s}]: write it under [{s}]"),
                    None => nearest(name, secs.iter().map(|(s, _)| *s))
                        .map(|s| format!("; did you mean [{s}]?"))
                        .unwrap_or_default(),
                };
                return Err(err(name, format!("unknown section [{name}]{hint}")));
            };
            let Some(inner) = value.as_table() else {
                return Err(err(name, format!("[{name}] must be a table")));
            };
            for k in inner.keys() {
                if !keys.contains(&k.as_str()) {
                    let all = secs
                        .iter()
                        .flat_map(|(s, ks)| ks.iter().map(move |k| (*s, *k)));
                    // A key of another section says where it belongs before any near miss.
                    let hint = match all.clone().find(|(_, kk)| kk == k) {
                        Some((s, _)) => format!("; `{k}` belongs in [{s}]"),
                        None => nearest(k, keys.iter().copied())
                            .or_else(|| nearest(k, all.map(|(_, kk)| kk)))
                            .map(|n| format!("; did you mean `{n}`?"))
                            .unwrap_or_default(),
                    };
                    return Err(err(
                        &format!("{name}.{k}"),
                        format!("unknown key `{k}` in [{name}]{hint}"),
                    ));
                }
            }
        }
        let cfg: FinetuneConfig = section(&table, "model", file).and_then(|model| {
            Ok(FinetuneConfig {
                model,
                lora: section(&table, "lora", file)?,
                data: section(&table, "data", file)?,
                train: section(&table, "train", file)?,
                eval: section(&table, "eval", file)?,
                output: section(&table, "output", file)?,
            })
        })?;
        // Both spellings given, contradicting each other (LLaMA-Factory has only the second).
        let train = table.get("train").and_then(|t| t.as_table());
        let given = |k: &str| train.and_then(|t| t.get(k)).and_then(|v| v.as_bool());
        if given("gradient_checkpointing") == Some(true)
            && given("disable_gradient_checkpointing") == Some(true)
        {
            return Err(err(
                "train.gradient_checkpointing",
                "contradicts `train.disable_gradient_checkpointing = true`; set only one".into(),
            ));
        }
        cfg.validate(file)?;
        Ok(cfg)
    }

    /// Impossible values, named by key.
    pub fn validate(&self, file: &Path) -> Result<(), TrainError> {
        let err = |key: &str, message: String| Err(TrainError::config(file, key, message));
        if let Err(e) = self.model.attention_impl() {
            return err("model.attention", e.to_string());
        }
        if let Err(e) = self.model.loss_choice() {
            return err("model.loss", e.to_string());
        }
        let t = &self.train;
        if t.per_device_train_batch_size == 0 {
            return err(
                "train.per_device_train_batch_size",
                "must be at least 1".into(),
            );
        }
        if t.gradient_accumulation_steps == 0 {
            return err(
                "train.gradient_accumulation_steps",
                "must be at least 1".into(),
            );
        }
        if !(t.learning_rate.is_finite() && t.learning_rate >= 0.0) {
            return err(
                "train.learning_rate",
                format!("must be finite and >= 0, got {}", t.learning_rate),
            );
        }
        // torch.optim.AdamW's own checks.
        for (key, beta) in [
            ("train.adam_beta1", t.adam_beta1),
            ("train.adam_beta2", t.adam_beta2),
        ] {
            if !(0.0..1.0).contains(&beta) {
                return err(key, format!("must be in [0, 1), got {beta}"));
            }
        }
        for (key, v) in [
            ("train.adam_epsilon", t.adam_epsilon),
            ("train.weight_decay", t.weight_decay),
        ] {
            if !(v.is_finite() && v >= 0.0) {
                return err(key, format!("must be finite and >= 0, got {v}"));
            }
        }
        if let Some(r) = t.loraplus_lr_ratio
            && !(r.is_finite() && r > 0.0)
        {
            return err(
                "train.loraplus_lr_ratio",
                format!("must be finite and > 0, got {r}"),
            );
        }
        if t.max_steps <= 0 && (t.num_train_epochs.is_nan() || t.num_train_epochs <= 0.0) {
            return err(
                "train.num_train_epochs",
                format!("must be > 0 (or set max_steps), got {}", t.num_train_epochs),
            );
        }
        // HF's TrainingArguments checks.
        if !(0.0..=1.0).contains(&t.warmup_ratio) {
            return err(
                "train.warmup_ratio",
                format!("must be in [0, 1], got {}", t.warmup_ratio),
            );
        }
        if !(t.warmup_steps.is_finite() && t.warmup_steps >= 0.0) {
            return err(
                "train.warmup_steps",
                format!("must be finite and >= 0, got {}", t.warmup_steps),
            );
        }
        if t.max_grad_norm.is_nan() || t.max_grad_norm < 0.0 {
            return err(
                "train.max_grad_norm",
                format!("must be >= 0, got {}", t.max_grad_norm),
            );
        }
        if t.logging_steps == 0 {
            return err("train.logging_steps", "must be at least 1".into());
        }
        if self.eval.per_device_eval_batch_size == 0 {
            return err(
                "eval.per_device_eval_batch_size",
                "must be at least 1".into(),
            );
        }
        if self.eval.eval_strategy == Strategy::Steps && self.eval.eval_steps.is_none_or(|s| s == 0)
        {
            return err(
                "eval.eval_steps",
                "eval_strategy = \"steps\" needs eval_steps >= 1".into(),
            );
        }
        if self.output.save_strategy == Strategy::Steps && self.output.save_steps == 0 {
            return err(
                "output.save_steps",
                "save_strategy = \"steps\" needs save_steps >= 1".into(),
            );
        }
        if self.output.load_best_model_at_end {
            if self.eval.eval_strategy == Strategy::No {
                return err(
                    "output.load_best_model_at_end",
                    "needs an eval_strategy other than \"no\"".into(),
                );
            }
            if self.output.save_strategy != self.eval.eval_strategy
                || (self.output.save_strategy == Strategy::Steps
                    && self
                        .eval
                        .eval_steps
                        .is_some_and(|e| !self.output.save_steps.is_multiple_of(e)))
            {
                return err(
                    "output.load_best_model_at_end",
                    "needs save_strategy = eval_strategy (and save_steps a multiple of eval_steps), as in HF".into(),
                );
            }
            let m = self.output.best_metric_name();
            if m != "eval_loss" {
                return err(
                    "output.metric_for_best_model",
                    format!("`{m}` is not logged by the trainer; use eval_loss"),
                );
            }
        }
        if let Some(n) = self
            .output
            .report_to
            .0
            .iter()
            .find(|n| !ReportTo::SUPPORTED.contains(&n.as_str()))
        {
            return err(
                "output.report_to",
                format!(
                    "`{n}` is not supported: ember writes TensorBoard event files (\"tensorboard\"; \"all\" is the same) and no other tracker's (wandb has no offline mode here); its trainer_state.json and trainer_log.jsonl hold every logged value"
                ),
            );
        }
        if self.output.save_total_limit == Some(0) {
            return err(
                "output.save_total_limit",
                "must be at least 1 (omit it to keep every checkpoint)".into(),
            );
        }
        if !matches!(
            self.model.dtype.as_str(),
            "f32" | "float32" | "bf16" | "bfloat16"
        ) {
            return err(
                "model.dtype",
                format!("`{}` is not one of f32, bf16", self.model.dtype),
            );
        }
        if self.model.model_name_or_path.as_os_str().is_empty() {
            return err("model.model_name_or_path", "is required".into());
        }
        self.data
            .validate()
            .map_err(|e| TrainError::config(file, "data", e.to_string()))?;
        Ok(())
    }
}

fn section<T: DeserializeOwned + Default>(
    table: &toml::Table,
    name: &str,
    file: &Path,
) -> Result<T, TrainError> {
    let Some(v) = table.get(name) else {
        return Ok(T::default());
    };
    v.clone().try_into().map_err(|e: toml::de::Error| {
        // serde names only the section; every field has a default, so the first key that fails
        // alone is the one at fault.
        let defaults_ok = toml::Value::Table(toml::Table::new())
            .try_into::<T>()
            .is_ok();
        let culprit = v
            .as_table()
            .filter(|_| defaults_ok)
            .and_then(|t| culprit::<T>(name, t, &toml::Value::Table));
        let (key, message) = culprit.unwrap_or_else(|| (name.to_string(), e.message().to_string()));
        TrainError::config(file, key, message)
    })
}

/// The deepest key under `table` (at dotted `path`) whose value alone fails to deserialize as `T`
/// once `rebuild` puts it back where it was, and serde's message for it. It descends into a
/// nested table (an inline `dataset_info` entry) only when that table may be empty, so that a
/// missing required key is never blamed on a sibling.
fn culprit<T: DeserializeOwned>(
    path: &str,
    table: &toml::Table,
    rebuild: &dyn Fn(toml::Table) -> toml::Value,
) -> Option<(String, String)> {
    table.iter().find_map(|(k, v)| {
        let at = |inner: toml::Table| rebuild(toml::Table::from_iter([(k.clone(), inner.into())]));
        let alone = rebuild(toml::Table::from_iter([(k.clone(), v.clone())]));
        let e = alone.try_into::<T>().err()?;
        let key = format!("{path}.{k}");
        let deeper = v
            .as_table()
            .filter(|_| at(toml::Table::new()).try_into::<T>().is_ok())
            .and_then(|inner| culprit::<T>(&key, inner, &at));
        Some(deeper.unwrap_or_else(|| (key, e.message().to_string())))
    })
}

/// `key=value` or `section.key=value`; the value is TOML (`3`, `1e-4`, `true`, `"text"`), and a
/// bare word is taken as a string. A bare key is looked up in every section.
pub fn apply_override(table: &mut toml::Table, ov: &str) -> Result<(), String> {
    let (key, raw) = ov
        .split_once('=')
        .ok_or_else(|| format!("`{ov}` is not key=value"))?;
    let key = key.trim();
    let value: toml::Value = format!("v = {raw}")
        .parse::<toml::Table>()
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(raw.trim().to_string()));
    let (sec, k) = match key.split_once('.') {
        Some((s, k)) => (s.to_string(), k.to_string()),
        None => {
            let owners: Vec<&str> = sections()
                .into_iter()
                .filter(|(_, ks)| ks.contains(&key))
                .map(|(s, _)| s)
                .collect();
            match owners.as_slice() {
                [one] => (one.to_string(), key.to_string()),
                [] => {
                    let all = sections()
                        .into_iter()
                        .flat_map(|(_, ks)| ks.iter().copied());
                    let hint = nearest(key, all)
                        .map(|n| format!("; did you mean `{n}`?"))
                        .unwrap_or_default();
                    return Err(format!("unknown key `{key}`{hint}"));
                }
                many => {
                    return Err(format!(
                        "`{key}` is in several sections ({}); write section.{key}",
                        many.join(", ")
                    ));
                }
            }
        }
    };
    let entry = table
        .entry(sec.clone())
        .or_insert_with(|| toml::Value::Table(toml::Table::new()));
    let t = entry
        .as_table_mut()
        .ok_or_else(|| format!("[{sec}] is not a table"))?;
    t.insert(k, value);
    Ok(())
}
