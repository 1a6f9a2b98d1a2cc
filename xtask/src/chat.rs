//! `cargo xtask chat`: an interactive chat with a model (and adapter), by the chat template it was
//! trained with; replies stream as they are generated.

use std::path::PathBuf;

use ember_eval::{ChatCommand, chat_interactive};

use crate::args::{BackendArgs, ChatArgs, SamplingArgs};

#[derive(clap::Args)]
pub struct Args {
    /// Hugging Face model directory (config.json, safetensors, tokenizer.json) or hub id.
    #[arg(long)]
    model: PathBuf,
    /// A PEFT-format LoRA adapter directory, or hub id, to apply.
    #[arg(long)]
    adapter: Option<PathBuf>,
    /// At most this many new tokens a reply (default: generation_config.json's, else 1024).
    #[arg(long)]
    max_new_tokens: Option<usize>,
    #[command(flatten)]
    sampling: SamplingArgs,
    #[command(flatten)]
    conversation: ChatArgs,
    #[command(flatten)]
    backend: BackendArgs,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let cmd = ChatCommand {
        model: args.model,
        adapter: args.adapter,
        template: args.conversation.template,
        enable_thinking: args.conversation.enable_thinking,
        system: args.conversation.system,
        max_new_tokens: args.max_new_tokens,
        sampling: args.sampling.into(),
        backend: args.backend.backend,
    };
    let stdin = std::io::stdin();
    chat_interactive(&cmd, &mut stdin.lock(), &mut std::io::stdout().lock())?;
    Ok(())
}
