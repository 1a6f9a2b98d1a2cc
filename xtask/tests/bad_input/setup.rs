//! What the cases write: copies of the shipped tiny model, demo data and demo config, edited.
//!
//! Every working directory starts from [`base`]: `qwen3-tiny/` (fixtures/tiny/qwen3-tiny),
//! `demo-data/` (fixtures/demo's dataset), and `bad.toml` (fixtures/demo/finetune.toml with those
//! paths, output in `run-out/`, two steps, a checkpoint per step, no eval, no plots).

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use serde_json::Value;

/// The repository root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A finished run of the base config (two checkpoints and the final adapter), made once.
static PREVIOUS_RUN: OnceLock<PathBuf> = OnceLock::new();

/// Trains the previous run that the checkpoint and overwrite cases copy, under `top`.
pub fn prepare(top: &Path) {
    let dir = top.join("previous");
    std::fs::create_dir_all(&dir).expect("mkdir");
    base(&dir);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(["finetune", "--config", "bad.toml"])
        .current_dir(&dir)
        .env("RAYON_NUM_THREADS", "1")
        .output()
        .expect("run xtask");
    assert!(
        out.status.success(),
        "the previous run failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let run = dir.join("run-out");
    assert!(
        run.join("checkpoint-2").is_dir(),
        "no checkpoint-2 in {run:?}"
    );
    PREVIOUS_RUN.set(run).expect("prepared once");
}

/// The base config's text.
fn base_config() -> String {
    let text =
        std::fs::read_to_string(root().join("fixtures/demo/finetune.toml")).expect("demo config");
    let mut text = text
        .replace("\"fixtures/tiny/qwen3-tiny\"", "\"qwen3-tiny\"")
        .replace("\"fixtures/demo\"", "\"demo-data\"")
        .replace("\"saves/demo\"", "\"run-out\"");
    for (section, line) in [
        ("train", "max_steps = 2"),
        ("eval", "eval_strategy = \"no\""),
        ("output", "save_strategy = \"steps\""),
        ("output", "save_steps = 1"),
        ("output", "plot_loss = false"),
    ] {
        text = edited(&text, section, line);
    }
    text
}

pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read_dir") {
        let entry = entry.expect("entry");
        let target = to.join(entry.file_name());
        if entry.path().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).expect("copy");
        }
    }
}

/// The model, the data and the config every case starts from.
pub fn base(d: &Path) {
    copy_dir(
        &root().join("fixtures/tiny/qwen3-tiny"),
        &d.join("qwen3-tiny"),
    );
    let data = d.join("demo-data");
    std::fs::create_dir_all(&data).expect("mkdir");
    for f in ["dataset_info.json", "interview_ko.json"] {
        std::fs::copy(root().join("fixtures/demo").join(f), data.join(f)).expect("copy");
    }
    write(d, "bad.toml", &base_config());
}

/// `text` with `line` (`key = value`) set in `[section]`: replacing the key's line if the
/// section has one, else added at the section's end (a new section at the file's end).
pub fn edited(text: &str, section: &str, line: &str) -> String {
    let key = line.split('=').next().unwrap_or("").trim();
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    let header = format!("[{section}]");
    let Some(start) = lines.iter().position(|l| l.trim() == header) else {
        return format!("{}\n{header}\n{line}\n", text.trim_end());
    };
    let end = lines[start + 1..]
        .iter()
        .position(|l| l.trim_start().starts_with('['))
        .map_or(lines.len(), |i| start + 1 + i);
    let existing = (start + 1..end).find(|&i| {
        let l = lines[i].trim_start();
        !key.is_empty()
            && l.strip_prefix(key)
                .is_some_and(|rest| rest.trim_start().starts_with('='))
    });
    match existing {
        Some(i) => lines[i] = line.to_string(),
        None => {
            let mut at = end;
            while at > start + 1 && lines[at - 1].trim().is_empty() {
                at -= 1;
            }
            lines.insert(at, line.to_string());
        }
    }
    lines.join("\n") + "\n"
}

/// Writes `text` to `d/rel` (making its directory).
pub fn write(d: &Path, rel: &str, text: &str) {
    let path = d.join(rel);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).expect("mkdir");
    }
    std::fs::write(path, text).expect("write");
}

pub fn write_bytes(d: &Path, rel: &str, bytes: &[u8]) {
    let path = d.join(rel);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).expect("mkdir");
    }
    std::fs::write(path, bytes).expect("write");
}

pub fn read(d: &Path, rel: &str) -> String {
    std::fs::read_to_string(d.join(rel)).expect("read")
}

/// Sets `line` in `[section]` of `d/bad.toml`.
pub fn edit(d: &Path, section: &str, line: &str) {
    let text = edited(&read(d, "bad.toml"), section, line);
    write(d, "bad.toml", &text);
}

/// The base with `line` set in `[section]` of the config.
pub fn set(d: &Path, section: &str, line: &str) {
    base(d);
    edit(d, section, line);
}

/// The base with each `(section, line)` set.
pub fn set_all(d: &Path, lines: &[(&str, &str)]) {
    base(d);
    for (section, line) in lines {
        edit(d, section, line);
    }
}

/// Removes the line setting `key` from the config.
pub fn unset(d: &Path, key: &str) {
    let text: Vec<String> = read(d, "bad.toml")
        .lines()
        .filter(|l| {
            !l.trim_start()
                .strip_prefix(key)
                .is_some_and(|r| r.trim_start().starts_with('='))
        })
        .map(str::to_string)
        .collect();
    write(d, "bad.toml", &(text.join("\n") + "\n"));
}

/// The base with the config replaced by `text`.
pub fn config_text(d: &Path, text: &str) {
    base(d);
    write(d, "bad.toml", text);
}

/// Edits the JSON file `d/rel` in place.
pub fn json_edit(d: &Path, rel: &str, f: impl FnOnce(&mut Value)) {
    let mut v: Value = serde_json::from_str(&read(d, rel)).expect("json");
    f(&mut v);
    write(d, rel, &serde_json::to_string_pretty(&v).expect("json"));
}

/// The base with the model's `config.json` key set to `value`.
pub fn model_config(d: &Path, key: &str, value: Value) {
    base(d);
    json_edit(d, "qwen3-tiny/config.json", |v| v[key] = value);
}

/// The base with the demo rows replaced by `rows` (a JSON array, as text).
pub fn rows(d: &Path, rows: &str) {
    base(d);
    write(d, "demo-data/interview_ko.json", rows);
}

/// The base with one more dataset `extra` (its `dataset_info.json` entry and file), used instead
/// of the demo's.
pub fn dataset(d: &Path, entry: Value, file: &str, contents: &[u8]) {
    base(d);
    json_edit(d, "demo-data/dataset_info.json", |v| v["extra"] = entry);
    write_bytes(d, &format!("demo-data/{file}"), contents);
    edit(d, "data", "dataset = \"extra\"");
    edit(d, "data", "val_size = 0");
}

/// The base with `<|im_start|>` moved to id 5000 in the tokenizer (past `vocab_size` 1024); the
/// chat template puts it in every example.
pub fn foreign_tokenizer(d: &Path) {
    base(d);
    json_edit(d, "qwen3-tiny/tokenizer.json", |tok| {
        for t in tok["added_tokens"].as_array_mut().expect("added_tokens") {
            if t["content"] == "<|im_start|>" {
                t["id"] = 5000.into();
            }
        }
        tok["model"]["vocab"]["<|im_start|>"] = 5000.into();
    });
}

/// The base plus a finished earlier run of it in `run-out/` (checkpoint-1, checkpoint-2, the
/// final adapter).
pub fn with_run(d: &Path) {
    base(d);
    copy_dir(
        PREVIOUS_RUN.get().expect("previous run prepared"),
        &d.join("run-out"),
    );
}

/// A safetensors file with these tensors (zeros), or with `header` as its raw header.
pub fn safetensors(tensors: &[(&str, &str, &[usize])]) -> Vec<u8> {
    let mut header = serde_json::Map::new();
    let mut offset = 0usize;
    for (name, dtype, shape) in tensors {
        let size = match *dtype {
            "F64" | "I64" => 8,
            "F32" | "I32" => 4,
            "BF16" | "F16" => 2,
            _ => 1,
        };
        let n = shape.iter().product::<usize>() * size;
        header.insert(
            name.to_string(),
            serde_json::json!({"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + n]}),
        );
        offset += n;
    }
    raw_safetensors(&Value::Object(header).to_string(), offset)
}

/// A safetensors file whose header is `header` followed by `data_len` zero bytes.
pub fn raw_safetensors(header: &str, data_len: usize) -> Vec<u8> {
    let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
    bytes.extend_from_slice(header.as_bytes());
    bytes.resize(bytes.len() + data_len, 0);
    bytes
}

/// The shipped PEFT adapter for the tiny model, copied to `d/adapter`.
pub fn adapter(d: &Path) {
    base(d);
    copy_dir(
        &root().join("fixtures/lora/qwen3-tiny-adapter"),
        &d.join("adapter"),
    );
}

/// The shipped adapter with `adapter_config.json`'s `key` set to `value`.
pub fn adapter_config(d: &Path, key: &str, value: Value) {
    adapter(d);
    json_edit(d, "adapter/adapter_config.json", |v| v[key] = value);
}

/// The shipped benchmark files, copied to `d/evaldata`.
pub fn eval_data(d: &Path) {
    base(d);
    copy_dir(&root().join("fixtures/eval/data"), &d.join("evaldata"));
}

/// The finished earlier run copied to `d/run-out` (nothing else).
pub fn copy_run(d: &Path) {
    copy_dir(
        PREVIOUS_RUN.get().expect("previous run prepared"),
        &d.join("run-out"),
    );
}
