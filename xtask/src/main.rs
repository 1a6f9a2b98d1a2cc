//! `cargo xtask <command>`: ember's command line. Each command parses its arguments and calls the
//! crates; no logic lives here.

mod generate;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "cargo xtask", about = "ember: LoRA fine-tuning of Qwen3 on Burn")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Continue a prompt with a Qwen3 model directory.
    Generate(generate::Args),
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Generate(args) => generate::run(args),
    }
}
