//! A sweep: the base config, `--set` overrides and a [`Grid`]; each point trains into
//! `out/runs/<name>/`. A finished run is skipped, an interrupted one resumes from its newest
//! complete checkpoint (`train.resume_from_checkpoint = true`), and runs can go `jobs` at a time.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use burn::tensor::backend::AutodiffBackend;
use ember_train::report::Reporter;
use ember_train::{FinetuneConfig, Run, RunOutput};

use crate::record::{PlannedFigures, RunStatus, StudyRunFile, status};
use crate::{Grid, RunSpec, StudyError};

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
}
