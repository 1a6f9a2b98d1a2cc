//! Every kind of broken model directory gets its own clear error naming what is wrong.
#![cfg(feature = "flex")]

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use burn::tensor::DType;
use ember_qwen3::{Qwen3Config, Qwen3Error, load_pretrained};
use safetensors::SafeTensors;
use safetensors::tensor::TensorView;

type B = ember_backend::FlexBackend;

fn tiny() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/tiny/qwen3-tiny")
}

/// A copy of the tiny model whose tensors were passed through `edit`.
fn edited_copy(
    edit: impl FnOnce(&mut Vec<(String, safetensors::Dtype, Vec<usize>, Vec<u8>)>),
) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::copy(tiny().join("config.json"), dir.path().join("config.json")).expect("copy config");
    let bytes = std::fs::read(tiny().join("model.safetensors")).expect("read");
    let st = SafeTensors::deserialize(&bytes).expect("parse");
    let mut tensors: Vec<(String, safetensors::Dtype, Vec<usize>, Vec<u8>)> = st
        .tensors()
        .into_iter()
        .map(|(n, v)| (n, v.dtype(), v.shape().to_vec(), v.data().to_vec()))
        .collect();
    edit(&mut tensors);
    let views: HashMap<String, TensorView<'_>> = tensors
        .iter()
        .map(|(n, d, s, b)| (n.clone(), TensorView::new(*d, s.clone(), b).expect("view")))
        .collect();
    safetensors::serialize_to_file(views, None, &dir.path().join("model.safetensors"))
        .expect("write");
    dir
}

fn load(dir: &Path) -> Result<(), Qwen3Error> {
    load_pretrained::<B>(dir, DType::F32, &Default::default()).map(|_| ())
}

fn message(r: Result<(), Qwen3Error>) -> String {
    match r {
        Ok(()) => panic!("a broken model directory loaded"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn the_fixture_itself_loads() {
    load(&tiny()).expect("tiny model loads");
}

#[test]
fn missing_directory_and_missing_config() {
    let m = message(load(Path::new("/nonexistent/model")));
    assert!(
        m.contains("/nonexistent/model") && m.contains("no such directory"),
        "{m}"
    );
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::copy(
        tiny().join("model.safetensors"),
        dir.path().join("model.safetensors"),
    )
    .expect("copy");
    let m = message(load(dir.path()));
    assert!(m.contains("config.json not found"), "{m}");
}

/// The tokenizer is looked for only once the model path is known to be a directory, so a wrong
/// path is reported as such (every command finds the tokenizer this way).
#[test]
fn a_model_path_that_is_missing_or_a_file_is_named_as_such() {
    let m = ember_qwen3::tokenizer_file("/nonexistent/model")
        .expect_err("missing")
        .to_string();
    assert!(
        m.contains("/nonexistent/model")
            && m.contains("no such directory")
            && !m.contains("tokenizer.json"),
        "{m}"
    );
    let file = tiny().join("config.json");
    for m in [
        message(load(&file)),
        ember_qwen3::tokenizer_file(&file)
            .expect_err("a file")
            .to_string(),
    ] {
        assert!(
            m.contains("config.json: not a Hugging Face model directory: a file, not a directory"),
            "{m}"
        );
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let m = ember_qwen3::tokenizer_file(dir.path())
        .expect_err("no tokenizer")
        .to_string();
    assert!(m.contains("tokenizer.json not found"), "{m}");
    assert_eq!(
        ember_qwen3::tokenizer_file(tiny()).expect("tiny has one"),
        tiny().join("tokenizer.json")
    );
}

#[test]
fn missing_weights_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::copy(tiny().join("config.json"), dir.path().join("config.json")).expect("copy");
    let m = message(load(dir.path()));
    assert!(
        m.contains("neither model.safetensors nor model.safetensors.index.json"),
        "{m}"
    );
}

#[test]
fn missing_and_unexpected_keys_are_all_listed() {
    let dir = edited_copy(|t| {
        t.retain(|(n, ..)| n != "model.layers.1.mlp.up_proj.weight" && n != "model.norm.weight");
        let extra = t[0].clone();
        t.push((
            "model.layers.7.extra.weight".into(),
            extra.1,
            extra.2,
            extra.3,
        ));
    });
    let m = message(load(dir.path()));
    assert!(
        m.contains("missing keys: model.layers.1.mlp.up_proj.weight, model.norm.weight"),
        "{m}"
    );
    assert!(
        m.contains("unexpected keys: model.layers.7.extra.weight"),
        "{m}"
    );
}

#[test]
fn wrong_shape_names_tensor_and_both_shapes() {
    let dir = edited_copy(|t| {
        let e = t
            .iter_mut()
            .find(|(n, ..)| n == "model.layers.0.self_attn.k_proj.weight")
            .expect("k_proj");
        // [32, 48] -> [16, 96]: same bytes, other shape.
        e.2 = vec![e.2[0] / 2, e.2[1] * 2];
    });
    let m = message(load(dir.path()));
    assert!(
        m.contains(
            "wrong shape: model.layers.0.self_attn.k_proj.weight: expected [32, 48], found [16, 96]"
        ),
        "{m}"
    );
}

#[test]
fn truncated_safetensors_names_the_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::copy(tiny().join("config.json"), dir.path().join("config.json")).expect("copy");
    let bytes = std::fs::read(tiny().join("model.safetensors")).expect("read");
    std::fs::write(
        dir.path().join("model.safetensors"),
        &bytes[..bytes.len() / 2],
    )
    .expect("write");
    let m = message(load(dir.path()));
    assert!(
        m.contains("model.safetensors: not a readable safetensors file"),
        "{m}"
    );
}

fn config_error(edit: impl FnOnce(&mut serde_json::Value)) -> String {
    let text = std::fs::read_to_string(tiny().join("config.json")).expect("config");
    let mut v: serde_json::Value = serde_json::from_str(&text).expect("json");
    edit(&mut v);
    match Qwen3Config::from_json_str(&v.to_string()) {
        Ok(_) => panic!("a bad config was accepted"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn unsupported_rope_scaling_is_rejected_with_the_field() {
    let m = config_error(|v| {
        v.as_object_mut().map(|o| o.remove("rope_parameters"));
        v["rope_scaling"] = serde_json::json!({"rope_type": "yarn", "factor": 4.0});
    });
    assert!(
        m.contains("rope_scaling.rope_type") && m.contains("yarn"),
        "{m}"
    );
    // The same through a model directory names the config file.
    let dir = tempfile::tempdir().expect("tempdir");
    let text = std::fs::read_to_string(tiny().join("config.json")).expect("config");
    let mut v: serde_json::Value = serde_json::from_str(&text).expect("json");
    // transformers 5 writes the type under `rope_parameters`.
    v["rope_parameters"]["rope_type"] = "dynamic".into();
    std::fs::write(dir.path().join("config.json"), v.to_string()).expect("write");
    std::fs::copy(
        tiny().join("model.safetensors"),
        dir.path().join("model.safetensors"),
    )
    .expect("copy");
    let m = message(load(dir.path()));
    assert!(
        m.contains("config.json: field `rope_parameters.rope_type`") && m.contains("dynamic"),
        "{m}"
    );
}

#[test]
fn impossible_head_counts_are_rejected() {
    let m = config_error(|v| v["num_key_value_heads"] = 3.into());
    assert!(
        m.contains("num_key_value_heads") && m.contains("does not divide"),
        "{m}"
    );
    let m = config_error(|v| v["hidden_act"] = "gelu".into());
    assert!(m.contains("hidden_act"), "{m}");
    let m = config_error(|v| v["hidden_size"] = "big".into());
    assert!(m.contains("not a valid config.json"), "{m}");
    let m = config_error(|v| v["max_position_embeddings"] = 0.into());
    assert!(
        m.contains("max_position_embeddings") && m.contains("must be positive"),
        "{m}"
    );
}

#[test]
fn another_architecture_is_refused_by_its_model_type() {
    for other in ["llama", "qwen2", "qwen3_moe"] {
        let m = config_error(|v| v["model_type"] = other.into());
        assert!(
            m.contains("config.json") && m.contains("model_type") && m.contains(other),
            "{m}"
        );
    }
    let m = config_error(|v| v["model_type"] = 3.into());
    assert!(m.contains("model_type"), "{m}");
}

#[test]
fn real_configs_parse() {
    // Qwen3-8B's config.json fields (REFERENCE.md), with the extra fields HF writes.
    let cfg = Qwen3Config::from_json_str(
        r#"{"architectures":["Qwen3ForCausalLM"],"attention_bias":false,"attention_dropout":0.0,
        "bos_token_id":151643,"eos_token_id":151645,"head_dim":128,"hidden_act":"silu","hidden_size":4096,
        "initializer_range":0.02,"intermediate_size":12288,"max_position_embeddings":40960,
        "max_window_layers":36,"model_type":"qwen3","num_attention_heads":32,"num_hidden_layers":36,
        "num_key_value_heads":8,"rms_norm_eps":1e-06,"rope_scaling":null,"rope_theta":1000000,
        "sliding_window":null,"tie_word_embeddings":false,"torch_dtype":"bfloat16",
        "transformers_version":"4.51.0","use_cache":true,"use_sliding_window":false,"vocab_size":151936}"#,
    )
    .expect("Qwen3-8B config");
    assert_eq!(cfg.kv_heads(), 8);
    assert_eq!(cfg.eos_ids(), vec![151645]);
    assert_eq!(cfg.torch_dtype.as_deref(), Some("bfloat16"));
    let lin = Qwen3Config::from_json_str(
        r#"{"rope_scaling":{"type":"linear","factor":2.0},"eos_token_id":[1,2]}"#,
    )
    .expect("linear scaling");
    assert_eq!(lin.rope_position_scale(), 2.0);
    assert_eq!(lin.eos_ids(), vec![1, 2]);
    let v5 = Qwen3Config::from_json_str(
        r#"{"rope_parameters":{"rope_type":"default","rope_theta":5.0}}"#,
    )
    .expect("transformers 5 rope_parameters");
    assert_eq!(v5.rope_theta, 5.0);
    assert_eq!(v5.rope_position_scale(), 1.0);
}

#[test]
fn generation_past_max_position_embeddings_is_refused() {
    let (cfg, model) = load_pretrained::<B>(tiny(), DType::F32, &Default::default()).expect("tiny");
    let prompt = [1u32, 2, 3];
    let too_many = ember_qwen3::GenerationConfig::greedy(100_000, vec![]);
    let err = model
        .generate(&prompt, &too_many, &Default::default())
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    let room = cfg.max_position_embeddings - prompt.len();
    assert!(
        err.contains("max_position_embeddings")
            && err.contains(&format!("at most {room} new tokens")),
        "{err}"
    );
    // Exactly up to the limit runs to the end.
    let fits = ember_qwen3::GenerationConfig::greedy(room, vec![]);
    let g = model
        .generate(&prompt, &fits, &Default::default())
        .expect("fits");
    assert_eq!(g.ids.len(), room);
}
