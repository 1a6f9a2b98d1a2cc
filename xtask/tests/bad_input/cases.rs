//! The corpus: one line (or a few) per bad input. See `setup.rs` for what each working directory
//! starts from (`qwen3-tiny/`, `demo-data/`, `bad.toml`, output `run-out/`).

use std::path::Path;

use serde_json::{Value, json};

use super::setup::*;
use super::{Case, case};

const FT: &[&str] = &["finetune", "--config", "bad.toml"];
const DATA: &[&str] = &["data", "--config", "bad.toml"];
const PLAN: &[&str] = &["plan", "--config", "bad.toml"];
const EVAL: &[&str] = &[
    "eval",
    "--model",
    "qwen3-tiny",
    "--data-dir",
    "evaldata",
    "--tasks",
    "kobest_copa",
    "--limit",
    "2",
];

const RUN: &[&str] = &["run-out"];

/// What a category's constructor takes: name, setup, arguments, expected substrings.
type MakeCase =
    dyn Fn(&'static str, fn(&Path), &'static [&'static str], &'static [&'static str]) -> Case;

/// A constructor of this category's cases.
fn cat(category: &'static str) -> Box<MakeCase> {
    Box::new(move |name, setup, args, expect| case(category, name, setup, args, expect))
}

pub fn all() -> Vec<Case> {
    let mut v = Vec::new();
    v.extend(config_syntax());
    v.extend(config_keys());
    v.extend(config_types());
    v.extend(config_values());
    v.extend(config_conflicts());
    v.extend(config_overrides());
    v.extend(model_dirs());
    v.extend(data_files());
    v.extend(checkpoints());
    v.extend(adapters());
    v.extend(eval());
    v.extend(generate());
    v.extend(plan());
    v.extend(sweep());
    v.extend(bench());
    v.extend(clap());
    v
}

#[rustfmt::skip]
fn config_syntax() -> Vec<Case> {
    let c = cat("config TOML: syntax and the file");
    vec![
        c("unclosed_section_header", |d| config_text(d, "[model]\nmodel_name_or_path = \"qwen3-tiny\"\n[train\nlearning_rate = 1e-4\n"), FT, &["bad.toml", "line 3"]),
        c("missing_value", |d| config_text(d, "[model]\nmodel_name_or_path = \"qwen3-tiny\"\n[train]\nlearning_rate =\n"), FT, &["bad.toml", "line 4"]),
        c("duplicate_key", |d| config_text(d, "[model]\nmodel_name_or_path = \"qwen3-tiny\"\n[train]\nseed = 1\nseed = 2\n"), FT, &["bad.toml", "line 5", "seed"]),
        c("duplicate_section", |d| config_text(d, "[train]\nseed = 1\n[train]\nseed = 2\n"), FT, &["bad.toml", "line 3", "train"]),
        c("unterminated_string", |d| config_text(d, "[model]\nmodel_name_or_path = \"qwen3-tiny\n"), FT, &["bad.toml", "line 2"]),
        c("unclosed_array", |d| config_text(d, "[lora]\nlayers_to_transform = [0, 1\n"), FT, &["bad.toml", "line 2"]),
        c("json_instead_of_toml", |d| config_text(d, "{\"model\": {\"model_name_or_path\": \"qwen3-tiny\"}}\n"), FT, &["bad.toml", "line 1"]),
        c("llamafactory_yaml", |d| config_text(d, "model_name_or_path: qwen3-tiny\nstage: sft\n"), FT, &["bad.toml", "line 1"]),
        c("bare_word_value", |d| config_text(d, "[train]\nlr_scheduler_type = cosine\n"), FT, &["bad.toml", "line 2"]),
        c("not_utf8", |d| { base(d); write_bytes(d, "bad.toml", b"[model]\nmodel_name_or_path = \"qwen3-tiny\xff\"\n"); }, FT, &["bad.toml"]),
        c("missing_config_file", base, &["finetune", "--config", "nope.toml"], &["nope.toml"]),
        c("config_is_a_directory", base, &["finetune", "--config", "demo-data"], &["demo-data"]),
        c("empty_config", |d| config_text(d, ""), FT, &["model.model_name_or_path", "bad.toml"]),
        c("plan_missing_config_file", base, &["plan", "--config", "nope.toml"], &["nope.toml"]),
        c("data_missing_config_file", base, &["data", "--config", "nope.toml"], &["nope.toml"]),
    ]
}

#[rustfmt::skip]
fn config_keys() -> Vec<Case> {
    let c = cat("config TOML: unknown section or key, key in the wrong section");
    vec![
        c("unknown_section", |d| set(d, "training", "learning_rate = 1e-4"), FT, &["[training]", "[train]", "bad.toml"]),
        c("section_typo_output", |d| set(d, "ouput", "output_dir = \"x\""), FT, &["[ouput]", "[output]"]),
        c("key_typo", |d| set(d, "train", "learning_rat = 1e-4"), FT, &["train.learning_rat", "learning_rate", "bad.toml"]),
        c("key_typo_lora", |d| set(d, "lora", "lora_rnak = 4"), FT, &["lora.lora_rnak", "lora_rank"]),
        c("key_wrong_case", |d| set(d, "train", "Learning_Rate = 1e-4"), FT, &["Learning_Rate", "bad.toml"]),
        c("disable_shuffling_in_data", |d| set(d, "data", "disable_shuffling = true"), FT, &["data.disable_shuffling", "belongs in [train]", "!enable_thinking"]),
        c("output_dir_in_train", |d| set(d, "train", "output_dir = \"x\""), FT, &["train.output_dir", "belongs in [output]"]),
        c("lora_rank_in_model", |d| set(d, "model", "lora_rank = 4"), FT, &["model.lora_rank", "belongs in [lora]"]),
        c("save_steps_in_eval", |d| set(d, "eval", "save_steps = 5"), FT, &["eval.save_steps", "belongs in [output]"]),
        c("eval_steps_in_output", |d| set(d, "output", "eval_steps = 5"), FT, &["output.eval_steps", "belongs in [eval]"]),
        c("cutoff_len_in_lora", |d| set(d, "lora", "cutoff_len = 128"), FT, &["lora.cutoff_len", "belongs in [data]"]),
        c("template_in_model", |d| set(d, "model", "template = \"qwen3\""), FT, &["model.template", "belongs in [data]"]),
        c("key_outside_any_section", |d| { base(d); let t = read(d, "bad.toml"); write(d, "bad.toml", &format!("learning_rate = 1e-4\n{t}")); }, FT, &["learning_rate", "[train]"]),
        c("nested_table", |d| set(d, "model.extra", "x = 1"), FT, &["extra", "bad.toml"]),
        c("llamafactory_stage_key", |d| set(d, "train", "stage = \"sft\""), FT, &["train.stage", "bad.toml"]),
        c("hf_key_not_supported", |d| set(d, "train", "fp16 = true"), FT, &["train.fp16", "bad.toml"]),
        c("data_key_typo", |d| set(d, "data", "datset = \"interview_ko\""), FT, &["data.datset", "dataset"]),
        c("output_key_typo", |d| set(d, "output", "save_total_limt = 2"), FT, &["output.save_total_limt", "save_total_limit"]),
        c("eval_key_typo", |d| set(d, "eval", "evaluation_strategy = \"no\""), FT, &["eval.evaluation_strategy", "eval_strategy"]),
        c("plan_unknown_key", |d| set(d, "train", "learning_rat = 1e-4"), PLAN, &["train.learning_rat"]),
        c("data_unknown_key", |d| set(d, "data", "cutoff = 10"), DATA, &["data.cutoff"]),
    ]
}

#[rustfmt::skip]
fn config_types() -> Vec<Case> {
    let c = cat("config TOML: type errors");
    vec![
        c("batch_size_string", |d| set(d, "train", "per_device_train_batch_size = \"four\""), FT, &["train.per_device_train_batch_size", "bad.toml"]),
        c("learning_rate_string", |d| set(d, "train", "learning_rate = \"5e-3\""), FT, &["train.learning_rate", "bad.toml"]),
        c("epochs_bool", |d| set(d, "train", "num_train_epochs = true"), FT, &["train.num_train_epochs"]),
        c("max_steps_float", |d| set(d, "train", "max_steps = 2.5"), FT, &["train.max_steps"]),
        c("seed_negative", |d| set(d, "train", "seed = -1"), FT, &["train.seed"]),
        c("lr_kwargs_not_table", |d| set(d, "train", "lr_scheduler_kwargs = 3"), FT, &["train.lr_scheduler_kwargs"]),
        c("resume_is_a_number", |d| set(d, "train", "resume_from_checkpoint = 5"), FT, &["train.resume_from_checkpoint", "boolean", "!untagged enum"]),
        c("gradient_checkpointing_string", |d| set(d, "train", "gradient_checkpointing = \"yes\""), FT, &["train.gradient_checkpointing"]),
        c("lora_rank_float", |d| set(d, "lora", "lora_rank = 8.5"), FT, &["lora.lora_rank"]),
        c("lora_rank_negative", |d| set(d, "lora", "lora_rank = -1"), FT, &["lora.lora_rank"]),
        c("lora_target_number", |d| set(d, "lora", "lora_target = 7"), FT, &["lora.lora_target"]),
        c("layers_to_transform_string", |d| set(d, "lora", "layers_to_transform = \"five\""), FT, &["lora.layers_to_transform"]),
        c("lora_alpha_string", |d| set(d, "lora", "lora_alpha = \"16\""), FT, &["lora.lora_alpha"]),
        c("lora_bias_unknown", |d| set(d, "lora", "bias = \"everything\""), FT, &["bias", "everything"]),
        c("cutoff_len_string", |d| set(d, "data", "cutoff_len = \"512\""), FT, &["data.cutoff_len"]),
        c("dataset_number", |d| set(d, "data", "dataset = 5"), FT, &["data.dataset"]),
        c("val_size_percent", |d| set(d, "data", "val_size = \"10%\""), FT, &["data.val_size"]),
        c("default_system_number", |d| set(d, "data", "default_system = 3"), FT, &["data.default_system"]),
        c("template_unknown", |d| set(d, "data", "template = \"llama3\""), FT, &["template", "llama3"]),
        c("eval_strategy_number", |d| set(d, "eval", "eval_strategy = 1"), FT, &["eval.eval_strategy"]),
        c("eval_strategy_unknown", |d| set(d, "eval", "eval_strategy = \"weekly\""), FT, &["eval.eval_strategy", "weekly"]),
        c("save_strategy_unknown", |d| set(d, "output", "save_strategy = \"sometimes\""), FT, &["output.save_strategy", "sometimes"]),
        c("plot_loss_string", |d| set(d, "output", "plot_loss = \"yes\""), FT, &["output.plot_loss"]),
        c("output_dir_number", |d| set(d, "output", "output_dir = 3"), FT, &["output.output_dir"]),
        c("model_path_array", |d| set(d, "model", "model_name_or_path = [\"qwen3-tiny\"]"), FT, &["model.model_name_or_path"]),
        c("dtype_unknown", |d| set(d, "model", "dtype = \"fp16\""), FT, &["model.dtype", "fp16"]),
        c("attention_unknown", |d| set(d, "model", "attention = \"flash\""), FT, &["model.attention", "flash"]),
        c("loss_unknown", |d| set(d, "model", "loss = \"fancy\""), FT, &["model.loss", "fancy"]),
        c("section_is_a_value", |d| { base(d); let t = read(d, "bad.toml").replace("[eval]\n", "eval = 5\n[evalx]\n"); write(d, "bad.toml", &t); }, FT, &["eval", "bad.toml"]),
        c("scheduler_unknown", |d| set(d, "train", "lr_scheduler_type = \"cosine_x\""), FT, &["lr_scheduler_type", "cosine_x"]),
    ]
}

#[rustfmt::skip]
fn config_values() -> Vec<Case> {
    let c = cat("config TOML: impossible values");
    vec![
        c("learning_rate_inf", |d| set(d, "train", "learning_rate = inf"), FT, &["train.learning_rate", "bad.toml"]),
        c("learning_rate_nan", |d| set(d, "train", "learning_rate = nan"), FT, &["train.learning_rate"]),
        c("learning_rate_negative", |d| set(d, "train", "learning_rate = -1e-4"), FT, &["train.learning_rate"]),
        c("batch_size_zero", |d| set(d, "train", "per_device_train_batch_size = 0"), FT, &["train.per_device_train_batch_size"]),
        c("grad_accum_zero", |d| set(d, "train", "gradient_accumulation_steps = 0"), FT, &["train.gradient_accumulation_steps"]),
        c("adam_beta1_1_5", |d| set(d, "train", "adam_beta1 = 1.5"), FT, &["train.adam_beta1"]),
        c("adam_beta2_negative", |d| set(d, "train", "adam_beta2 = -0.1"), FT, &["train.adam_beta2"]),
        c("adam_epsilon_negative", |d| set(d, "train", "adam_epsilon = -1e-8"), FT, &["train.adam_epsilon"]),
        c("weight_decay_negative", |d| set(d, "train", "weight_decay = -1"), FT, &["train.weight_decay"]),
        c("epochs_zero", |d| { set(d, "train", "num_train_epochs = 0"); unset(d, "max_steps"); }, FT, &["train.num_train_epochs"]),
        c("max_grad_norm_negative", |d| set(d, "train", "max_grad_norm = -1.0"), FT, &["train.max_grad_norm"]),
        c("logging_steps_zero", |d| set(d, "train", "logging_steps = 0"), FT, &["train.logging_steps"]),
        c("warmup_ratio_above_one", |d| set(d, "train", "warmup_ratio = 1.5"), FT, &["warmup_ratio", "bad.toml"]),
        c("warmup_ratio_negative", |d| set(d, "train", "warmup_ratio = -0.1"), FT, &["warmup_ratio", "bad.toml"]),
        c("warmup_steps_negative", |d| set(d, "train", "warmup_steps = -5"), FT, &["warmup_steps", "bad.toml"]),
        c("lr_kwargs_unknown_key", |d| set(d, "train", "lr_scheduler_kwargs = { foo = 1 }"), FT, &["lr_scheduler_kwargs", "foo"]),
        c("eval_batch_zero", |d| set(d, "eval", "per_device_eval_batch_size = 0"), FT, &["eval.per_device_eval_batch_size"]),
        c("eval_steps_missing", |d| set(d, "eval", "eval_strategy = \"steps\""), FT, &["eval.eval_steps"]),
        c("save_steps_zero", |d| set(d, "output", "save_steps = 0"), FT, &["output.save_steps"]),
        c("save_total_limit_zero", |d| set(d, "output", "save_total_limit = 0"), FT, &["output.save_total_limit"]),
        c("model_path_empty", |d| set(d, "model", "model_name_or_path = \"\""), FT, &["model.model_name_or_path"]),
        c("lora_rank_zero", |d| set(d, "lora", "lora_rank = 0"), FT, &["lora_rank"]),
        c("lora_dropout_above_one", |d| set(d, "lora", "lora_dropout = 1.5"), FT, &["lora_dropout"]),
        c("lora_dropout_negative", |d| set(d, "lora", "lora_dropout = -0.1"), FT, &["lora_dropout"]),
        c("lora_target_typo", |d| set(d, "lora", "lora_target = \"q_proj,foo_proj\""), FT, &["lora_target", "foo_proj"]),
        c("lora_target_empty", |d| set(d, "lora", "lora_target = \"\""), FT, &["lora_target"]),
        c("layers_to_transform_past_the_model", |d| set(d, "lora", "layers_to_transform = [5]"), FT, &["layers_to_transform", "5", "!matches no linear layer"]),
        c("cutoff_len_zero", |d| set(d, "data", "cutoff_len = 0"), FT, &["cutoff_len"]),
        c("cutoff_len_one", |d| set(d, "data", "cutoff_len = 1"), FT, &["cutoff_len"]),
        c("val_size_negative", |d| set(d, "data", "val_size = -1"), FT, &["val_size"]),
        c("val_size_beyond_the_data", |d| set(d, "data", "val_size = 1000"), FT, &["val_size"]),
        c("max_samples_zero", |d| set(d, "data", "max_samples = 0"), FT, &["max_samples"]),
        c("train_samples_zero", |d| set(d, "data", "train_samples = 0"), FT, &["train_samples"]),
        c("train_samples_beyond_the_data", |d| set(d, "data", "train_samples = 10000"), FT, &["train_samples"]),
        c("dataset_empty", |d| set(d, "data", "dataset = \"\""), FT, &["dataset"]),
        c("pad_to_multiple_of_zero", |d| set(d, "data", "pad_to_multiple_of = 0"), FT, &["pad_to_multiple_of"]),
        c("pad_token_unknown", |d| set(d, "data", "pad_token = \"<|nope|>\""), FT, &["<|nope|>"]),
        c("metric_not_logged", |d| set_all(d, &[("eval", "eval_strategy = \"steps\""), ("eval", "eval_steps = 1"), ("output", "load_best_model_at_end = true"), ("output", "metric_for_best_model = \"accuracy\"")]), FT, &["metric_for_best_model", "accuracy"]),
        c("data_cutoff_len_zero", |d| set(d, "data", "cutoff_len = 0"), DATA, &["cutoff_len"]),
        c("plan_batch_size_zero", |d| set(d, "train", "per_device_train_batch_size = 0"), PLAN, &["train.per_device_train_batch_size"]),
    ]
}

#[rustfmt::skip]
fn config_conflicts() -> Vec<Case> {
    let c = cat("config TOML: conflicting keys");
    vec![
        c("gradient_checkpointing_both_ways", |d| set_all(d, &[("train", "gradient_checkpointing = true"), ("train", "disable_gradient_checkpointing = true")]), FT, &["gradient_checkpointing", "disable_gradient_checkpointing"]),
        c("eval_steps_without_eval_data", |d| set_all(d, &[("eval", "eval_strategy = \"steps\""), ("eval", "eval_steps = 1"), ("data", "val_size = 0")]), FT, &["eval_strategy"]),
        c("eval_epoch_without_eval_data", |d| set_all(d, &[("eval", "eval_strategy = \"epoch\""), ("data", "val_size = 0")]), FT, &["eval_strategy"]),
        c("eval_dataset_and_val_size", |d| set(d, "data", "eval_dataset = \"interview_ko\""), FT, &["eval_dataset", "val_size"]),
        c("load_best_without_eval", |d| set(d, "output", "load_best_model_at_end = true"), FT, &["output.load_best_model_at_end"]),
        c("load_best_with_other_save_strategy", |d| set_all(d, &[("eval", "eval_strategy = \"epoch\""), ("output", "load_best_model_at_end = true")]), FT, &["load_best_model_at_end", "save_strategy"]),
        c("load_best_save_steps_not_multiple", |d| set_all(d, &[("eval", "eval_strategy = \"steps\""), ("eval", "eval_steps = 2"), ("output", "save_steps = 3"), ("output", "load_best_model_at_end = true")]), FT, &["load_best_model_at_end", "save_steps"]),
        c("load_best_save_strategy_no", |d| set_all(d, &[("eval", "eval_strategy = \"steps\""), ("eval", "eval_steps = 1"), ("output", "save_strategy = \"no\""), ("output", "load_best_model_at_end = true")]), FT, &["load_best_model_at_end"]),
    ]
}

#[rustfmt::skip]
fn config_overrides() -> Vec<Case> {
    let c = cat("config TOML: --set overrides");
    vec![
        c("set_not_key_value", base, &["finetune", "--config", "bad.toml", "--set", "nokey"], &["nokey", "key=value"]),
        c("set_key_typo", base, &["finetune", "--config", "bad.toml", "--set", "learning_rat=1e-4"], &["learning_rat", "learning_rate"]),
        c("set_ambiguous_key", base, &["finetune", "--config", "bad.toml", "--set", "seed=1"], &["seed", "several sections"]),
        c("set_bare_word_for_a_number", base, &["finetune", "--config", "bad.toml", "--set", "train.learning_rate=abc"], &["train.learning_rate"]),
        c("set_batch_size_zero", base, &["finetune", "--config", "bad.toml", "--set", "per_device_train_batch_size=0"], &["train.per_device_train_batch_size"]),
        c("set_unknown_section", base, &["finetune", "--config", "bad.toml", "--set", "foo.bar=1"], &["foo"]),
        c("set_negative_rank", base, &["finetune", "--config", "bad.toml", "--set", "lora.lora_rank=-3"], &["lora.lora_rank"]),
        c("set_empty_key", base, &["finetune", "--config", "bad.toml", "--set", "=5"], &["=5"]),
        c("set_learning_rate_inf", base, &["finetune", "--config", "bad.toml", "--set", "train.learning_rate=inf"], &["train.learning_rate"]),
        c("set_resume_number", base, &["finetune", "--config", "bad.toml", "--set", "resume_from_checkpoint=5"], &["resume_from_checkpoint", "boolean"]),
        c("set_output_dir_array", base, &["finetune", "--config", "bad.toml", "--set", "output_dir=[1,2]"], &["output.output_dir"]),
        c("set_section_name_as_key", base, &["finetune", "--config", "bad.toml", "--set", "model=5"], &["model"]),
        c("set_key_in_wrong_section", base, &["finetune", "--config", "bad.toml", "--set", "data.learning_rate=1e-4"], &["data.learning_rate", "belongs in [train]"]),
        c("set_train_lora_rank", base, &["finetune", "--config", "bad.toml", "--set", "train.lora_rank=4"], &["train.lora_rank", "belongs in [lora]"]),
        c("set_on_embedded_demo", base, &["finetune", "--set", "learning_rate=-1"], &["train.learning_rate", "embedded demo"]),
        c("set_plan_rank_zero", base, &["plan", "--config", "bad.toml", "--set", "lora_rank=0"], &["lora_rank"]),
        c("set_data_cutoff_zero", base, &["data", "--config", "bad.toml", "--set", "cutoff_len=0"], &["cutoff_len"]),
        c("set_type_error", base, &["finetune", "--config", "bad.toml", "--set", "num_train_epochs=\"many\""], &["train.num_train_epochs"]),
    ]
}

fn no_file(d: &Path, rel: &str) {
    base(d);
    std::fs::remove_file(d.join(rel)).expect("remove");
}

fn weights(d: &Path, bytes: &[u8]) {
    base(d);
    write_bytes(d, "qwen3-tiny/model.safetensors", bytes);
}

fn drop_added_token(d: &Path, content: &str) {
    base(d);
    json_edit(d, "qwen3-tiny/tokenizer.json", |tok| {
        tok["added_tokens"]
            .as_array_mut()
            .expect("added_tokens")
            .retain(|t| t["content"] != content);
        if let Some(vocab) = tok["model"]["vocab"].as_object_mut() {
            vocab.remove(content);
        }
    });
}

#[rustfmt::skip]
fn model_dirs() -> Vec<Case> {
    let c = cat("model directory");
    vec![
        c("missing_dir", |d| set(d, "model", "model_name_or_path = \"no-such-model\""), FT, &["no-such-model", "!no-such-model/tokenizer.json"]),
        c("path_is_a_file", |d| set(d, "model", "model_name_or_path = \"bad.toml\""), FT, &["bad.toml", "not a directory", "!bad.toml/"]),
        c("empty_dir", |d| { set(d, "model", "model_name_or_path = \"empty\""); std::fs::create_dir(d.join("empty")).expect("mkdir"); }, FT, &["empty", ".json"]),
        c("no_config_json", |d| no_file(d, "qwen3-tiny/config.json"), FT, &["config.json"]),
        c("no_tokenizer_json", |d| no_file(d, "qwen3-tiny/tokenizer.json"), FT, &["tokenizer.json"]),
        c("no_weights", |d| no_file(d, "qwen3-tiny/model.safetensors"), FT, &["safetensors"]),
        c("weights_garbage", |d| weights(d, b"this is not a safetensors file at all"), FT, &["model.safetensors"]),
        c("weights_empty_file", |d| weights(d, b""), FT, &["model.safetensors"]),
        c("weights_header_past_the_end", |d| weights(d, &1_000_000u64.to_le_bytes()), FT, &["model.safetensors"]),
        c("weights_header_not_json", |d| weights(d, &raw_safetensors("{not json", 0)), FT, &["model.safetensors"]),
        c("weights_offsets_past_the_data", |d| weights(d, &raw_safetensors(r#"{"model.norm.weight":{"dtype":"F32","shape":[48],"data_offsets":[0,192]}}"#, 8)), FT, &["model.safetensors"]),
        c("weights_missing_tensors", |d| weights(d, &safetensors(&[("foo", "F32", &[1])])), FT, &["qwen3-tiny", "model.embed_tokens.weight"]),
        c("weights_wrong_dtype", |d| weights(d, &safetensors(&[("model.embed_tokens.weight", "I8", &[1024, 48])])), FT, &["model.embed_tokens.weight"]),
        c("weights_wrong_shape", |d| weights(d, &safetensors(&[("model.embed_tokens.weight", "F32", &[1024, 64])])), FT, &["model.embed_tokens.weight"]),
        c("config_json_not_json", |d| { base(d); write(d, "qwen3-tiny/config.json", "{\"vocab_size\": 1024,"); }, FT, &["config.json"]),
        c("config_vocab_string", |d| model_config(d, "vocab_size", json!("big")), FT, &["config.json", "line 36"]),
        c("config_hidden_zero", |d| model_config(d, "hidden_size", json!(0)), FT, &["config.json", "hidden_size"]),
        c("config_hidden_mismatch_weights", |d| model_config(d, "hidden_size", json!(64)), FT, &["does not match the config", "model.embed_tokens.weight", "[1024, 64]"]),
        c("config_kv_heads_not_divisor", |d| model_config(d, "num_key_value_heads", json!(3)), FT, &["num_key_value_heads"]),
        c("config_heads_zero", |d| model_config(d, "num_attention_heads", json!(0)), FT, &["num_attention_heads"]),
        c("config_head_dim_zero", |d| model_config(d, "head_dim", json!(0)), FT, &["head_dim"]),
        c("config_max_position_zero", |d| model_config(d, "max_position_embeddings", json!(0)), FT, &["max_position_embeddings"]),
        c("config_rms_eps_negative", |d| model_config(d, "rms_norm_eps", json!(-1.0)), FT, &["rms_norm_eps"]),
        c("config_model_type_llama", |d| model_config(d, "model_type", json!("llama")), FT, &["model_type", "llama"]),
        c("config_layers_zero", |d| model_config(d, "num_hidden_layers", json!(0)), FT, &["num_hidden_layers"]),
        c("config_vocab_smaller_than_weights", |d| model_config(d, "vocab_size", json!(100)), FT, &["does not match the config", "model.embed_tokens.weight", "[100, 48]"]),
        c("tokenizer_ids_past_vocab_finetune", foreign_tokenizer, FT, &["5000", "1024"]),
        c("tokenizer_ids_past_vocab_plan_calibrate", foreign_tokenizer, &["plan", "--config", "bad.toml", "--calibrate-steps", "1"], &["5000", "1024"]),
        c("tokenizer_ids_past_vocab_generate", foreign_tokenizer, &["generate", "--model", "qwen3-tiny", "--prompt", "<|im_start|>hi", "--greedy"], &["5000", "1024"]),
        c("tokenizer_not_json", |d| { base(d); write(d, "qwen3-tiny/tokenizer.json", "{\"version\": "); }, FT, &["tokenizer.json"]),
        c("tokenizer_without_im_start", |d| drop_added_token(d, "<|im_start|>"), FT, &["<|im_start|>"]),
        c("tokenizer_without_pad_token", |d| drop_added_token(d, "<|endoftext|>"), FT, &["<|endoftext|>"]),
        c("sharded_missing_shard", |d| { set(d, "model", "model_name_or_path = \"sharded\""); copy_dir(&root().join("fixtures/tiny/qwen3-tiny-tied-sharded"), &d.join("sharded")); std::fs::remove_file(d.join("sharded/model-00002-of-00002.safetensors")).expect("rm"); }, FT, &["model-00002-of-00002.safetensors"]),
        c("sharded_index_not_json", |d| { set(d, "model", "model_name_or_path = \"sharded\""); copy_dir(&root().join("fixtures/tiny/qwen3-tiny-tied-sharded"), &d.join("sharded")); write(d, "sharded/model.safetensors.index.json", "{\"weight_map\": "); }, FT, &["model.safetensors.index.json"]),
        c("plan_missing_dir", |d| set(d, "model", "model_name_or_path = \"no-such-model\""), PLAN, &["no-such-model", "!no-such-model/config.json"]),
        c("data_missing_dir", |d| set(d, "model", "model_name_or_path = \"no-such-model\""), DATA, &["no-such-model", "!no-such-model/tokenizer.json"]),
        c("generate_missing_dir", base, &["generate", "--model", "no-such-model", "--prompt", "hi"], &["no-such-model", "!no-such-model/tokenizer.json"]),
        c("generate_path_is_a_file", base, &["generate", "--model", "bad.toml", "--prompt", "hi"], &["bad.toml", "not a directory", "!bad.toml/"]),
        c("generate_dir_without_model", base, &["generate", "--model", "demo-data", "--prompt", "hi"], &["demo-data", ".json"]),
        c("eval_missing_dir", eval_data, &["eval", "--model", "no-such-model", "--data-dir", "evaldata", "--tasks", "kobest_copa"], &["no-such-model", "!no-such-model/tokenizer.json"]),
    ]
}

fn info(d: &Path, f: impl FnOnce(&mut Value)) {
    base(d);
    json_edit(d, "demo-data/dataset_info.json", f);
}

fn alpaca_row(d: &Path, f: impl FnOnce(&mut Value)) {
    base(d);
    json_edit(d, "demo-data/interview_ko.json", |rows| f(&mut rows[2]));
}

fn sharegpt(d: &Path, lines: &str) {
    dataset(
        d,
        json!({"file_name": "chat.jsonl", "formatting": "sharegpt", "columns": {"messages": "conversations"}}),
        "chat.jsonl",
        lines.as_bytes(),
    );
}

fn openai(d: &Path, lines: &str) {
    dataset(
        d,
        json!({"file_name": "chat.jsonl", "formatting": "sharegpt", "columns": {"messages": "messages"},
        "tags": {"role_tag": "role", "content_tag": "content", "user_tag": "user", "assistant_tag": "assistant", "system_tag": "system"}}),
        "chat.jsonl",
        lines.as_bytes(),
    );
}

fn csv(d: &Path, text: &[u8]) {
    dataset(
        d,
        json!({"file_name": "qa.csv", "columns": {"prompt": "Q", "response": "answer_col"}}),
        "qa.csv",
        text,
    );
}

const GOOD_LINE: &str = r#"{"conversations": [{"from": "human", "value": "안녕"}, {"from": "gpt", "value": "안녕하세요"}]}"#;

#[rustfmt::skip]
fn data_files() -> Vec<Case> {
    let c = cat("data files");
    vec![
        c("dataset_dir_missing", |d| set(d, "data", "dataset_dir = \"no-such-data\""), FT, &["no-such-data"]),
        c("dataset_info_missing", |d| no_file(d, "demo-data/dataset_info.json"), FT, &["dataset_info.json"]),
        c("dataset_info_not_json", |d| { base(d); write(d, "demo-data/dataset_info.json", "{\"interview_ko\": "); }, FT, &["dataset_info.json"]),
        c("dataset_info_array", |d| { base(d); write(d, "demo-data/dataset_info.json", "[1, 2]"); }, FT, &["dataset_info.json"]),
        c("dataset_unknown", |d| set(d, "data", "dataset = \"interview\""), FT, &["interview", "dataset_info.json"]),
        c("second_dataset_unknown", |d| set(d, "data", "dataset = \"interview_ko,nope\""), FT, &["nope"]),
        c("eval_dataset_unknown", |d| set_all(d, &[("data", "val_size = 0"), ("data", "eval_dataset = \"nope\"")]), FT, &["nope"]),
        c("entry_without_file_name", |d| info(d, |v| { v["interview_ko"].as_object_mut().expect("entry").remove("file_name"); }), FT, &["interview_ko", "file_name"]),
        c("entry_file_missing", |d| info(d, |v| v["interview_ko"]["file_name"] = json!("missing.json")), FT, &["missing.json"]),
        c("entry_formatting_unknown", |d| info(d, |v| v["interview_ko"]["formatting"] = json!("xml")), FT, &["formatting", "xml"]),
        c("entry_hub_dataset", |d| info(d, |v| v["interview_ko"] = json!({"hf_hub_url": "someone/data"})), FT, &["interview_ko", "file_name"]),
        c("entry_ranking", |d| info(d, |v| v["interview_ko"]["ranking"] = json!(true)), FT, &["interview_ko", "ranking"]),
        c("entry_column_not_string", |d| info(d, |v| v["interview_ko"]["columns"]["prompt"] = json!(5)), FT, &["dataset_info.json", "line 4"]),
        c("inline_dataset_info_wrong_type", |d| set(d, "data.dataset_info.interview_ko", "file_name = 5"), FT, &["file_name"]),
        c("alpaca_instruction_number", |d| alpaca_row(d, |r| r["instruction"] = json!(5)), FT, &["interview_ko.json", "instruction"]),
        c("alpaca_output_missing", |d| alpaca_row(d, |r| { r.as_object_mut().expect("row").remove("output"); }), FT, &["interview_ko.json", "output"]),
        c("alpaca_output_null", |d| alpaca_row(d, |r| r["output"] = Value::Null), FT, &["interview_ko.json", "output"]),
        c("alpaca_system_number", |d| alpaca_row(d, |r| r["system"] = json!(1)), FT, &["interview_ko.json", "system"]),
        c("alpaca_row_is_a_string", |d| alpaca_row(d, |r| *r = json!("just text")), FT, &["interview_ko.json", "2"]),
        c("alpaca_top_level_object", |d| rows(d, "{\"instruction\": \"a\", \"output\": \"b\"}"), FT, &["interview_ko.json"]),
        c("alpaca_history_wrong_type", |d| { info(d, |v| v["interview_ko"]["columns"]["history"] = json!("history")); json_edit(d, "demo-data/interview_ko.json", |rows| rows[1]["history"] = json!("not a list")); }, FT, &["interview_ko.json", "history"]),
        c("json_truncated", |d| { base(d); let t = read(d, "demo-data/interview_ko.json"); write(d, "demo-data/interview_ko.json", &t[..t.len() / 2]); }, FT, &["interview_ko.json", "line"]),
        c("json_empty_array", |d| rows(d, "[]"), FT, &["interview_ko"]),
        c("file_empty", |d| rows(d, ""), FT, &["interview_ko.json"]),
        c("all_rows_invalid_skipped", |d| { set(d, "data", "skip_invalid = true"); write(d, "demo-data/interview_ko.json", "[{\"instruction\": 1}, {\"instruction\": 2}]"); }, FT, &["interview_ko"]),
        c("jsonl_bad_line", |d| sharegpt(d, &format!("{GOOD_LINE}\n{GOOD_LINE}\n{{\"conversations\": [\n{GOOD_LINE}\n")), FT, &["chat.jsonl", "line 3"]),
        c("jsonl_not_utf8", |d| dataset(d, json!({"file_name": "chat.jsonl", "formatting": "sharegpt", "columns": {"messages": "conversations"}}), "chat.jsonl", &[GOOD_LINE.as_bytes(), &b"\n{\"conversations\": [{\"from\": \"human\", \"value\": \"\xff\xfe\"}, {\"from\": \"gpt\", \"value\": \"y\"}]}\n"[..], GOOD_LINE.as_bytes(), &b"\n"[..]].concat()), FT, &["chat.jsonl", "line 2"]),
        c("sharegpt_unknown_role", |d| sharegpt(d, &format!("{GOOD_LINE}\n{}\n", r#"{"conversations": [{"from": "robot", "value": "x"}, {"from": "gpt", "value": "y"}]}"#)), FT, &["chat.jsonl", "line 2", "from"]),
        c("sharegpt_value_number", |d| sharegpt(d, &format!("{}\n", r#"{"conversations": [{"from": "human", "value": 5}, {"from": "gpt", "value": "y"}]}"#)), FT, &["chat.jsonl", "line 1", "value"]),
        c("sharegpt_conversations_not_array", |d| sharegpt(d, "{\"conversations\": \"hello\"}\n"), FT, &["chat.jsonl", "line 1", "conversations"]),
        c("sharegpt_ends_with_human", |d| sharegpt(d, &format!("{GOOD_LINE}\n{}\n", r#"{"conversations": [{"from": "human", "value": "a"}, {"from": "gpt", "value": "b"}, {"from": "human", "value": "c"}]}"#)), FT, &["chat.jsonl", "line 2"]),
        c("sharegpt_assistant_first", |d| sharegpt(d, &format!("{}\n", r#"{"conversations": [{"from": "gpt", "value": "a"}, {"from": "human", "value": "b"}]}"#)), FT, &["chat.jsonl", "line 1"]),
        c("sharegpt_empty_conversation", |d| sharegpt(d, &format!("{GOOD_LINE}\n{{\"conversations\": []}}\n")), FT, &["chat.jsonl", "line 2"]),
        c("sharegpt_missing_column", |d| sharegpt(d, "{\"messages\": []}\n"), FT, &["chat.jsonl", "line 1", "conversations"]),
        c("openai_content_number", |d| openai(d, &format!("{}\n", r#"{"messages": [{"role": "user", "content": 1}, {"role": "assistant", "content": "b"}]}"#)), FT, &["chat.jsonl", "line 1", "content"]),
        c("openai_unknown_role", |d| openai(d, &format!("{}\n", r#"{"messages": [{"role": "customer", "content": "a"}, {"role": "assistant", "content": "b"}]}"#)), FT, &["chat.jsonl", "line 1", "role"]),
        c("openai_tools_not_json", |d| dataset(d, json!({"file_name": "chat.jsonl", "formatting": "openai", "columns": {"messages": "messages", "tools": "tools"},
            "tags": {"role_tag": "role", "content_tag": "content", "user_tag": "user", "assistant_tag": "assistant", "observation_tag": "tool", "function_tag": "function_call", "system_tag": "system"}}), "chat.jsonl",
            format!("{}\n", r#"{"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}], "tools": "[{not json"}"#).as_bytes()), FT, &["chat.jsonl", "line 1", "tools"]),
        c("csv_missing_response_column", |d| csv(d, "Q,label\n질문 하나,0\n질문 둘,0\n질문 셋,1\n".as_bytes()), FT, &["qa.csv", "answer_col", "column", "!line 3"]),
        c("csv_line_numbers_match_the_file", |d| csv(d, "Q,answer_col\n질문 하나,답 하나\n질문 둘,답 둘\n질문 셋,\n질문 넷,답 넷\n".as_bytes()), FT, &["qa.csv", "line 4"]),
        c("csv_not_utf8", |d| csv(d, b"Q,answer_col\nq1,a1\nq2,\xff\xfe\n"), FT, &["qa.csv", "line 3"]),
        c("csv_wrong_field_count", |d| csv(d, "Q,answer_col\nq1,a1\nq2,a2,extra\n".as_bytes()), FT, &["qa.csv", "line 3"]),
        c("csv_unterminated_quote", |d| csv(d, "Q,answer_col\nq1,a1\n\"q2,a2\n".as_bytes()), FT, &["qa.csv"]),
        c("csv_header_only", |d| csv(d, "Q,answer_col\n".as_bytes()), FT, &["qa.csv"]),
        c("data_export_into_missing_dir", base, &["data", "--config", "bad.toml", "--export", "no-such-dir/train.jsonl"], &["no-such-dir", "!cannot read"]),
        c("data_export_onto_a_directory", base, &["data", "--config", "bad.toml", "--export", "demo-data"], &["demo-data"]),
        c("data_bad_row", |d| alpaca_row(d, |r| r["instruction"] = json!([1])), DATA, &["interview_ko.json", "instruction"]),
        c("data_unknown_dataset", |d| set(d, "data", "dataset = \"nope\""), DATA, &["nope"]),
        c("plan_unknown_dataset", |d| set(d, "data", "dataset = \"nope\""), PLAN, &["nope"]),
        c("plan_bad_row", |d| alpaca_row(d, |r| r["output"] = json!(false)), PLAN, &["interview_ko.json", "output"]),
    ]
}

fn with_run_set(d: &Path, lines: &[(&str, &str)]) {
    with_run(d);
    for (section, line) in lines {
        edit(d, section, line);
    }
}

const RESUME: (&str, &str) = ("train", "resume_from_checkpoint = true");
const NO_OVERWRITE: (&str, &str) = ("output", "overwrite_output_dir = false");

#[rustfmt::skip]
fn checkpoints() -> Vec<Case> {
    let c = cat("checkpoints, resume and overwriting");
    vec![
        c("resume_true_without_output_dir", |d| set(d, "train", "resume_from_checkpoint = true"), FT, &["resume_from_checkpoint", "run-out"]),
        c("resume_true_with_empty_output_dir", |d| { set(d, "train", "resume_from_checkpoint = true"); std::fs::create_dir(d.join("run-out")).expect("mkdir"); }, FT, &["resume_from_checkpoint", "run-out"]),
        c("resume_true_only_incomplete_checkpoint", |d| { set_all(d, &[RESUME, NO_OVERWRITE]); write(d, "run-out/.tmp-checkpoint-1/adapter_config.json", "{}"); }, FT, &["resume_from_checkpoint", "run-out"]).keep(RUN),
        c("resume_missing_path", |d| with_run_set(d, &[("train", "resume_from_checkpoint = \"run-out/checkpoint-99\"")]), FT, &["checkpoint-99"]).keep(RUN),
        c("resume_path_is_a_file", |d| with_run_set(d, &[("train", "resume_from_checkpoint = \"bad.toml\"")]), FT, &["bad.toml", "a file, not a checkpoint-N directory"]).keep(RUN),
        c("resume_path_not_a_checkpoint", |d| with_run_set(d, &[("train", "resume_from_checkpoint = \"demo-data\"")]), FT, &["demo-data"]).keep(RUN),
        c("resume_corrupt_adapter", |d| { with_run_set(d, &[RESUME]); write(d, "run-out/checkpoint-2/adapter_model.safetensors", "garbage"); }, FT, &["checkpoint-2", "adapter_model.safetensors"]).keep(RUN),
        c("resume_corrupt_optimizer_state", |d| { with_run_set(d, &[RESUME]); write(d, "run-out/checkpoint-2/optimizer.json", "{"); }, FT, &["checkpoint-2", "optimizer.json"]).keep(RUN),
        c("resume_corrupt_optimizer_tensors", |d| { with_run_set(d, &[RESUME]); write(d, "run-out/checkpoint-2/optimizer.safetensors", "garbage"); }, FT, &["checkpoint-2", "optimizer.safetensors"]).keep(RUN),
        c("resume_corrupt_scheduler", |d| { with_run_set(d, &[RESUME]); write(d, "run-out/checkpoint-2/scheduler.json", "[]"); }, FT, &["checkpoint-2", "scheduler.json"]).keep(RUN),
        c("resume_corrupt_ember_state", |d| { with_run_set(d, &[RESUME]); write(d, "run-out/checkpoint-2/ember_state.json", "{\"fingerprint\": 3"); }, FT, &["checkpoint-2", "ember_state.json"]).keep(RUN),
        c("resume_checkpoint_without_trainer_state", |d| { with_run_set(d, &[("train", "resume_from_checkpoint = \"run-out/checkpoint-2\"")]); std::fs::remove_file(d.join("run-out/checkpoint-2/trainer_state.json")).expect("rm"); }, FT, &["checkpoint-2", "trainer_state.json"]).keep(RUN),
        c("resume_with_another_rank", |d| with_run_set(d, &[RESUME, NO_OVERWRITE, ("lora", "lora_rank = 4")]), FT, &["checkpoint-2", "lora_rank"]).keep(RUN),
        c("resume_with_another_batch_size", |d| with_run_set(d, &[RESUME, NO_OVERWRITE, ("train", "per_device_train_batch_size = 2")]), FT, &["checkpoint-2", "per_device_train_batch_size"]).keep(RUN),
        c("resume_with_other_targets", |d| with_run_set(d, &[RESUME, NO_OVERWRITE, ("lora", "lora_target = \"q_proj,v_proj\"")]), FT, &["checkpoint-2", "lora_target"]).keep(RUN),
        c("resume_with_less_data", |d| with_run_set(d, &[RESUME, NO_OVERWRITE, ("data", "max_samples = 12")]), FT, &["checkpoint-2"]).keep(RUN),
        c("finished_run_without_overwrite", |d| with_run_set(d, &[NO_OVERWRITE]), FT, &["run-out", "overwrite_output_dir"]).keep(RUN),
        c("overwrite_then_non_finite_at_step_2", |d| with_run_set(d, &[("train", "learning_rate = 1e38"), ("train", "warmup_ratio = 0.0"), ("output", "save_steps = 5")]), FT, &["non-finite", "put back"]).keep(RUN),
        c("overwrite_then_unknown_dataset", |d| with_run_set(d, &[("data", "dataset = \"nope\"")]), FT, &["nope"]).keep(RUN),
        c("overwrite_then_missing_model", |d| with_run_set(d, &[("model", "model_name_or_path = \"no-such-model\"")]), FT, &["no-such-model"]).keep(RUN),
        c("overwrite_then_bad_value", |d| with_run_set(d, &[("train", "learning_rate = inf")]), FT, &["train.learning_rate"]).keep(RUN),
        c("overwrite_then_bad_row", |d| { with_run(d); json_edit(d, "demo-data/interview_ko.json", |rows| rows[3]["output"] = json!(7)); }, FT, &["interview_ko.json", "output"]).keep(RUN),
        c("overwrite_then_ids_past_vocab", |d| { foreign_tokenizer(d); copy_run(d); }, FT, &["5000", "1024"]).keep(RUN),
        c("overwrite_then_corrupt_weights", |d| { with_run(d); write(d, "qwen3-tiny/model.safetensors", "garbage"); }, FT, &["model.safetensors"]).keep(RUN),
        c("output_dir_is_a_file", |d| set(d, "output", "output_dir = \"bad.toml\""), FT, &["bad.toml"]),
        c("eval_checkpoints_corrupt", |d| { with_run(d); copy_dir(&root().join("fixtures/eval/data"), &d.join("evaldata")); write(d, "run-out/checkpoint-1/adapter_model.safetensors", "garbage"); }, &["eval", "--model", "qwen3-tiny", "--checkpoints", "run-out", "--data-dir", "evaldata", "--tasks", "kobest_copa", "--limit", "2"], &["checkpoint-1", "adapter_model.safetensors"]).keep(RUN),
    ]
}

#[rustfmt::skip]
fn adapters() -> Vec<Case> {
    let c = cat("adapters");
    const GEN_AD: &[&str] = &["generate", "--model", "qwen3-tiny", "--adapter", "adapter", "--prompt", "hi", "--greedy"];
    vec![
        c("generate_adapter_missing", base, &["generate", "--model", "qwen3-tiny", "--adapter", "no-such-adapter", "--prompt", "hi"], &["no-such-adapter"]),
        c("adapter_without_config", |d| { adapter(d); std::fs::remove_file(d.join("adapter/adapter_config.json")).expect("rm"); }, GEN_AD, &["adapter_config.json"]),
        c("adapter_without_weights", |d| { adapter(d); std::fs::remove_file(d.join("adapter/adapter_model.safetensors")).expect("rm"); }, GEN_AD, &["adapter_model.safetensors"]),
        c("adapter_config_not_json", |d| { adapter(d); write(d, "adapter/adapter_config.json", "{\"r\": "); }, GEN_AD, &["adapter_config.json"]),
        c("adapter_rank_zero", |d| adapter_config(d, "r", json!(0)), GEN_AD, &["adapter_config.json", "r"]),
        c("adapter_rank_string", |d| adapter_config(d, "r", json!("four")), GEN_AD, &["adapter_config.json", "r"]),
        c("adapter_rank_mismatch_weights", |d| adapter_config(d, "r", json!(8)), GEN_AD, &["adapter"]),
        c("adapter_unknown_target", |d| adapter_config(d, "target_modules", json!(["q_proj", "foo_proj"])), GEN_AD, &["foo_proj"]),
        c("adapter_peft_type_prefix", |d| adapter_config(d, "peft_type", json!("PREFIX_TUNING")), GEN_AD, &["peft_type", "PREFIX_TUNING"]),
        c("adapter_dora_without_magnitude", |d| adapter_config(d, "use_dora", json!(true)), GEN_AD, &["lora_magnitude_vector", "use_dora"]),
        c("adapter_layers_past_the_model", |d| adapter_config(d, "layers_to_transform", json!([5])), GEN_AD, &["layers_to_transform"]),
        c("adapter_modules_to_save", |d| adapter_config(d, "modules_to_save", json!(["lm_head"])), GEN_AD, &["modules_to_save"]),
        c("adapter_rank_pattern_mismatch_weights", |d| adapter_config(d, "rank_pattern", json!({"q_proj": 2})), GEN_AD, &["q_proj", "rank_pattern `q_proj` = 2"]),
        c("adapter_rank_pattern_bad_regex", |d| adapter_config(d, "rank_pattern", json!({"q_(proj": 2})), GEN_AD, &["adapter_config.json", "rank_pattern", "q_(proj"]),
        c("adapter_weights_garbage", |d| { adapter(d); write(d, "adapter/adapter_model.safetensors", "garbage"); }, GEN_AD, &["adapter_model.safetensors"]),
        c("adapter_for_another_model", |d| { adapter(d); write_bytes(d, "adapter/adapter_model.safetensors", &safetensors(&[
            ("base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight", "F32", &[4, 64]),
            ("base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight", "F32", &[64, 4])])); adapter_config_only(d, json!(["q_proj"])); }, GEN_AD, &["q_proj", "64"]),
        c("adapter_for_a_deeper_model", |d| { adapter(d); write_bytes(d, "adapter/adapter_model.safetensors", &safetensors(&[
            ("base_model.model.model.layers.7.self_attn.q_proj.lora_A.weight", "F32", &[4, 48]),
            ("base_model.model.model.layers.7.self_attn.q_proj.lora_B.weight", "F32", &[64, 4])])); adapter_config_only(d, json!(["q_proj"])); }, GEN_AD, &["layers.7"]),
        c("finetune_adapter_missing", |d| set(d, "model", "adapter_name_or_path = \"no-such-adapter\""), FT, &["no-such-adapter"]),
        c("finetune_adapter_bad_config", |d| { adapter_config(d, "r", json!(-2)); edit(d, "model", "adapter_name_or_path = \"adapter\""); }, FT, &["adapter_config.json"]),
        c("eval_adapter_missing", eval_data, &["eval", "--model", "qwen3-tiny", "--adapter", "no-such-adapter", "--data-dir", "evaldata", "--tasks", "kobest_copa"], &["no-such-adapter"]),
        c("eval_adapter_bad_config", |d| { eval_data(d); copy_dir(&root().join("fixtures/lora/qwen3-tiny-adapter"), &d.join("adapter")); write(d, "adapter/adapter_config.json", "[]"); }, &["eval", "--model", "qwen3-tiny", "--adapter", "adapter", "--data-dir", "evaldata", "--tasks", "kobest_copa"], &["adapter_config.json"]),
    ]
}

/// The adapter's config with only these target modules.
fn adapter_config_only(d: &Path, targets: Value) {
    json_edit(d, "adapter/adapter_config.json", |v| {
        v["target_modules"] = targets
    });
}

#[rustfmt::skip]
fn eval() -> Vec<Case> {
    let c = cat("eval arguments and benchmark files");
    const E: fn(&Path) = eval_data;
    vec![
        c("limit_zero", E, &["eval", "--model", "qwen3-tiny", "--data-dir", "evaldata", "--tasks", "kobest_copa", "--limit", "0"], &["--limit"]),
        c("tasks_empty", E, &["eval", "--model", "qwen3-tiny", "--data-dir", "evaldata", "--tasks", ""], &["--tasks"]),
        c("task_unknown", E, &["eval", "--model", "qwen3-tiny", "--data-dir", "evaldata", "--tasks", "kobest_cop"], &["kobest_cop"]),
        c("task_unknown_in_a_list", E, &["eval", "--model", "qwen3-tiny", "--data-dir", "evaldata", "--tasks", "kobest_copa,nope"], &["nope"]),
        c("data_dir_missing", base, &["eval", "--model", "qwen3-tiny", "--data-dir", "no-such-evaldata", "--tasks", "kobest_copa"], &["no-such-evaldata"]),
        c("subject_file_missing", E, &["eval", "--model", "qwen3-tiny", "--data-dir", "evaldata", "--tasks", "kmmlu_law"], &["kmmlu_law", "Law-test.csv"]),
        c("skip_missing_skips_everything", E, &["eval", "--model", "qwen3-tiny", "--data-dir", "evaldata", "--tasks", "kmmlu_law", "--skip-missing"], &["kmmlu_law"]),
        c("checkpoints_dir_missing", E, &["eval", "--model", "qwen3-tiny", "--checkpoints", "no-such-run", "--data-dir", "evaldata", "--tasks", "kobest_copa"], &["no-such-run"]),
        c("checkpoints_dir_without_checkpoints", E, &["eval", "--model", "qwen3-tiny", "--checkpoints", "demo-data", "--data-dir", "evaldata", "--tasks", "kobest_copa"], &["demo-data", "checkpoint"]),
        c("fewshot_beyond_the_pool", E, &["eval", "--model", "qwen3-tiny", "--data-dir", "evaldata", "--tasks", "kobest_copa", "--num-fewshot", "1000", "--limit", "2"], &["kobest_copa", "train.tsv"]),
        c("output_is_a_file", E, &["eval", "--model", "qwen3-tiny", "--data-dir", "evaldata", "--tasks", "kobest_copa", "--limit", "2", "--output", "bad.toml"], &["bad.toml"]),
        c("copa_missing_column", |d| { eval_data(d); let t = read(d, "evaldata/kobest/COPA/test.tsv").replacen("Answer", "Antwort", 1); write(d, "evaldata/kobest/COPA/test.tsv", &t); }, EVAL, &["COPA", "test.tsv", "Answer"]),
        c("copa_answer_not_a_number", |d| { eval_data(d); let t = read(d, "evaldata/kobest/COPA/test.tsv"); let mut lines: Vec<String> = t.lines().map(str::to_string).collect(); let l = &mut lines[2]; let cut = l.rfind('\t').expect("tab"); l.truncate(cut + 1); l.push('x'); write(d, "evaldata/kobest/COPA/test.tsv", &(lines.join("\n") + "\n")); }, EVAL, &["test.tsv", "2"]),
        c("copa_header_only", |d| { eval_data(d); let t = read(d, "evaldata/kobest/COPA/test.tsv"); let h = t.lines().next().expect("header").to_string(); write(d, "evaldata/kobest/COPA/test.tsv", &(h + "\n")); }, EVAL, &["kobest_copa", "test.tsv"]),
        c("copa_not_utf8", |d| { eval_data(d); let mut b = std::fs::read(d.join("evaldata/kobest/COPA/test.tsv")).expect("read"); b.extend_from_slice(b"9\t\xff\xfe\t\xc3\t1\t2\t1\n"); write_bytes(d, "evaldata/kobest/COPA/test.tsv", &b); }, EVAL, &["test.tsv"]),
        c("kmmlu_answer_out_of_range", |d| { eval_data(d); let t = read(d, "evaldata/kmmlu/Math-test.csv").replacen(",3,1,2,3,4,", ",7,1,2,3,4,", 1); write(d, "evaldata/kmmlu/Math-test.csv", &t); }, &["eval", "--model", "qwen3-tiny", "--data-dir", "evaldata", "--tasks", "kmmlu_math", "--limit", "2"], &["Math-test.csv", "answer"]),
        c("kmmlu_json_not_an_array", |d| { eval_data(d); std::fs::remove_file(d.join("evaldata/kmmlu/Math-test.csv")).expect("rm"); write(d, "evaldata/kmmlu/Math-test.json", "{\"question\": \"q\"}"); }, &["eval", "--model", "qwen3-tiny", "--data-dir", "evaldata", "--tasks", "kmmlu_math", "--limit", "2"], &["Math-test.json"]),
        c("haerae_bad_line", |d| { eval_data(d); let t = read(d, "evaldata/haerae/history.jsonl"); write(d, "evaldata/haerae/history.jsonl", &format!("{t}{{\"query\": \n")); }, &["eval", "--model", "qwen3-tiny", "--data-dir", "evaldata", "--tasks", "haerae_history"], &["history.jsonl"]),
        c("haerae_answer_unknown", |d| { eval_data(d); let t = read(d, "evaldata/haerae/history.jsonl").replacen("\"answer\": \"(B)\"", "\"answer\": \"(Z)\"", 1); write(d, "evaldata/haerae/history.jsonl", &t); }, &["eval", "--model", "qwen3-tiny", "--data-dir", "evaldata", "--tasks", "haerae_history"], &["history.jsonl", "(Z)"]),
    ]
}

#[rustfmt::skip]
fn generate() -> Vec<Case> {
    let c = cat("generate arguments");
    let long: &'static str = Box::leak("가나다 ".repeat(600).into_boxed_str());
    let long_args: &'static [&'static str] = Box::leak(vec!["generate", "--model", "qwen3-tiny", "--prompt", long, "--greedy", "--max-new-tokens", "1"].into_boxed_slice());
    vec![
        c("max_new_tokens_past_the_context", base, &["generate", "--model", "qwen3-tiny", "--prompt", "hi", "--greedy", "--max-new-tokens", "100000"], &["max_position_embeddings", "512"]),
        c("prompt_longer_than_the_context", base, long_args, &["max_position_embeddings"]),
        c("empty_prompt", base, &["generate", "--model", "qwen3-tiny", "--prompt", "", "--greedy"], &["prompt"]),
        c("temperature_negative", base, &["generate", "--model", "qwen3-tiny", "--prompt", "hi", "--temperature=-1"], &["temperature"]),
        c("temperature_zero", base, &["generate", "--model", "qwen3-tiny", "--prompt", "hi", "--temperature", "0"], &["temperature"]),
        c("temperature_nan", base, &["generate", "--model", "qwen3-tiny", "--prompt", "hi", "--temperature", "nan"], &["temperature"]),
        c("top_p_zero", base, &["generate", "--model", "qwen3-tiny", "--prompt", "hi", "--top-p", "0"], &["top_p"]),
        c("top_p_above_one", base, &["generate", "--model", "qwen3-tiny", "--prompt", "hi", "--top-p", "1.5"], &["top_p"]),
        c("backend_bad_device", base, &["generate", "--model", "qwen3-tiny", "--prompt", "hi", "--backend", "cuda:x"], &["cuda:x"]),
    ]
}

#[rustfmt::skip]
fn plan() -> Vec<Case> {
    let c = cat("plan");
    vec![
        c("tokens_per_sample_zero", base, &["plan", "--config", "bad.toml", "--samples", "10", "--tokens-per-sample", "0"], &["--tokens-per-sample"]),
        c("tokens_per_sample_one", base, &["plan", "--config", "bad.toml", "--samples", "10", "--tokens-per-sample", "1"], &["--tokens-per-sample"]),
        c("tokens_per_sample_past_the_context", base, &["plan", "--config", "bad.toml", "--samples", "10", "--tokens-per-sample", "100000", "--calibrate-steps", "0"], &["--tokens-per-sample", "512"]),
        c("samples_zero", base, &["plan", "--config", "bad.toml", "--samples", "0"], &["--samples"]),
        c("eval_samples_without_samples", base, &["plan", "--config", "bad.toml", "--eval-samples", "3"], &["--samples"]),
        c("tokens_per_sample_without_samples", base, &["plan", "--config", "bad.toml", "--tokens-per-sample", "3"], &["--samples"]),
        c("plan_model_without_config_json", |d| no_file(d, "qwen3-tiny/config.json"), &["plan", "--config", "bad.toml", "--samples", "10"], &["config.json"]),
        c("plan_backend_unknown", base, &["plan", "--config", "bad.toml", "--backend", "tpu"], &["tpu"]),
    ]
}

#[rustfmt::skip]
fn sweep() -> Vec<Case> {
    let c = cat("sweep");
    vec![
        c("grid_without_equals", base, &["sweep", "--config", "bad.toml", "--out", "sw", "--grid", "nokey"], &["--grid", "nokey"]),
        c("grid_unknown_key", base, &["sweep", "--config", "bad.toml", "--out", "sw", "--grid", "foo_key=1,2"], &["foo_key"]),
        c("grid_empty_value", base, &["sweep", "--config", "bad.toml", "--out", "sw", "--grid", "learning_rate="], &["--grid", "learning_rate"]),
        c("grid_type_error", base, &["sweep", "--config", "bad.toml", "--out", "sw", "--grid", "lora_rank=a,b"], &["lora.lora_rank"]),
        c("grid_value_twice", base, &["sweep", "--config", "bad.toml", "--out", "sw", "--grid", "lora_rank=4,4"], &["lora_rank", "twice"]),
        c("grid_axis_twice", base, &["sweep", "--config", "bad.toml", "--out", "sw", "--grid", "lora_rank=4", "--grid", "lora_rank=8"], &["lora_rank"]),
        c("grid_impossible_value", base, &["sweep", "--config", "bad.toml", "--out", "sw", "--grid", "lora_rank=0"], &["lora_rank"]),
        c("jobs_zero", base, &["sweep", "--config", "bad.toml", "--out", "sw", "--jobs", "0", "--grid", "lora_rank=4"], &["--jobs"]),
        c("only_unknown_run", base, &["sweep", "--config", "bad.toml", "--out", "sw", "--only", "nope", "--grid", "lora_rank=4,8"], &["--only", "nope"]),
        c("report_only_without_runs", base, &["sweep", "--config", "bad.toml", "--out", "sw", "--report-only"], &["sw"]),
        c("select_metric_without_eval_tasks", base, &["sweep", "--config", "bad.toml", "--out", "sw", "--grid", "lora_rank=4", "--select-metric", "kobest/acc"], &["--select-metric"]),
        c("eval_task_unknown", base, &["sweep", "--config", "bad.toml", "--out", "sw", "--grid", "lora_rank=4", "--eval-tasks", "nope", "--data-dir", "x"], &["nope"]),
        c("data_dir_without_eval_tasks", base, &["sweep", "--config", "bad.toml", "--out", "sw", "--data-dir", "x"], &["--eval-tasks"]),
        c("config_missing", base, &["sweep", "--config", "nope.toml", "--out", "sw"], &["nope.toml"]),
        c("out_is_a_file", base, &["sweep", "--config", "bad.toml", "--out", "bad.toml", "--grid", "lora_rank=4"], &["bad.toml"]),
        c("set_bad_value", base, &["sweep", "--config", "bad.toml", "--out", "sw", "--grid", "lora_rank=4", "--set", "learning_rate=-1"], &["train.learning_rate"]),
    ]
}

/// A small `gpu` bench case that runs in about a second on the CPU (no Python).
macro_rules! tiny_bench {
    ($($extra:expr),*) => {
        &["bench", "--no-hf", "--cases", "gpu", "--shape", "qwen3-0.6b", "--layers", "1", "--batch", "1", "--seq", "8", "--warmup", "0" $(, $extra)*]
    };
}

#[rustfmt::skip]
fn bench() -> Vec<Case> {
    let c = cat("bench");
    vec![
        c("case_unknown", base, &["bench", "--no-hf", "--cases", "nope"], &["nope"]),
        c("shape_unknown", base, &["bench", "--no-hf", "--cases", "gpu", "--shape", "nope"], &["--shape", "nope"]),
        c("steps_zero", base, tiny_bench!("--steps", "0"), &["--steps"]),
        c("bench_attention_unknown", base, tiny_bench!("--attention", "wrong"), &["attention", "wrong"]),
        c("bench_loss_unknown", base, tiny_bench!("--loss", "wrong"), &["loss", "wrong"]),
        c("bench_dtype_unknown", base, tiny_bench!("--dtype", "f16"), &["--dtype", "f16"]),
        c("layers_zero", base, &["bench", "--no-hf", "--cases", "gpu", "--shape", "qwen3-0.6b", "--layers", "0", "--batch", "1", "--seq", "8"], &["layers"]),
        c("batch_zero", base, &["bench", "--no-hf", "--cases", "gpu", "--shape", "qwen3-0.6b", "--layers", "1", "--batch", "0", "--seq", "8"], &["--batch"]),
        c("seq_zero", base, &["bench", "--no-hf", "--cases", "gpu", "--shape", "qwen3-0.6b", "--layers", "1", "--batch", "1", "--seq", "0"], &["--seq"]),
        c("threads_zero", base, tiny_bench!("--threads", "0"), &["--threads"]),
        c("neither_side", base, &["bench", "--no-hf", "--no-ember"], &["--no-hf", "--no-ember"]),
        c("python_missing", base, &["bench", "--no-ember", "--cases", "gpu", "--shape", "qwen3-0.6b", "--layers", "1", "--batch", "1", "--seq", "8", "--python", "no-such-python"], &["no-such-python"]),
        c("recompute_not_a_bool", base, &["bench", "--no-hf", "--recompute", "maybe"], &["--recompute"]),
    ]
}

#[rustfmt::skip]
fn clap() -> Vec<Case> {
    let c = cat("command line (clap)");
    vec![
        c("unknown_subcommand", base, &["trian"], &["trian"]),
        c("unknown_flag", base, &["finetune", "--lr", "1e-4"], &["--lr"]),
        c("extra_positional", base, &["finetune", "bad.toml"], &["bad.toml"]),
        c("config_without_value", base, &["finetune", "--config"], &["--config"]),
        c("set_without_value", base, &["finetune", "--set"], &["--set"]),
        c("backend_unknown", base, &["finetune", "--backend", "bogus"], &["bogus"]),
        c("generate_without_prompt", base, &["generate", "--model", "qwen3-tiny"], &["--prompt"]),
        c("generate_without_model", base, &["generate", "--prompt", "hi"], &["--model"]),
        c("generate_max_new_tokens_negative", base, &["generate", "--model", "qwen3-tiny", "--prompt", "hi", "--max-new-tokens=-1"], &["--max-new-tokens"]),
        c("generate_seed_negative", base, &["generate", "--model", "qwen3-tiny", "--prompt", "hi", "--seed=-1"], &["--seed"]),
        c("generate_top_p_word", base, &["generate", "--model", "qwen3-tiny", "--prompt", "hi", "--top-p", "high"], &["--top-p"]),
        c("eval_without_data_dir", base, &["eval", "--model", "qwen3-tiny"], &["--data-dir"]),
        c("eval_limit_word", base, &["eval", "--model", "qwen3-tiny", "--data-dir", "x", "--limit", "abc"], &["--limit"]),
        c("eval_adapter_and_checkpoints", base, &["eval", "--model", "qwen3-tiny", "--data-dir", "x", "--adapter", "a", "--checkpoints", "b"], &["--checkpoints"]),
        c("plan_samples_word", base, &["plan", "--samples", "x"], &["--samples"]),
        c("data_export_without_value", base, &["data", "--config", "bad.toml", "--export"], &["--export"]),
        c("sweep_jobs_word", base, &["sweep", "--jobs", "abc"], &["--jobs"]),
        c("bench_steps_negative", base, &["bench", "--steps=-1"], &["--steps"]),
    ]
}
