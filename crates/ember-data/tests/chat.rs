//! The chat prompts (`Template::chat_prompt`, what `xtask chat` and `generate --chat` send) against
//! LLaMA-Factory's chat engine, case by case (fixtures/data/chat_reference.json, written by
//! fixtures/data/make_chat_reference.py): system prompt, multi-turn history with and without
//! thoughts, thinking on and off, preserve_thinking, the qwen3_nothink template.

use std::path::PathBuf;

use ember_data::template::TemplateOptions;
use ember_data::{Message, Role, Template, Tokenizer};
use serde_json::Value;

fn root() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
}

fn message(v: &Value) -> Message {
    let role = match v["role"].as_str() {
        Some("user") => Role::User,
        Some("assistant") => Role::Assistant,
        other => panic!("unexpected role {other:?}"),
    };
    Message {
        role,
        content: v["content"].as_str().expect("content").to_owned(),
    }
}

fn ids(v: &Value) -> Vec<u32> {
    let a = v.as_array().expect("ids");
    a.iter().map(|x| x.as_u64().expect("id") as u32).collect()
}

/// Every case of one tokenizer; all mismatches reported at once.
fn check(name: &str, tok_path: PathBuf) {
    let text = std::fs::read_to_string(root().join("fixtures/data/chat_reference.json"))
        .expect("chat_reference.json");
    let reference: Value = serde_json::from_str(&text).expect("json");
    let cases = reference["tokenizers"][name]["cases"]
        .as_array()
        .unwrap_or_else(|| panic!("no cases for {name}"));
    assert!(cases.len() >= 16, "{name}: {} cases", cases.len());
    let tok = Tokenizer::from_file(&tok_path).expect("tokenizer");
    let mut failures = Vec::new();
    for case in cases {
        let opts = TemplateOptions {
            enable_thinking: case["enable_thinking"].as_bool().expect("bool"),
            preserve_thinking: case["preserve_thinking"].as_bool().expect("bool"),
            default_system: None,
        };
        let template =
            Template::new(case["template"].as_str().expect("template"), &opts, &tok).expect("t");
        let history: Vec<Message> = case["messages"]
            .as_array()
            .expect("messages")
            .iter()
            .map(message)
            .collect();
        let system = case["system"].as_str().expect("system");
        let got = template
            .chat_prompt(&tok, system, &history)
            .expect("prompt");
        let want = ids(&case["prompt_ids"]);
        let case_name = case["name"].as_str().unwrap_or("?");
        if got != want {
            let at = got.iter().zip(&want).position(|(a, b)| a != b);
            failures.push(format!(
                "{case_name}: {} ids vs LLaMA-Factory's {}, first difference at {at:?}",
                got.len(),
                want.len()
            ));
        }
        if template.stop_ids() != ids(&case["stop_ids"]) {
            failures.push(format!("{case_name}: stop ids {:?}", template.stop_ids()));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn chat_prompts_match_llamafactory_on_the_small_tokenizer() {
    check("small", root().join("fixtures/data/tokenizer-small.json"));
}

#[test]
fn chat_prompts_match_llamafactory_on_the_tiny_models_tokenizer() {
    check(
        "tiny",
        root().join("fixtures/tiny/qwen3-tiny/tokenizer.json"),
    );
}

#[test]
fn chat_prompts_match_llamafactory_on_the_qwen3_tokenizer() {
    let Some(shared) = ember_testing::shared_dir(&["tokenizers/qwen3/tokenizer.json"]) else {
        return;
    };
    check("qwen3", shared.join("tokenizers/qwen3/tokenizer.json"));
}
