//! `DataArgs`: the `[data]` config section, with LLaMA-Factory's key names and defaults.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Deserializer};

use crate::error::{DataError, Result};
use crate::info::DatasetEntry;

/// Data options. Key names and defaults follow LLaMA-Factory's `DataArguments` (plus `seed` from its
/// training arguments); keys marked *ember* are additions.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DataArgs {
    /// Folder holding `dataset_info.json` and the data files (LLaMA-Factory default `data`).
    pub dataset_dir: PathBuf,
    /// Dataset names, comma separated (`"a,b"`) or a list, resolved through `dataset_info.json`.
    #[serde(deserialize_with = "de_names")]
    pub dataset: Vec<String>,
    /// Separate evaluation datasets (then `val_size` must be 0).
    #[serde(deserialize_with = "de_names")]
    pub eval_dataset: Vec<String>,
    /// *ember*: dataset_info entries given inline; they extend/override `dataset_dir/dataset_info.json`.
    pub dataset_info: BTreeMap<String, DatasetEntry>,
    /// `qwen3` or `qwen3_nothink`.
    pub template: String,
    /// Tokens per sample after truncation (LLaMA-Factory default 2048).
    pub cutoff_len: usize,
    /// Fraction in (0, 1], or a count when > 1, of the data held out for evaluation.
    pub val_size: f64,
    /// First N rows of each dataset (before the split), as LLaMA-Factory.
    pub max_samples: Option<usize>,
    /// *ember*: first N of one seeded permutation of the train split; runs with a smaller N see a
    /// subset of the data of runs with a larger N (same seed and `val_size`).
    pub train_samples: Option<usize>,
    /// Put the empty `<think>\n\n</think>\n\n` in the trained response (true) or the masked prompt.
    pub enable_thinking: bool,
    /// Keep think blocks of history turns when `mask_history` would drop them.
    pub preserve_thinking: bool,
    /// Train on prompt tokens too.
    pub train_on_prompt: bool,
    /// Train on the last turn only.
    pub mask_history: bool,
    /// Overrides the template's default system prompt (empty for qwen3).
    pub default_system: Option<String>,
    /// *ember*: skip malformed rows (reporting them) instead of failing the load.
    pub skip_invalid: bool,
    /// Seed of the validation split and `train_samples` permutation (HF `seed`, default 42).
    pub seed: u64,
    /// *ember*: pad token text; default: the tokenizer's padding token, else `<|endoftext|>`.
    pub pad_token: Option<String>,
    /// *ember*: round padded batch lengths up to a multiple of this (HF collator uses 8 when training).
    pub pad_to_multiple_of: Option<usize>,
}

impl Default for DataArgs {
    fn default() -> Self {
        Self {
            dataset_dir: PathBuf::from("data"),
            dataset: Vec::new(),
            eval_dataset: Vec::new(),
            dataset_info: BTreeMap::new(),
            template: "qwen3".into(),
            cutoff_len: 2048,
            val_size: 0.0,
            max_samples: None,
            train_samples: None,
            enable_thinking: true,
            preserve_thinking: false,
            train_on_prompt: false,
            mask_history: false,
            default_system: None,
            skip_invalid: false,
            seed: 42,
            pad_token: None,
            pad_to_multiple_of: Some(8),
        }
    }
}

/// How much data the validation split takes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ValSize {
    None,
    Fraction(f64),
    Count(usize),
}

impl DataArgs {
    /// LLaMA-Factory's interpretation: `> 1` is a count, otherwise a fraction; `<= 1e-6` is none.
    pub fn val_size(&self) -> ValSize {
        if self.val_size <= 1e-6 {
            ValSize::None
        } else if self.val_size > 1.0 {
            ValSize::Count(self.val_size as usize)
        } else {
            ValSize::Fraction(self.val_size)
        }
    }

    /// The checks LLaMA-Factory's `DataArguments.__post_init__` makes, plus ours.
    pub fn validate(&self) -> Result<()> {
        let err = |m: &str| Err(DataError::Config(m.to_owned()));
        if self.dataset.is_empty() {
            return err("`dataset` is empty");
        }
        if !self.eval_dataset.is_empty() && self.val_size > 1e-6 {
            return err("cannot specify `val_size` if `eval_dataset` is set");
        }
        if self.mask_history && self.train_on_prompt {
            return err("`mask_history` is incompatible with `train_on_prompt`");
        }
        if !(self.val_size >= 0.0 && self.val_size.is_finite()) {
            return err("`val_size` must be a non-negative number");
        }
        if self.cutoff_len == 0 {
            return err("`cutoff_len` must be positive");
        }
        if self.pad_to_multiple_of == Some(0) {
            return err("`pad_to_multiple_of` must be positive");
        }
        if self.train_samples == Some(0) {
            return err("`train_samples` must be positive");
        }
        if self.max_samples == Some(0) {
            return err("`max_samples` must be positive (omit it to use every sample)");
        }
        Ok(())
    }
}

fn de_names<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Names {
        One(String),
        Many(Vec<String>),
    }
    let names = match Names::deserialize(d)? {
        Names::One(s) => s.split(',').map(|x| x.trim().to_owned()).collect(),
        Names::Many(v) => v
            .into_iter()
            .map(|x| x.trim().to_owned())
            .collect::<Vec<_>>(),
    };
    Ok(names.into_iter().filter(|s| !s.is_empty()).collect())
}
