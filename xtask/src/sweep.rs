//! `cargo xtask sweep`: train the cross product of `--grid` axes, each run in its own directory
//! (finished runs skipped, interrupted ones resumed), optionally score every checkpoint on
//! benchmarks, then write `report.md`, `report.json` and plots ([`ember_study::sweep::run_sweep`]).
//! No arguments: a data-scaling study of the shipped tiny model (three data sizes) in a few minutes
//! on CPU.

use std::path::PathBuf;

use ember_study::sweep::{DefaultStudy, SweepOptions, run_sweep};

use crate::args::{BackendArgs, ConfigArgs, repo_root};

/// The default study, shipped in the repository; its paths are relative to the repository root.
const STUDY_CONFIG: &str = include_str!("../../fixtures/study/finetune.toml");
/// The default grid of the default study: nested subsets of the 104 training rows.
const STUDY_GRID: &str = "train_samples=26,52,104";

#[derive(clap::Args, Default)]
pub struct Args {
    #[command(flatten)]
    config: ConfigArgs,
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
    #[command(flatten)]
    backend: BackendArgs,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let opts = SweepOptions {
        config: args.config.config,
        default_study: DefaultStudy {
            config: STUDY_CONFIG,
            grid: STUDY_GRID,
            root: repo_root(),
        },
        overrides: args.config.set,
        grid: args.grid,
        out: args.out,
        jobs: args.jobs,
        only: args.only,
        emit_commands: args.emit_commands,
        report_only: args.report_only,
        eval_tasks: args.eval_tasks,
        data_dir: args.data_dir,
        eval_limit: args.eval_limit,
        skip_missing: args.skip_missing,
        select_metric: args.select_metric,
        patience: args.patience,
        backend: args.backend.backend,
    };
    Ok(run_sweep(&opts)?)
}
