//! The evaluation run: load and render documents, build contexts and token requests once
//! ([`prepare`]), then score them with any [`LogLikelihoodModel`] ([`evaluate`]), as many models
//! as needed.

use std::path::{Path, PathBuf};

use indicatif::{ProgressBar, ProgressStyle};

use crate::EvalError;
use crate::data::{Doc, Split, load_docs};
use crate::encode::Encoder;
use crate::metrics::{DocResult, group_metrics, task_metrics};
use crate::model::{LogLikelihoodModel, Request};
use crate::prompt::{FEWSHOT_SEED, FewShotSampler, TARGET_DELIMITER};
use crate::report::{EvalReport, GroupResult, TaskResult};
use crate::tasks::{Group, Selection, Task};

/// Run options, lm-eval's defaults unless set.
#[derive(Debug, Clone)]
pub struct EvalOptions {
    /// At most this many documents per task (the first ones, as lm-eval's `--limit N`).
    pub limit: Option<usize>,
    /// Few-shot examples per prompt; lm-eval's default for these tasks is 0.
    pub num_fewshot: usize,
    pub fewshot_seed: u64,
    /// Leave out tasks whose data files are absent (with a note) instead of failing.
    pub skip_missing: bool,
    /// Show a progress bar on stderr.
    pub progress: bool,
    /// Requests handed to the model per call (whole documents; a progress step).
    pub requests_per_call: usize,
}

impl Default for EvalOptions {
    fn default() -> Self {
        Self {
            limit: None,
            num_fewshot: 0,
            fewshot_seed: FEWSHOT_SEED,
            skip_missing: false,
            progress: false,
            requests_per_call: 512,
        }
    }
}

/// An evaluated document with its context and one request per choice.
#[derive(Debug, Clone)]
pub struct PreparedDoc {
    pub doc: Doc,
    pub context: String,
    pub requests: Vec<Request>,
}

#[derive(Debug, Clone)]
pub struct PreparedTask {
    pub task: Task,
    pub path: PathBuf,
    pub docs: Vec<PreparedDoc>,
}

/// Everything about a run that does not depend on the model.
#[derive(Debug, Clone)]
pub struct Prepared {
    pub tasks: Vec<PreparedTask>,
    pub groups: Vec<Group>,
    /// Tasks left out for missing data (with `skip_missing`), and why.
    pub skipped: Vec<(String, String)>,
    pub num_fewshot: usize,
}

impl Prepared {
    pub fn num_requests(&self) -> usize {
        self.tasks
            .iter()
            .flat_map(|t| &t.docs)
            .map(|d| d.requests.len())
            .sum()
    }
}

/// Loads the selected tasks' data, builds lm-eval's contexts and tokenizes every
/// `(context, " " + choice)` pair.
pub fn prepare(
    selection: &Selection,
    data_dir: &Path,
    encoder: &Encoder,
    opts: &EvalOptions,
) -> Result<Prepared, EvalError> {
    if opts.limit == Some(0) {
        // Nothing would be scored: a table of NaN.
        return Err(EvalError::ZeroLimit { option: "limit" });
    }
    let mut tasks = Vec::new();
    let mut skipped = Vec::new();
    for task in &selection.tasks {
        let (path, docs) = match load_docs(task, data_dir, Split::Eval) {
            Ok(found) => found,
            Err(e @ EvalError::MissingData { .. }) if opts.skip_missing => {
                skipped.push((task.name.clone(), e.to_string()));
                continue;
            }
            Err(e) => return Err(e),
        };
        if docs.is_empty() {
            return Err(EvalError::NoDocuments {
                task: task.name.clone(),
                path,
            });
        }
        let docs: Vec<Doc> = docs
            .into_iter()
            .take(opts.limit.unwrap_or(usize::MAX))
            .collect();
        let contexts = contexts(task, data_dir, &docs, opts)?;
        let docs = docs
            .into_iter()
            .zip(contexts)
            .map(|(doc, context)| {
                let requests = doc
                    .choices
                    .iter()
                    .map(|c| encoder.encode_pair(&context, &format!("{TARGET_DELIMITER}{c}")))
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(PreparedDoc {
                    doc,
                    context,
                    requests,
                })
            })
            .collect::<Result<Vec<_>, EvalError>>()?;
        tasks.push(PreparedTask {
            task: task.clone(),
            path,
            docs,
        });
    }
    if tasks.is_empty() {
        return Err(EvalError::NothingToScore {
            skipped: skipped.into_iter().map(|(name, _)| name).collect(),
        });
    }
    Ok(Prepared {
        tasks,
        groups: selection.groups.clone(),
        skipped,
        num_fewshot: opts.num_fewshot,
    })
}

fn contexts(
    task: &Task,
    data_dir: &Path,
    docs: &[Doc],
    opts: &EvalOptions,
) -> Result<Vec<String>, EvalError> {
    let k = opts.num_fewshot;
    if k == 0 {
        return Ok(docs.iter().map(|d| d.text.clone()).collect());
    }
    let same_split = task.fewshot_from_eval_split();
    // The pool is the whole split, not the `limit`ed one.
    let (pool_path, pool) = if same_split {
        load_docs(task, data_dir, Split::Eval)?
    } else {
        load_docs(task, data_dir, Split::FewShot)?
    };
    let mut sampler = FewShotSampler::new(&pool, k, same_split, opts.fewshot_seed);
    docs.iter()
        .map(|d| {
            sampler.context(d).ok_or_else(|| EvalError::FewShotPool {
                task: task.name.clone(),
                path: pool_path.clone(),
                num_fewshot: k,
                needed: sampler.draw_size(),
                available: pool.len(),
            })
        })
        .collect()
}

/// Scores every prepared request with `model` and computes lm-eval's metrics.
pub fn evaluate(
    model: &mut dyn LogLikelihoodModel,
    prepared: &Prepared,
    label: &str,
    opts: &EvalOptions,
) -> Result<EvalReport, EvalError> {
    let bar = if opts.progress {
        let bar = ProgressBar::new(prepared.num_requests() as u64);
        if let Ok(style) = ProgressStyle::with_template(
            "{prefix} {wide_bar} {pos}/{len} requests [{elapsed_precise}<{eta_precise}]",
        ) {
            bar.set_style(style);
        }
        bar.set_prefix(label.to_string());
        bar
    } else {
        ProgressBar::hidden()
    };
    let mut tasks = Vec::new();
    for pt in &prepared.tasks {
        let mut results: Vec<DocResult> = Vec::with_capacity(pt.docs.len());
        let mut start = 0;
        while start < pt.docs.len() {
            // Whole documents per call, so a document's choices are never split across calls.
            let mut end = start;
            let mut n = 0;
            while end < pt.docs.len()
                && (n == 0 || n + pt.docs[end].requests.len() <= opts.requests_per_call)
            {
                n += pt.docs[end].requests.len();
                end += 1;
            }
            let batch: Vec<Request> = pt.docs[start..end]
                .iter()
                .flat_map(|d| d.requests.iter().cloned())
                .collect();
            let answers = model.loglikelihood(&batch)?;
            if answers.len() != batch.len() {
                return Err(EvalError::Model(format!(
                    "{} answers for {} requests",
                    answers.len(),
                    batch.len()
                )));
            }
            let mut it = answers.into_iter();
            for (i, d) in pt.docs[start..end].iter().enumerate() {
                let (lls, greedy): (Vec<f64>, Vec<bool>) = it
                    .by_ref()
                    .take(d.requests.len())
                    .map(|a| (a.ll, a.is_greedy))
                    .unzip();
                results.push(DocResult::new(
                    start + i,
                    d.doc.gold,
                    &d.doc.choices,
                    lls,
                    greedy,
                ));
            }
            bar.inc(n as u64);
            start = end;
        }
        tasks.push(TaskResult {
            name: pt.task.name.clone(),
            samples: results.len(),
            metrics: task_metrics(pt.task.metrics(), &results),
            docs: results,
        });
    }
    bar.finish_and_clear();
    let groups = prepared
        .groups
        .iter()
        .filter_map(|g| {
            let members: Vec<(&_, usize)> = tasks
                .iter()
                .filter(|t| g.members.contains(&t.name))
                .map(|t| (&t.metrics, t.samples))
                .collect();
            (!members.is_empty()).then(|| GroupResult {
                name: g.name.clone(),
                samples: members.iter().map(|m| m.1).sum(),
                members: members.len(),
                metrics: group_metrics(g, &members),
            })
        })
        .collect();
    Ok(EvalReport {
        model: label.to_string(),
        num_fewshot: prepared.num_fewshot,
        tasks,
        groups,
        extra: Default::default(),
    })
}
