//! `cargo xtask finetune`: train a LoRA adapter from a TOML config (or the embedded demo).

use std::path::{Path, PathBuf};

use anyhow::Context;
use ember_backend::{AutodiffBackend, BackendChoice, BackendOp};
use ember_train::{FinetuneConfig, Run, report::Console};

/// The demo config, shipped in the repository; its paths are relative to the repository root.
const DEMO_CONFIG: &str = include_str!("../../fixtures/demo/finetune.toml");

#[derive(clap::Args, Default)]
pub struct Args {
    /// A TOML run config (LLaMA-Factory/HF key names). Without it, the embedded demo runs.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Override a key: `--set learning_rate=1e-4` or `--set train.learning_rate=1e-4` (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
    /// flex | tch | tch-cuda:N | cuda:N
    #[arg(long, default_value_t = BackendChoice::default_compiled())]
    backend: BackendChoice,
}

/// The repository root (xtask lives one level below it).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Reads the config the arguments name, with overrides applied.
pub fn load_config(config: Option<&Path>, set: &[String]) -> anyhow::Result<FinetuneConfig> {
    match config {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            let table: toml::Table = text
                .parse()
                .with_context(|| format!("{} is not valid TOML", path.display()))?;
            Ok(FinetuneConfig::from_table(table, path, set)?)
        }
        None => {
            let mut table: toml::Table = DEMO_CONFIG.parse().context("the embedded demo config")?;
            // The demo's inputs live in the repository; its outputs go under the current directory.
            let root = repo_root();
            for (sec, key) in [("model", "model_name_or_path"), ("data", "dataset_dir")] {
                if let Some(v) = table.get_mut(sec).and_then(|s| s.get_mut(key))
                    && let Some(rel) = v.as_str()
                {
                    *v = toml::Value::String(root.join(rel).display().to_string());
                }
            }
            Ok(FinetuneConfig::from_table(
                table,
                Path::new("<embedded demo config>"),
                set,
            )?)
        }
    }
}

struct Finetune(FinetuneConfig);

impl BackendOp for Finetune {
    type Output = anyhow::Result<()>;
    fn run<B: AutodiffBackend>(self, device: B::Device) -> Self::Output {
        let run = Run::<B>::load(&self.0, &device).context("preparing the run")?;
        run.train(&mut Console::default()).context("training")?;
        Ok(())
    }
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let cfg = load_config(args.config.as_deref(), &args.set)?;
    println!("backend: {}", args.backend);
    ember_backend::run(args.backend, Finetune(cfg))?
}
