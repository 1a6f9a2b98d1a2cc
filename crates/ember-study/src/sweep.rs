//! A sweep: the base config, `--set` overrides and a [`Grid`]; each point trains into
//! `out/runs/<name>/`. A finished run is skipped, an interrupted one resumes from its newest
//! complete checkpoint (`train.resume_from_checkpoint = true`), and runs can go `jobs` at a time.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use burn::tensor::backend::AutodiffBackend;
use ember_backend::{BackendChoice, BackendOp};
use ember_train::report::{Console, Reporter, Silent};
use ember_train::{FinetuneConfig, Run, RunOutput};

use crate::bench::{self, BenchOptions};
use crate::record::{PlannedFigures, RunStatus, StudyRunFile, status};
use crate::{Grid, Report, RunRecord, RunSpec, StudyError};

/// The override that resumes a run from its newest complete checkpoint.
pub const RESUME_OVERRIDE: &str = "train.resume_from_checkpoint=true";
/// The override that lets a run start over in a directory an interrupted run left behind.
pub const OVERWRITE_OVERRIDE: &str = "output.overwrite_output_dir=true";

/// What to run.
#[derive(Debug, Clone)]
pub struct Sweep {
    /// The base config as parsed TOML, and its file name (for messages).
    pub table: toml::Table,
    pub file: PathBuf,
    /// `--set` overrides applied to every run, before the grid's.
    pub overrides: Vec<String>,
    pub grid: Grid,
    /// The study directory: `runs/<name>/`, `report.md`, `report.json`, plots.
    pub out: PathBuf,
}

/// One run of a sweep.
#[derive(Debug, Clone)]
pub struct SweepRun {
    pub spec: RunSpec,
    pub dir: PathBuf,
    pub status: RunStatus,
}

/// What [`train_run`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Already finished.
    Skipped,
    Trained,
    /// Continued from this checkpoint step.
    Resumed(u64),
    /// An interrupted run without a usable checkpoint, trained again from the start.
    Restarted,
}

impl Sweep {
    /// `out/runs/<name>`.
    pub fn run_dir(&self, spec: &RunSpec) -> PathBuf {
        self.out.join("runs").join(&spec.name)
    }

    /// The runs of the grid with their status; every run's config is built once here, so a bad
    /// key or value fails before anything trains.
    pub fn runs(&self) -> Result<Vec<SweepRun>, StudyError> {
        self.grid
            .runs()
            .into_iter()
            .map(|spec| {
                self.config(&spec, &[])?;
                let dir = self.run_dir(&spec);
                Ok(SweepRun {
                    status: status(&dir),
                    dir,
                    spec,
                })
            })
            .collect()
    }

    /// The config of one run: base, `--set`, the grid point, then `extra`; `output_dir` is the
    /// run's directory.
    pub fn config(&self, spec: &RunSpec, extra: &[String]) -> Result<FinetuneConfig, StudyError> {
        let mut all = self.overrides.clone();
        all.extend(spec.overrides());
        all.extend(extra.iter().cloned());
        let mut cfg = FinetuneConfig::from_table(self.table.clone(), &self.file, &all)?;
        cfg.output.output_dir = self.run_dir(spec);
        Ok(cfg)
    }

    /// The config a run trains with now: as is when new, resuming when interrupted with a
    /// checkpoint, starting over otherwise (or when this build has no resume).
    pub fn training_config(&self, run: &SweepRun) -> Result<(FinetuneConfig, Outcome), StudyError> {
        match run.status {
            RunStatus::Finished => Ok((self.config(&run.spec, &[])?, Outcome::Skipped)),
            RunStatus::NotStarted => Ok((self.config(&run.spec, &[])?, Outcome::Trained)),
            RunStatus::Interrupted {
                checkpoint: Some(step),
            } => {
                match self.config(&run.spec, &[RESUME_OVERRIDE.to_string()]) {
                    Ok(cfg) => Ok((cfg, Outcome::Resumed(step))),
                    // A build without `resume_from_checkpoint`: start over.
                    Err(_) => Ok((
                        self.config(&run.spec, &[OVERWRITE_OVERRIDE.to_string()])?,
                        Outcome::Restarted,
                    )),
                }
            }
            RunStatus::Interrupted { checkpoint: None } => Ok((
                self.config(&run.spec, &[OVERWRITE_OVERRIDE.to_string()])?,
                Outcome::Restarted,
            )),
        }
    }
}

/// Trains one run (or skips it when finished), writing `study_run.json` first.
pub fn train_run<B: AutodiffBackend>(
    sweep: &Sweep,
    run: &SweepRun,
    device: &B::Device,
    reporter: &mut dyn Reporter,
) -> Result<(Outcome, Option<RunOutput>), StudyError> {
    let (cfg, outcome) = sweep.training_config(run)?;
    if outcome == Outcome::Skipped {
        return Ok((outcome, None));
    }
    let loaded = Run::<B>::load(&cfg, device)?;
    std::fs::create_dir_all(&run.dir).map_err(StudyError::io(&run.dir))?;
    StudyRunFile {
        spec: run.spec.clone(),
        planned: PlannedFigures::from(&loaded.banner()?),
    }
    .write(&run.dir)?;
    let out = loaded.train(reporter)?;
    Ok((outcome, Some(out)))
}

/// Calls `work(worker, item)` for every item, `jobs` at a time on scoped threads (worker is
/// `0..jobs`, e.g. to pick a device); results in item order.
pub fn run_pool<T: Sync, R: Send>(
    items: &[T],
    jobs: usize,
    work: impl Fn(usize, &T) -> R + Sync,
) -> Vec<R> {
    let jobs = jobs.clamp(1, items.len().max(1));
    if jobs == 1 {
        return items.iter().map(|it| work(0, it)).collect();
    }
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<R>>> = Mutex::new((0..items.len()).map(|_| None).collect());
    std::thread::scope(|s| {
        for worker in 0..jobs {
            let (next, results, work) = (&next, &results, &work);
            s.spawn(move || {
                loop {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    let Some(item) = items.get(i) else { break };
                    let r = work(worker, item);
                    if let Ok(mut all) = results.lock() {
                        all[i] = Some(r);
                    }
                }
            });
        }
    });
    results
        .into_inner()
        .unwrap_or_default()
        .into_iter()
        .flatten()
        .collect()
}

/// Makes the config's input paths (`model_name_or_path`, `dataset_dir`) that are relative
/// absolute under `root` (for configs whose paths are relative to the repository root).
pub fn root_paths(table: &mut toml::Table, root: &Path) {
    for (sec, key) in [("model", "model_name_or_path"), ("data", "dataset_dir")] {
        if let Some(v) = table.get_mut(sec).and_then(|s| s.get_mut(key))
            && let Some(rel) = v.as_str().filter(|p| Path::new(p).is_relative())
            // A Hub id (`Qwen/Qwen3-8B`) that is not a directory under `root` stays an id.
            && !(key == "model_name_or_path"
                && ember_hub::is_repo_id(rel)
                && !root.join(rel).exists())
        {
            *v = toml::Value::String(root.join(rel).display().to_string());
        }
    }
}

/// Finished run directories under `out/runs/` (for `--report-only` over shared storage), by name.
pub fn finished_runs(out: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(out.join("runs")) else {
        return Vec::new();
    };
    let mut dirs: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| status(p) == RunStatus::Finished)
        .collect();
    dirs.sort();
    dirs
}

/// The study a sweep runs without a config: its TOML text (paths relative to `root`) and grid.
#[derive(Debug, Clone)]
pub struct DefaultStudy {
    pub config: &'static str,
    pub grid: &'static str,
    pub root: PathBuf,
}

/// What `cargo xtask sweep` was asked (its help describes each).
#[derive(Debug, Clone)]
pub struct SweepOptions {
    /// A TOML run config; `None`: `default_study`.
    pub config: Option<PathBuf>,
    pub default_study: DefaultStudy,
    pub overrides: Vec<String>,
    /// `key=v1,v2` axes; none (with no config and not `report_only`): the default study's grid.
    pub grid: Vec<String>,
    /// The study directory; `None`: the config's `output_dir`.
    pub out: Option<PathBuf>,
    pub jobs: usize,
    /// Only these runs, by name.
    pub only: Vec<String>,
    /// Print one command per run and train nothing.
    pub emit_commands: bool,
    /// Train nothing: report the finished runs.
    pub report_only: bool,
    /// Benchmarks for every checkpoint (none: no scoring) and their options.
    pub eval_tasks: Vec<String>,
    pub data_dir: Option<PathBuf>,
    pub eval_limit: Option<usize>,
    pub skip_missing: bool,
    /// Recommend checkpoints by this benchmark column instead of eval_loss.
    pub select_metric: Option<String>,
    /// Consecutive eval-loss rises that flag overfitting.
    pub patience: usize,
    /// With cuda:K or tch-cuda:K, worker w uses GPU K+w.
    pub backend: BackendChoice,
}

/// Trains the selected runs of the grid (or prints their commands), scores checkpoints when asked,
/// writes the report and prints its summary; runs that failed are an error after the report.
pub fn run_sweep(opts: &SweepOptions) -> Result<(), StudyError> {
    opts.check()?;
    let (table, file) = base_table(opts)?;
    let grid_specs: Vec<String> =
        if opts.grid.is_empty() && opts.config.is_none() && !opts.report_only {
            vec![opts.default_study.grid.to_string()]
        } else {
            opts.grid.clone()
        };
    let grid = Grid::parse(&grid_specs)?;
    // The config without the grid: the base model and the default study directory.
    let base_cfg = FinetuneConfig::from_table(table.clone(), &file, &opts.overrides)?;
    let out = opts
        .out
        .clone()
        .unwrap_or_else(|| base_cfg.output.output_dir.clone());
    let out = std::path::absolute(&out).unwrap_or(out);
    let sweep = Sweep {
        table,
        file,
        overrides: opts.overrides.clone(),
        grid: grid.clone(),
        out: out.clone(),
    };
    let all_runs = sweep.runs()?;
    let selected = select(&all_runs, &opts.only)?;

    if opts.emit_commands {
        for r in &selected {
            println!("{}", command_for(opts, &grid_specs, &out, &r.spec.name));
        }
        return Ok(());
    }

    let failures = if opts.report_only {
        Vec::new()
    } else {
        train_selected(opts, &sweep, &selected)
    };

    // The runs the report covers: the grid's, or with --report-only and no grid every finished
    // run under the study directory.
    let dirs: Vec<PathBuf> = if opts.report_only && opts.grid.is_empty() && opts.config.is_some() {
        finished_runs(&out)
    } else {
        all_runs.iter().map(|r| r.dir.clone()).collect()
    };
    let (finished, unfinished): (Vec<PathBuf>, Vec<PathBuf>) = dirs
        .into_iter()
        .partition(|d| status(d) == RunStatus::Finished);
    if opts.report_only && finished.is_empty() {
        return Err(StudyError::Options(format!(
            "--report-only: no finished run under {} to report on (runs/<name>/ of an earlier sweep)",
            out.join("runs").display()
        )));
    }
    let unfinished: Vec<String> = unfinished
        .iter()
        .filter_map(|d| d.file_name().map(|n| n.to_string_lossy().into_owned()))
        .collect();

    let mut base_benchmarks = None;
    if !opts.eval_tasks.is_empty() {
        let Some(data_dir) = opts.data_dir.clone() else {
            return Err(StudyError::Options(
                "--eval-tasks needs --data-dir DIR (layout in docs/eval.md)".into(),
            ));
        };
        let bench_opts = BenchOptions {
            tasks: opts.eval_tasks.clone(),
            data_dir,
            limit: opts.eval_limit,
            num_fewshot: 0,
            skip_missing: opts.skip_missing,
            pack_tokens: 256,
        };
        let base = &base_cfg.model.model_name_or_path;
        ember_backend::run(
            opts.backend,
            Score {
                base,
                out: &out,
                runs: &finished,
                opts: &bench_opts,
            },
        )??;
        base_benchmarks = bench::read_base(&out)?;
    }

    let records = finished
        .iter()
        .map(|d| RunRecord::load(d, opts.patience))
        .collect::<Result<Vec<_>, _>>()?;
    if let Some(metric) = &opts.select_metric {
        check_metric(metric, &records)?;
    }
    let grid = if grid.axes.is_empty() {
        Grid::from_run_files(&finished)
    } else {
        grid
    };
    let report = Report::new(
        grid,
        records,
        unfinished,
        base_benchmarks,
        opts.select_metric.clone(),
    );
    let written = report.write(&out)?;
    println!(
        "{}",
        report
            .markdown(&[])
            .lines()
            .skip(2)
            .take_while(|l| !l.starts_with("## Loss"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    for w in written {
        println!("wrote {}", w.display());
    }
    if failures.is_empty() {
        Ok(())
    } else {
        Err(StudyError::RunsFailed(failures))
    }
}

impl SweepOptions {
    /// Refuses options that contradict each other, naming the flag, before anything is trained.
    pub fn check(&self) -> Result<(), StudyError> {
        if self.jobs == 0 {
            return Err(StudyError::Options(
                "--jobs 0: at least one run at a time".into(),
            ));
        }
        if let (Some(m), true, false) = (
            &self.select_metric,
            self.eval_tasks.is_empty(),
            self.report_only,
        ) {
            return Err(StudyError::Options(format!(
                "--select-metric {m} ranks checkpoints by a benchmark score: it needs --eval-tasks (and --data-dir) to score them"
            )));
        }
        Ok(())
    }
}

/// `--select-metric`'s column must be among the runs' benchmark scores: otherwise no checkpoint
/// would be recommended and the report would not say why.
fn check_metric(metric: &str, records: &[RunRecord]) -> Result<(), StudyError> {
    let mut columns: Vec<String> = records
        .iter()
        .filter_map(|r| r.benchmarks.as_ref())
        .flat_map(|t| t.header())
        .collect();
    if columns.iter().any(|c| c == metric) {
        return Ok(());
    }
    columns.sort();
    columns.dedup();
    Err(StudyError::Options(format!(
        "--select-metric {metric}: no run has this benchmark column ({})",
        if columns.is_empty() {
            "no run was scored: pass --eval-tasks".to_string()
        } else {
            format!("columns: {}", columns.join(", "))
        }
    )))
}

/// The sweep's base config table and its name, with the default study's paths made absolute.
fn base_table(opts: &SweepOptions) -> Result<(toml::Table, PathBuf), StudyError> {
    match &opts.config {
        Some(path) => Ok((ember_train::config::read_table(path)?, path.clone())),
        None => {
            let file = PathBuf::from("<embedded study config>");
            let mut table: toml::Table =
                opts.default_study
                    .config
                    .parse()
                    .map_err(|e: toml::de::Error| {
                        ember_train::TrainError::config(file.clone(), "", e.to_string())
                    })?;
            root_paths(&mut table, &opts.default_study.root);
            Ok((table, file))
        }
    }
}

/// The runs `only` names (all of them when empty); a name not in the grid is an error listing the
/// grid's runs.
pub fn select(all: &[SweepRun], only: &[String]) -> Result<Vec<SweepRun>, StudyError> {
    for name in only {
        if !all.iter().any(|r| &r.spec.name == name) {
            let names: Vec<&str> = all.iter().map(|r| r.spec.name.as_str()).collect();
            return Err(StudyError::Options(format!(
                "--only {name}: no such run in the grid (runs: {})",
                names.join(", ")
            )));
        }
    }
    Ok(all
        .iter()
        .filter(|r| only.is_empty() || only.contains(&r.spec.name))
        .cloned()
        .collect())
}

/// The backend worker `w` of `jobs` uses: consecutive GPUs from the one named.
pub fn backend_for(choice: BackendChoice, worker: usize) -> BackendChoice {
    match choice {
        BackendChoice::Cuda(k) => BackendChoice::Cuda(k + worker),
        BackendChoice::TchCuda(k) => BackendChoice::TchCuda(k + worker),
        other => other,
    }
}

/// Trains `selected` `opts.jobs` at a time, printing each run's progress; the failures, each
/// `name: error`.
fn train_selected(opts: &SweepOptions, sweep: &Sweep, selected: &[SweepRun]) -> Vec<String> {
    let jobs = opts.jobs.max(1);
    let quiet = jobs > 1;
    println!(
        "study directory: {} ({} runs, {} at a time, backend {})",
        sweep.out.display(),
        selected.len(),
        jobs.min(selected.len().max(1)),
        opts.backend
    );
    let results = run_pool(selected, jobs, |worker, run| {
        let backend = backend_for(opts.backend, worker);
        match &run.status {
            RunStatus::Finished => println!("[{}] finished earlier: skipped", run.spec.name),
            RunStatus::Interrupted { checkpoint } => println!(
                "[{}] interrupted earlier: {} on {backend}",
                run.spec.name,
                checkpoint.map_or("starting over".to_string(), |c| format!(
                    "resuming from checkpoint-{c}"
                ))
            ),
            RunStatus::NotStarted => println!("[{}] training on {backend}", run.spec.name),
        }
        let r = ember_backend::run(backend, TrainOne { sweep, run, quiet })
            .map_err(StudyError::from)
            .and_then(|r| r);
        match &r {
            Ok(Outcome::Skipped) => {}
            Ok(o) => println!("[{}] done ({o:?})", run.spec.name),
            Err(e) => eprintln!("[{}] failed: {e}", run.spec.name),
        }
        r
    });
    selected
        .iter()
        .zip(results)
        .filter_map(|(run, r)| r.err().map(|e| format!("{}: {e}", run.spec.name)))
        .collect()
}

struct TrainOne<'a> {
    sweep: &'a Sweep,
    run: &'a SweepRun,
    quiet: bool,
}

impl BackendOp for TrainOne<'_> {
    type Output = Result<Outcome, StudyError>;
    fn run<B: AutodiffBackend>(self, device: B::Device) -> Self::Output {
        // Several runs at once would interleave their progress bars.
        let (outcome, _) = if self.quiet {
            train_run::<B>(self.sweep, self.run, &device, &mut Silent)
        } else {
            train_run::<B>(self.sweep, self.run, &device, &mut Console::default())
        }?;
        Ok(outcome)
    }
}

struct Score<'a> {
    base: &'a Path,
    out: &'a Path,
    runs: &'a [PathBuf],
    opts: &'a BenchOptions,
}

impl BackendOp for Score<'_> {
    type Output = Result<(), StudyError>;
    fn run<B: AutodiffBackend>(self, device: B::Device) -> Self::Output {
        // Scoring needs no gradients: the inner backend.
        bench::score_study::<B::InnerBackend>(self.base, self.out, self.runs, self.opts, &device)
    }
}

/// One shell-quoted word.
fn quote(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@".contains(c))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// The command that trains only `name`, with the same config, overrides, grid and directory.
pub fn command_for(opts: &SweepOptions, grid: &[String], out: &Path, name: &str) -> String {
    let mut w: Vec<String> = vec!["cargo".into(), "xtask".into(), "sweep".into()];
    if let Some(c) = &opts.config {
        w.extend(["--config".into(), c.display().to_string()]);
    }
    for s in &opts.overrides {
        w.extend(["--set".into(), s.clone()]);
    }
    for g in grid {
        w.extend(["--grid".into(), g.clone()]);
    }
    w.extend(["--out".into(), out.display().to_string()]);
    w.extend(["--backend".into(), opts.backend.to_string()]);
    if !opts.eval_tasks.is_empty() {
        w.extend(["--eval-tasks".into(), opts.eval_tasks.join(",")]);
        if let Some(d) = &opts.data_dir {
            w.extend(["--data-dir".into(), d.display().to_string()]);
        }
        if let Some(l) = opts.eval_limit {
            w.extend(["--eval-limit".into(), l.to_string()]);
        }
    }
    w.extend(["--only".into(), name.to_string()]);
    w.iter().map(|s| quote(s)).collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pool_keeps_order_and_uses_workers() {
        let items: Vec<u32> = (0..7).collect();
        let out = run_pool(&items, 3, |w, &i| (w < 3, i * 2));
        assert_eq!(
            out.iter().map(|p| p.1).collect::<Vec<_>>(),
            vec![0, 2, 4, 6, 8, 10, 12]
        );
        assert!(out.iter().all(|p| p.0));
        assert_eq!(run_pool(&items, 1, |_, &i| i).len(), 7);
    }

    #[test]
    fn quoting_and_gpu_per_worker() {
        assert_eq!(quote("train_samples=26,52"), "train_samples=26,52");
        assert_eq!(quote("it's"), r"'it'\''s'");
        assert_eq!(quote(""), "''");
        assert_eq!(
            backend_for(BackendChoice::TchCuda(2), 1),
            BackendChoice::TchCuda(3)
        );
    }
}
