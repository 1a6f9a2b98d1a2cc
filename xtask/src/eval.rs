//! `cargo xtask eval`: KMMLU / KoBEST / HAE-RAE scores as lm-evaluation-harness computes them, for
//! a base model, the base with a PEFT adapter, or the base and every checkpoint of a run.

use std::path::PathBuf;

use ember_eval::{EvalCommand, TaskOptions, run_eval};

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

pub fn run(args: Args) -> anyhow::Result<()> {
    let cmd = EvalCommand {
        model: args.model,
        adapter: args.adapter,
        checkpoints: args.checkpoints,
        tasks: TaskOptions {
            tasks: args.tasks,
            data_dir: args.data_dir,
            limit: args.limit,
            num_fewshot: args.num_fewshot,
            skip_missing: args.skip_missing,
            pack_tokens: args.pack_tokens,
        },
        compare_speed: args.compare_speed,
        backend: args.backend.backend,
    };
    let table = run_eval(&cmd)?;
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
