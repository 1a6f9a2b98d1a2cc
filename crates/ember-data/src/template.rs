//! LLaMA-Factory's `qwen3` (a `ReasoningTemplate`) and `qwen3_nothink` templates: rendering and
//! `encode_multiturn`, token for token.
//!
//! LLaMA-Factory encodes each rendered piece (system block, each message, the empty thought)
//! separately and concatenates the ids; BPE merges never cross those boundaries, so neither may we.

use std::sync::LazyLock;

use regex::Regex;

use crate::convert::{Conversation, Message, Role};
use crate::error::{DataError, FieldError, Result};
use crate::json::Json;
use crate::tokenizer::Tokenizer;

const THOUGHT_OPEN: &str = "<think>\n";
const THOUGHT_CLOSE: &str = "\n</think>\n\n";
/// `thought_words[0] + thought_words[1]`: the empty chain of thought.
pub const EMPTY_THOUGHT: &str = "<think>\n\n</think>\n\n";

static THOUGHT_RE: LazyLock<Regex> = LazyLock::new(|| {
    constant_regex(&format!(
        "(?s){}(.*?){}",
        regex::escape(THOUGHT_OPEN),
        regex::escape(THOUGHT_CLOSE)
    ))
});
static TOOL_CALL_RE: LazyLock<Regex> =
    LazyLock::new(|| constant_regex("(?s)<tool_call>(.*?)</tool_call>"));

/// A regex from a pattern written in this file, which no input can make invalid.
#[allow(clippy::expect_used, reason = "the patterns are constants")]
fn constant_regex(pattern: &str) -> Regex {
    Regex::new(pattern).expect("a constant pattern")
}

/// `QWEN_TOOL_PROMPT` of LLaMA-Factory's `tool_utils.py`, split around `{tool_text}`.
const QWEN_TOOL_PROMPT_HEAD: &str = "\n\n# Tools\n\nYou may call one or more functions to assist with the user query.\n\nYou are provided with function signatures within <tools></tools> XML tags:\n<tools>";
const QWEN_TOOL_PROMPT_TAIL: &str = "\n</tools>\n\nFor each function call, return a json object with function name and arguments within <tool_call></tool_call> XML tags:\n<tool_call>\n{\"name\": <function-name>, \"arguments\": <args-json-object>}\n</tool_call>";

/// `(prompt_ids, response_ids)` of each turn.
pub type EncodedPairs = Vec<(Vec<u32>, Vec<u32>)>;

/// Template options that LLaMA-Factory takes from its data arguments.
#[derive(Debug, Clone)]
pub struct TemplateOptions {
    pub enable_thinking: bool,
    pub preserve_thinking: bool,
    pub default_system: Option<String>,
}

/// A chat template bound to a tokenizer.
#[derive(Debug, Clone)]
pub struct Template {
    pub name: String,
    /// `ReasoningTemplate` (qwen3) or plain `Template` (qwen3_nothink).
    pub reasoning: bool,
    pub enable_thinking: bool,
    pub preserve_thinking: bool,
    pub default_system: String,
    /// `<|im_end|>`: the EOS after `replace_eos`, and the stop word.
    pub eos_id: u32,
    thought_ids: Vec<u32>,
}

impl Template {
    /// Look up template `name` and check the tokenizer has its special tokens.
    pub fn new(name: &str, opts: &TemplateOptions, tok: &Tokenizer) -> Result<Self> {
        let reasoning = match name {
            "qwen3" => true,
            "qwen3_nothink" => false,
            other => return Err(DataError::UnknownTemplate(other.to_owned())),
        };
        let needed_by = format!("the {name} template");
        let eos_id = tok.special_token("<|im_end|>", &needed_by)?;
        tok.special_token("<|im_start|>", &needed_by)?;
        if reasoning {
            tok.special_token("<think>", &needed_by)?;
            tok.special_token("</think>", &needed_by)?;
        }
        Ok(Self {
            name: name.to_owned(),
            reasoning,
            enable_thinking: opts.enable_thinking,
            preserve_thinking: opts.preserve_thinking,
            default_system: opts.default_system.clone().unwrap_or_default(),
            eos_id,
            thought_ids: tok.encode(EMPTY_THOUGHT)?,
        })
    }

    /// `Template.encode_multiturn` (with `ReasoningTemplate`'s thought handling for qwen3):
    /// one `(prompt_ids, response_ids)` pair per user/assistant turn.
    pub fn encode_multiturn(
        &self,
        tok: &Tokenizer,
        conv: &Conversation,
        discarding_history_cot: bool,
    ) -> std::result::Result<EncodedPairs, FieldError> {
        let mut messages = conv.messages.clone();
        let n = messages.len();
        if n == 0 || !n.is_multiple_of(2) {
            return Err(FieldError::new(
                "",
                format!("need an even, non-zero number of messages, found {n}"),
            ));
        }
        if self.reasoning {
            if !self.enable_thinking {
                for m in messages.iter_mut().skip(1).step_by(2) {
                    m.content = remove_thought(&m.content);
                }
            }
            if discarding_history_cot {
                remove_history_thoughts(&mut messages);
            }
        }
        let mut encoded = self.encode_messages(tok, &messages, &conv.system, &conv.tools)?;
        if self.reasoning {
            let turns: Vec<usize> = if discarding_history_cot {
                vec![n - 2]
            } else {
                (0..n).step_by(2).collect()
            };
            for i in turns {
                let (prompt, response) = encoded.split_at_mut(i + 1);
                self.add_empty_thought(&messages[i + 1].content, &mut prompt[i], &mut response[0]);
            }
        }
        let mut pairs = Vec::with_capacity(n / 2);
        let mut it = encoded.into_iter();
        while let (Some(p), Some(r)) = (it.next(), it.next()) {
            pairs.push((p, r));
        }
        Ok(pairs)
    }

    /// `encode_oneturn` (with `ReasoningTemplate`'s thought handling for qwen3): the whole history
    /// as the prompt, the last message as the response.
    pub fn encode_oneturn(
        &self,
        tok: &Tokenizer,
        conv: &Conversation,
    ) -> std::result::Result<(Vec<u32>, Vec<u32>), FieldError> {
        let mut messages = conv.messages.clone();
        let n = messages.len();
        let Some(last) = n.checked_sub(1) else {
            return Err(FieldError::new("", "a conversation with no messages"));
        };
        if self.reasoning {
            if !self.preserve_thinking {
                remove_history_thoughts(&mut messages);
            }
            if !self.enable_thinking {
                messages[last].content = remove_thought(&messages[last].content);
            }
        }
        let mut encoded = self.encode_messages(tok, &messages, &conv.system, &conv.tools)?;
        let mut response = encoded.pop().unwrap_or_default();
        let mut prompt: Vec<u32> = encoded.concat();
        if self.reasoning {
            self.add_empty_thought(&messages[last].content, &mut prompt, &mut response);
        }
        Ok((prompt, response))
    }

    /// The prompt a chat sends for `history` (user and assistant turns, ending with the user's):
    /// LLaMA-Factory's chat engine pairs it with an empty assistant message and takes
    /// `encode_oneturn`'s prompt.
    pub fn chat_prompt(
        &self,
        tok: &Tokenizer,
        system: &str,
        history: &[Message],
    ) -> std::result::Result<Vec<u32>, FieldError> {
        let mut messages = history.to_vec();
        messages.push(Message {
            role: Role::Assistant,
            content: String::new(),
        });
        let conv = Conversation {
            messages,
            system: system.to_owned(),
            tools: String::new(),
        };
        Ok(self.encode_oneturn(tok, &conv)?.0)
    }

    /// The ids generation stops at (`get_stop_token_ids`: the eos, `<|im_end|>`).
    pub fn stop_ids(&self) -> Vec<u32> {
        vec![self.eos_id]
    }

    /// `ReasoningTemplate`'s empty thought for an answer without a think block: trained (before
    /// the response) with thinking on, part of the prompt with it off.
    fn add_empty_thought(&self, answer: &str, prompt: &mut Vec<u32>, response: &mut Vec<u32>) {
        if answer.contains("<think>") || answer.contains("</think>") {
            return;
        }
        if self.enable_thinking {
            response.splice(0..0, self.thought_ids.iter().copied());
        } else {
            prompt.extend_from_slice(&self.thought_ids);
        }
    }

    /// `Template._encode`: each message's pieces, encoded separately and concatenated.
    fn encode_messages(
        &self,
        tok: &Tokenizer,
        messages: &[Message],
        system: &str,
        tools: &str,
    ) -> std::result::Result<Vec<Vec<u32>>, FieldError> {
        let system = if system.is_empty() {
            self.default_system.as_str()
        } else {
            system
        };
        let enc = |s: &str| {
            tok.encode(s)
                .map_err(|e| FieldError::new("", e.to_string()))
        };
        let mut out = Vec::with_capacity(messages.len());
        for (i, m) in messages.iter().enumerate() {
            let mut ids = Vec::new();
            if i == 0 && (!system.is_empty() || !tools.is_empty()) {
                let tool_text = if tools.is_empty() {
                    String::new()
                } else {
                    format_tools(tools)?
                };
                ids.extend(enc(&format!(
                    "<|im_start|>system\n{system}{tool_text}<|im_end|>\n"
                ))?);
            }
            let text = match m.role {
                Role::User => {
                    let s = format!(
                        "<|im_start|>user\n{}<|im_end|>\n<|im_start|>assistant\n",
                        m.content
                    );
                    // StringFormatter substitutes `idx` after `content`, so a literal `{{idx}}` in the
                    // user text becomes the turn number.
                    s.replacen("{{idx}}", &(i / 2).to_string(), 1)
                }
                Role::Assistant => format!("{}<|im_end|>\n", m.content),
                Role::Observation => format!(
                    "<|im_start|>user\n<tool_response>\n{}\n</tool_response><|im_end|>\n<|im_start|>assistant\n",
                    m.content
                ),
                Role::Function => format!("{}<|im_end|>\n", format_function(&m.content, i)?),
            };
            ids.extend(enc(&text)?);
            out.push(ids);
        }
        Ok(out)
    }
}

/// The thoughts of the answers before the last user/assistant pair (the last answer keeps its).
fn remove_history_thoughts(messages: &mut [Message]) {
    let n = messages.len();
    for m in messages
        .iter_mut()
        .take(n.saturating_sub(2))
        .skip(1)
        .step_by(2)
    {
        m.content = remove_thought(&m.content);
    }
}

/// `Template.remove_thought`: drop every `<think>\n...\n</think>\n\n`, then leading newlines.
pub fn remove_thought(content: &str) -> String {
    THOUGHT_RE
        .replace_all(content, "")
        .trim_start_matches('\n')
        .to_owned()
}

/// `ToolFormatter(tool_format="qwen").apply`: the tool prompt appended to the system text.
fn format_tools(tools: &str) -> std::result::Result<String, FieldError> {
    let bad = |m: String| FieldError::new("tools", m);
    let v =
        Json::parse(tools).map_err(|e| bad(format!("invalid JSON in tool description: {e}")))?;
    let list = match &v {
        Json::Array(a) if a.is_empty() => return Ok(String::new()),
        Json::Object(o) if o.is_empty() => return Ok(String::new()),
        Json::Array(a) => a,
        other => {
            return Err(bad(format!(
                "expected a JSON array of tools, found {}",
                other.kind()
            )));
        }
    };
    let mut tool_text = String::new();
    for t in list {
        if !matches!(t, Json::Object(_)) {
            return Err(bad(format!(
                "each tool must be a JSON object, found {}",
                t.kind()
            )));
        }
        let wrapped = if t.get("type").and_then(Json::as_str) == Some("function") {
            t.clone()
        } else {
            Json::Object(vec![
                ("type".into(), Json::String("function".into())),
                ("function".into(), t.clone()),
            ])
        };
        tool_text.push('\n');
        tool_text.push_str(&wrapped.dumps());
    }
    Ok(format!(
        "{QWEN_TOOL_PROMPT_HEAD}{tool_text}{QWEN_TOOL_PROMPT_TAIL}"
    ))
}

/// `FunctionFormatter(tool_format="qwen").apply` with qwen3's thought and tool-call words.
fn format_function(content: &str, msg_idx: usize) -> std::result::Result<String, FieldError> {
    if let Some(m) = TOOL_CALL_RE.captures(content) {
        let whole = m.get(0).map_or("", |x| x.as_str());
        let inner = m.get(1).map_or("", |x| x.as_str());
        let thought_content = content.replace(whole, "");
        return Ok(thought_content + &format_calls(inner, msg_idx)?);
    }
    match THOUGHT_RE.find(content) {
        Some(t) => {
            let json_part = content.replace(t.as_str(), "");
            Ok(t.as_str().to_owned() + &format_calls(&json_part, msg_idx)?)
        }
        None => format_calls(content, msg_idx),
    }
}

/// `_parse_functions` + `QwenToolUtils.function_formatter`.
fn format_calls(json: &str, msg_idx: usize) -> std::result::Result<String, FieldError> {
    let field = format!("messages[{msg_idx}] (function call)");
    let v = Json::parse(json).map_err(|e| FieldError::new(&field, format!("invalid JSON: {e}")))?;
    let calls = match v {
        Json::Array(a) => a,
        other => vec![other],
    };
    let mut texts = Vec::with_capacity(calls.len());
    for c in &calls {
        let (Some(name), Some(args)) = (c.get("name"), c.get("arguments")) else {
            return Err(FieldError::new(
                &field,
                "a function call needs `name` and `arguments`",
            ));
        };
        let call = Json::Object(vec![
            ("name".into(), name.clone()),
            ("arguments".into(), args.clone()),
        ]);
        texts.push(format!("<tool_call>\n{}\n</tool_call>", call.dumps()));
    }
    Ok(texts.join("\n"))
}
