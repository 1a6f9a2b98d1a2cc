//! `cargo xtask chat` through a pseudo-terminal, on the tiny model (issue 21, item 4): the replies
//! it streams are `generate --chat --json`'s for the same conversation (thinking switched off
//! midway, history kept, `/clear`, `/exit`), and that one-shot form renders LLaMA-Factory's
//! prompt ids for the conversation (fixtures/data/chat_reference.json, which ember-data's chat
//! test checks case by case). Generation stops at the model's context length.

use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::Duration;

use expectrl::{Eof, Session};

const BIN: &str = env!("CARGO_BIN_EXE_xtask");
const MODEL: &str = "fixtures/tiny/qwen3-tiny";
const FIRST: &str = "Hello! How can I help you today?";
const SECOND: &str = "배고파요, 뭐 먹을까요?";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn run(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .current_dir(root())
        .env_remove("RUST_BACKTRACE")
        .output()
        .expect("run xtask")
}

/// `generate --chat --json` on the tiny model, greedy, with `extra` flags.
fn one_shot(prompt: &str, extra: &[&str]) -> serde_json::Value {
    let mut args = vec![
        "generate",
        "--chat",
        "--json",
        "--backend",
        "flex",
        "--model",
        MODEL,
        "--greedy",
        "--prompt",
        prompt,
    ];
    args.extend_from_slice(extra);
    let out = run(&args);
    assert!(
        out.status.success(),
        "generate --chat failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("json")
}

fn ids(v: &serde_json::Value) -> Vec<u64> {
    let a = v.as_array().expect("ids");
    a.iter().map(|x| x.as_u64().expect("id")).collect()
}

/// LLaMA-Factory's prompt ids for a case of the tiny tokenizer.
fn reference(case: &str) -> Vec<u64> {
    let text = std::fs::read_to_string(root().join("fixtures/data/chat_reference.json"))
        .expect("chat_reference.json");
    let r: serde_json::Value = serde_json::from_str(&text).expect("json");
    let cases = r["tokenizers"]["tiny"]["cases"].as_array().expect("cases");
    let c = cases
        .iter()
        .find(|c| c["name"] == case)
        .unwrap_or_else(|| panic!("no case {case}"));
    ids(&c["prompt_ids"])
}

/// What the chat prints for a reply (each line ended): its text, then why it stopped if not at eos.
fn shown(reply: &serde_json::Value, max_new_tokens: usize) -> String {
    let text = reply["text"].as_str().expect("text");
    match reply["stop"].as_str() {
        Some("eos") => format!("{text}\n"),
        Some("max_new_tokens") => {
            format!("{text}\n[stopped at max_new_tokens = {max_new_tokens}]\n")
        }
        other => panic!("unexpected stop {other:?}"),
    }
}

/// The terminal's output up to `needle`, with the pty's "\r\n" as "\n".
fn until(p: &mut Session, needle: &str) -> String {
    match p.expect(needle) {
        Ok(found) => String::from_utf8_lossy(found.before()).replace("\r\n", "\n"),
        Err(e) => panic!("waiting for {needle:?}: {e}"),
    }
}

#[test]
fn the_interactive_chat_streams_the_replies_of_generate_chat() {
    // The one-shot replies first: turn 1 with thinking on, turn 2 (with turn 1 as history) off.
    let first = one_shot(FIRST, &["--max-new-tokens", "12"]);
    assert_eq!(ids(&first["prompt_ids"]), reference("qwen3/one_turn"));
    let history_file = tempfile::NamedTempFile::new().expect("tmp");
    let history = serde_json::json!([
        {"role": "user", "content": FIRST},
        {"role": "assistant", "content": first["text"]},
    ]);
    std::fs::write(history_file.path(), history.to_string()).expect("write history");
    let history_arg = history_file.path().display().to_string();
    let second = one_shot(
        SECOND,
        &[
            "--max-new-tokens",
            "12",
            "--enable-thinking",
            "false",
            "--history",
            &history_arg,
        ],
    );
    // Thinking off: the prompt ends with the empty thought, which turn 1's had not.
    let prompt2 = ids(&second["prompt_ids"]);
    assert!(prompt2.len() > ids(&first["prompt_ids"]).len() + ids(&first["ids"]).len());

    let mut cmd = Command::new(BIN);
    cmd.args([
        "chat",
        "--backend",
        "flex",
        "--model",
        MODEL,
        "--greedy",
        "--max-new-tokens",
        "12",
    ])
    .current_dir(root());
    let mut p = Session::spawn(cmd).expect("spawn chat in a pty");
    p.set_expect_timeout(Some(Duration::from_secs(300)));
    let banner = until(&mut p, "User: ");
    assert!(
        banner.contains("/no_think") && banner.contains("/clear"),
        "{banner}"
    );
    p.send_line(FIRST).expect("send");
    until(&mut p, "Assistant: ");
    // Each reply is followed by an empty line and the next prompt.
    let reply1 = until(&mut p, "\r\nUser: ");
    assert_eq!(reply1, shown(&first, 12));

    p.send_line("/no_think").expect("send");
    assert!(until(&mut p, "User: ").contains("Thinking off."));
    p.send_line(SECOND).expect("send");
    until(&mut p, "Assistant: ");
    let reply2 = until(&mut p, "\r\nUser: ");
    assert_eq!(reply2, shown(&second, 12));

    // A new conversation answers turn 1 as the first time, with thinking still off.
    p.send_line("/clear").expect("send");
    assert!(until(&mut p, "User: ").contains("History has been removed."));
    p.send_line(FIRST).expect("send");
    until(&mut p, "Assistant: ");
    let again = until(&mut p, "\r\nUser: ");
    let first_off = one_shot(
        FIRST,
        &["--max-new-tokens", "12", "--enable-thinking", "false"],
    );
    assert_eq!(again, shown(&first_off, 12));
    assert_ne!(first_off["prompt_ids"], first["prompt_ids"]);

    p.send_line("/exit").expect("send");
    p.expect(Eof).expect("chat exits at /exit");
    let status = p.get_process().wait().expect("wait");
    assert!(
        matches!(status, expectrl::WaitStatus::Exited(_, 0)),
        "{status:?}"
    );
}

#[test]
fn one_shot_prompts_are_llamafactorys_for_system_and_history() {
    let with_system = one_shot(
        "한국의 수도는 어디입니까?",
        &["--max-new-tokens", "1", "--system", "한국어로 답하세요."],
    );
    assert_eq!(ids(&with_system["prompt_ids"]), reference("qwen3/system"));

    // A history whose answer has a thought: LLaMA-Factory drops it from the prompt.
    let history_file = tempfile::NamedTempFile::new().expect("tmp");
    let history = serde_json::json!([
        {"role": "user", "content": "What is the weather in Seoul?"},
        {"role": "assistant", "content": "<think>\n생각 중입니다.\n</think>\n\nIt is clear and warm."},
    ]);
    std::fs::write(history_file.path(), history.to_string()).expect("write");
    let path = history_file.path().display().to_string();
    for (thinking, case) in [
        ("true", "qwen3/history_with_thought"),
        ("false", "qwen3_no_thinking/history_with_thought"),
    ] {
        let reply = one_shot(
            SECOND,
            &[
                "--max-new-tokens",
                "1",
                "--history",
                &path,
                "--enable-thinking",
                thinking,
            ],
        );
        assert_eq!(ids(&reply["prompt_ids"]), reference(case), "{case}");
    }
    let nothink = one_shot(
        SECOND,
        &[
            "--max-new-tokens",
            "1",
            "--history",
            &path,
            "--template",
            "qwen3_nothink",
        ],
    );
    assert_eq!(
        ids(&nothink["prompt_ids"]),
        reference("qwen3_nothink/history_with_thought")
    );
}

#[test]
fn generation_stops_at_the_models_context_length() {
    // The tiny model has 512 positions: a long user turn leaves room for a few tokens only.
    let long = "The quick brown fox jumps over the lazy dog. ".repeat(40);
    let reply = one_shot(&long, &["--max-new-tokens", "400"]);
    let (prompt, new) = (ids(&reply["prompt_ids"]).len(), ids(&reply["ids"]).len());
    assert!(prompt < 512, "{prompt}");
    match reply["stop"].as_str() {
        Some("context_length") => assert_eq!(prompt + new, 512),
        other => panic!("stop {other:?} after {new} tokens of a prompt of {prompt}"),
    }
    // A conversation that already fills the context is refused, saying so.
    let longer = long.repeat(2);
    let out = run(&[
        "generate",
        "--chat",
        "--backend",
        "flex",
        "--model",
        MODEL,
        "--prompt",
        &longer,
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("max_position_embeddings") && err.contains("512") && !err.contains("panicked"),
        "{err}"
    );
}
