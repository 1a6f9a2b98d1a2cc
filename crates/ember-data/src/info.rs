//! `dataset_info.json`: entries and their resolution into [`DatasetAttr`], as LLaMA-Factory's `parser.py`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::{DataError, Result};

/// One raw `dataset_info.json` entry (unknown keys are ignored, as LLaMA-Factory does).
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
pub struct DatasetEntry {
    pub file_name: Option<String>,
    pub formatting: Option<String>,
    pub ranking: Option<bool>,
    pub subset: Option<String>,
    pub split: Option<String>,
    pub folder: Option<String>,
    pub num_samples: Option<usize>,
    pub columns: Option<BTreeMap<String, Option<String>>>,
    pub tags: Option<BTreeMap<String, Option<String>>>,
    pub hf_hub_url: Option<String>,
    pub ms_hub_url: Option<String>,
    pub om_hub_url: Option<String>,
    pub script_url: Option<String>,
    pub cloud_file_name: Option<String>,
}

/// The three row formats LLaMA-Factory converts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Formatting {
    Alpaca,
    Sharegpt,
    Openai,
}

/// A resolved dataset: where its file is and how its columns and role tags are named.
/// A column or tag is `None` when the entry's `columns`/`tags` object exists but omits it: LLaMA-Factory
/// resets every unlisted key, it does not fall back to the default.
#[derive(Debug, Clone, PartialEq)]
pub struct DatasetAttr {
    pub name: String,
    pub path: PathBuf,
    pub formatting: Formatting,
    pub num_samples: Option<usize>,
    pub prompt: Option<String>,
    pub query: Option<String>,
    pub response: Option<String>,
    pub history: Option<String>,
    pub messages: Option<String>,
    pub system: Option<String>,
    pub tools: Option<String>,
    pub role_tag: Option<String>,
    pub content_tag: Option<String>,
    pub user_tag: Option<String>,
    pub assistant_tag: Option<String>,
    pub observation_tag: Option<String>,
    pub function_tag: Option<String>,
    pub system_tag: Option<String>,
}

const COLUMN_NAMES: &[&str] = &[
    "prompt", "query", "response", "history", "messages", "system", "tools", "images", "videos",
    "audios", "chosen", "rejected", "kto_tag",
];
const TAG_NAMES: &[&str] = &[
    "role_tag",
    "content_tag",
    "user_tag",
    "assistant_tag",
    "observation_tag",
    "function_tag",
    "system_tag",
];

impl DatasetAttr {
    /// Resolve entry `name` whose files live under `dataset_dir` (`parser.py: DatasetAttr.join`).
    pub fn resolve(name: &str, entry: &DatasetEntry, dataset_dir: &Path) -> Result<Self> {
        let bad = |m: String| Err(DataError::DatasetInfo(format!("dataset `{name}`: {m}")));
        if entry.hf_hub_url.is_some()
            || entry.ms_hub_url.is_some()
            || entry.om_hub_url.is_some()
            || entry.script_url.is_some()
            || entry.cloud_file_name.is_some()
        {
            return bad(
                "only local files (`file_name`) are supported, not hub/script/cloud sources".into(),
            );
        }
        let Some(file_name) = &entry.file_name else {
            return bad("missing `file_name`".into());
        };
        if entry.ranking == Some(true) {
            return bad(
                "`ranking` (preference) datasets are not supervised fine-tuning data".into(),
            );
        }
        let formatting = match entry.formatting.as_deref().unwrap_or("alpaca") {
            "alpaca" => Formatting::Alpaca,
            "sharegpt" => Formatting::Sharegpt,
            "openai" => Formatting::Openai,
            other => {
                return bad(format!(
                    "unknown formatting `{other}` (alpaca, sharegpt, openai)"
                ));
            }
        };
        let s = |v: &str| Some(v.to_owned());
        let mut attr = DatasetAttr {
            name: name.to_owned(),
            path: dataset_dir.join(file_name),
            formatting,
            num_samples: entry.num_samples,
            prompt: s("instruction"),
            query: s("input"),
            response: s("output"),
            history: None,
            messages: s("conversations"),
            system: None,
            tools: None,
            role_tag: s("from"),
            content_tag: s("value"),
            user_tag: s("human"),
            assistant_tag: s("gpt"),
            observation_tag: s("observation"),
            function_tag: s("function_call"),
            system_tag: s("system"),
        };
        if let Some(cols) = &entry.columns {
            if let Some(k) = cols.keys().find(|k| !COLUMN_NAMES.contains(&k.as_str())) {
                return bad(format!("unknown column key `{k}`"));
            }
            for media in [
                "images", "videos", "audios", "chosen", "rejected", "kto_tag",
            ] {
                if cols.get(media).is_some_and(|v| v.is_some()) {
                    return bad(format!("column `{media}` is not supported (text-only SFT)"));
                }
            }
            let get = |k: &str| cols.get(k).cloned().flatten();
            attr.prompt = get("prompt");
            attr.query = get("query");
            attr.response = get("response");
            attr.history = get("history");
            attr.messages = get("messages");
            attr.system = get("system");
            attr.tools = get("tools");
        }
        if let Some(tags) = &entry.tags {
            if let Some(k) = tags.keys().find(|k| !TAG_NAMES.contains(&k.as_str())) {
                return bad(format!("unknown tag key `{k}`"));
            }
            let get = |k: &str| tags.get(k).cloned().flatten();
            attr.role_tag = get("role_tag");
            attr.content_tag = get("content_tag");
            attr.user_tag = get("user_tag");
            attr.assistant_tag = get("assistant_tag");
            attr.observation_tag = get("observation_tag");
            attr.function_tag = get("function_tag");
            attr.system_tag = get("system_tag");
        }
        Ok(attr)
    }
}

/// Read `dataset_dir/dataset_info.json`, if present.
pub fn read_dataset_info(dataset_dir: &Path) -> Result<Option<BTreeMap<String, DatasetEntry>>> {
    let path = dataset_dir.join("dataset_info.json");
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(DataError::Io { path, source }),
    };
    parse_dataset_info(&bytes, &path).map(Some)
}

/// The entries of a `dataset_info.json` file's contents; `path` names it in errors.
pub fn parse_dataset_info(bytes: &[u8], path: &Path) -> Result<BTreeMap<String, DatasetEntry>> {
    let bad = |m: String| DataError::DatasetInfo(format!("{}: {m}", path.display()));
    let text = std::str::from_utf8(bytes).map_err(|e| {
        let (line, _) = crate::source::line_column(bytes, e.valid_up_to());
        bad(format!("line {line}: not UTF-8 ({e})"))
    })?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    serde_json::from_str(text).map_err(|e| bad(e.to_string()))
}

/// Resolve dataset names against the file in `dataset_dir` and the inline entries (which win).
pub fn resolve_datasets(
    names: &[String],
    dataset_dir: &Path,
    inline: &BTreeMap<String, DatasetEntry>,
) -> Result<Vec<DatasetAttr>> {
    let file = read_dataset_info(dataset_dir)?;
    names
        .iter()
        .map(|name| {
            let entry = inline
                .get(name)
                .or_else(|| file.as_ref().and_then(|f| f.get(name)))
                .ok_or_else(|| DataError::UnknownDataset {
                    name: name.clone(),
                    where_: if file.is_some() {
                        format!(
                            "{}/dataset_info.json or [data.dataset_info]",
                            dataset_dir.display()
                        )
                    } else {
                        format!(
                            "[data.dataset_info] ({}/dataset_info.json does not exist)",
                            dataset_dir.display()
                        )
                    },
                })?;
            DatasetAttr::resolve(name, entry, dataset_dir).map_err(|e| match e {
                // Say which of the two places the bad entry came from.
                DataError::DatasetInfo(m) if inline.contains_key(name) => {
                    DataError::DatasetInfo(format!("[data.dataset_info]: {m}"))
                }
                DataError::DatasetInfo(m) => DataError::DatasetInfo(format!(
                    "{}: {m}",
                    dataset_dir.join("dataset_info.json").display()
                )),
                other => other,
            })
        })
        .collect()
}
