//! `cargo xtask eval`: KMMLU / KoBEST / HAE-RAE scores as lm-evaluation-harness computes them, for
//! a base model, the base with a PEFT adapter, or the base and every checkpoint of a run.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use ember_backend::{AutodiffBackend, BackendOp};
use ember_eval::{
    Encoder, EvalOptions, ModelSpec, PeftAdapterLoader, Prepared, ScoreTable, Strategy,
    checkpoint_specs, evaluate, load_scorer, prepare, select,
};

use crate::args::BackendArgs;

#[derive(clap::Args)]
pub struct Args {
    /// Hugging Face base model directory (config.json, safetensors, tokenizer.json).
    #[arg(long)]
    model: PathBuf,
    /// A PEFT adapter directory to evaluate on top of the base model.
    #[arg(long, conflicts_with = "checkpoints")]
    adapter: Option<PathBuf>,
    /// A training output directory: evaluates the base and every checkpoint-N in it.
    #[arg(long)]
    checkpoints: Option<PathBuf>,
    /// Tasks and groups, comma-separated: kobest, kmmlu, haerae, kobest_copa, kmmlu_law, ...
    #[arg(long, value_delimiter = ',', default_value = "kobest,kmmlu,haerae")]
    tasks: Vec<String>,
    /// Benchmark files (layout in docs/eval.md).
    #[arg(long)]
    data_dir: PathBuf,
    /// At most N documents per task.
    #[arg(long)]
    limit: Option<usize>,
    /// Few-shot examples per prompt (lm-eval's default here is 0).
    #[arg(long, default_value_t = 0)]
    num_fewshot: usize,
    /// Leave out tasks whose data files are missing instead of failing.
    #[arg(long)]
    skip_missing: bool,
    /// Tokens per packed forward (0: one forward per choice, as lm-eval does it).
    #[arg(long, default_value_t = 256)]
    pack_tokens: usize,
    /// Also time one forward per choice on the first model and print the speed-up.
    #[arg(long)]
    compare_speed: bool,
    /// Write scores.json and scores.md here.
    #[arg(long)]
    output: Option<PathBuf>,
    /// Print the table as JSON instead of Markdown.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    backend: BackendArgs,
}

struct Eval<'a> {
    specs: Vec<ModelSpec>,
    prepared: &'a Prepared,
    opts: EvalOptions,
    strategy: Strategy,
    compare_speed: bool,
}

impl BackendOp for Eval<'_> {
    type Output = anyhow::Result<ScoreTable>;
    fn run<B: AutodiffBackend>(self, device: B::Device) -> Self::Output {
        let mut table = ScoreTable::default();
        for (i, spec) in self.specs.iter().enumerate() {
            // Scoring needs no gradients: the inner backend.
            let scorer = load_scorer::<B::InnerBackend>(spec, &PeftAdapterLoader, &device)
                .with_context(|| format!("loading {}", spec.label))?;
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

pub fn run(args: Args) -> anyhow::Result<()> {
    let specs = match (&args.adapter, &args.checkpoints) {
        (Some(a), _) => vec![ModelSpec::with_adapter(&args.model, a)],
        (None, Some(dir)) => checkpoint_specs(&args.model, dir)?,
        (None, None) => vec![ModelSpec::base(&args.model)],
    };
    let selection = select(&args.tasks)?;
    let encoder = Encoder::from_file(args.model.join("tokenizer.json"))?;
    let opts = EvalOptions {
        limit: args.limit,
        num_fewshot: args.num_fewshot,
        skip_missing: args.skip_missing,
        progress: true,
        ..Default::default()
    };
    let prepared = prepare(&selection, &args.data_dir, &encoder, &opts)?;
    if !prepared.skipped.is_empty() {
        let names: Vec<&str> = prepared.skipped.iter().map(|(t, _)| t.as_str()).collect();
        eprintln!(
            "skipped for missing data ({}): {}",
            names.len(),
            names.join(", ")
        );
    }
    let strategy = match args.pack_tokens {
        0 => Strategy::PerRequest,
        n => Strategy::Packed { max_tokens: n },
    };
    let table = ember_backend::run(
        args.backend.backend,
        Eval {
            specs,
            prepared: &prepared,
            opts,
            strategy,
            compare_speed: args.compare_speed,
        },
    )??;
    if let Some(dir) = &args.output {
        table.write(dir)?;
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&table.to_json(false))?);
    } else {
        print!("{}", table.to_markdown());
    }
    Ok(())
}
