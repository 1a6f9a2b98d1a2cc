//! The training loop, step for step as HF `Trainer` with a PEFT model: accumulation windows with a
//! partial last window, loss normalised by the supervised tokens of the whole window
//! (`num_items_in_batch`), global gradient clipping, AdamW, a `LambdaLR`-style schedule, HF logging.

use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::module::AutodiffModule;
use burn::optim::{GradientsAccumulator, GradientsParams};
use burn::tensor::{DType, ElementConversion, Int, Tensor, TensorData, backend::AutodiffBackend, backend::Backend};
use ember_data::{Batch, Example, Loader, LoaderConfig, Position, SftData};
use ember_optim::{AdamW, AdamWConfig, LrScheduler, SchedulerArgs, clip_grad_norm};
use ember_qwen3::{Qwen3Config, Qwen3ForCausalLM, load_pretrained};

use crate::config::{FinetuneConfig, Strategy};
use crate::plan::StepPlan;
use crate::report::{Banner, Reporter, Summary};
use crate::state::{LogEntry, TrainerState, write_json};
use crate::{TrainError, adapter};

/// What a finished run produced.
#[derive(Debug, Clone)]
pub struct RunOutput {
    pub output_dir: PathBuf,
    pub state: TrainerState,
    pub summary: Summary,
}

/// A loaded run: model, data and plan, ready to train. Split from [`Run::train`] so that callers
/// (tests, the planner) can inspect what will happen first.
pub struct Run<B: AutodiffBackend> {
    pub cfg: FinetuneConfig,
    pub model_cfg: Qwen3Config,
    pub model: Qwen3ForCausalLM<B>,
    /// The adapter's PEFT config (written with every save).
    pub adapter_cfg: ember_lora::AdapterConfig,
    pub data: SftData,
    pub plan: StepPlan,
    pub device: B::Device,
}

/// The compute dtype a config names.
pub fn compute_dtype(name: &str) -> DType {
    match name {
        "bf16" | "bfloat16" => DType::BF16,
        _ => DType::F32,
    }
}

impl<B: AutodiffBackend> Run<B> {
    /// Loads tokenizer, data, model and adapter as the config says.
    pub fn load(cfg: &FinetuneConfig, device: &B::Device) -> Result<Self, TrainError> {
        let model_dir = &cfg.model.model_name_or_path;
        let tok = ember_data::Tokenizer::from_file(model_dir.join("tokenizer.json"))?;
        let data = ember_data::load_sft(&cfg.data, &tok)?;
        Self::with_data(cfg, data, device)
    }

    /// As [`Run::load`], with data tokenized elsewhere.
    pub fn with_data(cfg: &FinetuneConfig, data: SftData, device: &B::Device) -> Result<Self, TrainError> {
        if data.train.is_empty() {
            return Err(TrainError::EmptyDataset(cfg.data.dataset.join(",")));
        }
        let (model_cfg, model) =
            load_pretrained::<B>(&cfg.model.model_name_or_path, compute_dtype(&cfg.model.dtype), device)?;
        let (model, adapter_cfg) = adapter::attach(model, cfg)?;
        let t = &cfg.train;
        let plan = StepPlan::new(
            data.train.len(),
            t.per_device_train_batch_size,
            t.gradient_accumulation_steps,
            t.num_train_epochs,
            t.max_steps,
        );
        Ok(Self {
            cfg: cfg.clone(),
            model_cfg,
            model,
            adapter_cfg,
            data,
            plan,
            device: device.clone(),
        })
    }

    /// The banner's figures.
    pub fn banner(&self) -> Result<Banner, TrainError> {
        let report = adapter::trainable_report(&self.model);
        let warmup_steps = scheduler_args(&self.cfg)?.warmup_steps_for(self.plan.max_steps)?;
        let s = &self.data.stats.train;
        Ok(Banner {
            train_samples: self.data.train.len(),
            eval_samples: self.data.eval.len(),
            plan: self.plan.clone(),
            warmup_steps,
            trainable_line: report.to_string(),
            trainable_params: report.trainable,
            train_tokens: s.tokens,
            supervised_tokens: s.supervised_tokens,
        })
    }

    /// Trains to the end, writing outputs into `output.output_dir`.
    pub fn train(self, reporter: &mut dyn Reporter) -> Result<RunOutput, TrainError> {
        let banner = self.banner()?;
        reporter.banner(&banner);
        let Run {
            cfg,
            model_cfg,
            mut model,
            adapter_cfg,
            data,
            plan,
            device,
        } = self;
        let out_dir = cfg.output.output_dir.clone();
        std::fs::create_dir_all(&out_dir).map_err(|source| TrainError::Io {
            path: out_dir.clone(),
            source,
        })?;
        let t = &cfg.train;
        let mut opt = AdamW::<B>::new(AdamWConfig {
            beta1: t.adam_beta1,
            beta2: t.adam_beta2,
            eps: t.adam_epsilon,
            weight_decay: t.weight_decay,
        });
        let mut sched = Run::<B>::scheduler_for(&cfg, &plan)?;
        let mut loader = Loader::new(
            &data.train,
            LoaderConfig {
                batch_size: t.per_device_train_batch_size,
                shuffle: !t.disable_shuffling,
                group_by_length: t.group_by_length,
                seed: t.seed,
                pad_id: data.pad_id,
                pad_to_multiple_of: cfg.data.pad_to_multiple_of,
            },
        );
        let mut state = TrainerState {
            eval_steps: cfg.eval.eval_steps,
            is_local_process_zero: true,
            is_world_process_zero: true,
            logging_steps: t.logging_steps,
            max_steps: plan.max_steps,
            num_train_epochs: plan.epochs,
            save_steps: cfg.output.save_steps,
            train_batch_size: t.per_device_train_batch_size,
            ..Default::default()
        };
        let mut log_file = crate::report::JsonlLog::create(&out_dir)?;
        let start = Instant::now();
        let (mut loss_since_log, mut last_logged, mut total_loss) = (0.0f64, 0u64, 0.0f64);
        let mut tokens_seen = 0u64;
        'epochs: for epoch in 0..plan.epochs {
            for window in plan.windows() {
                if state.global_step >= plan.max_steps {
                    break 'epochs;
                }
                let batches: Vec<Batch> = window
                    .clone()
                    .filter_map(|b| loader.batch_at(Position { epoch, batch: b }))
                    .collect();
                let n_items = ember_data::count_target_tokens(&batches);
                tokens_seen += batches.iter().map(|b| b.real_tokens() as u64).sum::<u64>();
                let mut acc = GradientsAccumulator::<Qwen3ForCausalLM<B>>::new();
                let mut step_loss = Tensor::<B::InnerBackend, 1>::zeros([1], &device);
                for b in &batches {
                    let (ids, mask, labels) = batch_tensors::<B>(b, &device);
                    // HF divides each micro-batch's summed token loss by the whole window's count.
                    let loss = model
                        .forward_loss(ids, Some(mask), labels, &model_cfg)
                        .sum
                        .div_scalar(n_items.max(1) as f64);
                    step_loss = step_loss + loss.clone().inner();
                    let grads = GradientsParams::from_grads(loss.backward(), &model);
                    acc.accumulate(&model, grads);
                }
                let mut grads = acc.grads();
                let grad_norm = clip_grad_norm(&model, &mut grads, t.max_grad_norm);
                let lr = sched.lr();
                model = opt.step(lr, model, grads);
                sched.step();
                state.global_step += 1;
                let step = state.global_step;
                state.epoch = epoch as f64 + window.end as f64 / plan.micro_batches_per_epoch as f64;
                let step_loss: f64 = step_loss.into_scalar().elem::<f64>();
                if !step_loss.is_finite() {
                    return Err(non_finite(&out_dir, &mut log_file, "loss", step));
                }
                if !grad_norm.is_finite() {
                    return Err(non_finite(&out_dir, &mut log_file, "gradient norm", step));
                }
                loss_since_log += step_loss;
                total_loss += step_loss;
                if step % t.logging_steps as u64 == 0 {
                    let entry = LogEntry {
                        loss: Some(loss_since_log / (step - last_logged) as f64),
                        grad_norm: Some(grad_norm),
                        learning_rate: Some(lr),
                        epoch: state.epoch,
                        step,
                        ..Default::default()
                    };
                    (loss_since_log, last_logged) = (0.0, step);
                    log_file.write(&entry, plan.max_steps, start.elapsed().as_secs_f64())?;
                    reporter.log(&entry);
                    state.log_history.push(entry);
                }
                reporter.step(step, plan.max_steps, start.elapsed().as_secs_f64());
                let epoch_end = window.end == plan.micro_batches_per_epoch;
                let eval_now = match cfg.eval.eval_strategy {
                    Strategy::No => false,
                    Strategy::Steps => cfg.eval.eval_steps.is_some_and(|s| step % s as u64 == 0),
                    Strategy::Epoch => epoch_end,
                };
                if eval_now && !data.eval.is_empty() {
                    let entry = evaluate_entry(&model, &model_cfg, &cfg, &data, &device, state.epoch, step);
                    log_file.write(&entry, plan.max_steps, start.elapsed().as_secs_f64())?;
                    reporter.log(&entry);
                    state.log_history.push(entry);
                }
                let save_now = match cfg.output.save_strategy {
                    Strategy::No => false,
                    Strategy::Steps => step % cfg.output.save_steps as u64 == 0 || step == plan.max_steps,
                    Strategy::Epoch => epoch_end || step == plan.max_steps,
                };
                if save_now {
                    state.num_input_tokens_seen = tokens_seen;
                    crate::checkpoint::save(&out_dir, &model, &adapter_cfg, &opt, &sched, &state)?;
                }
            }
        }
        let runtime = start.elapsed().as_secs_f64();
        let steps = state.global_step.max(1) as f64;
        let train_loss = total_loss / steps;
        let samples = if t.max_steps > 0 {
            (plan.max_steps as usize * t.per_device_train_batch_size * t.gradient_accumulation_steps) as f64
        } else {
            data.train.len() as f64 * t.num_train_epochs
        };
        let final_entry = LogEntry {
            train_runtime: Some(runtime),
            train_samples_per_second: Some(samples / runtime),
            train_steps_per_second: Some(plan.max_steps as f64 / runtime),
            total_flos: Some(0.0),
            train_loss: Some(train_loss),
            epoch: state.epoch,
            step: state.global_step,
            ..Default::default()
        };
        state.num_input_tokens_seen = tokens_seen;
        state.log_history.push(final_entry.clone());
        adapter::save(&model, &adapter_cfg, &out_dir)?;
        state.save(&out_dir)?;
        let final_eval = (!data.eval.is_empty()).then(|| {
            eval_loss(&model.valid(), &model_cfg, &data.eval, cfg.eval.per_device_eval_batch_size, data.pad_id, cfg.data.pad_to_multiple_of, &device)
        });
        let mut results = serde_json::json!({
            "epoch": state.epoch,
            "total_flos": 0.0,
            "train_loss": train_loss,
            "train_runtime": runtime,
            "train_samples_per_second": samples / runtime,
            "train_steps_per_second": plan.max_steps as f64 / runtime,
        });
        write_json(&out_dir.join("train_results.json"), &results)?;
        if let Some(e) = final_eval {
            results["eval_loss"] = e.into();
            write_json(&out_dir.join("eval_results.json"), &serde_json::json!({"epoch": state.epoch, "eval_loss": e}))?;
        }
        write_json(&out_dir.join("all_results.json"), &results)?;
        if cfg.output.plot_loss {
            crate::plot::plot_losses(&state, &out_dir)?;
        }
        let summary = Summary {
            train_samples: data.train.len(),
            eval_samples: data.eval.len(),
            steps: state.global_step,
            train_runtime: runtime,
            seconds_per_step: runtime / steps,
            train_loss,
            eval_loss: final_eval,
            tokens_per_second: tokens_seen as f64 / runtime,
        };
        reporter.summary(&summary, &out_dir);
        Ok(RunOutput {
            output_dir: out_dir,
            state,
            summary,
        })
    }

    fn scheduler_for(cfg: &FinetuneConfig, plan: &StepPlan) -> Result<LrScheduler, TrainError> {
        Ok(scheduler_args(cfg)?.build(cfg.train.learning_rate, plan.max_steps)?)
    }
}

/// The `[train]` keys that choose the learning-rate schedule, as ember-optim takes them.
pub fn scheduler_args(cfg: &FinetuneConfig) -> Result<SchedulerArgs, TrainError> {
    let t = &cfg.train;
    let lr_scheduler_kwargs = t
        .lr_scheduler_kwargs
        .iter()
        .map(|(k, v)| {
            serde_json::to_value(v)
                .map(|j| (k.clone(), j))
                .map_err(|e| TrainError::Other(e.to_string()))
        })
        .collect::<Result<_, _>>()?;
    Ok(SchedulerArgs {
        lr_scheduler_type: t.lr_scheduler_type.clone(),
        warmup_ratio: t.warmup_ratio,
        warmup_steps: t.warmup_steps,
        lr_scheduler_kwargs,
    })
}

fn non_finite(out_dir: &Path, log: &mut crate::report::JsonlLog, what: &'static str, step: u64) -> TrainError {
    let _ = log.note(&format!("non-finite {what} at step {step}; training stopped"));
    let _ = out_dir;
    TrainError::NonFinite { what, step }
}

/// Input ids, attention mask and labels of a batch as tensors.
pub fn batch_tensors<B: Backend>(
    b: &Batch,
    device: &B::Device,
) -> (Tensor<B, 2, Int>, Tensor<B, 2, Int>, Tensor<B, 2, Int>) {
    let shape = [b.batch_size, b.seq_len];
    let t = |v: &Vec<i64>| Tensor::<B, 2, Int>::from_data(TensorData::new(v.clone(), shape), device);
    (t(&b.input_ids), t(&b.attention_mask), t(&b.labels))
}

fn evaluate_entry<B: AutodiffBackend>(
    model: &Qwen3ForCausalLM<B>,
    model_cfg: &Qwen3Config,
    cfg: &FinetuneConfig,
    data: &SftData,
    device: &B::Device,
    epoch: f64,
    step: u64,
) -> LogEntry {
    let start = Instant::now();
    let bs = cfg.eval.per_device_eval_batch_size;
    let loss = eval_loss(&model.valid(), model_cfg, &data.eval, bs, data.pad_id, cfg.data.pad_to_multiple_of, device);
    let runtime = start.elapsed().as_secs_f64();
    let n = data.eval.len() as f64;
    LogEntry {
        eval_loss: Some(loss),
        eval_runtime: Some(runtime),
        eval_samples_per_second: Some(n / runtime),
        eval_steps_per_second: Some(n / bs as f64 / runtime),
        epoch,
        step,
        ..Default::default()
    }
}

/// HF's `eval_loss`: each batch's token-mean loss, weighted by the batch's sample count, averaged
/// over samples; batches in dataset order. Batches without supervised tokens are skipped (their
/// loss is NaN, which HF filters).
pub fn eval_loss<B: Backend>(
    model: &Qwen3ForCausalLM<B>,
    model_cfg: &Qwen3Config,
    data: &[Example],
    batch_size: usize,
    pad_id: u32,
    pad_to_multiple_of: Option<usize>,
    device: &B::Device,
) -> f64 {
    let (mut sum, mut n) = (0.0f64, 0usize);
    let idx: Vec<usize> = (0..data.len()).collect();
    for chunk in idx.chunks(batch_size.max(1)) {
        let b = ember_data::collate(data, chunk, pad_id, pad_to_multiple_of);
        if b.target_tokens() == 0 {
            continue;
        }
        let (ids, mask, labels) = batch_tensors::<B>(&b, device);
        let loss: f64 = model
            .forward_loss(ids, Some(mask), labels, model_cfg)
            .mean()
            .into_scalar()
            .elem::<f64>();
        if loss.is_finite() {
            sum += loss * chunk.len() as f64;
            n += chunk.len();
        }
    }
    if n == 0 { f64::NAN } else { sum / n as f64 }
}
