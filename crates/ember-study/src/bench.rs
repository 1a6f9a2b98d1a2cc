//! Benchmark scores (KoBEST, KMMLU, HAE-RAE through ember-eval) of every checkpoint of a run and of
//! its final adapter, cached in the run directory (`benchmarks.json`) so a resumed sweep or
//! `--report-only` does not score twice.

use std::path::{Path, PathBuf};

use burn::tensor::backend::Backend;
use ember_eval::{ModelSpec, Prepared, ScoreTable, evaluate, load_scorer};

use crate::StudyError;
use crate::error::{read_json, write_json};
use crate::record::{BENCHMARKS_FILE, checkpoints};

/// `--eval-tasks` and their options: ember-eval's, as `xtask eval` takes them.
pub type BenchOptions = ember_eval::TaskOptions;

/// Loads the tasks' documents and tokenizes the requests once for all models.
pub fn prepare(base: &Path, opts: &BenchOptions) -> Result<Prepared, StudyError> {
    Ok(opts.prepare(base, &opts.eval_options())?)
}

/// Scores the given models into a table.
pub fn score<B: Backend>(
    specs: &[ModelSpec],
    prepared: &Prepared,
    opts: &BenchOptions,
    device: &B::Device,
) -> Result<ScoreTable, StudyError> {
    let mut table = ScoreTable::default();
    for spec in specs {
        let mut scorer = load_scorer::<B>(spec, &ember_eval::PeftAdapterLoader, device)?
            .with_strategy(opts.strategy());
        let mut report = evaluate(&mut scorer, prepared, &spec.label, &opts.eval_options())?;
        report.tasks.iter_mut().for_each(|t| t.docs.clear());
        table.rows.push(report);
    }
    Ok(table)
}

/// Scores every `checkpoint-N` of `run_dir` and its final adapter (row `final`), unless
/// `benchmarks.json` already has exactly those rows.
pub fn score_run<B: Backend>(
    base: &Path,
    run_dir: &Path,
    prepared: &Prepared,
    opts: &BenchOptions,
    device: &B::Device,
) -> Result<ScoreTable, StudyError> {
    let mut specs: Vec<ModelSpec> = checkpoints(run_dir)
        .into_iter()
        .map(|s| ModelSpec::with_adapter(base, run_dir.join(format!("checkpoint-{s}"))))
        .collect();
    specs.push(ModelSpec {
        label: "final".into(),
        base: base.to_path_buf(),
        adapter: Some(run_dir.to_path_buf()),
    });
    let cache = run_dir.join(BENCHMARKS_FILE);
    if cache.is_file() {
        let cached: ScoreTable = read_json(&cache)?;
        let labels: Vec<&str> = cached.rows.iter().map(|r| r.model.as_str()).collect();
        let wanted: Vec<&str> = specs.iter().map(|s| s.label.as_str()).collect();
        if labels == wanted {
            return Ok(cached);
        }
    }
    let table = score::<B>(&specs, prepared, opts, device)?;
    write_json(&cache, &table)?;
    Ok(table)
}

/// The base model's scores, cached in `out/base_benchmarks.json`.
pub fn score_base<B: Backend>(
    base: &Path,
    out: &Path,
    prepared: &Prepared,
    opts: &BenchOptions,
    device: &B::Device,
) -> Result<ScoreTable, StudyError> {
    let cache = out.join("base_benchmarks.json");
    if cache.is_file() {
        return read_json(&cache);
    }
    let table = score::<B>(&[ModelSpec::base(base)], prepared, opts, device)?;
    write_json(&cache, &table)?;
    Ok(table)
}

/// Scores the base model into `out` and every run in `runs` into its directory (cached, as
/// [`score_base`] and [`score_run`]), printing which model it is on.
pub fn score_study<B: Backend>(
    base: &Path,
    out: &Path,
    runs: &[PathBuf],
    opts: &BenchOptions,
    device: &B::Device,
) -> Result<(), StudyError> {
    let prepared = prepare(base, opts)?;
    eprintln!("benchmarks: base model");
    score_base::<B>(base, out, &prepared, opts, device)?;
    for dir in runs {
        eprintln!("benchmarks: {}", dir.display());
        score_run::<B>(base, dir, &prepared, opts, device)?;
    }
    Ok(())
}

/// The base model's cached scores in the study directory, if any.
pub fn read_base(out: &Path) -> Result<Option<ScoreTable>, StudyError> {
    let cache = out.join("base_benchmarks.json");
    if cache.is_file() {
        Ok(Some(read_json(&cache)?))
    } else {
        Ok(None)
    }
}
