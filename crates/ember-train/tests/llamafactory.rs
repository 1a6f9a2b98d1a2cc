//! LLaMA-Factory YAML configs (issue 21, item 2): read as they are, each equal to the ember TOML
//! written by hand for the same run; keys ember cannot honour refused by name and line.

use std::path::{Path, PathBuf};

use ember_train::llamafactory::{is_yaml, translate};
use ember_train::{FinetuneConfig, TrainError};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Loads a fixture the way `--config` does, with the repository root as the current directory's
/// stand-in: paths in the configs stay as written, so both sides compare equal.
fn load(rel: &str, set: &[&str]) -> Result<(FinetuneConfig, Vec<String>), TrainError> {
    let set: Vec<String> = set.iter().map(|s| s.to_string()).collect();
    FinetuneConfig::load(&root().join(rel), &set)
}

/// Loads a YAML config written into a temporary file.
fn load_text(text: &str, set: &[&str]) -> Result<FinetuneConfig, TrainError> {
    let dir = tempfile::tempdir().expect("tmp");
    let file = dir.path().join("run.yaml");
    std::fs::write(&file, text).expect("write");
    let set: Vec<String> = set.iter().map(|s| s.to_string()).collect();
    FinetuneConfig::from_file(&file, &set)
}

/// The error's key and line, and its message.
fn refusal(r: Result<FinetuneConfig, TrainError>) -> (String, Option<usize>, String) {
    match r {
        Err(TrainError::Config {
            key, line, message, ..
        }) => (key, line, message),
        Err(other) => panic!("not a config error: {other}"),
        Ok(cfg) => panic!("accepted: {cfg:?}"),
    }
}

/// The 1-based line of the file's first line starting with `prefix`.
fn line_starting(text: &str, prefix: &str) -> usize {
    text.lines()
        .position(|l| l.starts_with(prefix))
        .map(|i| i + 1)
        .expect("prefix in text")
}

const BASE: &str = "model_name_or_path: m\ndataset: d\n";

#[test]
fn the_llamafactory_example_is_the_run_its_toml_describes() {
    let (yaml, notes) = load("fixtures/llamafactory/qwen3_lora_sft.yaml", &[]).expect("yaml");
    let (toml, toml_notes) = load("fixtures/llamafactory/qwen3_lora_sft.toml", &[]).expect("toml");
    assert_eq!(yaml, toml);
    assert!(toml_notes.is_empty());
    // The keys that change nothing, in one note, in file order.
    assert_eq!(notes.len(), 1, "{notes:?}");
    assert!(
        notes[0].ends_with(
            "accepted, with no effect in ember: trust_remote_code, overwrite_cache, \
             preprocessing_num_workers, dataloader_num_workers, ddp_timeout"
        ),
        "{}",
        notes[0]
    );
    // The values LLaMA-Factory's names carry, spot-checked on the parsed config.
    assert_eq!(yaml.model.dtype, "bf16");
    assert_eq!(yaml.data.template, "qwen3_nothink");
    assert_eq!(yaml.train.learning_rate, 1e-4);
    assert_eq!(yaml.train.resume_from_checkpoint, None);
}

#[test]
fn the_reference_study_yaml_is_the_study_toml() {
    let (yaml, _) = load("fixtures/study/qwen3_8b.yaml", &[]).expect("yaml");
    let (toml, _) = load("fixtures/study/qwen3-8b.toml", &[]).expect("toml");
    assert_eq!(yaml, toml);
}

#[test]
fn to_toml_prints_a_config_that_loads_as_the_same_run() {
    for rel in [
        "fixtures/llamafactory/qwen3_lora_sft.yaml",
        "fixtures/study/qwen3_8b.yaml",
    ] {
        let path = root().join(rel);
        let text = std::fs::read_to_string(&path).expect("read");
        let tr = translate(&text, &path, &["seed=7".into()]).expect("translate");
        let printed = tr.to_toml(&path).expect("to_toml");
        let again = FinetuneConfig::from_table(printed.parse().expect("toml"), &path, &[])
            .expect("printed TOML loads");
        let (direct, _) = load(rel, &["seed=7"]).expect("yaml");
        assert_eq!(again, direct, "{rel}:\n{printed}");
        assert!(printed.starts_with("# ember config translated from"));
    }
}

#[test]
fn yaml_is_chosen_by_extension() {
    assert!(is_yaml(Path::new("run.yaml")));
    assert!(is_yaml(Path::new("RUN.YML")));
    assert!(!is_yaml(Path::new("run.toml")));
}

#[test]
fn overrides_use_llamafactory_names_and_ember_sections() {
    // A flat key is LLaMA-Factory's (one `seed` sets both of ember's), a dotted one ember's.
    let cfg = load_text(BASE, &["seed=7", "bf16=true"]).expect("config");
    assert_eq!((cfg.train.seed, cfg.data.seed), (7, 7));
    assert_eq!(cfg.model.dtype, "bf16");
    let cfg = load_text(&format!("{BASE}seed: 3\n"), &["train.seed=9"]).expect("config");
    assert_eq!((cfg.train.seed, cfg.data.seed), (9, 3));
    let cfg = load_text(&format!("{BASE}bf16: true\n"), &["bf16=false"]).expect("config");
    assert_eq!(cfg.model.dtype, "f32");
    // ember's own key names are accepted in a YAML too.
    let cfg = load_text(&format!("{BASE}attention: plain\n"), &[]).expect("config");
    assert_eq!(cfg.model.attention.as_deref(), Some("plain"));
}

#[test]
fn examples_ember_cannot_run_are_refused_by_key_and_line() {
    for (rel, key, needle) in [
        (
            "fixtures/llamafactory/qwen3_lora_sft_ds3.yaml",
            "deepspeed",
            "not a key ember implements",
        ),
        (
            "fixtures/llamafactory/qwen3_lora_dpo.yaml",
            "stage",
            "only `stage: sft`",
        ),
    ] {
        let text = std::fs::read_to_string(root().join(rel)).expect("read");
        let (k, line, message) = refusal(load(rel, &[]).map(|(c, _)| c));
        assert_eq!(k, key, "{rel}: {message}");
        assert_eq!(
            line,
            Some(line_starting(&text, &format!("{key}:"))),
            "{rel}"
        );
        assert!(message.contains(needle), "{rel}: {message}");
    }
}

#[test]
fn bad_keys_and_values_name_the_yaml_key_and_its_line() {
    // (extra YAML, key named, substring of the message)
    let cases = [
        (
            "learnig_rate: 1.0e-4\n",
            "learnig_rate",
            "did you mean `learning_rate`?",
        ),
        (
            "finetuning_type: full\n",
            "finetuning_type",
            "`full` is not supported",
        ),
        ("fp16: true\n", "fp16", "use bf16: true"),
        ("pure_bf16: true\n", "pure_bf16", "adapter in f32"),
        ("save_only_model: true\n", "save_only_model", "optimizer"),
        ("do_train: false\n", "do_train", "always trains"),
        (
            "report_to: [none, wandb]\n",
            "report_to",
            "`wandb` is not supported",
        ),
        ("bf16: yes please\n", "bf16", "must be true or false"),
        ("bf16: true\ndtype: f32\n", "bf16", "set only one"),
        // Errors found by ember's sections are re-aimed at the YAML key.
        ("lora_rank: eight\n", "lora_rank", "invalid type"),
        ("seed: -1\n", "seed", "expected u64"),
        (
            "learning_rate: -1.0\n",
            "learning_rate",
            "must be finite and >= 0",
        ),
        ("eval_strategy: steps\n", "eval_steps", "needs eval_steps"),
    ];
    for (extra, key, needle) in cases {
        let text = format!("{BASE}{extra}");
        let (k, line, message) = refusal(load_text(&text, &[]));
        assert_eq!(k, key, "{extra}: {message}");
        assert!(message.contains(needle), "{extra}: {message}");
        // The line of the key, where the key is written (eval_steps is missing, so it has none).
        if text.contains(&format!("{key}:")) {
            assert_eq!(
                line,
                Some(line_starting(&text, &format!("{key}:"))),
                "{extra}"
            );
        } else {
            assert_eq!(line, None, "{extra}");
        }
    }
}

#[test]
fn files_that_are_not_a_flat_mapping_are_refused_with_their_line() {
    let (_, line, message) = refusal(load_text("model_name_or_path: m\n  bad: [\n", &[]));
    assert!(message.contains("not valid YAML"), "{message}");
    assert!(line.is_some(), "{message}");
    let (_, _, message) = refusal(load_text("- a\n- b\n", &[]));
    assert!(message.contains("a mapping of keys to values"), "{message}");
    let (_, _, message) = refusal(load_text(BASE, &["no_equals_sign"]));
    assert!(message.contains("is not key=value"), "{message}");
}
