//! The training recipe, step for step as HF `Trainer` with a PEFT model: accumulation windows with
//! a partial last window, HF logging, evaluation, checkpoints and result files. [`Run::train`]
//! reads as the recipe's table of contents (setup, step, evaluate, save, finish, as torchtune's
//! recipes); the optimizer step itself is [`crate::step::train_step`].

use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::module::AutodiffModule;
use burn::tensor::{DType, ElementConversion, backend::AutodiffBackend, backend::Backend};
use ember_data::{Batch, Example, Loader, LoaderConfig, Position, SftData};
use ember_optim::{AdamW, AdamWConfig, LrScheduler, SchedulerArgs};
use ember_qwen3::{
    Backprop, LossImpl, ModelInputs, Qwen3Config, Qwen3ForCausalLM, load_pretrained,
};

use crate::checkpoint::{self, Fingerprint, LoopState};
use crate::config::{FinetuneConfig, ResumeFrom, Strategy};
use crate::plan::{PlannedStep, StepPlan};
use crate::previous::{self, Recovered, SetAside};
use crate::report::{Banner, JsonlLog, Reporter, Summary};
use crate::state::{LogEntry, TrainerState, write_json};
use crate::step::{StepSettings, Window, train_step};
use crate::tensorboard::EventWriter;
use crate::{TrainError, adapter};

/// HF Trainer's result files in `output_dir`.
pub const TRAIN_RESULTS_FILE: &str = "train_results.json";
pub const EVAL_RESULTS_FILE: &str = "eval_results.json";
pub const ALL_RESULTS_FILE: &str = "all_results.json";

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
        let model_dir = cfg.model.model_dir()?;
        let tok = ember_data::Tokenizer::from_file(ember_qwen3::tokenizer_file(&model_dir)?)?;
        let data = ember_data::load_sft(&cfg.data, &tok)?;
        Self::with_data(cfg, data, device)
    }

    /// As [`Run::load`], with data tokenized elsewhere.
    pub fn with_data(
        cfg: &FinetuneConfig,
        data: SftData,
        device: &B::Device,
    ) -> Result<Self, TrainError> {
        if data.train.is_empty() {
            return Err(TrainError::EmptyDataset(cfg.data.dataset.join(",")));
        }
        let (model_cfg, model) = load_pretrained::<B>(
            cfg.model.model_dir()?,
            compute_dtype(&cfg.model.dtype),
            device,
        )?;
        Self::with_model(cfg, model_cfg, model, data, device)
    }

    /// As [`Run::with_data`], with the base model built elsewhere (e.g. random weights of the
    /// config's shape for a calibration): attaches the run's adapter and plans the steps.
    pub fn with_model(
        cfg: &FinetuneConfig,
        model_cfg: Qwen3Config,
        model: Qwen3ForCausalLM<B>,
        data: SftData,
        device: &B::Device,
    ) -> Result<Self, TrainError> {
        check_vocabulary(&data, &model_cfg, &cfg.model.model_name_or_path)?;
        check_trainable(&data, cfg)?;
        let (mut model, adapter_cfg) = adapter::attach(model, cfg)?;
        // Validated with the config; the model's defaults stay when the keys are unset.
        model.set_attention(cfg.model.attention_impl()?);
        if let Some(choice) = cfg.model.loss_choice()? {
            model.set_loss(LossImpl::for_vocab(choice, model_cfg.vocab_size));
        }
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

    /// Trains to the end (or resumes and continues), writing outputs into `output.output_dir`.
    ///
    /// With `overwrite_output_dir`, the previous run is set aside until this one has written its
    /// first checkpoint or its final adapter, and put back if this one fails before that
    /// ([`crate::previous`]).
    pub fn train(self, reporter: &mut dyn Reporter) -> Result<RunOutput, TrainError> {
        let out_dir = self.cfg.output.output_dir.clone();
        let recovered = previous::recover(&out_dir)?;
        let resume_dir = resume_checkpoint(&self.cfg)?;
        let mut aside = None;
        if resume_dir.is_none() {
            if self.cfg.output.overwrite_output_dir {
                aside = previous::set_aside(&out_dir)?;
            } else {
                refuse_to_overwrite(&out_dir)?;
            }
        }
        match self.recipe(reporter, resume_dir, &mut aside, recovered) {
            Ok(out) => Ok(out),
            Err(e) => match aside.take() {
                Some(previous) => {
                    previous.restore()?;
                    Err(TrainError::PreviousRunKept {
                        source: Box::new(e),
                        dir: out_dir,
                    })
                }
                None => Err(e),
            },
        }
    }

    /// The recipe, once the output directory is prepared: setup, the steps (each followed by
    /// evaluation and a checkpoint when due), the final outputs.
    fn recipe(
        self,
        reporter: &mut dyn Reporter,
        resume_dir: Option<PathBuf>,
        aside: &mut Option<SetAside>,
        recovered: Option<Recovered>,
    ) -> Result<RunOutput, TrainError> {
        let banner = self.banner()?;
        let Run {
            cfg,
            model_cfg: _,
            model,
            adapter_cfg,
            data,
            plan,
            device,
        } = self;
        let parts = Parts {
            cfg: &cfg,
            adapter_cfg: &adapter_cfg,
            data: &data,
            plan: &plan,
            device: &device,
        };
        let (mut run, mut model) = Training::setup(parts, model, resume_dir.as_deref())?;
        reporter.banner(&banner);
        run.note_start(recovered, aside.as_ref(), resume_dir.as_deref())?;
        let mut loader = Loader::new(&data.train, loader_config(&cfg, &data));
        for planned in plan.steps().skip(run.start_step as usize) {
            model = run.step(model, &planned, &mut loader, reporter)?;
            run.evaluate_if_due(&model, &planned, reporter)?;
            run.save_if_due(&model, &planned, aside)?;
        }
        run.finish(model, reporter, aside)
    }

    fn scheduler_for(cfg: &FinetuneConfig, plan: &StepPlan) -> Result<LrScheduler, TrainError> {
        Ok(scheduler_args(cfg)?.build(cfg.train.learning_rate, plan.max_steps)?)
    }
}

/// What a [`Run`] is made of, borrowed by the recipe's parts.
#[derive(Clone, Copy)]
struct Parts<'a, B: AutodiffBackend> {
    cfg: &'a FinetuneConfig,
    adapter_cfg: &'a ember_lora::AdapterConfig,
    data: &'a SftData,
    plan: &'a StepPlan,
    device: &'a B::Device,
}

impl<B: AutodiffBackend> Parts<'_, B> {
    /// [`eval_loss`] of `model` on the run's eval split, with the run's eval batching.
    fn eval_loss(&self, model: &Qwen3ForCausalLM<B>) -> f64 {
        eval_loss(
            &model.valid(),
            &self.data.eval,
            self.cfg.eval.per_device_eval_batch_size,
            self.data.pad_id,
            self.cfg.data.pad_to_multiple_of,
            self.device,
        )
    }

    /// An evaluation after `step`: the loss and HF's eval speed figures.
    fn evaluate(&self, model: &Qwen3ForCausalLM<B>, epoch: f64, step: u64) -> LogEntry {
        let start = Instant::now();
        let loss = self.eval_loss(model);
        let runtime = start.elapsed().as_secs_f64();
        let n = self.data.eval.len();
        // HF's speed_metrics: steps are whole batches; figures rounded to 4 / 3 / 3 decimals.
        let steps = n.div_ceil(self.cfg.eval.per_device_eval_batch_size.max(1));
        let round = |x: f64, d: i32| (x * 10f64.powi(d)).round() / 10f64.powi(d);
        LogEntry {
            eval_loss: Some(loss),
            eval_runtime: Some(round(runtime, 4)),
            eval_samples_per_second: Some(round(n as f64 / runtime, 3)),
            eval_steps_per_second: Some(round(steps as f64 / runtime, 3)),
            epoch,
            step,
            ..Default::default()
        }
    }
}

/// A run in progress: everything the recipe's parts share except the model, which each
/// optimizer step takes and gives back.
struct Training<'a, B: AutodiffBackend> {
    run: Parts<'a, B>,
    opt: AdamW<B>,
    sched: LrScheduler,
    state: TrainerState,
    loop_state: LoopState,
    log: JsonlLog,
    /// TensorBoard's event file (`report_to = "tensorboard"`).
    tensorboard: Option<EventWriter>,
    settings: StepSettings,
    out_dir: PathBuf,
    start: Instant,
    /// The step the run resumed after (0 for a fresh run), and the tokens seen by then.
    start_step: u64,
    start_tokens: u64,
}

impl<'a, B: AutodiffBackend> Training<'a, B> {
    /// Optimizer, schedule, trainer state and log; from a checkpoint when resuming (which must
    /// come from the same run: its fingerprint is checked first).
    fn setup(
        run: Parts<'a, B>,
        mut model: Qwen3ForCausalLM<B>,
        resume_dir: Option<&Path>,
    ) -> Result<(Self, Qwen3ForCausalLM<B>), TrainError> {
        let (cfg, plan) = (run.cfg, run.plan);
        let out_dir = cfg.output.output_dir.clone();
        std::fs::create_dir_all(&out_dir).map_err(checkpoint::io(&out_dir))?;
        let t = &cfg.train;
        let mut opt = AdamW::<B>::new(AdamWConfig {
            beta1: t.adam_beta1,
            beta2: t.adam_beta2,
            eps: t.adam_epsilon,
            weight_decay: t.weight_decay,
        });
        if let Some(ratio) = t.loraplus_lr_ratio {
            opt = opt.with_lr_scale(crate::step::loraplus_lr_scale(ratio));
        }
        let mut sched = Run::<B>::scheduler_for(cfg, plan)?;
        let fingerprint =
            Fingerprint::of(cfg, run.adapter_cfg, run.data.train.len(), plan.max_steps);
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
        let mut loop_state = LoopState {
            fingerprint: Some(fingerprint.clone()),
            ..Default::default()
        };
        if let Some(dir) = resume_dir {
            let saved = checkpoint::load_loop_state(dir)?;
            if let Some(fp) = &saved.fingerprint {
                let diff = fp.differences(&fingerprint);
                if !diff.is_empty() {
                    return Err(TrainError::CheckpointMismatch {
                        dir: dir.to_path_buf(),
                        differences: diff,
                    });
                }
            }
            ember_lora::load_peft(&mut model, dir)?;
            opt.load(dir, &model)?;
            sched = LrScheduler::load(dir)?;
            state = TrainerState::load(dir)?;
            loop_state = saved;
        }
        let log = JsonlLog::open(&out_dir, resume_dir.is_some())?;
        // A new event file per process, as torch's SummaryWriter: a resumed run adds one.
        let tensorboard = cfg
            .output
            .report_to
            .tensorboard()
            .then(|| {
                let dir = cfg
                    .output
                    .logging_dir
                    .clone()
                    .or_else(|| std::env::var_os("TENSORBOARD_LOGGING_DIR").map(PathBuf::from))
                    .unwrap_or_else(|| crate::tensorboard::default_logging_dir(&out_dir));
                EventWriter::create(&dir)
            })
            .transpose()?;
        let settings = StepSettings {
            backprop: Backprop::from_gradient_checkpointing(t.gradient_checkpointing()),
            max_grad_norm: t.max_grad_norm,
            seed: t.seed,
        };
        let (start_step, start_tokens) = (state.global_step, loop_state.tokens_seen);
        let training = Self {
            run,
            opt,
            sched,
            state,
            loop_state,
            log,
            tensorboard,
            settings,
            out_dir,
            start: Instant::now(),
            start_step,
            start_tokens,
        };
        Ok((training, model))
    }

    /// What the log should say about how this run started.
    fn note_start(
        &mut self,
        recovered: Option<Recovered>,
        aside: Option<&SetAside>,
        resume_dir: Option<&Path>,
    ) -> Result<(), TrainError> {
        match recovered {
            Some(Recovered::Restored) => self.log.note(
                "an earlier overwrite was interrupted before it saved anything: the run it replaced was put back",
            )?,
            Some(Recovered::Discarded) => self.log.note(
                "an earlier overwrite was interrupted after its first save: the run it replaced was deleted",
            )?,
            None => {}
        }
        if let Some(previous) = aside {
            self.log.note(&format!(
                "starting over: the previous run is kept in {} until this one saves",
                previous.dir().display()
            ))?;
        }
        if let Some(dir) = resume_dir {
            self.log.note(&format!(
                "resumed from {} at step {}",
                dir.display(),
                self.state.global_step
            ))?;
        }
        // Timing starts once everything is loaded.
        self.start = Instant::now();
        Ok(())
    }

    fn elapsed(&self) -> f64 {
        self.start.elapsed().as_secs_f64()
    }

    /// One optimizer step ([`train_step`]) and its log entry.
    fn step(
        &mut self,
        model: Qwen3ForCausalLM<B>,
        planned: &PlannedStep,
        loader: &mut Loader<'_>,
        reporter: &mut dyn Reporter,
    ) -> Result<Qwen3ForCausalLM<B>, TrainError> {
        let batches: Vec<Batch> = planned
            .window
            .clone()
            .filter_map(|batch| {
                loader.batch_at(Position {
                    epoch: planned.epoch,
                    batch,
                })
            })
            .collect();
        let window = Window {
            batches: &batches,
            first_micro_batch: planned.first_micro_batch(),
        };
        let (model, out) = match train_step(
            model,
            &mut self.opt,
            &mut self.sched,
            &window,
            &self.settings,
            &mut (),
            self.run.device,
        ) {
            Ok(done) => done,
            Err(e) => {
                if let TrainError::NonFinite { what, value, step } = &e {
                    // The log says what happened; no checkpoint is written after it, so the last
                    // one stays good.
                    let _ = self.log.note(&format!(
                        "non-finite {what} ({value}) at step {step}: training stopped"
                    ));
                }
                return Err(e);
            }
        };
        let step = planned.step;
        let (state, ls) = (&mut self.state, &mut self.loop_state);
        ls.tokens_seen += out.tokens;
        state.global_step = step;
        state.epoch = planned.epoch_after();
        ls.loss_since_log += out.loss;
        ls.total_loss += out.loss;
        if step.is_multiple_of(self.run.cfg.train.logging_steps as u64) {
            let entry = LogEntry {
                loss: Some(ls.loss_since_log / (step - ls.last_logged) as f64),
                grad_norm: Some(out.grad_norm),
                learning_rate: Some(out.learning_rate),
                epoch: state.epoch,
                step,
                ..Default::default()
            };
            (ls.loss_since_log, ls.last_logged) = (0.0, step);
            self.record(entry, reporter)?;
        }
        let max = self.run.plan.max_steps;
        reporter.step(step, max, self.elapsed() / (step - self.start_step) as f64);
        Ok(model)
    }

    /// A log entry into the JSONL log, the reporter and `log_history`.
    fn record(&mut self, entry: LogEntry, reporter: &mut dyn Reporter) -> Result<(), TrainError> {
        self.log
            .write(&entry, self.run.plan.max_steps, self.elapsed())?;
        reporter.log(&entry);
        if let Some(tb) = &mut self.tensorboard {
            tb.log(&entry)?;
        }
        self.state.log_history.push(entry);
        Ok(())
    }

    /// The evaluation loss, when the eval strategy says so after this step; tracks the best.
    fn evaluate_if_due(
        &mut self,
        model: &Qwen3ForCausalLM<B>,
        planned: &PlannedStep,
        reporter: &mut dyn Reporter,
    ) -> Result<(), TrainError> {
        let (cfg, step) = (self.run.cfg, planned.step);
        let due = match cfg.eval.eval_strategy {
            Strategy::No => false,
            Strategy::Steps => cfg
                .eval
                .eval_steps
                .is_some_and(|s| step.is_multiple_of(s as u64)),
            Strategy::Epoch => planned.epoch_end,
        };
        if !due || self.run.data.eval.is_empty() {
            return Ok(());
        }
        let entry = self.run.evaluate(model, self.state.epoch, step);
        if let Some(m) = entry.eval_loss {
            let better = self.state.best_metric.is_none_or(|b| {
                if cfg.output.greater_is_better() {
                    m > b
                } else {
                    m < b
                }
            });
            if better && m.is_finite() {
                self.state.best_metric = Some(m);
                self.state.best_global_step = Some(step);
            }
        }
        self.record(entry, reporter)
    }

    /// `checkpoint-N`, when the save strategy says so after this step (always after the last).
    fn save_if_due(
        &mut self,
        model: &Qwen3ForCausalLM<B>,
        planned: &PlannedStep,
        aside: &mut Option<SetAside>,
    ) -> Result<(), TrainError> {
        let (out, step) = (&self.run.cfg.output, planned.step);
        let last = step == self.run.plan.max_steps;
        let due = match out.save_strategy {
            Strategy::No => false,
            Strategy::Steps => step.is_multiple_of(out.save_steps as u64) || last,
            Strategy::Epoch => planned.epoch_end || last,
        };
        if !due {
            return Ok(());
        }
        let state = &mut self.state;
        if state.best_global_step == Some(step) {
            state.best_model_checkpoint = Some(
                checkpoint::checkpoint_dir(&self.out_dir, step)
                    .display()
                    .to_string(),
            );
        }
        state.num_input_tokens_seen = self.loop_state.tokens_seen;
        checkpoint::save(
            &self.out_dir,
            model,
            self.run.adapter_cfg,
            &self.opt,
            &self.sched,
            state,
            &self.loop_state,
        )?;
        if let Some(previous) = aside.take() {
            previous.discard()?; // replaced by this run's first checkpoint
        }
        let best = state.best_model_checkpoint.as_ref().map(PathBuf::from);
        checkpoint::rotate(&self.out_dir, out.save_total_limit, best.as_deref())
    }

    /// The final adapter, trainer state, result files and plots, and the summary.
    fn finish(
        mut self,
        mut model: Qwen3ForCausalLM<B>,
        reporter: &mut dyn Reporter,
        aside: &mut Option<SetAside>,
    ) -> Result<RunOutput, TrainError> {
        let (cfg, data, plan) = (self.run.cfg, self.run.data, self.run.plan);
        let t = &cfg.train;
        let runtime = self.elapsed();
        let state = &mut self.state;
        let ls = &self.loop_state;
        let steps = state.global_step.max(1) as f64;
        // HF: the mean of every step loss of the run (a resumed run counts the steps before the
        // checkpoint too, from the saved sum).
        let train_loss = ls.total_loss / steps;
        let samples = if t.max_steps > 0 {
            (plan.max_steps as usize
                * t.per_device_train_batch_size
                * t.gradient_accumulation_steps) as f64
        } else {
            data.train.len() as f64 * t.num_train_epochs
        };
        if cfg.output.load_best_model_at_end
            && let Some(best) = state.best_model_checkpoint.clone()
        {
            ember_lora::load_peft(&mut model, Path::new(&best))?;
            self.log.note(&format!(
                "loaded the best model from {best} ({} = {:?})",
                cfg.output.best_metric_name(),
                state.best_metric
            ))?;
        }
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
        state.num_input_tokens_seen = ls.tokens_seen;
        if let Some(tb) = &mut self.tensorboard {
            tb.log(&final_entry)?;
        }
        state.log_history.push(final_entry);
        let out_dir = &self.out_dir;
        adapter::save(&model, self.run.adapter_cfg, out_dir)?;
        state.save(out_dir)?;
        if let Some(previous) = aside.take() {
            previous.discard()?; // replaced by this run's final adapter
        }
        // LLaMA-Factory's `trainer.evaluate()` after `save_state()` and `plot_loss`: its metrics go
        // to eval_results.json and all_results.json only, not to trainer_state.json or the plots.
        let final_eval = (!data.eval.is_empty())
            .then(|| self.run.evaluate(&model, state.epoch, state.global_step));
        let mut results = serde_json::json!({
            "epoch": state.epoch,
            "total_flos": 0.0,
            "train_loss": train_loss,
            "train_runtime": runtime,
            "train_samples_per_second": samples / runtime,
            "train_steps_per_second": plan.max_steps as f64 / runtime,
        });
        write_json(&out_dir.join(TRAIN_RESULTS_FILE), &results)?;
        if let Some(e) = &final_eval {
            // HF's TensorBoardCallback logs the final evaluation too (after train end).
            if let Some(tb) = &mut self.tensorboard {
                tb.log(e)?;
            }
            let eval = serde_json::json!({
                "epoch": state.epoch,
                "eval_loss": e.eval_loss,
                "eval_runtime": e.eval_runtime,
                "eval_samples_per_second": e.eval_samples_per_second,
                "eval_steps_per_second": e.eval_steps_per_second,
            });
            if let (Some(all), Some(eval)) = (results.as_object_mut(), eval.as_object()) {
                all.extend(eval.clone());
            }
            write_json(&out_dir.join(EVAL_RESULTS_FILE), &eval)?;
        }
        write_json(&out_dir.join(ALL_RESULTS_FILE), &results)?;
        if cfg.output.plot_loss {
            crate::plot::plot_losses(state, out_dir)?;
        }
        let trained = (state.global_step - self.start_step).max(1) as f64;
        let summary = Summary {
            train_samples: data.train.len(),
            eval_samples: data.eval.len(),
            steps: state.global_step,
            train_runtime: runtime,
            seconds_per_step: runtime / trained,
            train_loss,
            eval_loss: final_eval.and_then(|e| e.eval_loss),
            tokens_per_second: (ls.tokens_seen - self.start_tokens) as f64 / runtime,
        };
        reporter.summary(&summary, out_dir);
        Ok(RunOutput {
            output_dir: self.out_dir,
            state: self.state,
            summary,
        })
    }
}

/// How the run's training batches are drawn.
fn loader_config(cfg: &FinetuneConfig, data: &SftData) -> LoaderConfig {
    let t = &cfg.train;
    LoaderConfig {
        batch_size: t.per_device_train_batch_size,
        shuffle: !t.disable_shuffling,
        group_by_length: t.group_by_length,
        seed: t.seed,
        pad_id: data.pad_id,
        pad_to_multiple_of: cfg.data.pad_to_multiple_of,
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

/// Every token id of the data (and the padding id) is inside the model's vocabulary: where data
/// meets the model, before anything runs (an id past `vocab_size` would fail deep inside an
/// embedding gather).
fn check_vocabulary(
    data: &SftData,
    model: &Qwen3Config,
    model_dir: &Path,
) -> Result<(), TrainError> {
    let vocab = model.vocab_size;
    let out_of_range = |what: String, id: u32| TrainError::TokenOutOfVocabulary {
        what,
        id,
        vocab,
        model_dir: model_dir.to_path_buf(),
    };
    if data.pad_id as usize >= vocab {
        return Err(out_of_range("the padding token".into(), data.pad_id));
    }
    for (split, examples) in [("train", &data.train), ("eval", &data.eval)] {
        for (i, ex) in examples.iter().enumerate() {
            if let Some(&id) = ex.input_ids.iter().find(|&&id| id as usize >= vocab) {
                return Err(out_of_range(format!("{split} example {i}"), id));
            }
        }
    }
    Ok(())
}

/// The data can train and evaluate as the config asks (HF's Trainer refuses an eval strategy
/// without eval data; a run without one supervised token would write an untrained adapter).
fn check_trainable(data: &SftData, cfg: &FinetuneConfig) -> Result<(), TrainError> {
    if data.train.iter().all(|e| e.supervised_tokens() == 0) {
        return Err(TrainError::NothingSupervised {
            dataset: cfg.data.dataset.join(","),
            cutoff_len: cfg.data.cutoff_len,
        });
    }
    if cfg.eval.eval_strategy != Strategy::No && data.eval.is_empty() {
        return Err(TrainError::NoEvalData {
            strategy: cfg.eval.eval_strategy.name().into(),
        });
    }
    Ok(())
}

/// The checkpoint to resume from, if the config asks for one. `true` takes the newest complete
/// checkpoint in `output_dir` (none: an error, as HF); an explicit path must be complete.
pub fn resume_checkpoint(cfg: &FinetuneConfig) -> Result<Option<PathBuf>, TrainError> {
    match &cfg.train.resume_from_checkpoint {
        None | Some(ResumeFrom::Latest(false)) => Ok(None),
        Some(ResumeFrom::Latest(true)) => match checkpoint::list(&cfg.output.output_dir).pop() {
            Some((_, p)) => Ok(Some(p)),
            // HF Trainer: "No valid checkpoint found in output directory".
            None => Err(TrainError::NothingToResume(cfg.output.output_dir.clone())),
        },
        Some(ResumeFrom::Path(p)) => match checkpoint::incomplete(p) {
            None => Ok(Some(p.clone())),
            Some(why) => Err(TrainError::NotACheckpoint {
                dir: p.clone(),
                reason: why,
            }),
        },
    }
}

/// A finished or started run in `dir` is not overwritten silently.
fn refuse_to_overwrite(dir: &Path) -> Result<(), TrainError> {
    let has_run =
        dir.join(crate::state::TRAINER_STATE_FILE).exists() || !checkpoint::list(dir).is_empty();
    if has_run {
        return Err(TrainError::OutputExists(dir.to_path_buf()));
    }
    Ok(())
}

/// HF's `eval_loss`: each batch's token-mean loss, weighted by the batch's sample count, averaged
/// over samples; batches in dataset order. Batches without supervised tokens are skipped (their
/// loss is NaN, which HF filters).
pub fn eval_loss<B: Backend>(
    model: &Qwen3ForCausalLM<B>,
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
        let loss: f64 = model
            .forward_loss(&ModelInputs::from_batch(&b, device))
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
