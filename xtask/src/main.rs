//! `cargo xtask <command>`: ember's command line. Each command parses its arguments and calls the
//! crates; no logic lives here.

// No unwrap/expect on anything a user controls: library code returns errors. An `expect` on an
// invariant the code itself establishes carries `#[allow(clippy::expect_used, reason = ...)]`.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

mod args;
mod bench;
mod chat;
mod config;
mod data;
mod eval;
mod finetune;
mod generate;
mod plan;
mod sweep;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "cargo xtask",
    about = "ember: LoRA fine-tuning of Qwen3 on Burn"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Time ember's LoRA training step next to HF transformers + PEFT (s/step, tokens/s, peak RSS).
    Bench(bench::Args),
    /// Chat with a model (and adapter) in the terminal, by the chat template it was trained with.
    Chat(chat::Args),
    /// Print a LLaMA-Factory YAML config as the equivalent ember TOML (`--to-toml run.yaml`).
    Config(config::Args),
    /// Train a LoRA adapter (no arguments: the embedded demo on the shipped tiny model).
    Finetune(finetune::Args),
    /// Load and tokenize a run's data; print statistics and an example.
    Data(data::Args),
    /// Score a model, an adapter or every checkpoint of a run on KMMLU / KoBEST / HAE-RAE.
    Eval(eval::Args),
    /// Continue a prompt with a Qwen3 model directory (--chat: one chat reply, for scripts).
    Generate(generate::Args),
    /// What a run will be before it runs: samples, tokens, steps, trainable parameters, memory, time.
    Plan(plan::Args),
    /// Train a grid of runs (no arguments: a data-scaling study of the tiny model) and report.
    Sweep(sweep::Args),
}

fn main() -> anyhow::Result<()> {
    // `cargo xtask` alone runs the main job: the embedded demo fine-tune.
    let command = Cli::parse()
        .command
        .unwrap_or(Command::Finetune(finetune::Args::default()));
    match command {
        Command::Bench(args) => bench::run(args),
        Command::Chat(args) => chat::run(args),
        Command::Config(args) => config::run(args),
        Command::Finetune(args) => finetune::run(args),
        Command::Data(args) => data::run(args),
        Command::Eval(args) => eval::run(args),
        Command::Generate(args) => generate::run(args),
        Command::Plan(args) => plan::run(args),
        Command::Sweep(args) => sweep::run(args),
    }
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory, Parser};

    use super::{Cli, Command};

    #[test]
    fn arguments_are_consistent() {
        // Catches flattened structs whose flags collide, and bad defaults.
        Cli::command().debug_assert();
    }

    #[test]
    fn shared_flags_keep_their_spellings() {
        let cli = Cli::try_parse_from([
            "cargo xtask",
            "sweep",
            "--config",
            "a.toml",
            "--set",
            "lora_rank=8",
            "--backend",
            "flex",
            "--grid",
            "train_samples=1,2",
        ]);
        assert!(matches!(
            cli.map(|c| c.command),
            Ok(Some(Command::Sweep(_)))
        ));
        for cmd in [
            vec![
                "plan",
                "--config",
                "a.toml",
                "--set",
                "k=v",
                "--backend",
                "flex",
            ],
            vec!["data", "--config", "a.toml", "--set", "k=v"],
            vec!["finetune", "--set", "k=v", "--backend", "flex"],
            vec!["bench", "--backend", "flex", "--cases", "q06b4"],
            vec![
                "generate",
                "--model",
                "m",
                "--prompt",
                "p",
                "--backend",
                "flex",
            ],
        ] {
            let args = std::iter::once("cargo xtask").chain(cmd.iter().copied());
            assert!(Cli::try_parse_from(args).is_ok(), "{cmd:?}");
        }
    }
}
