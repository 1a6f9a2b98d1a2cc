//! A LLaMA-Factory YAML through the real CLI (issue 21, item 2): `finetune --config run.yaml`
//! trains exactly the run of the equivalent ember TOML, `config --to-toml` prints that TOML, and
//! `plan` reads the reference study's YAML.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_xtask");

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Runs the CLI in the repository root (the fixtures' paths are relative to it).
fn xtask(args: &[&str]) -> Output {
    let out = Command::new(BIN)
        .args(args)
        .current_dir(root())
        .env_remove("RUST_BACKTRACE")
        .output()
        .expect("run xtask");
    assert!(
        out.status.success(),
        "xtask {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A `plan --json` without what this process measures of itself (its resident memory, and the
/// peaks that include it).
fn plan_json(stdout: &[u8]) -> serde_json::Value {
    let mut v: serde_json::Value = serde_json::from_slice(stdout).expect("plan json");
    let memory = v["memory"].as_object_mut().expect("memory");
    memory.remove("peak");
    memory.remove("peak_plain");
    if let Some(inputs) = memory.get_mut("inputs").and_then(|i| i.as_object_mut()) {
        inputs.remove("runtime_bytes");
    }
    v
}

/// `log_history` without the wall-clock fields, which differ between any two runs.
fn history(dir: &Path) -> Vec<serde_json::Value> {
    let state: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.join("trainer_state.json")).expect("trainer_state.json"),
    )
    .expect("json");
    let mut h = state["log_history"]
        .as_array()
        .expect("log_history")
        .clone();
    for e in &mut h {
        if let Some(m) = e.as_object_mut() {
            m.retain(|k, _| !k.contains("runtime") && !k.contains("per_second"));
        }
    }
    h
}

/// `plan --json` (no timing, on flex) with `args`, as [`plan_json`].
fn plan(args: &[&str]) -> serde_json::Value {
    let mut all = vec![
        "plan",
        "--json",
        "--calibrate-steps",
        "0",
        "--backend",
        "flex",
    ];
    all.extend_from_slice(args);
    plan_json(&xtask(&all).stdout)
}

#[test]
fn a_llamafactory_yaml_trains_the_run_of_its_toml() {
    let tmp = tempfile::tempdir().expect("tmp");
    let mut dirs = Vec::new();
    for (name, file) in [
        ("yaml", "qwen3_lora_sft.yaml"),
        ("toml", "qwen3_lora_sft.toml"),
    ] {
        let out = tmp.path().join(name);
        let config = format!("fixtures/llamafactory/{file}");
        let output_dir = format!("output_dir={}", out.display());
        let run = xtask(&[
            "finetune",
            "--config",
            &config,
            "--set",
            "max_steps=3",
            "--set",
            &output_dir,
            "--backend",
            "flex",
        ]);
        let stderr = text(&run.stderr);
        // The YAML's keys that change nothing are listed once; the TOML has none.
        assert_eq!(
            stderr.matches("accepted, with no effect in ember").count(),
            usize::from(name == "yaml"),
            "{stderr}"
        );
        dirs.push(out);
    }
    let (yaml, toml) = (&dirs[0], &dirs[1]);
    let h = history(yaml);
    assert_eq!(h, history(toml));
    for f in ["adapter_model.safetensors", "adapter_config.json"] {
        let a = std::fs::read(yaml.join(f)).expect("yaml run output");
        let b = std::fs::read(toml.join(f)).expect("toml run output");
        assert!(a == b, "{f} differs between the YAML and the TOML run");
    }
    // The final evaluation (val_size: 0.1) ran in both, on the same split.
    let eval_loss = |dir: &Path| -> serde_json::Value {
        let v: serde_json::Value = serde_json::from_slice(
            &std::fs::read(dir.join("eval_results.json")).expect("eval_results.json"),
        )
        .expect("json");
        v["eval_loss"].clone()
    };
    assert!(eval_loss(yaml).is_f64());
    assert_eq!(eval_loss(yaml), eval_loss(toml));
    let adapter: serde_json::Value = serde_json::from_slice(
        &std::fs::read(yaml.join("adapter_config.json")).expect("adapter_config.json"),
    )
    .expect("json");
    assert_eq!(adapter["r"], 8);
    // lora_alpha unset: LLaMA-Factory's default, twice the rank.
    assert_eq!(adapter["lora_alpha"], 16.0);
}

#[test]
fn config_to_toml_prints_the_equivalent_ember_config() {
    let yaml = "fixtures/llamafactory/qwen3_lora_sft.yaml";
    let printed = text(&xtask(&["config", "--to-toml", yaml]).stdout);
    let tmp = tempfile::tempdir().expect("tmp");
    let file = tmp.path().join("printed.toml");
    std::fs::write(&file, &printed).expect("write");
    // The printed TOML, run through `plan`, plans exactly what the YAML and the hand-written TOML
    // plan.
    let plan = |config: &str| plan(&["--config", config]);
    let from_yaml = plan(yaml);
    assert_eq!(
        from_yaml["banner"]["trainable_params"], 13056,
        "{from_yaml}"
    );
    assert_eq!(plan(&file.display().to_string()), from_yaml);
    assert_eq!(plan("fixtures/llamafactory/qwen3_lora_sft.toml"), from_yaml);
}

#[test]
fn plan_reads_the_reference_study_yaml() {
    let plan = |config: &str| {
        plan(&[
            "--config",
            config,
            "--samples",
            "162",
            "--tokens-per-sample",
            "6500",
        ])
    };
    let yaml = plan("fixtures/study/qwen3_8b.yaml");
    let json = &yaml;
    // The reference experiment: 162 samples, batch 4 x 8, 3 epochs.
    assert_eq!(json["banner"]["plan"]["max_steps"], 18);
    assert_eq!(json["memory"]["inputs"]["dtype"], "bf16");
    assert_eq!(yaml, plan("fixtures/study/qwen3-8b.toml"));
}

#[test]
fn refused_yaml_keys_are_named_with_their_line() {
    let out = Command::new(BIN)
        .args([
            "finetune",
            "--config",
            "fixtures/llamafactory/qwen3_lora_sft_ds3.yaml",
        ])
        .current_dir(root())
        .output()
        .expect("run xtask");
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("qwen3_lora_sft_ds3.yaml:13: `deepspeed`: not a key ember implements"),
        "{stderr}"
    );
}

#[test]
fn a_hub_id_and_a_llamafactory_yaml_train_curves_and_chat_offline() {
    use ember_testing::hub_server::{HubServer, ServedRepo};
    let commit = "89abcdef0123456789abcdef0123456789abcdef";
    let server = HubServer::start(vec![ServedRepo::from_dir(
        "ember/qwen3-tiny",
        "main",
        commit,
        &root().join("fixtures/tiny/qwen3-tiny"),
    )]);
    let tmp = tempfile::tempdir().expect("tmp");
    let cache = tmp.path().join("hub");
    let out = tmp.path().join("out");
    let yaml = tmp.path().join("run.yaml");
    let config = std::fs::read_to_string(root().join("fixtures/llamafactory/qwen3_lora_sft.yaml"))
        .expect("fixture")
        .replace(
            "model_name_or_path: fixtures/tiny/qwen3-tiny",
            "model_name_or_path: ember/qwen3-tiny",
        )
        .replace("report_to: none", "report_to: tensorboard");
    std::fs::write(&yaml, config).expect("write");
    let run = |args: &[&str], offline: bool| {
        let mut c = Command::new(BIN);
        c.args(args)
            .current_dir(root())
            .env("HF_ENDPOINT", &server.endpoint)
            .env("HF_HUB_CACHE", &cache)
            .env_remove("HF_TOKEN")
            .env_remove("HF_HUB_OFFLINE");
        if offline {
            c.env("HF_HUB_OFFLINE", "1");
        }
        let o = c.output().expect("run xtask");
        assert!(o.status.success(), "{args:?}:\n{}", text(&o.stderr));
        o
    };
    let yaml_arg = yaml.display().to_string();
    let out_arg = format!("output_dir={}", out.display());
    run(
        &[
            "finetune",
            "--config",
            &yaml_arg,
            "--set",
            "max_steps=2",
            "--set",
            &out_arg,
        ],
        false,
    );
    assert!(
        server
            .log()
            .iter()
            .any(|r| r.path.ends_with("/model.safetensors")),
        "the weights came from the Hub"
    );
    let adapter: serde_json::Value = serde_json::from_slice(
        &std::fs::read(out.join("adapter_config.json")).expect("adapter_config.json"),
    )
    .expect("json");
    // As PEFT records it: the id, not the cache path.
    assert_eq!(adapter["base_model_name_or_path"], "ember/qwen3-tiny");
    // The curves: one TensorBoard event file under output_dir/runs/<time>_<host>/.
    let runs: Vec<_> = std::fs::read_dir(out.join("runs"))
        .expect("output_dir/runs")
        .flat_map(|d| std::fs::read_dir(d.expect("entry").path()).expect("run dir"))
        .map(|f| f.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        runs.len() == 1 && runs[0].starts_with("events.out.tfevents."),
        "{runs:?}"
    );
    // Offline, from the cache: train again, then chat with the adapter.
    let before = server.log().len();
    let out2 = format!("output_dir={}", tmp.path().join("out2").display());
    run(
        &[
            "finetune",
            "--config",
            &yaml_arg,
            "--set",
            "max_steps=1",
            "--set",
            &out2,
        ],
        true,
    );
    // A chat reply with the adapter, the model named by its id: the same as from the local path.
    let adapter_arg = out.display().to_string();
    let chat = |model: &str| {
        let args = [
            "generate",
            "--chat",
            "--json",
            "--greedy",
            "--backend",
            "flex",
            "--model",
            model,
            "--adapter",
            &adapter_arg,
            "--prompt",
            "안녕",
            "--max-new-tokens",
            "3",
        ];
        let o = run(&args, true);
        serde_json::from_slice::<serde_json::Value>(&o.stdout).expect("reply json")
    };
    let by_id = chat("ember/qwen3-tiny");
    assert_eq!(server.log().len(), before, "offline runs made no request");
    assert!(
        by_id["ids"].as_array().is_some_and(|a| !a.is_empty()),
        "{by_id}"
    );
    assert_eq!(by_id, chat("fixtures/tiny/qwen3-tiny"));
}
