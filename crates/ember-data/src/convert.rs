//! Row -> conversation, as LLaMA-Factory's `converter.py` (alpaca, sharegpt, openai) and the checks of
//! `SupervisedDatasetProcessor` — except that every example LLaMA-Factory would drop with a warning
//! (or crash on) is an error naming the field.

use crate::error::FieldError;
use crate::info::{DatasetAttr, Formatting};
use crate::json::Json;

/// Who speaks a message (LLaMA-Factory's `Role`, without `system`, which becomes [`Conversation::system`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    User,
    Assistant,
    /// A tool result, in a user position.
    Observation,
    /// A tool call (JSON), in an assistant position.
    Function,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub role: Role,
    pub content: String,
}

/// A supervised example in LLaMA-Factory's aligned form: an even number of messages alternating
/// user/observation and assistant/function, the last being the response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conversation {
    pub messages: Vec<Message>,
    pub system: String,
    /// Tool schemas as a JSON string (empty: no tools).
    pub tools: String,
}

type Res<T> = Result<T, FieldError>;

/// Convert one row of a dataset.
pub fn convert(attr: &DatasetAttr, row: &Json) -> Res<Conversation> {
    let conv = match attr.formatting {
        Formatting::Alpaca => alpaca(attr, row)?,
        Formatting::Sharegpt => sharegpt(attr, row)?,
        Formatting::Openai => openai(attr, row)?,
    };
    // SupervisedDatasetProcessor: len(prompt) % 2 == 1 and len(response) == 1.
    if conv.messages.is_empty() || conv.messages.len() % 2 != 0 {
        return Err(FieldError::new(
            attr.messages.clone().unwrap_or_default(),
            format!(
                "need an even, non-zero number of messages, found {}",
                conv.messages.len()
            ),
        ));
    }
    Ok(conv)
}

/// A column that may be absent or null; anything else must be a string.
fn opt_str(row: &Json, col: &Option<String>) -> Res<Option<String>> {
    let Some(col) = col else { return Ok(None) };
    match row.get(col) {
        None | Some(Json::Null) => Ok(None),
        Some(Json::String(s)) => Ok(Some(s.clone())),
        Some(v) => Err(FieldError::new(
            col,
            format!("expected a string, found {}", v.kind()),
        )),
    }
}

/// The tools column: a JSON string as LLaMA-Factory expects; a JSON array/object is serialised the
/// way its openai converter does (its sharegpt converter would crash on one).
fn tools_col(row: &Json, col: &Option<String>) -> Res<String> {
    let Some(col) = col else {
        return Ok(String::new());
    };
    match row.get(col) {
        None | Some(Json::Null) => Ok(String::new()),
        Some(Json::String(s)) => Ok(s.clone()),
        Some(v @ (Json::Array(_) | Json::Object(_))) => Ok(v.dumps()),
        Some(v) => Err(FieldError::new(
            col,
            format!("expected a JSON string or array, found {}", v.kind()),
        )),
    }
}

fn alpaca(attr: &DatasetAttr, row: &Json) -> Res<Conversation> {
    let mut messages = Vec::new();
    // LLaMA-Factory skips a history that is not a list (`isinstance(..., list)`); that silently
    // trains without the earlier turns, so anything but a list or null is refused here.
    let turns = match attr.history.as_ref().map(|c| (c, row.get(c))) {
        None | Some((_, None | Some(Json::Null))) => None,
        Some((hcol, Some(Json::Array(turns)))) => Some((hcol, turns)),
        Some((hcol, Some(v))) => {
            return Err(FieldError::new(
                hcol,
                format!(
                    "expected a list of [prompt, response] pairs, found {}",
                    v.kind()
                ),
            ));
        }
    };
    if let Some((hcol, turns)) = turns {
        for (i, turn) in turns.iter().enumerate() {
            let field = format!("{hcol}[{i}]");
            let pair = match turn {
                Json::Array(p) if p.len() == 2 => p,
                _ => {
                    return Err(FieldError::new(
                        field,
                        "expected a [prompt, response] pair of strings",
                    ));
                }
            };
            for (role, v) in [(Role::User, &pair[0]), (Role::Assistant, &pair[1])] {
                let content = v.as_str().ok_or_else(|| {
                    FieldError::new(&field, format!("expected strings, found {}", v.kind()))
                })?;
                messages.push(Message {
                    role,
                    content: content.to_owned(),
                });
            }
        }
    }
    // "prompt\nquery", skipping empty parts.
    let mut query = Vec::new();
    for col in [&attr.prompt, &attr.query] {
        if let Some(s) = opt_str(row, col)?
            && !s.is_empty()
        {
            query.push(s);
        }
    }
    messages.push(Message {
        role: Role::User,
        content: query.join("\n"),
    });
    let rcol = attr.response.clone().unwrap_or_default();
    let response = match attr.response.as_ref().and_then(|c| row.get(c)) {
        Some(Json::String(s)) => s.clone(),
        None | Some(Json::Null) => return Err(FieldError::new(rcol, "missing response")),
        Some(v) => {
            return Err(FieldError::new(
                rcol,
                format!("expected a string, found {}", v.kind()),
            ));
        }
    };
    messages.push(Message {
        role: Role::Assistant,
        content: response,
    });
    Ok(Conversation {
        messages,
        system: opt_str(row, &attr.system)?.unwrap_or_default(),
        tools: tools_col(row, &attr.tools)?,
    })
}

/// Role/content of one message of a sharegpt/openai list.
fn message_parts<'a>(
    attr: &DatasetAttr,
    mcol: &str,
    i: usize,
    m: &'a Json,
) -> Res<(&'a str, Option<&'a Json>)> {
    let rtag = attr.role_tag.as_deref().unwrap_or("");
    let ctag = attr.content_tag.as_deref().unwrap_or("");
    if !matches!(m, Json::Object(_)) {
        return Err(FieldError::new(
            format!("{mcol}[{i}]"),
            format!("expected an object, found {}", m.kind()),
        ));
    }
    let role = match m.get(rtag) {
        Some(Json::String(r)) => r.as_str(),
        Some(v) => {
            return Err(FieldError::new(
                format!("{mcol}[{i}].{rtag}"),
                format!("expected a string, found {}", v.kind()),
            ));
        }
        None => {
            return Err(FieldError::new(
                format!("{mcol}[{i}].{rtag}"),
                "missing role tag",
            ));
        }
    };
    Ok((role, m.get(ctag)))
}

fn content_str(attr: &DatasetAttr, mcol: &str, i: usize, c: Option<&Json>) -> Res<String> {
    let ctag = attr.content_tag.as_deref().unwrap_or("");
    match c {
        Some(Json::String(s)) => Ok(s.clone()),
        Some(v) => Err(FieldError::new(
            format!("{mcol}[{i}].{ctag}"),
            format!("expected a string, found {}", v.kind()),
        )),
        None => Err(FieldError::new(
            format!("{mcol}[{i}].{ctag}"),
            "missing content",
        )),
    }
}

fn messages_col<'a>(attr: &DatasetAttr, row: &'a Json) -> Res<(&'a [Json], String)> {
    let mcol = attr.messages.clone().unwrap_or_default();
    match attr.messages.as_ref().and_then(|c| row.get(c)) {
        Some(Json::Array(ms)) => Ok((ms, mcol)),
        None | Some(Json::Null) => Err(FieldError::new(mcol, "missing messages")),
        Some(v) => Err(FieldError::new(
            mcol,
            format!("expected an array, found {}", v.kind()),
        )),
    }
}

fn tag_is(tag: &Option<String>, role: &str) -> bool {
    tag.as_deref() == Some(role)
}

fn sharegpt(attr: &DatasetAttr, row: &Json) -> Res<Conversation> {
    let (mut msgs, mcol) = messages_col(attr, row)?;
    let mut first = 0;
    let system = match msgs.first() {
        Some(m0)
            if attr.system_tag.is_some()
                && tag_is(&attr.system_tag, message_parts(attr, &mcol, 0, m0)?.0) =>
        {
            let s = content_str(attr, &mcol, 0, message_parts(attr, &mcol, 0, m0)?.1)?;
            msgs = &msgs[1..];
            first = 1;
            s
        }
        _ => opt_str(row, &attr.system)?.unwrap_or_default(),
    };
    let mut messages = Vec::with_capacity(msgs.len());
    for (turn, m) in msgs.iter().enumerate() {
        let i = turn + first;
        let (role, content) = message_parts(attr, &mcol, i, m)?;
        let role = if turn % 2 == 0 {
            if tag_is(&attr.user_tag, role) {
                Role::User
            } else if tag_is(&attr.observation_tag, role) {
                Role::Observation
            } else {
                return Err(bad_role(
                    attr,
                    &mcol,
                    i,
                    role,
                    "user/observation",
                    [&attr.user_tag, &attr.observation_tag],
                ));
            }
        } else if tag_is(&attr.assistant_tag, role) {
            Role::Assistant
        } else if tag_is(&attr.function_tag, role) {
            Role::Function
        } else {
            return Err(bad_role(
                attr,
                &mcol,
                i,
                role,
                "assistant/function",
                [&attr.assistant_tag, &attr.function_tag],
            ));
        };
        messages.push(Message {
            role,
            content: content_str(attr, &mcol, i, content)?,
        });
    }
    Ok(Conversation {
        messages,
        system,
        tools: tools_col(row, &attr.tools)?,
    })
}

fn bad_role(
    attr: &DatasetAttr,
    mcol: &str,
    i: usize,
    role: &str,
    what: &str,
    tags: [&Option<String>; 2],
) -> FieldError {
    let rtag = attr.role_tag.as_deref().unwrap_or("");
    let accepted: Vec<String> = tags
        .iter()
        .filter_map(|t| t.as_ref().map(|s| format!("`{s}`")))
        .collect();
    FieldError::new(
        format!("{mcol}[{i}].{rtag}"),
        format!(
            "invalid role tag `{role}`: this position needs a {what} message ({})",
            accepted.join(" or ")
        ),
    )
}

/// LLaMA-Factory's `OpenAIDatasetConverter`, including its quirks: assistant `tool_calls` become a
/// function message, consecutive tool results are merged into one observation, and the system
/// prompt gets "detailed thinking off" appended (or becomes it) unless tools are given.
fn openai(attr: &DatasetAttr, row: &Json) -> Res<Conversation> {
    let (mut msgs, mcol) = messages_col(attr, row)?;
    let mut first = 0;
    let mut system = match msgs.first() {
        Some(m0)
            if attr.system_tag.is_some()
                && tag_is(&attr.system_tag, message_parts(attr, &mcol, 0, m0)?.0) =>
        {
            let s = content_str(attr, &mcol, 0, message_parts(attr, &mcol, 0, m0)?.1)?;
            msgs = &msgs[1..];
            first = 1;
            s
        }
        _ => opt_str(row, &attr.system)?.unwrap_or_default(),
    };
    let mut aligned: Vec<(usize, Message)> = Vec::new();
    let mut tool_responses: Vec<String> = Vec::new();
    for (turn, m) in msgs.iter().enumerate() {
        let i = turn + first;
        let (mut role, content) = message_parts(attr, &mcol, i, m)?;
        let mut content = content.cloned();
        if (tag_is(&attr.assistant_tag, role) || tag_is(&attr.function_tag, role))
            && let Some(calls) = m.get("tool_calls")
            && calls.truthy()
        {
            let Json::Array(calls) = calls else {
                return Err(FieldError::new(
                    format!("{mcol}[{i}].tool_calls"),
                    "expected an array",
                ));
            };
            let mut funcs = Vec::new();
            for c in calls {
                funcs.push(c.get("function").cloned().ok_or_else(|| {
                    FieldError::new(
                        format!("{mcol}[{i}].tool_calls"),
                        "a tool call has no `function`",
                    )
                })?);
            }
            content = Some(Json::String(Json::Array(funcs).dumps()));
            role = attr.function_tag.as_deref().unwrap_or("");
        }
        if tag_is(&attr.observation_tag, role) {
            tool_responses.push(content_str(attr, &mcol, i, content.as_ref())?);
            continue;
        }
        if !tool_responses.is_empty() {
            let merged = tool_responses.join("\n</tool_response>\n<tool_response>\n");
            aligned.push((
                i,
                Message {
                    role: Role::Observation,
                    content: merged,
                },
            ));
            tool_responses.clear();
        }
        let role = if tag_is(&attr.user_tag, role) {
            Role::User
        } else if tag_is(&attr.assistant_tag, role) {
            Role::Assistant
        } else if tag_is(&attr.function_tag, role) {
            Role::Function
        } else {
            return Err(FieldError::new(
                format!("{mcol}[{i}].{}", attr.role_tag.as_deref().unwrap_or("")),
                format!("unknown role tag `{role}`"),
            ));
        };
        aligned.push((
            i,
            Message {
                role,
                content: content_str(attr, &mcol, i, content.as_ref())?,
            },
        ));
    }
    // Trailing tool results are dropped by LLaMA-Factory too (it only flushes before a next message);
    // that leaves an odd count or a user-last conversation, which the checks below reject.
    for (turn, (i, m)) in aligned.iter().enumerate() {
        let ok = if turn % 2 == 0 {
            matches!(m.role, Role::User | Role::Observation)
        } else {
            matches!(m.role, Role::Assistant | Role::Function)
        };
        if !ok {
            return Err(FieldError::new(
                format!("{mcol}[{i}]"),
                format!(
                    "invalid role order: message {turn} of the conversation is {:?}",
                    m.role
                ),
            ));
        }
    }
    let tools = match attr.tools.as_ref().and_then(|c| row.get(c)) {
        None | Some(Json::Null) => String::new(),
        Some(Json::String(s)) => s.clone(),
        Some(v @ (Json::Array(_) | Json::Object(_))) => v.dumps(),
        Some(v) => {
            return Err(FieldError::new(
                attr.tools.clone().unwrap_or_default(),
                format!("unexpected {}", v.kind()),
            ));
        }
    };
    const SHORT: &str = "detailed thinking off";
    if system.is_empty() {
        if tools.is_empty() {
            system = SHORT.to_owned();
        }
    } else if tools.is_empty() {
        if !system.contains("detailed thinking on") && !system.contains(SHORT) {
            system.push('\n');
            system.push_str(SHORT);
        }
    } else {
        system.push('\n');
    }
    Ok(Conversation {
        messages: aligned.into_iter().map(|(_, m)| m).collect(),
        system,
        tools,
    })
}
