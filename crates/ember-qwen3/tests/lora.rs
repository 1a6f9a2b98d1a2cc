//! Qwen3 with LoRA adapters against PEFT (fixtures/lora/make_lora_reference.py): trainable-parameter
//! counts of the real Qwen3 configs, loss, gradients and logits with PEFT-written adapters, the PEFT
//! format both ways, merging, the merged export and generation, on every compiled-in CPU backend.
//!
//! Where the fixture venv exists (`~/.cache/ember/venv/bin/python`, or `EMBER_PYTHON`), the merged
//! export is also loaded by transformers and an ember-saved adapter by PEFT; without it those checks
//! print a note and are skipped.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use burn::module::{Module, ModuleVisitor, Param};
use burn::tensor::{DType, ElementConversion, Int, Tensor, TensorData, backend::Backend};
use ember_backend::{AutodiffBackend, BackendOp};
use ember_lora::{
    AdapterConfig, LoraAdapter, LoraConfig, LoraError, LoraModel, ParamReport, TargetModules,
    export_merged, load_peft, merge, save_peft, unmerge,
};
use ember_qwen3::lora::model_shape;
use ember_qwen3::{
    Backprop, GenerationConfig, ModelInputs, Qwen3Config, Qwen3ForCausalLM, load_pretrained,
    random_model,
};
use ember_testing::{Needs, for_each_backend, for_each_backend_with};
use safetensors::SafeTensors;

use crate::common;
use common::{fixtures, max_abs_diff, max_rel_diff, to_vec};

const SEVEN: [&str; 7] = [
    "q_proj",
    "k_proj",
    "v_proj",
    "o_proj",
    "gate_proj",
    "up_proj",
    "down_proj",
];

// ---------------------------------------------------------------------------------------------
// Trainable-parameter counts of the real Qwen3 configs (REFERENCE.md §2).

fn real_config(name: &str) -> Qwen3Config {
    let text = std::fs::read_to_string(fixtures().join("lora/configs").join(name)).expect("config");
    Qwen3Config::from_json_str(&text).expect("valid config")
}

fn report(cfg: &Qwen3Config, r: usize, target: TargetModules) -> ParamReport {
    let lora = LoraConfig {
        lora_rank: r,
        lora_target: target,
        ..LoraConfig::default()
    };
    ParamReport::from_shape(&model_shape(cfg), &lora).expect("report")
}

#[test]
fn trainable_counts_of_qwen3_8b_and_0_6b_equal_peft() {
    let seven = TargetModules::Names(SEVEN.iter().map(|s| s.to_string()).collect());
    let q8 = real_config("qwen3-8b.json");
    assert_eq!(model_shape(&q8).base_params, 8_190_735_360);
    assert_eq!(
        report(&q8, 16, seven.clone()).to_string(),
        "trainable params: 43,646,976 || all params: 8,234,382,336 || trainable%: 0.5301"
    );
    assert_eq!(
        report(&q8, 16, TargetModules::AllLinear),
        report(&q8, 16, seven.clone())
    );
    let r8 = report(&q8, 8, seven.clone());
    assert_eq!(r8.trainable, 21_823_488);
    assert_eq!(format!("{:.4}", r8.trainable_percent()), "0.2657");
    let r32 = report(&q8, 32, seven.clone());
    assert_eq!(r32.trainable, 87_293_952);
    assert_eq!(format!("{:.4}", r32.trainable_percent()), "1.0545");

    let q06 = real_config("qwen3-0.6b.json");
    assert_eq!(model_shape(&q06).base_params, 596_049_920);
    assert_eq!(
        report(&q06, 16, seven).to_string(),
        "trainable params: 10,092,544 || all params: 606,142,464 || trainable%: 1.6650"
    );
    // Explicitly targeting the output layer adds r * (hidden + vocab) on the untied model.
    let with_head = report(&q8, 16, TargetModules::Names(vec!["lm_head".into()]));
    assert_eq!(with_head.trainable, 16 * (4096 + 151_936));
}

struct ShapeFromModel;
impl BackendOp for ShapeFromModel {
    type Output = ();
    fn run<B: AutodiffBackend>(self, device: B::Device) {
        for name in ["qwen3-tiny", "qwen3-tiny-tied"] {
            let cfg =
                Qwen3Config::from_file(fixtures().join("tiny").join(name).join("config.json"))
                    .expect("cfg");
            let model = random_model::<B::InnerBackend>(&cfg, 1, DType::F32, &device);
            assert_eq!(
                model.shape(),
                model_shape(&cfg),
                "{name}: the config-only shape differs from the model's"
            );
            // After adding an adapter the model-side report equals the shape-side one.
            let mut model = model;
            let lora = LoraConfig::with_rank(4);
            ember_lora::apply_lora(&mut model, &lora, 0).expect("apply");
            assert_eq!(
                ParamReport::of_model(&model),
                ParamReport::from_shape(&model_shape(&cfg), &lora).expect("r")
            );
        }
    }
}

#[test]
fn shape_from_the_config_equals_the_model() {
    assert!(!for_each_backend(|| ShapeFromModel).is_empty());
}

// ---------------------------------------------------------------------------------------------
// Parity with PEFT.

struct Reference {
    bytes: Vec<u8>,
    tiny: Vec<u8>,
    json: serde_json::Value,
}

impl Reference {
    fn load() -> Self {
        let lora = fixtures().join("lora");
        Self {
            bytes: std::fs::read(lora.join("reference.safetensors")).expect("lora reference"),
            tiny: std::fs::read(fixtures().join("tiny/reference.safetensors"))
                .expect("tiny reference"),
            json: serde_json::from_str(
                &std::fs::read_to_string(lora.join("reference.json")).expect("json"),
            )
            .expect("reference.json parses"),
        }
    }
    fn read(bytes: &[u8], name: &str) -> TensorData {
        let st = SafeTensors::deserialize(bytes).expect("safetensors");
        let v = st
            .tensor(name)
            .unwrap_or_else(|_| panic!("{name} in reference"));
        let dtype = match v.dtype() {
            safetensors::Dtype::F32 => DType::F32,
            safetensors::Dtype::I64 => DType::I64,
            d => panic!("unexpected dtype {d:?}"),
        };
        TensorData::from_bytes_vec(v.data().to_vec(), v.shape().to_vec(), dtype)
    }
    fn tensor(&self, name: &str) -> TensorData {
        Self::read(&self.bytes, name)
    }
    fn input(&self, name: &str) -> TensorData {
        Self::read(&self.tiny, name)
    }
    fn adapter(&self, name: &str) -> &serde_json::Value {
        &self.json["adapters"][name]
    }
    fn f32s(&self, name: &str) -> Vec<f32> {
        self.tensor(name).to_vec().expect("f32")
    }
}

/// Logits of the real (unpadded) tokens: HF leaves padded query rows unspecified.
fn real_rows(logits: &[f32], mask: &[i64]) -> Vec<f32> {
    let v = logits.len() / mask.len();
    mask.iter()
        .enumerate()
        .filter(|(_, m)| **m == 1)
        .flat_map(|(p, _)| logits[p * v..(p + 1) * v].iter().copied())
        .collect()
}

struct Batch<B: Backend> {
    ids: Tensor<B, 2, Int>,
    mask: Tensor<B, 2, Int>,
    labels: Tensor<B, 2, Int>,
    mask_v: Vec<i64>,
}

fn batch<B: Backend>(r: &Reference, device: &B::Device) -> Batch<B> {
    let mask = r.input("attention_mask");
    Batch {
        ids: Tensor::from_data(r.input("input_ids"), device),
        mask_v: mask.to_vec().expect("i64"),
        mask: Tensor::from_data(mask, device),
        labels: Tensor::from_data(r.input("labels"), device),
    }
}

fn adapter_dir(name: &str) -> PathBuf {
    fixtures().join("lora").join(name)
}

fn base_dir(r: &Reference, adapter: &str) -> PathBuf {
    let base = r.adapter(adapter)["base_model"]
        .as_str()
        .expect("base_model");
    fixtures().join("tiny").join(base)
}

/// Records which float parameters received a gradient.
struct GradProbe<'a, B: AutodiffBackend> {
    grads: &'a B::Gradients,
    with_grad: BTreeSet<burn::module::ParamId>,
    without: usize,
}

impl<B: AutodiffBackend> ModuleVisitor<B> for GradProbe<'_, B> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        if param.grad(self.grads).is_some() {
            self.with_grad.insert(param.id);
        } else {
            self.without += 1;
        }
    }
}

struct PeftParity {
    adapter: &'static str,
}

impl BackendOp for PeftParity {
    type Output = ();
    fn run<B: AutodiffBackend>(self, device: B::Device) {
        let r = Reference::load();
        let name = self.adapter;
        let (_, mut model) =
            load_pretrained::<B>(base_dir(&r, name), DType::F32, &device).expect("base");
        let acfg = load_peft(&mut model, &adapter_dir(name)).expect("PEFT adapter loads");
        let b = batch::<B>(&r, &device);

        let logits = to_vec(
            model.forward(&ModelInputs::new(b.ids.clone()).with_attention_mask(b.mask.clone())),
        );
        let want = r.f32s(&format!("{name}.logits"));
        let d = max_abs_diff(&real_rows(&logits, &b.mask_v), &real_rows(&want, &b.mask_v));
        assert!(d <= 1e-4, "{name}: logits differ from PEFT's by {d}");

        let loss = model
            .forward_loss(
                &ModelInputs::new(b.ids)
                    .with_attention_mask(b.mask)
                    .with_labels(b.labels),
            )
            .mean();
        let got: f64 = loss.clone().into_scalar().elem();
        let want_loss = r.adapter(name)["loss"].as_f64().expect("loss");
        let rel = ember_testing::rel(got, want_loss);
        assert!(
            rel <= 1e-5,
            "{name}: loss {got} vs PEFT {want_loss} (rel {rel:.2e})"
        );

        let grads = loss.backward();
        let keys: Vec<String> =
            serde_json::from_value(r.adapter(name)["keys"].clone()).expect("keys");
        let mut lora_ids = BTreeSet::new();
        let mut checked = 0;
        let module_ranks = r.adapter(name)["module_ranks"]
            .as_object()
            .expect("module_ranks");
        for (path, layer) in model.lora_linears() {
            let Some(ad) = layer.adapter() else {
                assert!(!module_ranks.contains_key(&path), "{path}: PEFT adapts it");
                continue;
            };
            // The rank and scaling PEFT resolved (rank_pattern / alpha_pattern) for this module.
            let want = &module_ranks[&path];
            assert_eq!(
                Some(want[0].as_u64().expect("r") as usize),
                layer.rank(),
                "{name}: {path}"
            );
            assert_eq!(
                ad.scaling,
                want[1].as_f64().expect("scaling"),
                "{name}: {path}"
            );
            let mut params = vec![
                (
                    ember_lora::peft::adapter_key(&path, 'A'),
                    ad.lora_a.id,
                    ad.lora_a.grad(&grads).map(to_vec),
                ),
                (
                    ember_lora::peft::adapter_key(&path, 'B'),
                    ad.lora_b.id,
                    ad.lora_b.grad(&grads).map(to_vec),
                ),
            ];
            if let Some(m) = &ad.lora_magnitude_vector {
                params.push((
                    ember_lora::peft::magnitude_key(&path),
                    m.id,
                    m.grad(&grads).map(to_vec),
                ));
            }
            for (key, id, g) in params {
                assert!(
                    keys.contains(&key),
                    "{key} is adapted but PEFT has no such key"
                );
                let g = g.unwrap_or_else(|| panic!("{key}: no gradient"));
                let want = r.f32s(&format!("{name}.grad.{key}"));
                let rel = max_rel_diff(&g, &want);
                assert!(
                    rel <= 1e-4,
                    "{name}: gradient of {key} differs from PEFT's (rel {rel:.2e})"
                );
                lora_ids.insert(id);
                checked += 1;
            }
        }
        assert_eq!(checked, keys.len(), "{name}: every PEFT tensor compared");
        let mut probe = GradProbe::<B> {
            grads: &grads,
            with_grad: BTreeSet::new(),
            without: 0,
        };
        model.visit(&mut probe);
        assert_eq!(
            probe.with_grad, lora_ids,
            "{name}: only the adapters' parameters may get gradients"
        );
        assert!(probe.without > 0);

        // The ember-side config equals what PEFT wrote.
        let lora = &r.adapter(name)["lora"];
        assert_eq!(acfg.r as u64, lora["r"].as_u64().expect("r"));
        assert_eq!(acfg.lora_alpha, lora["lora_alpha"].as_f64().expect("alpha"));
        assert_eq!(
            acfg.use_rslora,
            lora["use_rslora"].as_bool().unwrap_or(false)
        );
        assert_eq!(acfg.use_dora, lora["use_dora"].as_bool().unwrap_or(false));
        let report = ember_lora::ParamReport::of_model(&model);
        assert_eq!(
            report.trainable,
            checked_params(&r, name),
            "{name}: the trainable-parameter count is the sum of PEFT's saved tensors"
        );
    }
}

/// The number of values in PEFT's saved adapter tensors (every one of them is trainable).
fn checked_params(r: &Reference, name: &str) -> u64 {
    let keys: Vec<String> = serde_json::from_value(r.adapter(name)["keys"].clone()).expect("keys");
    let bytes = std::fs::read(adapter_dir(name).join("adapter_model.safetensors")).expect("file");
    let st = SafeTensors::deserialize(&bytes).expect("safetensors");
    keys.iter()
        .map(|k| st.tensor(k).expect("key").shape().iter().product::<usize>() as u64)
        .sum()
}

#[test]
fn peft_adapters_give_peft_logits_loss_and_gradients() {
    for adapter in [
        "qwen3-tiny-adapter",
        "qwen3-tiny-tied-adapter",
        "qwen3-tiny-rslora-adapter",
        "qwen3-tiny-dora-adapter",
        "qwen3-tiny-tied-dora-adapter",
        "qwen3-tiny-patterns-adapter",
    ] {
        assert!(!for_each_backend(|| PeftParity { adapter }).is_empty());
    }
}

/// Runs the fixture script's check mode; `None` (a skip, or a failure where the run requires the
/// fixture Python) when there is none.
fn python_check(args: &[&str]) -> Option<serde_json::Value> {
    let py = ember_testing::fixture_python()?;
    let out = Command::new(py)
        .arg(fixtures().join("lora/make_lora_reference.py"))
        .args(args)
        .output()
        .expect("python runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let last = stdout.lines().last().unwrap_or_default();
    assert!(
        out.status.success(),
        "python check {args:?} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(serde_json::from_str(last).expect("check prints JSON"))
}

struct SaveReload {
    adapter: &'static str,
}

impl BackendOp for SaveReload {
    type Output = ();
    fn run<B: AutodiffBackend>(self, device: B::Device) {
        type I<B> = <B as AutodiffBackend>::InnerBackend;
        let r = Reference::load();
        let name = self.adapter;
        let (cfg, base) =
            load_pretrained::<I<B>>(base_dir(&r, name), DType::F32, &device).expect("base");
        let mut model = base.clone();
        let acfg = load_peft(&mut model, &adapter_dir(name)).expect("load");
        let tmp = tempfile::tempdir().expect("tmp");
        let out = tmp.path().join("adapter");
        save_peft(&model, &acfg, &out).expect("save");

        let mut again = base.clone();
        assert_eq!(load_peft(&mut again, &out).expect("reload"), acfg);
        for ((p, x), (_, y)) in model.lora_linears().into_iter().zip(again.lora_linears()) {
            let (x, y) = (x.adapter(), y.adapter());
            assert_eq!(x.map(|ad| ad.scaling), y.map(|ad| ad.scaling), "{p}");
            for (a, b) in [
                (x.map(|ad| &ad.lora_a), y.map(|ad| &ad.lora_a)),
                (x.map(|ad| &ad.lora_b), y.map(|ad| &ad.lora_b)),
            ] {
                assert_eq!(
                    a.as_ref().map(|t| to_vec(t.val())),
                    b.as_ref().map(|t| to_vec(t.val())),
                    "{p}"
                );
            }
            let magnitude = |ad: Option<&LoraAdapter<_>>| {
                ad.and_then(|ad| ad.lora_magnitude_vector.as_ref())
                    .map(|m| to_vec(m.val()))
            };
            assert_eq!(magnitude(x), magnitude(y), "{p}: DoRA magnitude");
        }
        // Same tensors and the same PEFT settings as PEFT's own directory.
        let peft_bytes =
            std::fs::read(adapter_dir(name).join("adapter_model.safetensors")).expect("peft");
        let ours_bytes = std::fs::read(out.join("adapter_model.safetensors")).expect("ours");
        let (peft, ours) = (
            SafeTensors::deserialize(&peft_bytes).expect("p"),
            SafeTensors::deserialize(&ours_bytes).expect("o"),
        );
        let mut keys = peft.names();
        keys.sort();
        let mut our_keys = ours.names();
        our_keys.sort();
        assert_eq!(keys, our_keys);
        for k in keys {
            let (p, o) = (peft.tensor(k).expect("p"), ours.tensor(k).expect("o"));
            assert_eq!((p.dtype(), p.shape()), (o.dtype(), o.shape()), "{k}");
            assert_eq!(
                p.data(),
                o.data(),
                "{k}: values changed on the way through ember"
            );
        }
        let read = |d: &Path| -> serde_json::Value {
            serde_json::from_str(
                &std::fs::read_to_string(d.join("adapter_config.json")).expect("cfg"),
            )
            .expect("json")
        };
        let (pj, oj) = (read(&adapter_dir(name)), read(&out));
        for (k, v) in oj.as_object().expect("object") {
            let p = pj
                .get(k)
                .unwrap_or_else(|| panic!("ember writes `{k}`, PEFT 0.21 does not"));
            if k == "target_modules" {
                let set = |v: &serde_json::Value| -> BTreeSet<String> {
                    serde_json::from_value(v.clone()).expect("list")
                };
                assert_eq!(set(v), set(p), "target_modules");
            } else {
                assert_eq!(v, p, "adapter_config.json `{k}`");
            }
        }
        // The rank/alpha/target view LLaMA-Factory's config gives, saved from scratch, names the 7 modules.
        let lf = LoraConfig::from_toml_str("lora_rank = 4\nlora_alpha = 8").expect("cfg");
        let mut fresh = base.clone();
        let adapted = ember_lora::apply_lora(&mut fresh, &lf, 1).expect("apply");
        assert_eq!(adapted.len(), 7 * cfg.num_hidden_layers);
        let ac = AdapterConfig::from_lora_config(&lf, &adapted, Some("Qwen/Qwen3-tiny"));
        let want: BTreeSet<String> = SEVEN.iter().map(|s| s.to_string()).collect();
        assert_eq!(
            ac.target_modules,
            TargetModules::Names(want.into_iter().collect())
        );

        let base_name = r.adapter(name)["base_model"].as_str().expect("base_model");
        // The python check needs to run once, not once per backend.
        if B::name(&device).contains("flex")
            && let Some(res) = python_check(&[
                "--check-adapter",
                out.to_str().expect("utf-8 path"),
                "--model",
                base_name,
                "--adapter",
                name,
            ])
        {
            ember_testing::note(format!("{name}: PEFT loads the ember-saved adapter: {res}"));
        }
    }
}

#[test]
fn ember_saved_adapters_reload_and_equal_peft_files() {
    for adapter in [
        "qwen3-tiny-adapter",
        "qwen3-tiny-rslora-adapter",
        "qwen3-tiny-dora-adapter",
        "qwen3-tiny-patterns-adapter",
    ] {
        assert!(!for_each_backend(|| SaveReload { adapter }).is_empty());
    }
}

struct MergeExportGenerate {
    adapter: &'static str,
}

impl BackendOp for MergeExportGenerate {
    type Output = ();
    fn run<B: AutodiffBackend>(self, device: B::Device) {
        type I<B> = <B as AutodiffBackend>::InnerBackend;
        let r = Reference::load();
        let name = self.adapter;
        let base = base_dir(&r, name);
        let base_name = r.adapter(name)["base_model"]
            .as_str()
            .expect("base")
            .to_string();
        let bf16_base = base_name.contains("tied");
        let (cfg, mut model) = load_pretrained::<I<B>>(&base, DType::F32, &device).expect("base");
        load_peft(&mut model, &adapter_dir(name)).expect("load");
        let b = batch::<I<B>>(&r, &device);
        let logits = |m: &Qwen3ForCausalLM<I<B>>| {
            real_rows(
                &to_vec(
                    m.forward(&ModelInputs::new(b.ids.clone()).with_attention_mask(b.mask.clone())),
                ),
                &b.mask_v,
            )
        };
        let unmerged = logits(&model);

        // In memory.
        let w0 = to_vec(model.model.layers[0].mlp.up_proj.weight.val());
        merge(&mut model);
        let d = max_abs_diff(&logits(&model), &unmerged);
        assert!(
            d <= 1e-4,
            "{name}: merged logits differ from unmerged by {d}"
        );
        unmerge(&mut model);
        assert!(max_abs_diff(&to_vec(model.model.layers[0].mlp.up_proj.weight.val()), &w0) <= 1e-6);
        assert!(max_abs_diff(&logits(&model), &unmerged) <= 1e-5);

        // Generation with the adapter equals PEFT's.
        let prompt: Vec<u32> =
            serde_json::from_value(r.adapter(name)["greedy_prompt_ids"].clone()).expect("prompt");
        let want: Vec<u32> =
            serde_json::from_value(r.adapter(name)["greedy_ids"].clone()).expect("ids");
        let greedy = GenerationConfig::greedy(want.len(), vec![]);
        let with_adapter = model
            .generate(&prompt, &greedy, &device)
            .expect("generate")
            .ids;
        assert_eq!(
            with_adapter, want,
            "{name}: greedy ids with the adapter differ from PEFT's"
        );

        // The merged export: a plain HF directory in the base dtype.
        let tmp = tempfile::tempdir().expect("tmp");
        let out = tmp.path().join("merged");
        export_merged(&model, &base, &out).expect("export");
        assert!(out.join("tokenizer.json").is_file() && out.join("config.json").is_file());
        let (mcfg, merged) = load_pretrained::<I<B>>(&out, DType::F32, &device)
            .expect("the export loads as a plain model");
        assert_eq!(mcfg, cfg);
        assert!(merged.lora_linears().iter().all(|(_, l)| !l.has_adapter()));
        let merged_logits = logits(&merged);
        let d = max_abs_diff(&merged_logits, &unmerged);
        // A bf16 checkpoint stores the merged weights rounded to bf16.
        let tol = if bf16_base { 0.1 } else { 1e-4 };
        assert!(
            d <= tol,
            "{name}: merged export logits differ from the adapter's by {d}"
        );
        if !bf16_base {
            let ids = merged
                .generate(&prompt, &greedy, &device)
                .expect("generate")
                .ids;
            assert_eq!(
                ids, with_adapter,
                "{name}: the merged export generates differently"
            );
        }

        if B::name(&device).contains("flex") {
            let logits_file = tmp.path().join("ember_logits.safetensors");
            let full = to_vec(
                merged
                    .forward(&ModelInputs::new(b.ids.clone()).with_attention_mask(b.mask.clone())),
            );
            let shape = vec![
                b.mask_v.len() / b.ids.dims()[1],
                b.ids.dims()[1],
                mcfg.vocab_size,
            ];
            let bytes: Vec<u8> = full.iter().flat_map(|x| x.to_le_bytes()).collect();
            let view = safetensors::tensor::TensorView::new(safetensors::Dtype::F32, shape, &bytes)
                .expect("view");
            safetensors::serialize_to_file([("logits", view)], None, &logits_file).expect("write");
            let tol = tol.to_string();
            if let Some(res) = python_check(&[
                "--check-export",
                out.to_str().expect("utf-8"),
                "--model",
                &base_name,
                "--adapter",
                name,
                "--tol",
                &tol,
                "--ember-logits",
                logits_file.to_str().expect("utf-8"),
            ]) {
                ember_testing::note(format!(
                    "{name}: transformers loads the merged export: {res}"
                ));
            }
        }
    }
}

#[test]
fn merged_models_and_exports_compute_and_generate_as_the_adapter() {
    for adapter in [
        "qwen3-tiny-adapter",
        "qwen3-tiny-tied-adapter",
        "qwen3-tiny-dora-adapter",
        "qwen3-tiny-tied-dora-adapter",
        "qwen3-tiny-patterns-adapter",
    ] {
        assert!(!for_each_backend(|| MergeExportGenerate { adapter }).is_empty());
    }
}

struct Bf16Base;
impl BackendOp for Bf16Base {
    type Output = ();
    fn run<B: AutodiffBackend>(self, device: B::Device) {
        let r = Reference::load();
        let name = "qwen3-tiny-tied-adapter";
        let (_, mut model) =
            load_pretrained::<B>(base_dir(&r, name), DType::BF16, &device).expect("bf16 base");
        load_peft(&mut model, &adapter_dir(name)).expect("load");
        let q = &model.model.layers[0].self_attn.q_proj;
        assert_eq!(q.weight.val().dtype(), DType::BF16);
        assert_eq!(
            q.adapter().expect("adapter").lora_a.val().dtype(),
            DType::F32,
            "adapters stay f32 on a bf16 base"
        );
        let b = batch::<B>(&r, &device);
        let loss = model
            .forward_loss(
                &ModelInputs::new(b.ids)
                    .with_attention_mask(b.mask)
                    .with_labels(b.labels),
            )
            .mean();
        let got: f64 = loss.clone().into_scalar().elem();
        let want = r.adapter(name)["loss"].as_f64().expect("loss");
        assert!(
            ember_testing::rel(got, want) < 0.02,
            "bf16 loss {got} vs f32 PEFT {want}"
        );
        let grads = loss.backward();
        let g = model.model.layers[1]
            .mlp
            .down_proj
            .adapter()
            .expect("adapter")
            .lora_b
            .grad(&grads)
            .expect("grad");
        assert_eq!(g.dtype(), DType::F32);
        assert!(to_vec(g).iter().all(|x| x.is_finite()));
    }
}

#[test]
fn a_bf16_base_keeps_f32_adapters_and_gradients() {
    for_each_backend_with(Needs::Bf16, || Bf16Base);
}

fn load_err(model_cfg: impl Fn(&mut Qwen3Config), adapter: &str) -> String {
    struct Op {
        cfg: Qwen3Config,
        adapter: PathBuf,
    }
    impl BackendOp for Op {
        type Output = Result<(), LoraError>;
        fn run<B: AutodiffBackend>(self, device: B::Device) -> Self::Output {
            let mut m = random_model::<B::InnerBackend>(&self.cfg, 0, DType::F32, &device);
            load_peft(&mut m, &self.adapter).map(|_| ())
        }
    }
    let mut cfg =
        Qwen3Config::from_file(fixtures().join("tiny/qwen3-tiny/config.json")).expect("cfg");
    model_cfg(&mut cfg);
    let outs = for_each_backend(|| Op {
        cfg: cfg.clone(),
        adapter: adapter_dir(adapter),
    });
    assert!(!outs.is_empty());
    let msgs: Vec<String> = outs
        .into_iter()
        .map(|(_, r)| r.err().map(|e| e.to_string()).unwrap_or_default())
        .collect();
    assert!(msgs.iter().all(|m| m == &msgs[0]));
    msgs[0].clone()
}

#[test]
fn adapters_for_another_base_model_are_refused_naming_the_key() {
    assert_eq!(
        load_err(|_| {}, "qwen3-tiny-adapter"),
        "",
        "the matching base loads"
    );
    let e = load_err(|c| c.intermediate_size = 64, "qwen3-tiny-adapter");
    assert!(
        e.contains("base_model.model.model.layers.0.mlp.down_proj.lora_A.weight")
            && e.contains("[4, 64]"),
        "{e}"
    );
    let e = load_err(|c| c.num_hidden_layers = 1, "qwen3-tiny-adapter");
    assert!(
        e.contains("base_model.model.model.layers.1.") && e.contains("no linear layer"),
        "{e}"
    );
    let e = load_err(|c| c.num_hidden_layers = 3, "qwen3-tiny-rslora-adapter");
    assert_eq!(e, "", "layers_to_transform = [1] fits a deeper model");
    let e = load_err(|c| c.num_hidden_layers = 3, "qwen3-tiny-adapter");
    assert!(
        e.contains("base_model.model.model.layers.2.") && e.contains("missing"),
        "{e}"
    );
}

// ---------------------------------------------------------------------------------------------
// bf16 base against PEFT with a bf16 base (fixtures/lora/make_bf16_reference.py).

use ember_testing::l2_diff;

/// One backprop mode's bf16 run against the references.
#[derive(Debug)]
struct Bf16Outcome {
    loss: f64,
    peft_bf16_loss: f64,
    peft_f32_loss: f64,
    /// Relative L2 distance of all LoRA gradients: ember-bf16 to PEFT-bf16, ember-bf16 to
    /// PEFT-f32, and PEFT-bf16 to PEFT-f32 (bf16's own error).
    err_vs_peft_bf16: f64,
    err_vs_f32: f64,
    peft_bf16_err_vs_f32: f64,
}

struct Bf16Parity {
    adapter: &'static str,
}

impl BackendOp for Bf16Parity {
    type Output = Vec<Bf16Outcome>;
    fn run<B: AutodiffBackend>(self, device: B::Device) -> Self::Output {
        let r = Reference::load();
        let name = self.adapter;
        let st_bytes = std::fs::read(fixtures().join("lora/bf16_reference.safetensors"))
            .expect("bf16 reference");
        let json: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(fixtures().join("lora/bf16_reference.json")).expect("json"),
        )
        .expect("bf16_reference.json parses");
        let (_, mut model) =
            load_pretrained::<B>(base_dir(&r, name), DType::BF16, &device).expect("bf16 base");
        load_peft(&mut model, &adapter_dir(name)).expect("load");
        let mut out = Vec::new();
        for backprop in [Backprop::FullGraph, Backprop::Recompute] {
            let b = batch::<B>(&r, &device);
            let count: f64 = model
                .forward_loss(
                    &ModelInputs::new(b.ids.clone())
                        .with_attention_mask(b.mask.clone())
                        .with_labels(b.labels.clone()),
                )
                .count
                .into_scalar()
                .elem();
            let (loss, grads) = model.loss_and_grads(
                ModelInputs::new(b.ids)
                    .with_attention_mask(b.mask)
                    .with_labels(b.labels),
                count,
                backprop,
            );
            let (mut got, mut want, mut f32s) = (Vec::new(), Vec::new(), Vec::new());
            for (path, layer) in model.lora_linears() {
                let Some((a, bb)) = layer.adapter().map(|ad| (&ad.lora_a, &ad.lora_b)) else {
                    continue;
                };
                assert_eq!(
                    layer.weight.val().dtype(),
                    DType::BF16,
                    "{path}: base dtype"
                );
                for (factor, p) in [('A', a), ('B', bb)] {
                    let key = ember_lora::peft::adapter_key(&path, factor);
                    let g = grads
                        .get::<B::InnerBackend, 2>(p.id)
                        .unwrap_or_else(|| panic!("{key}: no gradient"));
                    assert_eq!(g.dtype(), DType::F32, "{key}: adapter gradients are f32");
                    got.extend(to_vec(g));
                    let read = |tag: &str| -> Vec<f32> {
                        let t = Reference::read(&st_bytes, &format!("{name}.{tag}.grad.{key}"));
                        t.to_vec().expect("f32")
                    };
                    want.extend(read("bf16"));
                    f32s.extend(read("f32"));
                }
            }
            let (d, n) = l2_diff(&got, &want);
            let (d_f32, n_f32) = l2_diff(&got, &f32s);
            let (peft_d, _) = l2_diff(&want, &f32s);
            out.push(Bf16Outcome {
                loss: loss.into_scalar().elem::<f64>(),
                peft_bf16_loss: json[name]["loss_bf16"].as_f64().expect("loss_bf16"),
                peft_f32_loss: json[name]["loss_f32"].as_f64().expect("loss_f32"),
                err_vs_peft_bf16: d / n,
                err_vs_f32: d_f32 / n_f32,
                peft_bf16_err_vs_f32: peft_d / n_f32,
            });
        }
        out
    }
}

/// bf16 rounds differently in every implementation (ember's attention backward runs in f32, torch's
/// eager one in bf16; fused bias adds), so bit parity is not expected. What must hold: ember-bf16 is
/// as close to the f32 truth as PEFT-bf16 is, and close to PEFT-bf16; a missing cast or an adapter
/// computed in bf16 would be far outside these bounds.
#[test]
fn a_bf16_base_tracks_peft_with_a_bf16_base() {
    for adapter in ["qwen3-tiny-adapter", "qwen3-tiny-tied-adapter"] {
        let outs = for_each_backend_with(Needs::Bf16, || Bf16Parity { adapter });
        for (backend, modes) in outs {
            for (mode, o) in ["full graph", "recompute"].iter().zip(modes) {
                println!(
                    "{adapter} on {backend} ({mode}): loss {:.6} vs PEFT-bf16 {:.6} (f32 {:.6}); \
                     LoRA grads rel L2: vs PEFT-bf16 {:.2e}, vs f32 {:.2e} (PEFT-bf16 vs f32 {:.2e})",
                    o.loss,
                    o.peft_bf16_loss,
                    o.peft_f32_loss,
                    o.err_vs_peft_bf16,
                    o.err_vs_f32,
                    o.peft_bf16_err_vs_f32
                );
                let bf16_gap = max_abs_diff(&[o.peft_bf16_loss], &[o.peft_f32_loss]);
                assert!(
                    max_abs_diff(&[o.loss], &[o.peft_bf16_loss]) <= bf16_gap,
                    "{adapter} on {backend}: bf16 loss {o:?}"
                );
                assert!(
                    o.err_vs_f32 <= 2.0 * o.peft_bf16_err_vs_f32,
                    "{adapter} on {backend}: bf16 gradients further from f32 than PEFT's: {o:?}"
                );
                assert!(
                    o.err_vs_peft_bf16 <= 2.0 * o.peft_bf16_err_vs_f32,
                    "{adapter} on {backend}: bf16 gradients far from PEFT-bf16's: {o:?}"
                );
            }
        }
    }
}
