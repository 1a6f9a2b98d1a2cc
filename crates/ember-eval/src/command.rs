//! `cargo xtask eval` as one call: a base model, the base with a PEFT adapter, or the base and
//! every checkpoint of a run, scored on the selected tasks on the backend the caller names.

use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::tensor::backend::AutodiffBackend;
use ember_backend::{BackendChoice, BackendOp};

use crate::{
    Encoder, EvalError, EvalOptions, ModelSpec, PeftAdapterLoader, Prepared, ScoreTable, Strategy,
    checkpoint_specs, evaluate, load_scorer, prepare, select,
};

/// Which tasks to score and how: what `xtask eval` and a study's `--eval-tasks` both take.
#[derive(Debug, Clone)]
pub struct TaskOptions {
    pub tasks: Vec<String>,
    pub data_dir: PathBuf,
    pub limit: Option<usize>,
    pub num_fewshot: usize,
    /// Leave out tasks whose files are missing.
    pub skip_missing: bool,
    /// Tokens per packed forward (0: one forward per choice).
    pub pack_tokens: usize,
}

impl TaskOptions {
    pub fn eval_options(&self) -> EvalOptions {
        EvalOptions {
            limit: self.limit,
            num_fewshot: self.num_fewshot,
            skip_missing: self.skip_missing,
            ..Default::default()
        }
    }

    pub fn strategy(&self) -> Strategy {
        match self.pack_tokens {
            0 => Strategy::PerRequest,
            n => Strategy::Packed { max_tokens: n },
        }
    }

    /// Loads the tasks' documents and tokenizes the requests with `model_dir`'s tokenizer, once
    /// for all the models scored on them.
    pub fn prepare(&self, model_dir: &Path, opts: &EvalOptions) -> Result<Prepared, EvalError> {
        let selection = select(&self.tasks)?;
        let encoder = Encoder::from_file(
            ember_qwen3::tokenizer_file(model_dir).map_err(|e| EvalError::Model(e.to_string()))?,
        )?;
        prepare(&selection, &self.data_dir, &encoder, opts)
    }
}

/// What `cargo xtask eval` was asked (its help describes each).
#[derive(Debug, Clone)]
pub struct EvalCommand {
    /// The base model directory.
    pub model: PathBuf,
    /// A PEFT adapter on the base (wins over `checkpoints`).
    pub adapter: Option<PathBuf>,
    /// A training output directory: the base and every `checkpoint-N` in it.
    pub checkpoints: Option<PathBuf>,
    pub tasks: TaskOptions,
    /// Also time one forward per choice on the first model and print the speed-up.
    pub compare_speed: bool,
    pub backend: BackendChoice,
}

/// Scores the models `cmd` names, one row each, printing progress and skipped tasks to stderr.
pub fn run_eval(cmd: &EvalCommand) -> Result<ScoreTable, EvalError> {
    use ember_hub::{Files, resolve};
    // Hub ids to directories (local paths win); a row keeps the adapter's own name.
    let model = resolve(&cmd.model, None, Files::Model)?;
    let cmd = &EvalCommand {
        model: model.clone(),
        ..cmd.clone()
    };
    let specs = match (&cmd.adapter, &cmd.checkpoints) {
        (Some(a), _) => {
            let mut spec = ModelSpec::with_adapter(&model, a);
            spec.adapter = Some(resolve(a, None, Files::Adapter)?);
            vec![spec]
        }
        (None, Some(dir)) => checkpoint_specs(&model, dir)?,
        (None, None) => vec![ModelSpec::base(&model)],
    };
    let opts = EvalOptions {
        progress: true,
        ..cmd.tasks.eval_options()
    };
    let prepared = cmd.tasks.prepare(&cmd.model, &opts)?;
    if !prepared.skipped.is_empty() {
        let names: Vec<&str> = prepared.skipped.iter().map(|(t, _)| t.as_str()).collect();
        eprintln!(
            "skipped for missing data ({}): {}",
            names.len(),
            names.join(", ")
        );
    }
    let strategy = cmd.tasks.strategy();
    ember_backend::run(
        cmd.backend,
        Eval {
            specs,
            prepared: &prepared,
            opts,
            strategy,
            compare_speed: cmd.compare_speed,
        },
    )?
}

struct Eval<'a> {
    specs: Vec<ModelSpec>,
    prepared: &'a Prepared,
    opts: EvalOptions,
    strategy: Strategy,
    compare_speed: bool,
}

impl BackendOp for Eval<'_> {
    type Output = Result<ScoreTable, EvalError>;
    fn run<B: AutodiffBackend>(self, device: B::Device) -> Self::Output {
        let mut table = ScoreTable::default();
        for (i, spec) in self.specs.iter().enumerate() {
            // Scoring needs no gradients: the inner backend.
            let scorer = load_scorer::<B::InnerBackend>(spec, &PeftAdapterLoader, &device)?;
            let mut scorer = scorer.with_strategy(self.strategy);
            let start = Instant::now();
            let report = evaluate(&mut scorer, self.prepared, &spec.label, &self.opts)?;
            let took = start.elapsed().as_secs_f64();
            if i == 0 && self.compare_speed {
                let mut single = scorer.with_strategy(Strategy::PerRequest);
                let quiet = EvalOptions {
                    progress: false,
                    ..self.opts.clone()
                };
                let start = Instant::now();
                evaluate(&mut single, self.prepared, &spec.label, &quiet)?;
                let base = start.elapsed().as_secs_f64();
                eprintln!(
                    "{} requests: {:?} {took:.2}s, one forward per choice {base:.2}s: {:.2}x",
                    self.prepared.num_requests(),
                    self.strategy,
                    base / took
                );
            }
            table.rows.push(report);
        }
        Ok(table)
    }
}
