//! `cargo xtask sweep`: train the cross product of `--grid` axes, each run in its own directory
//! (finished runs skipped, interrupted ones resumed), optionally score every checkpoint on
//! benchmarks, then write `report.md`, `report.json` and plots. No arguments: a data-scaling study
//! of the shipped tiny model (three data sizes) in a few minutes on CPU.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use ember_backend::{AutodiffBackend, BackendChoice, BackendOp};
use ember_study::bench::{self, BenchOptions};
use ember_study::record::{RunStatus, StudyRunFile};
use ember_study::sweep::{
    Outcome, Sweep, SweepRun, finished_runs, root_paths, run_pool, train_run,
};
use ember_study::{Grid, Report, RunRecord};
use ember_train::report::{Console, Silent};

/// The default study, shipped in the repository; its paths are relative to the repository root.
const STUDY_CONFIG: &str = include_str!("../../fixtures/study/finetune.toml");
/// The default grid of the default study: nested subsets of the 104 training rows.
const STUDY_GRID: &str = "train_samples=26,52,104";

#[derive(clap::Args, Default)]
pub struct Args {
    /// A TOML run config. Without it, the shipped study (fixtures/study/finetune.toml).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Override a key for every run (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
    /// A grid axis, `key=v1,v2,...` (repeatable; runs are the cross product).
    #[arg(long = "grid", value_name = "KEY=V1,V2")]
    grid: Vec<String>,
    /// The study directory (default: the config's output_dir): runs/<name>/, report.md, plots.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Runs at once. With cuda:K or tch-cuda:K, worker w uses GPU K+w.
    #[arg(long, default_value_t = 1)]
    jobs: usize,
    /// Only these runs (by name; repeatable): what one array task of --emit-commands runs.
    #[arg(long = "only", value_name = "NAME")]
    only: Vec<String>,
    /// Print one command per run (for a Slurm array or another scheduler) and exit.
    #[arg(long)]
    emit_commands: bool,
    /// Train nothing: merge the finished runs under --out into the report.
    #[arg(long)]
    report_only: bool,
    /// Benchmarks for every checkpoint: kobest, kmmlu, haerae, kobest_copa, ...
    #[arg(long, value_delimiter = ',')]
    eval_tasks: Vec<String>,
    /// Benchmark files (layout in docs/eval.md).
    #[arg(long, requires = "eval_tasks")]
    data_dir: Option<PathBuf>,
    /// At most N documents per benchmark task.
    #[arg(long, requires = "eval_tasks")]
    eval_limit: Option<usize>,
    /// Leave out benchmark tasks whose files are missing.
    #[arg(long)]
    skip_missing: bool,
    /// Recommend checkpoints by this benchmark column (e.g. kobest/acc) instead of eval_loss.
    #[arg(long)]
    select_metric: Option<String>,
    /// Consecutive eval-loss rises that flag overfitting.
    #[arg(long, default_value_t = ember_study::analysis::DEFAULT_PATIENCE)]
    patience: usize,
    /// flex | tch | tch-cuda:N | cuda:N
    #[arg(long, default_value_t = BackendChoice::default_compiled())]
    backend: BackendChoice,
}

/// The sweep's base config table and its name, with the default study's paths made absolute.
fn base_table(config: Option<&Path>) -> anyhow::Result<(toml::Table, PathBuf)> {
    match config {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            let table = text
                .parse()
                .with_context(|| format!("{} is not valid TOML", path.display()))?;
            Ok((table, path.to_path_buf()))
        }
        None => {
            let mut table: toml::Table =
                STUDY_CONFIG.parse().context("the embedded study config")?;
            root_paths(&mut table, &crate::finetune::repo_root());
            Ok((table, PathBuf::from("<embedded study config>")))
        }
    }
}

/// The backend worker `w` of `jobs` uses: consecutive GPUs from the one named.
fn backend_for(choice: BackendChoice, worker: usize) -> BackendChoice {
    match choice {
        BackendChoice::Cuda(k) => BackendChoice::Cuda(k + worker),
        BackendChoice::TchCuda(k) => BackendChoice::TchCuda(k + worker),
        other => other,
    }
}

struct TrainOne<'a> {
    sweep: &'a Sweep,
    run: &'a SweepRun,
    quiet: bool,
}

impl BackendOp for TrainOne<'_> {
    type Output = anyhow::Result<Outcome>;
    fn run<B: AutodiffBackend>(self, device: B::Device) -> Self::Output {
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
    type Output = anyhow::Result<()>;
    fn run<B: AutodiffBackend>(self, device: B::Device) -> Self::Output {
        let prepared = bench::prepare(self.base, self.opts)?;
        eprintln!("benchmarks: base model");
        bench::score_base::<B::InnerBackend>(self.base, self.out, &prepared, self.opts, &device)?;
        for dir in self.runs {
            eprintln!("benchmarks: {}", dir.display());
            bench::score_run::<B::InnerBackend>(self.base, dir, &prepared, self.opts, &device)
                .with_context(|| format!("scoring {}", dir.display()))?;
        }
        Ok(())
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
fn command_for(args: &Args, grid: &[String], out: &Path, name: &str) -> String {
    let mut w: Vec<String> = vec!["cargo".into(), "xtask".into(), "sweep".into()];
    if let Some(c) = &args.config {
        w.extend(["--config".into(), c.display().to_string()]);
    }
    for s in &args.set {
        w.extend(["--set".into(), s.clone()]);
    }
    for g in grid {
        w.extend(["--grid".into(), g.clone()]);
    }
    w.extend(["--out".into(), out.display().to_string()]);
    w.extend(["--backend".into(), args.backend.to_string()]);
    if !args.eval_tasks.is_empty() {
        w.extend(["--eval-tasks".into(), args.eval_tasks.join(",")]);
        if let Some(d) = &args.data_dir {
            w.extend(["--data-dir".into(), d.display().to_string()]);
        }
        if let Some(l) = args.eval_limit {
            w.extend(["--eval-limit".into(), l.to_string()]);
        }
    }
    w.extend(["--only".into(), name.to_string()]);
    w.iter().map(|s| quote(s)).collect::<Vec<_>>().join(" ")
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let (table, file) = base_table(args.config.as_deref())?;
    let grid_specs: Vec<String> =
        if args.grid.is_empty() && args.config.is_none() && !args.report_only {
            vec![STUDY_GRID.to_string()]
        } else {
            args.grid.clone()
        };
    let grid = Grid::parse(&grid_specs)?;
    // The config without the grid: the base model and the default study directory.
    let base_cfg = ember_train::FinetuneConfig::from_table(table.clone(), &file, &args.set)?;
    let out = match &args.out {
        Some(o) => o.clone(),
        None => base_cfg.output.output_dir.clone(),
    };
    let out = std::path::absolute(&out).unwrap_or(out);
    let sweep = Sweep {
        table,
        file,
        overrides: args.set.clone(),
        grid: grid.clone(),
        out: out.clone(),
    };
    let all_runs = sweep.runs()?;
    for name in &args.only {
        if !all_runs.iter().any(|r| &r.spec.name == name) {
            let names: Vec<&str> = all_runs.iter().map(|r| r.spec.name.as_str()).collect();
            bail!(
                "--only {name}: no such run in the grid (runs: {})",
                names.join(", ")
            );
        }
    }
    let selected: Vec<SweepRun> = all_runs
        .iter()
        .filter(|r| args.only.is_empty() || args.only.contains(&r.spec.name))
        .cloned()
        .collect();

    if args.emit_commands {
        for r in &selected {
            println!("{}", command_for(&args, &grid_specs, &out, &r.spec.name));
        }
        return Ok(());
    }

    let mut failures = Vec::new();
    if !args.report_only {
        let jobs = args.jobs.max(1);
        let quiet = jobs > 1;
        println!(
            "study directory: {} ({} runs, {} at a time, backend {})",
            out.display(),
            selected.len(),
            jobs.min(selected.len().max(1)),
            args.backend
        );
        let results = run_pool(&selected, jobs, |worker, run| {
            let backend = backend_for(args.backend, worker);
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
            let r = ember_backend::run(
                backend,
                TrainOne {
                    sweep: &sweep,
                    run,
                    quiet,
                },
            )
            .map_err(anyhow::Error::from)
            .and_then(|r| r);
            match &r {
                Ok(Outcome::Skipped) => {}
                Ok(o) => println!("[{}] done ({o:?})", run.spec.name),
                Err(e) => eprintln!("[{}] failed: {e:#}", run.spec.name),
            }
            r
        });
        for (run, r) in selected.iter().zip(results) {
            if let Err(e) = r {
                failures.push(format!("{}: {e:#}", run.spec.name));
            }
        }
    }

    // The runs the report covers: the grid's, or with --report-only and no grid every finished
    // run under the study directory.
    let dirs: Vec<PathBuf> = if args.report_only && args.grid.is_empty() && args.config.is_some() {
        finished_runs(&out)
    } else {
        all_runs.iter().map(|r| r.dir.clone()).collect()
    };
    let (finished, unfinished): (Vec<&PathBuf>, Vec<&PathBuf>) = dirs
        .iter()
        .partition(|d| ember_study::record::status(d) == RunStatus::Finished);
    let finished: Vec<PathBuf> = finished.into_iter().cloned().collect();
    let unfinished: Vec<String> = unfinished
        .iter()
        .filter_map(|d| d.file_name().map(|n| n.to_string_lossy().into_owned()))
        .collect();

    let mut base_benchmarks = None;
    if !args.eval_tasks.is_empty() {
        let Some(data_dir) = args.data_dir.clone() else {
            bail!("--eval-tasks needs --data-dir DIR (layout in docs/eval.md)");
        };
        let opts = BenchOptions {
            tasks: args.eval_tasks.clone(),
            data_dir,
            limit: args.eval_limit,
            num_fewshot: 0,
            skip_missing: args.skip_missing,
            pack_tokens: 256,
        };
        let base = &base_cfg.model.model_name_or_path;
        ember_backend::run(
            args.backend,
            Score {
                base,
                out: &out,
                runs: &finished,
                opts: &opts,
            },
        )??;
        base_benchmarks = bench::read_base(&out)?;
    }

    let records = finished
        .iter()
        .map(|d| RunRecord::load(d, args.patience))
        .collect::<Result<Vec<_>, _>>()?;
    let grid = if grid.axes.is_empty() {
        grid_from_records(&finished)
    } else {
        grid
    };
    let report = Report::new(
        grid,
        records,
        unfinished,
        base_benchmarks,
        args.select_metric.clone(),
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
    if !failures.is_empty() {
        bail!(
            "{} run(s) failed:\n  {}",
            failures.len(),
            failures.join("\n  ")
        );
    }
    Ok(())
}

/// The grid the finished runs' `study_run.json` files describe (for `--report-only`).
fn grid_from_records(dirs: &[PathBuf]) -> Grid {
    let mut grid = Grid::default();
    for d in dirs {
        let Ok(f) = StudyRunFile::read(d) else {
            continue;
        };
        for (k, v) in f.spec.settings {
            match grid.axes.iter_mut().find(|a| a.key == k) {
                Some(a) if !a.values.contains(&v) => a.values.push(v),
                Some(_) => {}
                None => grid.axes.push(ember_study::Axis {
                    key: k,
                    values: vec![v],
                }),
            }
        }
    }
    grid
}
