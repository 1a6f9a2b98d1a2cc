//! LLaMA-Factory's YAML run configs, read as they are (`--config run.yaml`): its flat keys are put
//! into ember's sections. Most keys have ember's name already (ember's config uses LLaMA-Factory's
//! and HF's names), so they go, by name, into the one section that has them; [`RULES`] is the table
//! of every other key. A key neither there nor in a section is refused by name.

use std::path::Path;

use serde_yaml_ng::Value as Yaml;

use crate::TrainError;
use crate::config::sections;

/// What a LLaMA-Factory key becomes in ember, where that is not "the ember key of the same name".
#[derive(Debug, Clone, Copy)]
pub enum Rule {
    /// Into each of these ember keys (`section.key`), as written.
    Into(&'static [&'static str]),
    /// Changes nothing in ember: accepted and listed in one note.
    NoEffect(&'static str),
    /// Only the value ember always implements is accepted; any other is refused with `why`.
    Only(Fixed, &'static str),
    /// `bf16`: the frozen base's compute dtype, `model.dtype` (the adapter stays f32, as with
    /// LLaMA-Factory's `bf16` without `pure_bf16`).
    Bf16,
}

/// A value ember always has for a key it does not read.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Fixed {
    Bool(bool),
    Str(&'static str),
}

impl Fixed {
    fn matches(self, v: &Yaml) -> bool {
        match (self, v) {
            (Fixed::Bool(b), Yaml::Bool(x)) => b == *x,
            (Fixed::Str(s), Yaml::String(x)) => s == x,
            _ => false,
        }
    }

    fn show(self) -> String {
        match self {
            Fixed::Bool(b) => b.to_string(),
            Fixed::Str(s) => s.to_string(),
        }
    }
}

/// LLaMA-Factory / HF keys that are not an ember key of the same name.
pub const RULES: &[(&str, Rule)] = &[
    (
        "stage",
        Rule::Only(
            Fixed::Str("sft"),
            "ember trains supervised fine-tuning (stage: sft) only",
        ),
    ),
    (
        "finetuning_type",
        Rule::Only(Fixed::Str("lora"), "ember trains LoRA adapters only"),
    ),
    (
        "do_train",
        Rule::Only(Fixed::Bool(true), "`cargo xtask finetune` always trains"),
    ),
    (
        "do_predict",
        Rule::Only(
            Fixed::Bool(false),
            "ember has no predict stage; use `cargo xtask generate`",
        ),
    ),
    (
        "predict_with_generate",
        Rule::Only(
            Fixed::Bool(false),
            "ember evaluates the loss; use `cargo xtask generate` or `cargo xtask eval`",
        ),
    ),
    (
        "fp16",
        Rule::Only(
            Fixed::Bool(false),
            "ember computes in f32 or bf16; use bf16: true",
        ),
    ),
    (
        "pure_bf16",
        Rule::Only(
            Fixed::Bool(false),
            "ember keeps the adapter in f32; bf16: true puts the frozen base in bf16",
        ),
    ),
    (
        "save_only_model",
        Rule::Only(
            Fixed::Bool(false),
            "ember's checkpoints always hold the optimizer, scheduler and data-order state, for an exact resume",
        ),
    ),
    // HF's one seed orders the data and draws the validation split.
    ("seed", Rule::Into(&["train.seed", "data.seed"])),
    ("bf16", Rule::Bf16),
    (
        "do_eval",
        Rule::NoEffect(
            "ember evaluates whenever eval_strategy says and once at the end when there is an evaluation set",
        ),
    ),
    (
        "trust_remote_code",
        Rule::NoEffect("ember's Qwen3 is built in: no remote code runs"),
    ),
    (
        "overwrite_cache",
        Rule::NoEffect("ember tokenizes on every load: there is no cache"),
    ),
    (
        "preprocessing_num_workers",
        Rule::NoEffect("tokenization uses every core"),
    ),
    (
        "dataloader_num_workers",
        Rule::NoEffect("batches are built in the training process"),
    ),
    ("ddp_timeout", Rule::NoEffect("ember trains in one process")),
    (
        "loraplus_lr_embedding",
        Rule::NoEffect("ember adapts no embedding layers, which this LoRA+ learning rate is for"),
    ),
];

/// The rule for a LLaMA-Factory key, if it has one.
pub fn rule(key: &str) -> Option<Rule> {
    RULES.iter().find(|(k, _)| *k == key).map(|(_, r)| *r)
}

/// Whether `path` names a YAML config (by its extension, as `llamafactory-cli` decides).
pub fn is_yaml(path: &Path) -> bool {
    path.extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("yaml") || e.eq_ignore_ascii_case("yml"))
}

/// A LLaMA-Factory YAML config in ember's sections.
#[derive(Debug, Clone, PartialEq)]
pub struct Translation {
    /// ember's config table (`[model]`, `[lora]`, ...).
    pub table: toml::Table,
    /// The keys that were accepted but change nothing in ember, in file order.
    pub no_effect: Vec<String>,
}

impl Translation {
    /// The one note line listing the keys that change nothing (None when there are none).
    pub fn note(&self, file: &Path) -> Option<String> {
        (!self.no_effect.is_empty()).then(|| {
            format!(
                "{}: accepted, with no effect in ember: {}",
                file.display(),
                self.no_effect.join(", ")
            )
        })
    }

    /// The equivalent ember TOML config, sections in ember's order, headed by where it came from.
    pub fn to_toml(&self, file: &Path) -> Result<String, TrainError> {
        let mut out = format!(
            "# ember config translated from the LLaMA-Factory config {}\n",
            file.display()
        );
        if let Some(note) = self.note(file) {
            out.push_str(&format!("# {note}\n"));
        }
        for (name, _) in sections() {
            let Some(section) = self.table.get(name) else {
                continue;
            };
            let one = toml::Table::from_iter([(name.to_string(), section.clone())]);
            let text =
                toml::to_string(&one).map_err(|e| TrainError::config(file, name, e.to_string()))?;
            out.push('\n');
            out.push_str(&text);
        }
        Ok(out)
    }
}

/// Translates the YAML `text` (read from `file`) into ember's sections. `overrides` are
/// `key=value` as on `llamafactory-cli`'s command line: a flat key (LLaMA-Factory's name) replaces
/// the file's value before the translation, a `section.key` (ember's name) is applied after it.
pub fn translate(text: &str, file: &Path, overrides: &[String]) -> Result<Translation, TrainError> {
    let err = |key: &str, message: String| TrainError::Config {
        file: file.to_path_buf(),
        line: line_of(text, key),
        key: key.to_string(),
        message,
    };
    let doc: Yaml = serde_yaml_ng::from_str(text).map_err(|e| TrainError::Config {
        file: file.to_path_buf(),
        line: e.location().map(|l| l.line()),
        key: String::new(),
        message: format!("not valid YAML: {e}"),
    })?;
    let mut entries: Vec<(String, Yaml)> = match doc {
        Yaml::Mapping(m) => m
            .into_iter()
            .map(|(k, v)| match k {
                Yaml::String(k) => Ok((k, v)),
                other => Err(err(
                    "",
                    format!("keys must be names, found {}", show(&other)),
                )),
            })
            .collect::<Result<_, _>>()?,
        Yaml::Null => Vec::new(),
        other => {
            return Err(err(
                "",
                format!(
                    "a LLaMA-Factory config is a mapping of keys to values, found {}",
                    show(&other)
                ),
            ));
        }
    };
    let mut after = Vec::new();
    for ov in overrides {
        let (key, raw) = ov
            .split_once('=')
            .ok_or_else(|| err(ov, format!("`{ov}` is not key=value")))?;
        let key = key.trim();
        if key.contains('.') {
            after.push(ov.clone());
            continue;
        }
        let value = serde_yaml_ng::from_str(raw).unwrap_or_else(|_| Yaml::String(raw.into()));
        match entries.iter_mut().find(|(k, _)| k == key) {
            Some(entry) => entry.1 = value,
            None => entries.push((key.to_string(), value)),
        }
    }

    let secs = sections();
    let mut table = toml::Table::new();
    let mut no_effect = Vec::new();
    let mut put = |target: &str, value: toml::Value| {
        let (sec, k) = target.split_once('.').unwrap_or(("", target));
        if let Some(t) = table
            .entry(sec.to_string())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()))
            .as_table_mut()
        {
            t.insert(k.to_string(), value);
        }
    };
    let given = |key: &str| entries.iter().any(|(k, v)| k == key && !v.is_null());
    if given("bf16") && given("dtype") {
        return Err(err(
            "bf16",
            "both `bf16` and ember's `dtype` are set; set only one".into(),
        ));
    }
    for (key, value) in &entries {
        // `key: null` is the key left at its default (as `resume_from_checkpoint: null`).
        if value.is_null() {
            continue;
        }
        let to_toml = |v: &Yaml| to_toml(v).map_err(|m| err(key, m));
        match rule(key) {
            Some(Rule::Into(targets)) => {
                let v = to_toml(value)?;
                for t in targets {
                    put(t, v.clone());
                }
            }
            Some(Rule::NoEffect(_)) => no_effect.push(key.clone()),
            Some(Rule::Only(fixed, why)) => {
                if !fixed.matches(value) {
                    return Err(err(
                        key,
                        format!(
                            "{} is not supported: {why} (only `{key}: {}` is accepted)",
                            show(value),
                            fixed.show()
                        ),
                    ));
                }
            }
            Some(Rule::Bf16) => match value {
                Yaml::Bool(b) => put("model.dtype", toml::Value::String(dtype(*b).into())),
                other => {
                    return Err(err(
                        key,
                        format!("must be true or false, found {}", show(other)),
                    ));
                }
            },
            None => {
                let owners: Vec<&str> = secs
                    .iter()
                    .filter(|(_, ks)| ks.contains(&key.as_str()))
                    .map(|(s, _)| *s)
                    .collect();
                match owners.as_slice() {
                    [sec] => put(&format!("{sec}.{key}"), to_toml(value)?),
                    [] => {
                        let hint = crate::config::nearest(
                            key,
                            secs.iter()
                                .flat_map(|(_, ks)| ks.iter().copied())
                                .chain(RULES.iter().map(|(k, _)| *k)),
                        )
                        .map(|n| format!("; did you mean `{n}`?"))
                        .unwrap_or_default();
                        return Err(err(
                            key,
                            format!(
                                "not a key ember implements (refused rather than ignored){hint}"
                            ),
                        ));
                    }
                    many => {
                        return Err(err(
                            key,
                            format!(
                                "`{key}` is a key of several ember sections ({}) and has no LLaMA-Factory meaning here",
                                many.join(", ")
                            ),
                        ));
                    }
                }
            }
        }
    }
    for ov in &after {
        crate::config::apply_override(&mut table, ov).map_err(|m| err(ov, m))?;
    }
    Ok(Translation { table, no_effect })
}

/// ember's `model.dtype` for LLaMA-Factory's `bf16`.
fn dtype(bf16: bool) -> &'static str {
    if bf16 { "bf16" } else { "f32" }
}

/// A YAML value as the TOML value ember's config reads.
fn to_toml(v: &Yaml) -> Result<toml::Value, String> {
    Ok(match v {
        Yaml::Bool(b) => toml::Value::Boolean(*b),
        Yaml::Number(n) => match (n.as_i64(), n.as_f64()) {
            (Some(i), _) => toml::Value::Integer(i),
            (None, Some(f)) if n.is_f64() => toml::Value::Float(f),
            _ => return Err(format!("{n} is out of range")),
        },
        Yaml::String(s) => toml::Value::String(s.clone()),
        Yaml::Sequence(items) => toml::Value::Array(
            items
                .iter()
                .map(|i| match i {
                    Yaml::Null => Err("a list may not hold null".to_string()),
                    other => to_toml(other),
                })
                .collect::<Result<_, _>>()?,
        ),
        Yaml::Mapping(m) => {
            let mut t = toml::Table::new();
            for (k, v) in m {
                let Yaml::String(k) = k else {
                    return Err(format!("keys must be names, found {}", show(k)));
                };
                if !v.is_null() {
                    t.insert(k.clone(), to_toml(v)?);
                }
            }
            toml::Value::Table(t)
        }
        Yaml::Null => return Err("null is not a value here".into()),
        Yaml::Tagged(t) => return Err(format!("YAML tags ({}) are not supported", t.tag)),
    })
}

/// A YAML value as written, for messages.
fn show(v: &Yaml) -> String {
    match v {
        Yaml::String(s) => format!("`{s}`"),
        Yaml::Null => "null".into(),
        other => serde_yaml_ng::to_string(other)
            .map(|s| format!("`{}`", s.trim_end()))
            .unwrap_or_else(|_| format!("{other:?}")),
    }
}

/// The line (1-based) where the top-level `key` is written in the YAML `text`.
pub fn line_of(text: &str, key: &str) -> Option<usize> {
    if key.is_empty() {
        return None;
    }
    text.lines()
        .position(|line| {
            let rest = line
                .strip_prefix(key)
                .or_else(|| line.strip_prefix(&format!("\"{key}\"")))
                .or_else(|| line.strip_prefix(&format!("'{key}'")));
            rest.is_some_and(|r| r.trim_start().starts_with(':'))
        })
        .map(|i| i + 1)
}

/// A config error reported by ember's sections (`section.key`), re-aimed at the YAML key it came
/// from and that key's line.
pub fn at_yaml_key(e: TrainError, text: &str) -> TrainError {
    match e {
        TrainError::Config {
            file,
            line: None,
            key,
            message,
        } => {
            let flat = yaml_key(&key);
            TrainError::Config {
                line: line_of(text, &flat).or_else(|| line_of(text, &key)),
                file,
                key: flat,
                message,
            }
        }
        other => other,
    }
}

/// The LLaMA-Factory key an ember `section.key[.inner]` came from.
fn yaml_key(ember: &str) -> String {
    if let Some((k, _)) = RULES.iter().find(|(_, r)| match r {
        Rule::Into(targets) => targets.contains(&ember),
        Rule::Bf16 => ember == "model.dtype",
        _ => false,
    }) {
        return k.to_string();
    }
    ember.split('.').nth(1).unwrap_or(ember).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_ember_key_in_several_sections_has_a_rule() {
        // A flat key must name one ember key; those in several sections need a row of RULES.
        let secs = sections();
        for (_, keys) in &secs {
            for k in keys.iter() {
                let owners = secs.iter().filter(|(_, ks)| ks.contains(k)).count();
                assert!(owners == 1 || rule(k).is_some(), "`{k}` needs a rule");
            }
        }
    }

    #[test]
    fn rules_name_real_ember_keys() {
        for (k, r) in RULES {
            if let Rule::Into(targets) = r {
                for t in *targets {
                    let (sec, key) = t.split_once('.').expect("section.key");
                    let keys = sections()
                        .into_iter()
                        .find(|(s, _)| *s == sec)
                        .map(|(_, ks)| ks)
                        .unwrap_or_default();
                    assert!(keys.contains(&key), "{k} -> {t}");
                }
            }
        }
    }
}
