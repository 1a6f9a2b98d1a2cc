//! `cargo xtask generate`: tokenize a prompt as is (no chat template), continue it, print the text;
//! with `--chat`, one reply to the prompt as a user turn, by the chat template. Optionally with a
//! PEFT-format LoRA adapter on the model.

use std::path::PathBuf;

use anyhow::Context;
use ember_data::{Message, Role};
use ember_eval::{GenerateCommand, chat_once, run_generate};

use crate::args::{BackendArgs, ChatArgs, ModelAdapterArgs, SamplingArgs};

/// New tokens without `--max-new-tokens` for a plain continuation.
const PLAIN_MAX_NEW_TOKENS: usize = 32;

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    model: ModelAdapterArgs,
    /// The text to continue (with --chat: the user's message).
    #[arg(long)]
    prompt: String,
    /// At most this many new tokens (default: 32; with --chat, generation_config.json's
    /// max_new_tokens, else 1024).
    #[arg(long)]
    max_new_tokens: Option<usize>,
    #[command(flatten)]
    sampling: SamplingArgs,
    /// One chat reply: the prompt is the user's turn, rendered by the chat template.
    #[arg(long)]
    chat: bool,
    #[command(flatten)]
    conversation: ChatArgs,
    /// With --chat: the turns before the prompt, a JSON list of {"role": "user"|"assistant",
    /// "content": ...} (OpenAI's messages).
    #[arg(long, requires = "chat")]
    history: Option<PathBuf>,
    /// Print `{"prompt_ids": [...], "ids": [...], "text": "...", "stop": "..."}`.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    backend: BackendArgs,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let (prompt_ids, ids, text, stop) = if args.chat {
        let mut history = match &args.history {
            Some(path) => read_history(path)?,
            None => Vec::new(),
        };
        history.push(Message {
            role: Role::User,
            content: args.prompt,
        });
        let cmd =
            args.conversation
                .command(args.model, args.max_new_tokens, args.sampling, args.backend);
        let r = chat_once(&cmd, &history)?;
        (r.prompt_ids, r.ids, r.text, r.stop)
    } else {
        let cmd = GenerateCommand {
            model: args.model.model,
            adapter: args.model.adapter,
            prompt: args.prompt,
            max_new_tokens: args.max_new_tokens.unwrap_or(PLAIN_MAX_NEW_TOKENS),
            sampling: args.sampling.into(),
            backend: args.backend.backend,
        };
        let g = run_generate(&cmd)?;
        (g.prompt_ids, g.ids, g.text, g.stop)
    };
    if args.json {
        println!(
            "{}",
            serde_json::json!({"prompt_ids": prompt_ids, "ids": ids, "text": text, "stop": stop.as_str()})
        );
    } else {
        println!("{text}");
    }
    Ok(())
}

/// `--history`: OpenAI-style messages, alternating user and assistant, starting with the user's.
fn read_history(path: &std::path::Path) -> anyhow::Result<Vec<Message>> {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Turn {
        role: String,
        content: String,
    }
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let turns: Vec<Turn> = serde_json::from_str(&text).with_context(|| {
        format!(
            "{}: expected a JSON list of {{\"role\", \"content\"}} messages",
            path.display()
        )
    })?;
    turns
        .into_iter()
        .enumerate()
        .map(|(i, t)| {
            let want = if i % 2 == 0 { "user" } else { "assistant" };
            if t.role != want {
                anyhow::bail!(
                    "{}: message {i} has role {:?}; the history alternates user and assistant, starting with user",
                    path.display(),
                    t.role
                );
            }
            let role = if i % 2 == 0 { Role::User } else { Role::Assistant };
            Ok(Message {
                role,
                content: t.content,
            })
        })
        .collect()
}
