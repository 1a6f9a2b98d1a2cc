//! Bad inputs to a run: each a clear error naming what is wrong, before anything runs.

use std::path::{Path, PathBuf};

use ember_backend::AutodiffBackend;
use ember_testing::on_every_backend;
use ember_train::{FinetuneConfig, Run, TrainError};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn config(model: &Path, out: &Path) -> FinetuneConfig {
    let text = format!(
        "[model]\nmodel_name_or_path = {:?}\n[data]\ndataset_dir = {:?}\ndataset = \"interview_ko\"\n\
         [train]\nmax_steps = 1\n[output]\noutput_dir = {:?}\n",
        model,
        root().join("fixtures/demo"),
        out
    );
    FinetuneConfig::from_table(text.parse().expect("toml"), Path::new("t.toml"), &[])
        .expect("config")
}

/// The tiny model with `<|im_start|>` moved to id 5000 in its tokenizer (past `vocab_size` 1024):
/// the template puts it in every example.
fn model_with_foreign_tokenizer(dir: &Path) -> PathBuf {
    let src = root().join("fixtures/tiny/qwen3-tiny");
    let model = dir.join("model");
    std::fs::create_dir_all(&model).expect("mkdir");
    for f in ["config.json", "generation_config.json", "model.safetensors"] {
        std::fs::copy(src.join(f), model.join(f)).expect("copy");
    }
    let text = std::fs::read_to_string(src.join("tokenizer.json")).expect("tokenizer");
    let mut tok: serde_json::Value = serde_json::from_str(&text).expect("json");
    for t in tok["added_tokens"].as_array_mut().expect("added_tokens") {
        if t["content"] == "<|im_start|>" {
            t["id"] = 5000.into();
        }
    }
    tok["model"]["vocab"]["<|im_start|>"] = 5000.into();
    std::fs::write(model.join("tokenizer.json"), tok.to_string()).expect("write");
    model
}

#[test]
fn token_ids_past_the_vocabulary_are_refused_before_training() {
    on_every_backend!(token_ids_past_the_vocabulary_on);
}

fn token_ids_past_the_vocabulary_on<B: AutodiffBackend>(device: B::Device) {
    let tmp = tempfile::tempdir().expect("tmp");
    let model = model_with_foreign_tokenizer(tmp.path());
    let out = tmp.path().join("out");
    let err = Run::<B>::load(&config(&model, &out), &device)
        .err()
        .expect("refused");
    assert!(
        matches!(
            err,
            TrainError::TokenOutOfVocabulary {
                id: 5000,
                vocab: 1024,
                ..
            }
        ),
        "{err}"
    );
    let msg = err.to_string();
    assert!(
        msg.contains("train example 0") && msg.contains("config.json"),
        "{msg}"
    );
    assert!(!out.exists(), "nothing written");
}

/// Values torch, HF or LLaMA-Factory refuse are refused where the config is read, naming the key.
#[test]
fn impossible_values_are_refused_naming_the_key() {
    let tmp = tempfile::tempdir().expect("tmp");
    let base = format!(
        "[model]\nmodel_name_or_path = {:?}\n[data]\ndataset_dir = {:?}\ndataset = \"interview_ko\"\n\
         [output]\noutput_dir = {:?}\n",
        root().join("fixtures/tiny/qwen3-tiny"),
        root().join("fixtures/demo"),
        tmp.path().join("out")
    );
    let cases: &[(&str, &str, &str)] = &[
        (
            "[train]\nlearning_rate = inf",
            "train.learning_rate",
            "finite",
        ),
        (
            "[train]\nlearning_rate = nan",
            "train.learning_rate",
            "finite",
        ),
        (
            "[train]\nlearning_rate = -1.0",
            "train.learning_rate",
            ">= 0",
        ),
        ("[train]\nadam_beta1 = 1.5", "train.adam_beta1", "[0, 1)"),
        ("[train]\nadam_beta2 = 1.0", "train.adam_beta2", "[0, 1)"),
        ("[train]\nadam_beta1 = -0.1", "train.adam_beta1", "[0, 1)"),
        (
            "[train]\nadam_epsilon = -1e-8",
            "train.adam_epsilon",
            ">= 0",
        ),
        ("[train]\nweight_decay = -1.0", "train.weight_decay", ">= 0"),
        (
            "[train]\nweight_decay = inf",
            "train.weight_decay",
            "finite",
        ),
        (
            "[train]\ngradient_checkpointing = true\ndisable_gradient_checkpointing = true",
            "train.gradient_checkpointing",
            "disable_gradient_checkpointing",
        ),
        (
            "[lora]\nlora_target = \"q_proj,foo_proj\"",
            "lora_target: foo_proj",
            "q_proj",
        ),
        (
            "[lora]\nlayers_to_transform = [1, 5]",
            "layers_to_transform: [5]",
            "layers 0 to 1",
        ),
        (
            "[lora]\ndisable_shuffling = true",
            "lora.disable_shuffling",
            "belongs in [train]",
        ),
    ];
    for (extra, key, words) in cases {
        // A section given twice is not TOML: put the case's section after the base's.
        let text = format!("{base}{extra}\n");
        // Refused where the config is read (naming the file), or else when the model is there to
        // check against (lora_target, layers_to_transform).
        let msg = match FinetuneConfig::from_table(
            text.parse().expect("toml"),
            Path::new("bad.toml"),
            &[],
        ) {
            Err(e) => {
                let msg = e.to_string();
                assert!(msg.contains("bad.toml"), "{extra:?}: {msg}");
                msg
            }
            Ok(cfg) => Run::<ember_backend::FlexBackend>::load(&cfg, &Default::default())
                .err()
                .unwrap_or_else(|| panic!("{extra:?} was accepted"))
                .to_string(),
        };
        assert!(msg.contains(key) && msg.contains(words), "{extra:?}: {msg}");
    }
    // The defaults and LLaMA-Factory's own spelling alone are fine.
    for ok in ["", "[train]\ndisable_gradient_checkpointing = true\n"] {
        let text = format!("{base}{ok}");
        FinetuneConfig::from_table(text.parse().expect("toml"), Path::new("ok.toml"), &[])
            .unwrap_or_else(|e| panic!("{ok:?}: {e}"));
    }
}

/// serde names only the section of a type error; the message names the key and, read from a
/// file, its line.
#[test]
fn type_errors_name_the_key_and_its_line() {
    let tmp = tempfile::tempdir().expect("tmp");
    let cases: &[(&str, &str, &str)] = &[
        (
            "[train]\nlearning_rate = 1e-4\nper_device_train_batch_size = \"four\"\n",
            "bad.toml:3: `train.per_device_train_batch_size`",
            "expected usize",
        ),
        (
            "[output]\nsave_steps = 10\n\n[train]\nresume_from_checkpoint = 5\n",
            "bad.toml:5: `train.resume_from_checkpoint`",
            "expected a boolean (true, false) or the path of a checkpoint-N directory",
        ),
        (
            "[data]\ncutoff_len = -3\n",
            "bad.toml:2: `data.cutoff_len`",
            "-3",
        ),
        (
            "[lora]\nlora_rank = 8.5\n",
            "bad.toml:2: `lora.lora_rank`",
            "8.5",
        ),
        (
            "[train]\nseed = 1\n[eval]\neval_strategy = \"sometimes\"\n",
            "bad.toml:4: `eval.eval_strategy`",
            "sometimes",
        ),
        (
            "[model]\nmodel_name_or_path = \"m\"\n[trian]\nseed = 1\n",
            "bad.toml:3: `trian`",
            "did you mean [train]?",
        ),
        (
            "[train]\n\n\nlerning_rate = 1.0\n",
            "bad.toml:4: `train.lerning_rate`",
            "did you mean `learning_rate`?",
        ),
        (
            // An inline dataset_info entry: the key inside the entry, at its own line.
            "[data]\ndataset = \"d\"\n[data.dataset_info.d]\nformatting = \"alpaca\"\nfile_name = 5\n",
            "bad.toml:5: `data.dataset_info.d.file_name`",
            "expected a string",
        ),
        (
            "[data.dataset_info.d.columns]\nprompt = \"p\"\nresponse = []\n",
            "bad.toml:3: `data.dataset_info.d.columns.response`",
            "expected a string",
        ),
    ];
    for (text, head, words) in cases {
        let file = tmp.path().join("bad.toml");
        std::fs::write(&file, text).expect("write");
        let msg = FinetuneConfig::from_file(&file, &[])
            .err()
            .unwrap_or_else(|| panic!("{text:?} was accepted"))
            .to_string();
        assert!(msg.contains(head) && msg.contains(words), "{text:?}: {msg}");
    }
    // resume_from_checkpoint keeps both of its forms.
    for (v, want) in [
        ("true", ember_train::config::ResumeFrom::Latest(true)),
        (
            "\"out/checkpoint-2\"",
            ember_train::config::ResumeFrom::Path("out/checkpoint-2".into()),
        ),
    ] {
        let file = tmp.path().join("ok.toml");
        std::fs::write(
            &file,
            format!(
                "[model]\nmodel_name_or_path = \"m\"\n[data]\ndataset = \"d\"\n\
                 [train]\nresume_from_checkpoint = {v}\n"
            ),
        )
        .expect("write");
        let cfg = FinetuneConfig::from_file(&file, &[]).unwrap_or_else(|e| panic!("{v}: {e}"));
        assert_eq!(cfg.train.resume_from_checkpoint, Some(want));
    }
}

/// The model path is checked before the tokenizer inside it is looked for.
#[test]
fn a_missing_model_directory_is_reported_as_the_directory() {
    let tmp = tempfile::tempdir().expect("tmp");
    let cfg = config(&tmp.path().join("no-such-model"), &tmp.path().join("out"));
    let msg = Run::<ember_backend::FlexBackend>::load(&cfg, &Default::default())
        .err()
        .expect("refused")
        .to_string();
    assert!(
        msg.contains("no-such-model: no such directory (nor a Hugging Face Hub repo id"),
        "{msg}"
    );
}

#[test]
fn attention_and_loss_choices_are_validated_naming_the_key() {
    let tmp = tempfile::tempdir().expect("tmp");
    let model = root().join("fixtures/tiny/qwen3-tiny");
    for (key, value, expected) in [
        ("attention", "flash", "chunked:ROWS"),
        ("attention", "chunked:0", "chunked:ROWS"),
        ("loss", "fused", "chunked:TOKENS"),
    ] {
        let text = format!(
            "[model]\nmodel_name_or_path = {model:?}\n{key} = {value:?}\n[data]\ndataset_dir = {:?}\n\
             dataset = \"interview_ko\"\n[output]\noutput_dir = {:?}\n",
            root().join("fixtures/demo"),
            tmp.path()
        );
        let err = FinetuneConfig::from_table(text.parse().expect("toml"), Path::new("t.toml"), &[])
            .expect_err("refused")
            .to_string();
        assert!(
            err.contains(&format!("model.{key}")) && err.contains(expected) && err.contains(value),
            "{key} = {value}: {err}"
        );
    }
}

#[test]
fn attention_and_loss_from_the_config_reach_the_model() {
    on_every_backend!(config_choices_reach_the_model_on);
}

fn config_choices_reach_the_model_on<B: AutodiffBackend>(device: B::Device) {
    use ember_qwen3::{AttentionImpl, LossImpl};
    let tmp = tempfile::tempdir().expect("tmp");
    let model = root().join("fixtures/tiny/qwen3-tiny");
    let mut cfg = config(&model, &tmp.path().join("out"));
    let run = Run::<B>::load(&cfg, &device).expect("defaults");
    assert_eq!(run.model.attention_impl(), AttentionImpl::default());
    let default_loss = LossImpl::chunked_for_vocab(run.model_cfg.vocab_size);
    assert_eq!(run.model.loss_impl, default_loss);
    cfg.model.attention = Some("plain".into());
    cfg.model.loss = Some("chunked:7".into());
    let run = Run::<B>::load(&cfg, &device).expect("chosen");
    assert_eq!(run.model.attention_impl(), AttentionImpl::Plain);
    assert_eq!(run.model.loss_impl, LossImpl::Chunked { tokens: 7 });
}

#[test]
fn data_that_cannot_train_or_evaluate_as_configured_is_refused() {
    on_every_backend!(untrainable_data_on);
}

fn untrainable_data_on<B: AutodiffBackend>(device: B::Device) {
    let tmp = tempfile::tempdir().expect("tmp");
    let model = root().join("fixtures/tiny/qwen3-tiny");
    // cutoff_len = 1: the prompt takes the one token, no response token is left to learn.
    let mut cfg = config(&model, &tmp.path().join("a"));
    cfg.data.cutoff_len = 1;
    let err = Run::<B>::load(&cfg, &device).err().expect("refused");
    assert!(
        matches!(err, TrainError::NothingSupervised { cutoff_len: 1, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("cutoff_len = 1"), "{err}");
    // eval_strategy without eval data (HF: "You have set args.eval_strategy ... but you didn't
    // pass an eval_dataset").
    let mut cfg = config(&model, &tmp.path().join("b"));
    cfg.data.val_size = 0.0;
    cfg.eval.eval_strategy = ember_train::config::Strategy::Steps;
    cfg.eval.eval_steps = Some(1);
    let err = Run::<B>::load(&cfg, &device).err().expect("refused");
    assert!(
        err.to_string().contains("eval.eval_strategy = \"steps\"")
            && err.to_string().contains("no evaluation data"),
        "{err}"
    );
    assert!(!tmp.path().join("a").exists() && !tmp.path().join("b").exists());
}
