//! The training loop against HF Trainer + PEFT (fixtures/train/make_train_reference.py): the same
//! per-step loss, grad_norm, learning_rate and eval_loss, and the same final adapter, on every CPU
//! backend; and the same losses on every backend.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use ember_backend::{AutodiffBackend, BackendChoice, BackendOp};
use ember_data::{DataStats, Example, SftData, SftStats};
use ember_testing::{Needs, for_each_backend, for_each_backend_with};
use ember_train::{FinetuneConfig, LogEntry, Run, report::Silent};
use safetensors::SafeTensors;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn fixture() -> PathBuf {
    root().join("fixtures/train")
}

fn examples(v: &serde_json::Value) -> Vec<Example> {
    v.as_array()
        .expect("array")
        .iter()
        .map(|s| {
            let input_ids: Vec<u32> = serde_json::from_value(s["input_ids"].clone()).expect("ids");
            let labels: Vec<i32> = serde_json::from_value(s["labels"].clone()).expect("labels");
            Example {
                full_len: input_ids.len(),
                input_ids,
                labels,
            }
        })
        .collect()
}

/// The HF run's data: the samples the reference script tokenized.
fn reference_data() -> SftData {
    let text = std::fs::read_to_string(fixture().join("samples.json")).expect("samples.json");
    let v: serde_json::Value = serde_json::from_str(&text).expect("json");
    let (train, eval) = (examples(&v["train"]), examples(&v["eval"]));
    SftData {
        stats: SftStats {
            train: DataStats::of(&train),
            eval: Some(DataStats::of(&eval)),
            ..Default::default()
        },
        train,
        eval,
        pad_id: 0,
        eos_id: 2,
    }
}

/// The HF run's settings as an ember config.
fn config(out: &Path) -> FinetuneConfig {
    config_for(out, "")
}

/// The settings of a variant of the HF run (`""`, `"dora"` or `"loraplus"`; see the fixture
/// script), starting from that variant's initial adapter.
fn config_for(out: &Path, variant: &str) -> FinetuneConfig {
    let text = format!(
        r#"
[model]
model_name_or_path = "{model}"
adapter_name_or_path = "{adapter}"
[lora]
lora_rank = 4
lora_alpha = 8
lora_dropout = 0.0
lora_target = "q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj"
[data]
dataset_dir = "{data}"
dataset = "interview_ko"
max_samples = 18
[train]
per_device_train_batch_size = 2
gradient_accumulation_steps = 3
num_train_epochs = 2
learning_rate = 1e-3
weight_decay = 0.01
lr_scheduler_type = "cosine"
warmup_steps = 0.2
max_grad_norm = 1.0
logging_steps = 1
disable_shuffling = true
[eval]
eval_strategy = "epoch"
per_device_eval_batch_size = 2
[output]
output_dir = "{out}"
save_strategy = "no"
"#,
        model = root().join("fixtures/tiny/qwen3-tiny").display(),
        adapter = fixture().join(variant).join("initial_adapter").display(),
        out = out.display(),
        data = root().join("fixtures/demo").display(),
    );
    let set: &[String] = match variant {
        "dora" => &["lora.use_dora=true".to_string()][..],
        "loraplus" => &["train.loraplus_lr_ratio=4".to_string()][..],
        _ => &[],
    };
    FinetuneConfig::from_table(text.parse().expect("toml"), Path::new("test.toml"), set)
        .expect("config")
}

fn read_adapter(path: &Path) -> BTreeMap<String, Vec<f32>> {
    let bytes = std::fs::read(path).expect("adapter file");
    let st = SafeTensors::deserialize(&bytes).expect("safetensors");
    st.tensors()
        .into_iter()
        .map(|(name, v)| {
            assert_eq!(
                v.dtype(),
                safetensors::Dtype::F32,
                "{}: {name} is not f32",
                path.display()
            );
            let data: Vec<f32> = v
                .data()
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect();
            (name, data)
        })
        .collect()
}

/// One training run of the parity config, with layer recompute on or off; `fresh_dropout: Some(p)`
/// starts from a fresh adapter with LoRA dropout `p` instead of the fixture's adapter (which brings
/// its own zero dropout).
struct Train {
    recompute: bool,
    fresh_dropout: Option<f64>,
    /// `dtype = "bf16"`, saving a checkpoint per epoch.
    bf16: bool,
    /// Which HF run ([`config_for`]).
    variant: &'static str,
}

impl BackendOp for Train {
    type Output = (Vec<LogEntry>, BTreeMap<String, Vec<f32>>);
    fn run<B: AutodiffBackend>(self, device: B::Device) -> Self::Output {
        let out = tempfile::tempdir().expect("tempdir");
        let mut cfg = config_for(out.path(), self.variant);
        cfg.train.gradient_checkpointing = self.recompute;
        if let Some(p) = self.fresh_dropout {
            cfg.model.adapter_name_or_path = None;
            cfg.lora.lora_dropout = p;
        }
        if self.bf16 {
            cfg.model.dtype = "bf16".into();
            cfg.output.save_strategy = ember_train::config::Strategy::Epoch;
        }
        let run = Run::<B>::with_data(&cfg, reference_data(), &device).expect("run loads");
        let result = run.train(&mut Silent).expect("training");
        if self.bf16 {
            // Adapters and optimizer state stay f32 over a bf16 base.
            let ck = out.path().join("checkpoint-3");
            read_adapter(&ck.join("adapter_model.safetensors"));
            let moments = read_adapter(&ck.join("optimizer.safetensors"));
            assert!(!moments.is_empty(), "optimizer state saved");
        }
        (
            result.state.log_history,
            read_adapter(&out.path().join("adapter_model.safetensors")),
        )
    }
}

/// NaN-aware relative difference (panics on a non-finite value).
use ember_testing::{max_abs_diff, rel};

/// Runs the `variant` of the parity config with ember (layer recompute on and off, every backend)
/// and checks every logged loss, grad_norm, learning rate, eval loss and the final adapter against
/// HF Trainer's run of it.
fn assert_trains_as_hf_trainer(variant: &'static str) {
    let dir = fixture().join(variant);
    let text = std::fs::read_to_string(dir.join("log_history.json")).expect("log_history.json");
    let v: serde_json::Value = serde_json::from_str(&text).expect("json");
    let want: Vec<LogEntry> = serde_json::from_value(v["log_history"].clone()).expect("entries");
    let want_adapter = read_adapter(&dir.join("final_adapter/adapter_model.safetensors"));
    // Layer recompute (the default) and the full-graph backward both match HF.
    let mut runs = Vec::new();
    for recompute in [true, false] {
        for (backend, out) in for_each_backend(|| Train {
            recompute,
            fresh_dropout: None,
            bf16: false,
            variant,
        }) {
            runs.push((format!("{variant} {backend} (recompute {recompute})"), out));
        }
    }
    assert!(!runs.is_empty());
    let mut per_backend_losses = Vec::new();
    for (backend, (got, adapter)) in runs {
        assert_eq!(got.len(), want.len(), "{backend}: log entries {got:?}");
        for (g, w) in got.iter().zip(&want) {
            assert_eq!(
                (g.step, g.epoch),
                (w.step, w.epoch),
                "{backend}: step/epoch"
            );
            if let Some(wl) = w.loss {
                let gl = g.loss.expect("loss");
                assert!(
                    rel(gl, wl) <= 1e-4,
                    "{backend} step {}: loss {gl} vs HF {wl}",
                    w.step
                );
                let (gn, wn) = (
                    g.grad_norm.expect("grad_norm"),
                    w.grad_norm.expect("grad_norm"),
                );
                assert!(
                    rel(gn, wn) <= 1e-4,
                    "{backend} step {}: grad_norm {gn} vs HF {wn}",
                    w.step
                );
                let (glr, wlr) = (g.learning_rate.expect("lr"), w.learning_rate.expect("lr"));
                assert!(
                    max_abs_diff(&[glr], &[wlr]) <= 1e-12,
                    "{backend} step {}: lr {glr} vs HF {wlr}",
                    w.step
                );
            }
            if let Some(we) = w.eval_loss {
                let ge = g.eval_loss.expect("eval_loss");
                assert!(
                    rel(ge, we) <= 1e-4,
                    "{backend} step {}: eval_loss {ge} vs HF {we}",
                    w.step
                );
            }
            if let Some(wt) = w.train_loss {
                let gt = g.train_loss.expect("train_loss");
                assert!(rel(gt, wt) <= 1e-4, "{backend}: train_loss {gt} vs HF {wt}");
            }
        }
        assert_eq!(
            adapter.keys().collect::<Vec<_>>(),
            want_adapter.keys().collect::<Vec<_>>(),
            "{backend}: adapter keys"
        );
        let worst = want_adapter
            .iter()
            .map(|(k, w)| max_abs_diff(&adapter[k], w))
            .fold(0.0, f64::max);
        println!("{backend}: final adapter max|diff| {worst:.2e}");
        assert!(worst <= 1e-4, "{backend}: final adapter differs by {worst}");
        per_backend_losses.push(got.iter().filter_map(|e| e.loss).collect::<Vec<_>>());
    }
    // Backend swapping: every backend gives the same per-step losses.
    for other in &per_backend_losses[1..] {
        for (a, b) in other.iter().zip(&per_backend_losses[0]) {
            assert!(
                rel(*a, *b) <= 1e-4,
                "losses differ between backends: {a} vs {b}"
            );
        }
    }
}

#[test]
fn steps_losses_and_adapter_equal_hf_trainer() {
    assert_trains_as_hf_trainer("");
}

/// DoRA (its magnitude trains, with the weight norm recomputed every step) and LoRA+ (the B
/// matrices in their own learning-rate group) against HF Trainer runs of the same settings.
#[test]
fn dora_and_loraplus_train_as_hf_trainer() {
    assert_trains_as_hf_trainer("dora");
    assert_trains_as_hf_trainer("loraplus");
}

/// With LoRA dropout on, layer recompute must replay each micro-batch's masks: the whole run (every
/// logged loss and grad_norm, the final adapter) equals the full-graph run's.
#[test]
fn recompute_trains_exactly_as_the_full_graph_with_dropout() {
    let runs = |recompute, p| {
        for_each_backend(|| Train {
            recompute,
            variant: "",
            fresh_dropout: Some(p),
            bf16: false,
        })
    };
    let (full, rec, no_dropout) = (runs(false, 0.1), runs(true, 0.1), runs(true, 0.0));
    assert!(!full.is_empty());
    for (((backend, (full, full_adapter)), (_, (rec, rec_adapter))), (_, (plain, _))) in
        full.into_iter().zip(rec).zip(no_dropout)
    {
        assert_eq!(full.len(), rec.len());
        // Bit-identical on the CPU backends, as docs/performance.md says (both sides finite: `rel`
        // checks). CubeCL (wgpu, cuda) picks its matmul kernel by the operands' layout, and the
        // recomputed forward's tensors need not have the full graph's strides, so it may sum in
        // another order: 6e-8 relative in grad_norm measured on lavapipe.
        let tol = if matches!(backend, BackendChoice::Wgpu(_) | BackendChoice::Cuda(_)) {
            1e-6
        } else {
            0.0
        };
        let close = |p: Option<f64>, q: Option<f64>| match (p, q) {
            (Some(p), Some(q)) => rel(p, q) <= tol,
            (p, q) => p.is_none() && q.is_none(),
        };
        for (x, y) in full.iter().zip(&rec) {
            assert!(
                x.step == y.step
                    && close(x.loss, y.loss)
                    && close(x.grad_norm, y.grad_norm)
                    && close(x.eval_loss, y.eval_loss),
                "{backend}: full graph {x:?} vs recompute {y:?}"
            );
        }
        let worst = full_adapter
            .iter()
            .map(|(k, w)| max_abs_diff(&rec_adapter[k], w))
            .fold(0.0, f64::max);
        println!("{backend}: dropout 0.1, recompute vs full graph: adapter max|diff| {worst:.1e}");
        assert!(worst <= tol, "{backend}: adapters differ by {worst}");
        // Dropout acted: the losses differ from a dropout-free run.
        assert!(
            plain
                .iter()
                .zip(&rec)
                .any(|(p, r)| matches!((p.loss, r.loss), (Some(p), Some(r)) if rel(p, r) > 1e-4)),
            "{backend}: dropout 0.1 did not change the losses"
        );
    }
}

/// `dtype = "bf16"`: the run trains with a bf16 base (f32 adapters, optimizer state and loss) and its
/// per-step losses stay within bf16's rounding of HF's f32 run.
#[test]
fn bf16_base_trains_close_to_the_f32_reference() {
    let text =
        std::fs::read_to_string(fixture().join("log_history.json")).expect("log_history.json");
    let v: serde_json::Value = serde_json::from_str(&text).expect("json");
    let want: Vec<LogEntry> = serde_json::from_value(v["log_history"].clone()).expect("entries");
    let runs = for_each_backend_with(Needs::Bf16, || Train {
        recompute: true,
        fresh_dropout: None,
        bf16: true,
        variant: "",
    });
    for (backend, (got, _)) in runs {
        assert_eq!(got.len(), want.len());
        let mut worst = 0.0f64;
        for (g, w) in got.iter().zip(&want) {
            for (a, b) in [(g.loss, w.loss), (g.eval_loss, w.eval_loss)] {
                if let (Some(a), Some(b)) = (a, b) {
                    worst = worst.max(rel(a, b));
                }
            }
        }
        println!("{backend}: bf16 base, losses vs HF f32 within {worst:.1e} (relative)");
        assert!(
            worst > 0.0 && worst <= 1e-2,
            "{backend}: bf16 losses differ from the f32 reference by {worst}"
        );
    }
}

#[test]
fn ember_data_tokenizes_the_reference_samples_identically() {
    let tok =
        ember_data::Tokenizer::from_file(root().join("fixtures/tiny/qwen3-tiny/tokenizer.json"))
            .expect("tokenizer");
    let args: ember_data::DataArgs = toml::from_str(&format!(
        "dataset_dir = \"{}\"\ndataset = \"interview_ko\"\nmax_samples = 18\nval_size = 0.0\n",
        root().join("fixtures/demo").display()
    ))
    .expect("data args");
    let data = ember_data::load_sft(&args, &tok).expect("load");
    let reference = reference_data();
    assert_eq!(data.train[..13], reference.train[..], "train samples");
    assert_eq!(data.train[13..18], reference.eval[..], "eval samples");
}

ember_testing::backend_coverage_test!();

/// The parity run's result files: eval_results.json, all_results.json, and how many entries the
/// saved trainer_state.json holds.
struct EndOfRun;

impl BackendOp for EndOfRun {
    type Output = (serde_json::Value, serde_json::Value, usize);
    fn run<B: AutodiffBackend>(self, device: B::Device) -> Self::Output {
        let out = tempfile::tempdir().expect("tempdir");
        let run =
            Run::<B>::with_data(&config(out.path()), reference_data(), &device).expect("run loads");
        run.train(&mut Silent).expect("training");
        let read = |f: &str| -> serde_json::Value {
            serde_json::from_str(&std::fs::read_to_string(out.path().join(f)).expect(f))
                .expect("json")
        };
        let saved = read("trainer_state.json")["log_history"]
            .as_array()
            .expect("log_history")
            .len();
        (read("eval_results.json"), read("all_results.json"), saved)
    }
}

#[test]
fn the_run_ends_with_llamafactorys_final_evaluation() {
    // LLaMA-Factory's run_sft saves the state, then evaluates: the metrics reach eval_results.json
    // and all_results.json, not trainer_state.json (the fixture replays that order with HF).
    let text =
        std::fs::read_to_string(fixture().join("log_history.json")).expect("log_history.json");
    let v: serde_json::Value = serde_json::from_str(&text).expect("json");
    let want = &v["final_eval"]["eval_results"];
    let want_saved = v["final_eval"]["saved_log_history_len"]
        .as_u64()
        .expect("saved_log_history_len") as usize;
    let keys = |j: &serde_json::Value| -> Vec<String> {
        j.as_object().expect("object").keys().cloned().collect()
    };
    let num = |j: &serde_json::Value, k: &str| j[k].as_f64().unwrap_or(f64::NAN);
    for (backend, (eval, all, saved)) in for_each_backend(|| EndOfRun) {
        assert_eq!(keys(&eval), keys(want), "{backend}: eval_results.json keys");
        assert_eq!(eval["epoch"], want["epoch"], "{backend}: epoch");
        let (got, hf) = (num(&eval, "eval_loss"), num(want, "eval_loss"));
        assert!(
            rel(got, hf) <= 1e-4,
            "{backend}: final eval_loss {got} vs HF {hf}"
        );
        // HF counts whole eval batches: 5 samples at batch 2 are 3 steps.
        let ratio = num(&eval, "eval_steps_per_second") / num(&eval, "eval_samples_per_second");
        let hf_ratio = num(want, "eval_steps_per_second") / num(want, "eval_samples_per_second");
        assert!(
            (ratio - hf_ratio).abs() < 0.01,
            "{backend}: steps/samples {ratio} vs HF {hf_ratio}"
        );
        assert_eq!(
            saved, want_saved,
            "{backend}: entries in the saved trainer_state.json"
        );
        for k in keys(&eval) {
            assert_eq!(all[&k], eval[&k], "{backend}: all_results.json `{k}`");
        }
        assert!(
            all["train_loss"].is_f64(),
            "{backend}: all_results.json has train_loss"
        );
    }
}
