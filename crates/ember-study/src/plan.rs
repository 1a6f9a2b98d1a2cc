//! What a run will be, before it runs, from `config.json` alone: samples after the split and
//! cutoff, tokens from the real tokenization (or an assumed length per sample), HF's step
//! arithmetic, the trainable-parameter line, tokens per trainable parameter, the memory estimate,
//! and (with [`crate::calibrate`]) the time estimate.

use std::path::Path;

use ember_data::{DataStats, Example, SftData, SftStats, Tokenizer};
use ember_lora::ParamReport;
use ember_qwen3::Qwen3Config;
use ember_train::config::Strategy;
use ember_train::{Banner, FinetuneConfig, StepPlan, trainer::scheduler_args};
use serde::Serialize;

use crate::StudyError;
use crate::calibrate::Timing;
use crate::memory::{self, MemoryEstimate, MemoryInputs};

/// Planning without a dataset: counts (and an assumed length) instead of tokenized data.
#[derive(Debug, Clone, Default)]
pub struct PlanOptions {
    /// Training samples after the split (`--samples`); the dataset is not read.
    pub samples: Option<usize>,
    /// Evaluation samples to assume with `samples` (default 0).
    pub eval_samples: Option<usize>,
    /// Tokens per sample to assume with `samples` (default `cutoff_len`), half of them supervised.
    pub tokens_per_sample: Option<usize>,
    /// Bytes held before the model (default: this process's resident size on CPU).
    pub runtime_bytes: Option<u64>,
}

/// Where the token figures come from.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DataSource {
    /// The dataset, tokenized as the run will tokenize it.
    Tokenized,
    /// `--samples`: synthetic samples of an assumed length.
    Assumed { tokens_per_sample: usize },
}

/// The plan of one run.
#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    /// The figures the trainer's banner prints, computed the same way.
    pub banner: Banner,
    pub source: DataSource,
    pub eval_tokens: usize,
    pub longest_sample: usize,
    pub truncated: usize,
    /// Evaluations and checkpoint saves during training.
    pub evaluations: u64,
    pub saves: u64,
    pub memory: MemoryEstimate,
    pub timing: Option<Timing>,
}

/// A plan and the data it was made from (synthetic with `--samples`), for calibration.
pub struct Planned {
    pub plan: Plan,
    pub model_cfg: Qwen3Config,
    pub data: SftData,
}

/// The model's `config.json`.
pub fn model_config(cfg: &FinetuneConfig) -> Result<Qwen3Config, StudyError> {
    let dir = &cfg
        .model
        .config_dir()
        .map_err(ember_train::TrainError::from)?;
    ember_qwen3::check_model_dir(dir)?;
    Ok(Qwen3Config::from_file(
        dir.join(ember_qwen3::pretrained::CONFIG_FILE),
    )?)
}

/// Whether the model directory holds weights (a run can calibrate on them).
pub fn has_weights(dir: &Path) -> bool {
    ["model.safetensors", "model.safetensors.index.json"]
        .iter()
        .any(|f| dir.join(f).is_file())
}

/// Tokenized data as the run would load it, or synthetic data with `opts.samples`.
pub fn plan_data(
    cfg: &FinetuneConfig,
    model_cfg: &Qwen3Config,
    opts: &PlanOptions,
) -> Result<(SftData, DataSource), StudyError> {
    if let Some(n) = opts.samples {
        if n == 0 {
            return Err(StudyError::Plan("--samples must be at least 1".into()));
        }
        if let Some(t @ (0 | 1)) = opts.tokens_per_sample {
            return Err(StudyError::Plan(format!(
                "--tokens-per-sample must be at least 2 (a supervised token needs one before it), got {t}"
            )));
        }
        if let Some(t) = opts.tokens_per_sample {
            // A real run cuts every sample at cutoff_len, so a longer one would plan a run that
            // cannot happen.
            if t > cfg.data.cutoff_len {
                return Err(StudyError::Plan(format!(
                    "--tokens-per-sample {t} is past data.cutoff_len = {}: the run cuts every sample there",
                    cfg.data.cutoff_len
                )));
            }
            if t > model_cfg.max_position_embeddings {
                return Err(StudyError::Plan(format!(
                    "--tokens-per-sample {t} is past the model's context (max_position_embeddings = {})",
                    model_cfg.max_position_embeddings
                )));
            }
        }
        let len = opts.tokens_per_sample.unwrap_or(cfg.data.cutoff_len).max(2);
        let data = synthetic_data(n, opts.eval_samples.unwrap_or(0), len, model_cfg.vocab_size);
        return Ok((
            data,
            DataSource::Assumed {
                tokens_per_sample: len,
            },
        ));
    }
    let dir = cfg
        .model
        .config_dir()
        .map_err(ember_train::TrainError::from)?;
    ember_qwen3::check_model_dir(&dir)?;
    let tok_path = dir.join(ember_qwen3::pretrained::TOKENIZER_FILE);
    if !tok_path.is_file() {
        return Err(StudyError::Plan(format!(
            "{} not found: counting tokens needs the tokenizer (or plan with --samples N)",
            tok_path.display()
        )));
    }
    let tok = Tokenizer::from_file(&tok_path)?;
    Ok((
        ember_data::load_sft(&cfg.data, &tok)?,
        DataSource::Tokenized,
    ))
}

/// `n` train and `n_eval` eval samples of `len` tokens, the second half supervised, with
/// deterministic token ids below `vocab`.
pub fn synthetic_data(n: usize, n_eval: usize, len: usize, vocab: usize) -> SftData {
    let vocab = vocab.max(2) as u64;
    let example = |k: usize| {
        let input_ids: Vec<u32> = (0..len)
            .map(|j| ((k as u64 * 7919 + j as u64 * 104_729 + 1) % vocab) as u32)
            .collect();
        let labels = input_ids
            .iter()
            .enumerate()
            .map(|(j, &t)| {
                if j < len / 2 {
                    ember_data::IGNORE_INDEX
                } else {
                    t as i32
                }
            })
            .collect();
        Example {
            input_ids,
            labels,
            full_len: len,
        }
    };
    let train: Vec<Example> = (0..n).map(example).collect();
    let eval: Vec<Example> = (n..n + n_eval).map(example).collect();
    SftData {
        stats: SftStats {
            train: DataStats::of(&train),
            eval: (!eval.is_empty()).then(|| DataStats::of(&eval)),
            skipped: 0,
            skipped_examples: Vec::new(),
        },
        train,
        eval,
        pad_id: 0,
        eos_id: 0,
    }
}

/// `len` rounded up to a multiple of `m`.
/// The weights DoRA adapts in a model of this shape: the most of any one decoder layer
/// (`model.layers.N.`), and the largest one.
fn dora_weights(
    shape: &ember_lora::ModelShape,
    cfg: &FinetuneConfig,
    model_cfg: &Qwen3Config,
) -> Result<memory::DoraWeights, StudyError> {
    let chosen = shape.select(&cfg.lora.selector()?)?;
    let mut per_layer = vec![0u64; model_cfg.num_hidden_layers.max(1)];
    let mut largest = 0u64;
    for l in chosen {
        let n = (l.in_features * l.out_features) as u64;
        largest = largest.max(n);
        let layer = l
            .path
            .strip_prefix("model.layers.")
            .and_then(|rest| rest.split('.').next())
            .and_then(|i| i.parse::<usize>().ok());
        if let Some(slot) = layer.and_then(|i| per_layer.get_mut(i)) {
            *slot += n;
        }
    }
    Ok(memory::DoraWeights {
        per_layer: per_layer.into_iter().max().unwrap_or(0),
        largest,
        dropout: cfg.lora.lora_dropout > 0.0,
    })
}

fn pad_to(len: usize, m: Option<usize>) -> usize {
    match m {
        Some(m) if m > 1 => len.div_ceil(m) * m,
        _ => len,
    }
}

/// Plans a run.
pub fn plan(cfg: &FinetuneConfig, opts: &PlanOptions) -> Result<Planned, StudyError> {
    let model_cfg = model_config(cfg)?;
    let (data, source) = plan_data(cfg, &model_cfg, opts)?;
    let plan = plan_with_data(cfg, &model_cfg, &data, source, opts.runtime_bytes)?;
    Ok(Planned {
        plan,
        model_cfg,
        data,
    })
}

/// Plans a run whose data is already loaded.
pub fn plan_with_data(
    cfg: &FinetuneConfig,
    model_cfg: &Qwen3Config,
    data: &SftData,
    source: DataSource,
    runtime_bytes: Option<u64>,
) -> Result<Plan, StudyError> {
    if data.train.is_empty() {
        return Err(StudyError::Plan("the training set is empty".into()));
    }
    let t = &cfg.train;
    let steps = StepPlan::new(
        data.train.len(),
        t.per_device_train_batch_size,
        t.gradient_accumulation_steps,
        t.num_train_epochs,
        t.max_steps,
    );
    let warmup_steps = scheduler_args(cfg)?.warmup_steps_for(steps.max_steps)?;
    let shape = ember_qwen3::lora::model_shape(model_cfg);
    let params = ParamReport::from_shape(&shape, &cfg.lora)?;
    let s = &data.stats.train;
    let banner = Banner {
        train_samples: data.train.len(),
        eval_samples: data.eval.len(),
        plan: steps.clone(),
        warmup_steps,
        trainable_line: params.to_string(),
        trainable_params: params.trainable,
        train_tokens: s.tokens,
        supervised_tokens: s.supervised_tokens,
    };
    let has_eval = !data.eval.is_empty();
    let full_epochs = steps.max_steps / steps.steps_per_epoch.max(1) as u64;
    let evaluations = match cfg.eval.eval_strategy {
        _ if !has_eval => 0,
        Strategy::No => 0,
        Strategy::Epoch => full_epochs,
        Strategy::Steps => steps.max_steps / cfg.eval.eval_steps.unwrap_or(1).max(1) as u64,
    };
    let saves = match cfg.output.save_strategy {
        Strategy::No => 0,
        Strategy::Epoch => {
            full_epochs
                + u64::from(
                    !steps
                        .max_steps
                        .is_multiple_of(steps.steps_per_epoch.max(1) as u64),
                )
        }
        Strategy::Steps => {
            let every = cfg.output.save_steps.max(1) as u64;
            steps.max_steps / every + u64::from(!steps.max_steps.is_multiple_of(every))
        }
    };
    let longest = s.max_len;
    let runtime_bytes = runtime_bytes.unwrap_or_else(|| memory::current_rss().unwrap_or(0));
    let memory = memory::estimate(
        model_cfg,
        MemoryInputs {
            base_params: shape.base_params,
            trainable_params: params.trainable,
            lora_rank: cfg.lora.lora_rank,
            dtype: cfg.model.dtype.clone(),
            batch_size: t.per_device_train_batch_size.min(data.train.len()),
            padded_len: pad_to(longest, cfg.data.pad_to_multiple_of),
            runtime_bytes,
            recompute: t.gradient_checkpointing(),
            dora: cfg
                .lora
                .use_dora
                .then(|| dora_weights(&shape, cfg, model_cfg))
                .transpose()?,
        },
    );
    Ok(Plan {
        banner,
        source,
        eval_tokens: data.stats.eval.as_ref().map_or(0, |e| e.tokens),
        longest_sample: longest,
        truncated: s.truncated,
        evaluations,
        saves,
        memory,
        timing: None,
    })
}

impl std::fmt::Display for Plan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let b = &self.banner;
        writeln!(f, "***** Plan *****")?;
        match &self.source {
            DataSource::Tokenized => writeln!(
                f,
                "  Data: tokenized ({} cut by cutoff_len)",
                self.truncated
            )?,
            DataSource::Assumed { tokens_per_sample } => writeln!(
                f,
                "  Data: assumed, {tokens_per_sample} tokens per sample (half supervised)"
            )?,
        }
        b.write_figures(f)?;
        writeln!(
            f,
            "\n  Eval tokens = {}, longest sample = {}; {} evaluations, {} checkpoints",
            self.eval_tokens, self.longest_sample, self.evaluations, self.saves
        )?;
        write!(f, "{}", self.memory)?;
        if let Some(t) = &self.timing {
            write!(f, "\n{t}")?;
        }
        Ok(())
    }
}
