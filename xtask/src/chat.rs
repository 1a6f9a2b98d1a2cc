//! `cargo xtask chat`: an interactive chat with a model (and adapter), by the chat template it was
//! trained with; replies stream as they are generated.

use ember_eval::chat_interactive;

use crate::args::{BackendArgs, ChatArgs, ModelAdapterArgs, SamplingArgs};

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    model: ModelAdapterArgs,
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
    let cmd =
        args.conversation
            .command(args.model, args.max_new_tokens, args.sampling, args.backend);
    let stdin = std::io::stdin();
    chat_interactive(&cmd, &mut stdin.lock(), &mut std::io::stdout().lock())?;
    Ok(())
}
