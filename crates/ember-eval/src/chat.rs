//! `cargo xtask chat` (interactive) and `generate --chat` (one reply, for scripts): a conversation
//! with a Qwen3 model, optionally with a PEFT-format LoRA adapter on it.
//!
//! Each prompt is built by ember-data's [`Template::chat_prompt`], the code that builds training
//! prompts, as LLaMA-Factory's chat engine builds it (the history plus an empty assistant turn
//! through `encode_oneturn`), so what was trained is what is asked. Decoding defaults come from the
//! model's `generation_config.json` (as `transformers`' `generate`); generation stops at the
//! template's stop id and the model's eos ids, and where the context is full.

use std::io::{BufRead, Write};
use std::path::PathBuf;

use burn::tensor::backend::{AutodiffBackend, Backend};
use ember_backend::{BackendChoice, BackendOp};
use ember_data::template::TemplateOptions;
use ember_data::{Message, Role, Template, Tokenizer};
use ember_qwen3::{GenerationConfig, GenerationDefaults, Qwen3ForCausalLM, Sampling, StopReason};

use crate::EvalError;
use crate::generate::{load_model, resolve_dirs};

/// `max_new_tokens` where neither the command nor `generation_config.json` sets it
/// (LLaMA-Factory's `GeneratingArguments` default).
pub const DEFAULT_MAX_NEW_TOKENS: usize = 1024;

/// The interactive commands, each a whole input line (`exit` and `clear` are LLaMA-Factory's).
pub const HELP: &str = "/think, /no_think: thinking on or off for the next replies; /clear: a new conversation; /exit (or Ctrl-D): quit";

/// What `cargo xtask chat` / `generate --chat` was asked.
#[derive(Debug, Clone)]
pub struct ChatCommand {
    /// A Hugging Face model directory or hub id.
    pub model: PathBuf,
    pub adapter: Option<PathBuf>,
    /// `qwen3` or `qwen3_nothink` (LLaMA-Factory's names).
    pub template: String,
    pub enable_thinking: bool,
    /// The system prompt ("": none, as Qwen3's template has no default).
    pub system: String,
    /// `None`: `generation_config.json`'s, else [`DEFAULT_MAX_NEW_TOKENS`].
    pub max_new_tokens: Option<usize>,
    pub sampling: SamplingOverrides,
    pub backend: BackendChoice,
}

/// The sampling of `generation_config.json`, with what the command line replaces.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SamplingOverrides {
    /// Argmax decoding whatever the model's defaults say.
    pub greedy: bool,
    pub temperature: Option<f32>,
    pub top_k: Option<usize>,
    pub top_p: Option<f32>,
    /// Every reply is drawn with this seed: a reply depends only on the conversation before it.
    pub seed: u64,
}

impl SamplingOverrides {
    /// `None`: greedy. Sampling where the model's defaults ask for it (`do_sample`) or a sampling
    /// setting is given.
    pub fn resolve(&self, defaults: &GenerationDefaults) -> Option<Sampling> {
        let asked = self.temperature.is_some() || self.top_k.is_some() || self.top_p.is_some();
        let merged = GenerationDefaults {
            do_sample: !self.greedy && (defaults.do_sample || asked),
            temperature: self.temperature.unwrap_or(defaults.temperature),
            top_k: self.top_k.unwrap_or(defaults.top_k),
            top_p: self.top_p.unwrap_or(defaults.top_p),
            ..defaults.clone()
        };
        merged.sampling(self.seed)
    }
}

/// One reply: the prompt's ids, the new ids (the stop id included, as generated) and their text
/// (special tokens left out, as LLaMA-Factory's chat shows it).
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    pub prompt_ids: Vec<u32>,
    pub ids: Vec<u32>,
    pub text: String,
    pub stop: StopReason,
}

/// One reply to `history` (user and assistant messages, ending with the user's).
pub fn chat_once(cmd: &ChatCommand, history: &[Message]) -> Result<Reply, EvalError> {
    let mut shown = |_: &str| ();
    run(
        cmd,
        Mode::Once {
            history,
            shown: &mut shown,
        },
    )
    .and_then(|r| r.ok_or_else(|| EvalError::Model("no reply was generated".into())))
}

/// The interactive chat: reads lines from `input`, streams replies to `output`.
pub fn chat_interactive(
    cmd: &ChatCommand,
    input: &mut dyn BufRead,
    output: &mut dyn Write,
) -> Result<(), EvalError> {
    run(cmd, Mode::Interactive { input, output }).map(|_| ())
}

enum Mode<'a> {
    Once {
        history: &'a [Message],
        shown: &'a mut dyn FnMut(&str),
    },
    Interactive {
        input: &'a mut dyn BufRead,
        output: &'a mut dyn Write,
    },
}

fn run(cmd: &ChatCommand, mode: Mode<'_>) -> Result<Option<Reply>, EvalError> {
    let (model, adapter) = resolve_dirs(&cmd.model, cmd.adapter.as_deref())?;
    let cmd = ChatCommand {
        model,
        adapter,
        ..cmd.clone()
    };
    let tok_path =
        ember_qwen3::tokenizer_file(&cmd.model).map_err(|e| EvalError::Model(e.to_string()))?;
    let tok = Tokenizer::from_file(&tok_path).map_err(|e| EvalError::Tokenizer(e.to_string()))?;
    let opts = TemplateOptions {
        enable_thinking: cmd.enable_thinking,
        preserve_thinking: false,
        default_system: None,
    };
    let template = Template::new(&cmd.template, &opts, &tok)
        .map_err(|e| EvalError::Tokenizer(format!("{}: {e}", tok_path.display())))?;
    let defaults =
        GenerationDefaults::load(&cmd.model).map_err(|e| EvalError::Model(e.to_string()))?;
    ember_backend::run(
        cmd.backend,
        Chat {
            cmd,
            tok,
            template,
            defaults,
            mode,
        },
    )?
}

struct Chat<'a> {
    cmd: ChatCommand,
    tok: Tokenizer,
    template: Template,
    defaults: GenerationDefaults,
    mode: Mode<'a>,
}

impl BackendOp for Chat<'_> {
    type Output = Result<Option<Reply>, EvalError>;
    fn run<B: AutodiffBackend>(self, device: B::Device) -> Self::Output {
        let c = &self.cmd;
        // Generation needs no gradients: the inner backend.
        let (cfg, model) = load_model::<B::InnerBackend>(&c.model, c.adapter.as_ref(), &device)?;
        // The template's stop id (`<|im_end|>`) and the model's eos ids.
        let mut stop_ids = self.template.stop_ids();
        for id in self.defaults.eos_ids().into_iter().chain(cfg.eos_ids()) {
            if !stop_ids.contains(&id) {
                stop_ids.push(id);
            }
        }
        let mut session = Session {
            model,
            device,
            tok: self.tok,
            template: self.template,
            system: c.system.clone(),
            generation: GenerationConfig {
                max_new_tokens: c
                    .max_new_tokens
                    .or(self.defaults.max_new_tokens)
                    .unwrap_or(DEFAULT_MAX_NEW_TOKENS),
                sampling: c.sampling.resolve(&self.defaults),
                eos_token_ids: stop_ids,
            },
        };
        match self.mode {
            Mode::Once { history, shown } => session.reply(history, shown).map(Some),
            Mode::Interactive { input, output } => {
                session.interact(c, input, output).map(|()| None)
            }
        }
    }
}

/// A loaded model and how it is asked.
struct Session<B: Backend> {
    model: Qwen3ForCausalLM<B>,
    device: B::Device,
    tok: Tokenizer,
    template: Template,
    system: String,
    generation: GenerationConfig,
}

impl<B: Backend> Session<B> {
    /// The reply to `history`, its text handed to `shown` piece by piece as it is generated.
    fn reply(&self, history: &[Message], shown: &mut dyn FnMut(&str)) -> Result<Reply, EvalError> {
        let prompt_ids = self
            .template
            .chat_prompt(&self.tok, &self.system, history)
            .map_err(|e| {
                EvalError::Tokenizer(format!("rendering the conversation: {}", e.reason))
            })?;
        let context = self.model.context_length();
        if prompt_ids.len() >= context {
            return Err(EvalError::Model(format!(
                "the conversation is {} tokens, the model's context (max_position_embeddings) {context}: nothing can be added; start a new one (/clear)",
                prompt_ids.len()
            )));
        }
        let mut stream = TextStream::new(self.tok.inner(), &self.generation.eos_token_ids);
        let generation =
            self.model
                .generate_streaming(&prompt_ids, &self.generation, &self.device, &mut |id| {
                    stream.push(id, shown)
                });
        let generation = generation.map_err(|e| EvalError::Model(e.to_string()))?;
        let text = stream.finish(shown)?;
        Ok(Reply {
            prompt_ids,
            ids: generation.ids,
            text,
            stop: generation.stop,
        })
    }

    /// The read-reply loop of `llamafactory-cli chat`, with ember's commands.
    fn interact(
        &mut self,
        cmd: &ChatCommand,
        input: &mut dyn BufRead,
        out: &mut dyn Write,
    ) -> Result<(), EvalError> {
        let io = EvalError::Terminal;
        let adapter = cmd
            .adapter
            .as_ref()
            .map(|a| format!(" + {}", a.display()))
            .unwrap_or_default();
        writeln!(out, "Chat with {}{adapter}. {HELP}.", cmd.model.display()).map_err(io)?;
        let mut history: Vec<Message> = Vec::new();
        let mut line = String::new();
        loop {
            write!(out, "\nUser: ").map_err(io)?;
            out.flush().map_err(io)?;
            line.clear();
            if input.read_line(&mut line).map_err(io)? == 0 {
                writeln!(out).map_err(io)?;
                return Ok(());
            }
            let query = line.trim_end_matches(['\n', '\r']);
            match query.trim() {
                "" => continue,
                "/exit" | "exit" => return Ok(()),
                "/clear" | "clear" => {
                    history.clear();
                    writeln!(out, "History has been removed.").map_err(io)?;
                    continue;
                }
                switch @ ("/think" | "/no_think") => {
                    let on = switch == "/think";
                    let said = if !self.template.reasoning {
                        format!("the {} template has no thinking switch", self.template.name)
                    } else {
                        self.template.enable_thinking = on;
                        format!("Thinking {}.", if on { "on" } else { "off" })
                    };
                    writeln!(out, "{said}").map_err(io)?;
                    continue;
                }
                _ => {}
            }
            history.push(Message {
                role: Role::User,
                content: query.to_owned(),
            });
            write!(out, "Assistant: ").map_err(io)?;
            out.flush().map_err(io)?;
            let mut failed = None;
            let reply = self.reply(&history, &mut |piece| {
                if failed.is_none() {
                    failed = write!(out, "{piece}").and_then(|()| out.flush()).err();
                }
            });
            if let Some(e) = failed {
                return Err(io(e));
            }
            let reply = match reply {
                Ok(r) => r,
                Err(e) => {
                    // The turn is not kept; the conversation goes on (or is cleared).
                    history.pop();
                    writeln!(out, "\nerror: {e}").map_err(io)?;
                    continue;
                }
            };
            writeln!(out).map_err(io)?;
            match reply.stop {
                StopReason::Eos => {}
                StopReason::MaxNewTokens => writeln!(
                    out,
                    "[stopped at max_new_tokens = {}]",
                    self.generation.max_new_tokens
                )
                .map_err(io)?,
                StopReason::ContextLength => writeln!(
                    out,
                    "[stopped: the model's context of {} tokens is full; /clear starts a new conversation]",
                    self.model.context_length()
                )
                .map_err(io)?,
            }
            history.push(Message {
                role: Role::Assistant,
                content: reply.text,
            });
        }
    }
}

/// Decodes a growing list of ids into text pieces as they become whole: a character that spans
/// several byte-level tokens is shown once its last byte has come (never a U+FFFD in between).
struct TextStream<'a> {
    tok: &'a tokenizers::Tokenizer,
    stop: &'a [u32],
    ids: Vec<u32>,
    shown: usize,
    error: Option<String>,
}

impl<'a> TextStream<'a> {
    fn new(tok: &'a tokenizers::Tokenizer, stop: &'a [u32]) -> Self {
        Self {
            tok,
            stop,
            ids: Vec::new(),
            shown: 0,
            error: None,
        }
    }

    fn decode(&self) -> Result<String, String> {
        self.tok.decode(&self.ids, true).map_err(|e| e.to_string())
    }

    fn push(&mut self, id: u32, shown: &mut dyn FnMut(&str)) {
        if self.stop.contains(&id) || self.error.is_some() {
            return;
        }
        self.ids.push(id);
        match self.decode() {
            Ok(text) if !text.ends_with('\u{FFFD}') => self.show(&text, shown),
            Ok(_) => {}
            Err(e) => self.error = Some(e),
        }
    }

    fn show(&mut self, text: &str, shown: &mut dyn FnMut(&str)) {
        if text.len() > self.shown && text.is_char_boundary(self.shown) {
            shown(&text[self.shown..]);
            self.shown = text.len();
        }
    }

    /// The whole text; what was held back is shown now.
    fn finish(mut self, shown: &mut dyn FnMut(&str)) -> Result<String, EvalError> {
        let decoding = |e: String| EvalError::Tokenizer(format!("decoding the reply: {e}"));
        if let Some(e) = self.error.take() {
            return Err(decoding(e));
        }
        let text = self.decode().map_err(decoding)?;
        self.show(&text, shown);
        Ok(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny_tokenizer() -> tokenizers::Tokenizer {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../fixtures/tiny/qwen3-tiny/tokenizer.json"
        );
        tokenizers::Tokenizer::from_file(path).expect("tokenizer")
    }

    #[test]
    fn streamed_pieces_are_whole_characters_and_add_up_to_the_text() {
        let tok = tiny_tokenizer();
        let text = "안녕하세요? Hello, 만나서 반갑습니다.";
        let ids = tok.encode(text, false).expect("encode").get_ids().to_vec();
        // A byte-level vocab this small splits Hangul into byte tokens.
        assert!(ids.len() > text.chars().count() / 2, "{} ids", ids.len());
        let stop = [2u32];
        let mut stream = TextStream::new(&tok, &stop);
        let mut pieces: Vec<String> = Vec::new();
        for &id in ids.iter().chain(&stop) {
            stream.push(id, &mut |p| pieces.push(p.to_owned()));
        }
        let whole = stream
            .finish(&mut |p| pieces.push(p.to_owned()))
            .expect("finish");
        assert_eq!(whole, text);
        assert_eq!(pieces.concat(), text);
        assert!(pieces.len() > 5, "streamed in {} pieces", pieces.len());
        assert!(pieces.iter().all(|p| !p.contains('\u{FFFD}')), "{pieces:?}");
    }

    #[test]
    fn command_line_settings_replace_generation_config() {
        let qwen3 = GenerationDefaults {
            do_sample: true,
            temperature: 0.6,
            top_k: 20,
            top_p: 0.95,
            ..GenerationDefaults::default()
        };
        let seeded = SamplingOverrides {
            seed: 3,
            ..SamplingOverrides::default()
        };
        assert_eq!(
            seeded.resolve(&qwen3),
            Some(Sampling {
                temperature: 0.6,
                top_k: 20,
                top_p: 0.95,
                seed: 3
            })
        );
        let greedy = SamplingOverrides {
            greedy: true,
            ..seeded.clone()
        };
        assert_eq!(greedy.resolve(&qwen3), None);
        // HF's defaults are greedy; a sampling setting asks for sampling.
        assert_eq!(seeded.resolve(&GenerationDefaults::default()), None);
        let hot = SamplingOverrides {
            temperature: Some(1.5),
            ..seeded
        };
        assert_eq!(
            hot.resolve(&GenerationDefaults::default()),
            Some(Sampling {
                temperature: 1.5,
                top_k: 50,
                top_p: 1.0,
                seed: 3
            })
        );
    }
}
