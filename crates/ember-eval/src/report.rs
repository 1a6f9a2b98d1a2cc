//! Results of one model, and the table across models (rows: base and checkpoints; columns:
//! task and group metrics) as JSON and Markdown.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::EvalError;
use crate::metrics::DocResult;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskResult {
    pub name: String,
    /// Evaluated documents (lm-eval's `samples`, the group weight).
    pub samples: usize,
    pub metrics: BTreeMap<String, f64>,
    pub docs: Vec<DocResult>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GroupResult {
    pub name: String,
    pub samples: usize,
    /// Member tasks that were evaluated.
    pub members: usize,
    pub metrics: BTreeMap<String, f64>,
}

/// One model's results.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalReport {
    /// Row label: `base`, `checkpoint-15`, an adapter's folder name, ...
    pub model: String,
    pub num_fewshot: usize,
    pub tasks: Vec<TaskResult>,
    pub groups: Vec<GroupResult>,
    /// More columns for the same row, such as `eval_loss` and `perplexity` of an SFT eval set.
    pub extra: BTreeMap<String, f64>,
}

impl EvalReport {
    /// `(column, value)` in table order: tasks, then groups, then extras; a column is
    /// `name/metric`.
    pub fn columns(&self) -> Vec<(String, f64)> {
        let tasks = self.tasks.iter().map(|t| (&t.name, &t.metrics));
        let groups = self.groups.iter().map(|g| (&g.name, &g.metrics));
        let mut cols: Vec<(String, f64)> = tasks
            .chain(groups)
            .flat_map(|(name, ms)| ms.iter().map(move |(m, v)| (format!("{name}/{m}"), *v)))
            .collect();
        cols.extend(self.extra.iter().map(|(k, v)| (k.clone(), *v)));
        cols
    }
}

/// Several models' reports as one table.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ScoreTable {
    pub rows: Vec<EvalReport>,
}

impl ScoreTable {
    /// Column names over all rows, first-seen order.
    pub fn header(&self) -> Vec<String> {
        let mut cols: Vec<String> = Vec::new();
        for r in &self.rows {
            for (c, _) in r.columns() {
                if !cols.contains(&c) {
                    cols.push(c);
                }
            }
        }
        cols
    }

    /// A Markdown table, values to 4 decimals; an empty cell where a row lacks a column.
    pub fn to_markdown(&self) -> String {
        let header = self.header();
        let mut s = format!("| model | {} |\n", header.join(" | "));
        s.push_str(&format!("|---|{}\n", "---|".repeat(header.len())));
        for r in &self.rows {
            let vals: BTreeMap<String, f64> = r.columns().into_iter().collect();
            let cells: Vec<String> = header
                .iter()
                .map(|c| vals.get(c).map(|v| format!("{v:.4}")).unwrap_or_default())
                .collect();
            s.push_str(&format!("| {} | {} |\n", r.model, cells.join(" | ")));
        }
        s
    }

    /// `{"columns": [...], "rows": [{"model": .., "values": {..}, "report": {..}}]}`; per-document
    /// results only with `with_docs`.
    pub fn to_json(&self, with_docs: bool) -> serde_json::Value {
        let rows: Vec<serde_json::Value> = self
            .rows
            .iter()
            .map(|r| {
                let mut report = r.clone();
                if !with_docs {
                    report.tasks.iter_mut().for_each(|t| t.docs.clear());
                }
                let values: serde_json::Map<String, serde_json::Value> = r
                    .columns()
                    .into_iter()
                    .map(|(c, v)| (c, v.into()))
                    .collect();
                serde_json::json!({"model": r.model, "values": values, "report": report})
            })
            .collect();
        serde_json::json!({"columns": self.header(), "rows": rows})
    }

    /// Writes `scores.json` (with per-document results) and `scores.md` into `dir`.
    pub fn write(&self, dir: &Path) -> Result<(), EvalError> {
        let w = |name: &str, text: String| {
            let path = dir.join(name);
            std::fs::write(&path, text).map_err(|source| EvalError::Write { path, source })
        };
        std::fs::create_dir_all(dir).map_err(|source| EvalError::Write {
            path: dir.to_path_buf(),
            source,
        })?;
        let json = serde_json::to_string_pretty(&self.to_json(true)).unwrap_or_default();
        w("scores.json", json)?;
        w("scores.md", self.to_markdown())
    }
}
