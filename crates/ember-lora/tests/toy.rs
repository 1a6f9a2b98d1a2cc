//! ember-lora on a small model that is not Qwen3 (the crate must work for any model): initialisation,
//! the forward against a host computation, freezing, dropout, merging, the PEFT format and its errors,
//! and the merged export. Every test runs on each compiled-in CPU backend.

use std::path::Path;

use burn::module::{AutodiffModule, Module, Param};
use burn::tensor::{DType, ElementConversion, Tensor, TensorData, backend::Backend};
use ember_backend::{AutodiffBackend, BackendOp};
use ember_lora::peft::{ADAPTER_CONFIG, ADAPTER_WEIGHTS, adapter_key};
use ember_lora::{
    AdapterConfig, InitLoraWeights, LoraAdapter, LoraConfig, LoraError, LoraLinear, LoraModel,
    LoraVariant, ParamReport, TargetModules, apply_lora, export_merged, load_peft, merge,
    merge_and_unload, save_peft, set_dropout_seed, unmerge,
};
use ember_testing::{for_each_backend, max_abs, max_abs_diff};

const IN: usize = 24;
const HID: usize = 40;
const VOCAB: usize = 10;

#[derive(Module, Debug)]
struct Block<B: Backend> {
    up: LoraLinear<B>,
    down: LoraLinear<B>,
}

#[derive(Module, Debug)]
struct Toy<B: Backend> {
    layers: Vec<Block<B>>,
    lm_head: LoraLinear<B>,
}

fn seeded(seed: u64, shape: [usize; 2]) -> Vec<f32> {
    // A small LCG: deterministic base weights without depending on a backend's generator.
    let mut s = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..shape[0] * shape[1])
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 0.5
        })
        .collect()
}

fn lin<B: Backend>(
    seed: u64,
    inp: usize,
    out: usize,
    bias: bool,
    dtype: DType,
    device: &B::Device,
) -> LoraLinear<B> {
    let w = Tensor::<B, 2>::from_data(
        TensorData::new(seeded(seed, [out, inp]), [out, inp]),
        device,
    )
    .cast(dtype);
    let b = bias.then(|| {
        Tensor::<B, 1>::from_data(TensorData::new(seeded(seed + 99, [1, out]), [out]), device)
            .cast(dtype)
    });
    LoraLinear::frozen(w, b)
}

impl<B: Backend> Toy<B> {
    fn new(dtype: DType, device: &B::Device) -> Self {
        Self {
            layers: (0..2)
                .map(|i| Block {
                    up: lin(10 * i + 1, IN, HID, true, dtype, device),
                    down: lin(10 * i + 2, HID, IN, false, dtype, device),
                })
                .collect(),
            lm_head: lin(77, IN, VOCAB, false, dtype, device),
        }
    }

    fn forward(&self, x: Tensor<B, 2>) -> Tensor<B, 2> {
        let mut h = x;
        for b in &self.layers {
            h = h.clone()
                + b.down
                    .forward(burn::tensor::activation::relu(b.up.forward(h)));
        }
        self.lm_head.forward(h).cast(DType::F32)
    }

    /// The base checkpoint in HF style: `name.weight` / `name.bias`.
    fn tensors(&self) -> Vec<(String, TensorData)> {
        let mut v = Vec::new();
        for (path, l) in self.lora_linears() {
            v.push((format!("{path}.weight"), l.weight.val().into_data()));
            if let Some(b) = &l.bias {
                v.push((format!("{path}.bias"), b.val().into_data()));
            }
        }
        v
    }
}

impl<B: Backend> LoraModel<B> for Toy<B> {
    fn lora_linears(&self) -> Vec<(String, &LoraLinear<B>)> {
        let mut v = Vec::new();
        for (i, b) in self.layers.iter().enumerate() {
            v.push((format!("layers.{i}.up"), &b.up));
            v.push((format!("layers.{i}.down"), &b.down));
        }
        v.push(("lm_head".into(), &self.lm_head));
        v
    }
    fn lora_linears_mut(&mut self) -> Vec<(String, &mut LoraLinear<B>)> {
        let mut v = Vec::new();
        for (i, b) in self.layers.iter_mut().enumerate() {
            v.push((format!("layers.{i}.up"), &mut b.up));
            v.push((format!("layers.{i}.down"), &mut b.down));
        }
        v.push(("lm_head".into(), &mut self.lm_head));
        v
    }
}

fn input<B: Backend>(device: &B::Device) -> Tensor<B, 2> {
    Tensor::from_data(TensorData::new(seeded(5, [3, IN]), [3, IN]), device)
}

fn to_vec<B: Backend, const D: usize>(t: Tensor<B, D>) -> Vec<f32> {
    t.into_data().convert::<f32>().to_vec().expect("f32")
}

fn cfg(r: usize, init: InitLoraWeights) -> LoraConfig {
    LoraConfig {
        lora_rank: r,
        lora_alpha: Some(3.0 * r as f64),
        init_lora_weights: init,
        ..LoraConfig::default()
    }
}

/// Runs a closure-like op on every CPU backend.
macro_rules! on_backends {
    ($name:ident, |$b:ident, $device:ident| $body:block) => {
        struct $name;
        impl BackendOp for $name {
            type Output = ();
            fn run<$b: AutodiffBackend>(self, $device: $b::Device) {
                $body
            }
        }
        let outs = for_each_backend(|| $name);
        assert!(!outs.is_empty(), "no backend compiled in");
    };
}

/// f32, and bf16 where the backend has it (not wgpu: a line on stderr says so).
fn f32_and_bf16<B: Backend>(device: &B::Device) -> Vec<DType> {
    if B::supports_dtype(device, DType::BF16) {
        vec![DType::F32, DType::BF16]
    } else {
        let name = B::name(device);
        // Only wgpu lacks bf16: a CPU backend reporting none would silently lose the bf16 cases.
        assert!(name.contains("wgpu"), "{name} reports no bf16");
        ember_testing::note(format!("{name}: no bf16, the bf16 case skipped"));
        vec![DType::F32]
    }
}

#[test]
fn init_follows_peft_and_is_the_same_on_every_backend() {
    struct Init(InitLoraWeights, u64);
    impl BackendOp for Init {
        type Output = Vec<(String, Vec<f32>, Vec<f32>)>;
        fn run<B: AutodiffBackend>(self, device: B::Device) -> Self::Output {
            let mut m = Toy::<B>::new(DType::F32, &device);
            let adapted = apply_lora(&mut m, &cfg(4, self.0), self.1).expect("apply");
            assert_eq!(
                adapted,
                [
                    "layers.0.up",
                    "layers.0.down",
                    "layers.1.up",
                    "layers.1.down"
                ]
            );
            assert!(
                !m.lm_head.has_adapter(),
                "`all` leaves the output layer out"
            );
            m.lora_linears()
                .into_iter()
                .filter(|(_, l)| l.has_adapter())
                .map(|(p, l)| {
                    let ad = l.adapter().expect("adapter");
                    let a = &ad.lora_a;
                    assert_eq!(a.val().dtype(), DType::F32);
                    (p, to_vec(a.val()), to_vec(ad.lora_b.val()))
                })
                .collect()
        }
    }
    let runs = for_each_backend(|| Init(InitLoraWeights::Kaiming, 7));
    for (backend, layers) in &runs {
        assert_eq!(
            layers, &runs[0].1,
            "{backend} draws other values than {}",
            runs[0].0
        );
        for (path, a, b) in layers {
            let inp = if path.ends_with("up") { IN } else { HID };
            let bound = 1.0 / (inp as f32).sqrt();
            assert!(
                max_abs(a) <= f64::from(bound),
                "{path}: A outside U(-1/sqrt(in), 1/sqrt(in))"
            );
            assert!(
                max_abs(a) > 0.9 * f64::from(bound),
                "{path}: A does not fill its range"
            );
            assert!(b.iter().all(|x| *x == 0.0), "{path}: B must start at zero");
        }
    }
    let other = for_each_backend(|| Init(InitLoraWeights::Kaiming, 8));
    assert_ne!(other[0].1[0].1, runs[0].1[0].1, "the seed must matter");
    assert_ne!(
        runs[0].1[0].1, runs[0].1[2].1,
        "layers must get different values"
    );

    for (_, layers) in for_each_backend(|| Init(InitLoraWeights::Gaussian, 7)) {
        let a: Vec<f32> = layers.iter().flat_map(|l| l.1.clone()).collect();
        let std = (a.iter().map(|x| (x * x) as f64).sum::<f64>() / a.len() as f64).sqrt();
        assert!(
            max_abs_diff(&[std], &[0.25]) < 0.025,
            "gaussian A std {std}, PEFT uses 1/r = 0.25"
        );
        assert!(layers.iter().all(|l| l.2.iter().all(|x| *x == 0.0)));
    }
    for (_, layers) in for_each_backend(|| Init(InitLoraWeights::Random, 7)) {
        for (_, _, b) in layers {
            assert!(
                max_abs(&b) <= 0.5 && b.iter().any(|x| x.abs() > 0.1),
                "B ~ U(-1/sqrt(r), 1/sqrt(r))"
            );
        }
    }
}

#[test]
fn forward_adds_the_scaled_adapter_and_keeps_it_f32_on_a_bf16_base() {
    on_backends!(Op, |B, device| {
        for dtype in f32_and_bf16::<B>(&device) {
            let mut layer = lin::<B>(3, IN, HID, true, dtype, &device);
            let r = 3;
            // Not the backend generator: a concurrent test's dropout seeds and draws from it.
            let a =
                Tensor::<B, 2>::from_data(TensorData::new(seeded(21, [r, IN]), [r, IN]), &device);
            let b =
                Tensor::<B, 2>::from_data(TensorData::new(seeded(22, [HID, r]), [HID, r]), &device);
            layer.set_adapter(a.clone(), b.clone(), 1.5, 0.0);
            let x = input::<B>(&device).cast(dtype);
            let y = layer.forward(x.clone());
            assert_eq!(y.dtype(), dtype);
            assert_eq!(
                layer.adapter().expect("adapter").lora_a.val().dtype(),
                DType::F32
            );
            // Host reference in f64.
            let (xv, wv, bv) = (
                to_vec(x),
                to_vec(layer.weight.val()),
                to_vec(layer.bias.as_ref().expect("bias").val()),
            );
            let (av, bbv) = (to_vec(a), to_vec(b));
            let mut want = vec![0.0f64; 3 * HID];
            for i in 0..3 {
                let ax: Vec<f64> = (0..r)
                    .map(|k| {
                        (0..IN)
                            .map(|j| av[k * IN + j] as f64 * xv[i * IN + j] as f64)
                            .sum()
                    })
                    .collect();
                for o in 0..HID {
                    let base: f64 = (0..IN)
                        .map(|j| wv[o * IN + j] as f64 * xv[i * IN + j] as f64)
                        .sum::<f64>()
                        + bv[o] as f64;
                    let delta: f64 = (0..r).map(|k| bbv[o * r + k] as f64 * ax[k]).sum();
                    want[i * HID + o] = base + 1.5 * delta;
                }
            }
            let want: Vec<f32> = want.into_iter().map(|v| v as f32).collect();
            let tol = if dtype == DType::F32 { 1e-4 } else { 0.1 };
            let d = max_abs_diff(&to_vec(y), &want);
            assert!(
                d <= tol,
                "{dtype:?}: forward differs from x Wᵀ + b + s B A x by {d}"
            );
        }
    });
}

#[test]
fn only_the_adapter_factors_get_gradients() {
    on_backends!(Op, |B, device| {
        let mut m = Toy::<B>::new(DType::F32, &device);
        apply_lora(&mut m, &cfg(2, InitLoraWeights::Random), 1).expect("apply");
        let grads = m.forward(input(&device)).powf_scalar(2.0).sum().backward();
        for (path, l) in m.lora_linears() {
            assert!(
                l.weight.grad(&grads).is_none(),
                "{path}.weight is frozen but got a gradient"
            );
            if let Some(b) = &l.bias {
                assert!(
                    b.grad(&grads).is_none(),
                    "{path}.bias is frozen but got a gradient"
                );
            }
            if let Some((a, b)) = l.adapter().map(|ad| (&ad.lora_a, &ad.lora_b)) {
                let ga = a.grad(&grads).expect("lora_a gradient");
                let gb = b.grad(&grads).expect("lora_b gradient");
                assert_eq!(ga.dims(), a.dims());
                assert_eq!(gb.dims(), b.dims());
                assert!(
                    to_vec(gb).iter().any(|g| *g != 0.0),
                    "{path}: zero gradient on B"
                );
            }
        }
        let report = ParamReport::of_model(&m);
        assert_eq!(
            report,
            ParamReport::from_shape(&m.shape(), &cfg(2, InitLoraWeights::Random)).expect("report")
        );
        assert_eq!(report.trainable, 2 * 2 * (IN + HID) as u64 * 2);
        assert_eq!(report.all, m.num_params() as u64);
    });
}

#[test]
fn dropout_touches_only_the_adapter_input_in_training_and_replays_from_its_seed() {
    on_backends!(Op, |B, device| {
        let c = LoraConfig {
            lora_dropout: 0.5,
            ..cfg(4, InitLoraWeights::Random)
        };
        let mut m = Toy::<B>::new(DType::F32, &device);
        apply_lora(&mut m, &c, 3).expect("apply");
        let x = input::<B>(&device);
        let no_dropout = {
            let mut m0 = m.clone();
            for (_, l) in m0.lora_linears_mut() {
                if let Some(ad) = l.adapter_mut() {
                    ad.dropout = 0.0;
                }
            }
            to_vec(m0.forward(x.clone()))
        };
        set_dropout_seed(&mut m, 11);
        let first = to_vec(m.forward(x.clone()));
        let again = to_vec(m.forward(x.clone()));
        assert_eq!(first, again, "the same seed must replay the same masks");
        set_dropout_seed(&mut m, 12);
        let other = to_vec(m.forward(x.clone()));
        assert!(
            max_abs_diff(&first, &other) > 1e-3,
            "another seed must draw other masks"
        );
        assert!(
            max_abs_diff(&first, &no_dropout) > 1e-3,
            "dropout had no effect in training"
        );
        // Inference (no autodiff): no dropout.
        let inference = to_vec(m.valid().forward(input::<B::InnerBackend>(&device)));
        assert!(
            max_abs_diff(&inference, &no_dropout) < 1e-5,
            "dropout applied outside training"
        );
        // With B = 0 the adapter adds nothing, so dropout on its input must change nothing.
        for (_, l) in m.lora_linears_mut() {
            if let Some(ad) = l.adapter_mut() {
                ad.lora_b = Param::from_tensor(ad.lora_b.val().zeros_like());
            }
        }
        let mut base = Toy::<B>::new(DType::F32, &device);
        base.lm_head = m.lm_head.clone();
        assert!(
            max_abs_diff(&to_vec(m.forward(x.clone())), &to_vec(base.forward(x))) < 1e-6,
            "dropout reached the base path"
        );
    });
}

/// The dotted float-parameter paths a visitor sees (how ember-optim keys optimizer state).
#[derive(Default)]
struct Paths {
    stack: Vec<String>,
    out: Vec<String>,
}

impl<B: Backend> burn::module::ModuleVisitor<B> for Paths {
    fn enter_module(&mut self, name: &str, _container: &str) {
        self.stack.push(name.to_string());
    }
    fn exit_module(&mut self, _name: &str, _container: &str) {
        self.stack.pop();
    }
    fn visit_float<const D: usize>(&mut self, _param: &Param<Tensor<B, D>>) {
        self.out.push(self.stack.join("."));
    }
}

fn paths<B: Backend, M: Module<B>>(m: &M) -> Vec<String> {
    let mut v = Paths::default();
    m.visit(&mut v);
    v.out
}

#[test]
fn adapter_parameters_keep_the_paths_optimizer_state_is_saved_under() {
    on_backends!(PathsOp, |B, device| {
        let mut m = Toy::<B>::new(DType::F32, &device);
        apply_lora(&mut m, &cfg(2, InitLoraWeights::Random), 1).expect("apply");
        let mut want = Vec::new();
        for i in 0..2 {
            for (name, bias) in [("up", true), ("down", false)] {
                want.push(format!("layers.{i}.{name}.weight"));
                if bias {
                    want.push(format!("layers.{i}.{name}.bias"));
                }
                want.push(format!("layers.{i}.{name}.lora_a"));
                want.push(format!("layers.{i}.{name}.lora_b"));
            }
        }
        want.push("lm_head.weight".to_string());
        assert_eq!(paths::<B, _>(&m), want);
        let inner = m.valid();
        assert_eq!(paths::<B::InnerBackend, _>(&inner), want);
        let back = Toy::<B>::from_inner(inner);
        assert_eq!(paths::<B, _>(&back), want);
        let adapter: usize = m
            .lora_linears()
            .iter()
            .filter_map(|(_, l)| l.adapter())
            .map(|a| a.lora_a.shape().num_elements() + a.lora_b.shape().num_elements())
            .sum();
        assert_eq!(
            m.num_params(),
            Toy::<B>::new(DType::F32, &device).num_params() + adapter
        );
    });
}

#[test]
fn merge_unmerge_and_unload_keep_the_function() {
    on_backends!(Op, |B, device| {
        let mut m = Toy::<B::InnerBackend>::new(DType::F32, &device);
        apply_lora(&mut m, &cfg(4, InitLoraWeights::Random), 5).expect("apply");
        let x = input::<B::InnerBackend>(&device);
        let w0 = to_vec(m.layers[0].up.weight.val());
        let y = to_vec(m.forward(x.clone()));
        merge(&mut m);
        assert!(m.layers[0].up.adapter().expect("adapter").is_merged());
        assert!(
            max_abs_diff(&to_vec(m.layers[0].up.weight.val()), &w0) > 1e-3,
            "merge did not change the weight"
        );
        assert!(
            max_abs_diff(&to_vec(m.forward(x.clone())), &y) <= 1e-5,
            "merged != unmerged"
        );
        merge(&mut m); // idempotent
        assert!(
            max_abs_diff(&to_vec(m.forward(x.clone())), &y) <= 1e-5,
            "merging twice added the adapter twice"
        );
        unmerge(&mut m);
        assert!(
            max_abs_diff(&to_vec(m.layers[0].up.weight.val()), &w0) <= 1e-6,
            "unmerge did not restore W"
        );
        assert!(max_abs_diff(&to_vec(m.forward(x.clone())), &y) <= 1e-5);
        merge_and_unload(&mut m);
        assert!(m.lora_linears().iter().all(|(_, l)| !l.has_adapter()));
        assert!(max_abs_diff(&to_vec(m.forward(x)), &y) <= 1e-5);
    });
}

fn write_base(dir: &Path, tensors: Vec<(String, TensorData)>) {
    std::fs::create_dir_all(dir).expect("dir");
    let owned: Vec<(String, safetensors::Dtype, Vec<usize>, Vec<u8>)> = tensors
        .into_iter()
        .map(|(k, d)| {
            let dt = match d.dtype {
                DType::F32 => safetensors::Dtype::F32,
                DType::BF16 => safetensors::Dtype::BF16,
                other => panic!("{other:?}"),
            };
            (k, dt, d.shape.to_vec(), d.as_bytes().to_vec())
        })
        .collect();
    let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = owned
        .iter()
        .map(|(k, dt, s, b)| {
            (
                k.clone(),
                safetensors::tensor::TensorView::new(*dt, s.clone(), b).expect("view"),
            )
        })
        .collect();
    safetensors::serialize_to_file(views, None, &dir.join("model.safetensors")).expect("write");
    std::fs::write(dir.join("config.json"), "{\"toy\": true}").expect("config");
    std::fs::write(dir.join("tokenizer.json"), "{}").expect("tokenizer");
}

#[test]
fn merged_export_keeps_keys_and_dtype_and_holds_w_plus_delta() {
    on_backends!(Op, |B, device| {
        for dtype in f32_and_bf16::<B>(&device) {
            let tmp = tempfile::tempdir().expect("tmp");
            let (base_dir, out_dir) = (tmp.path().join("base"), tmp.path().join("merged"));
            let mut m = Toy::<B::InnerBackend>::new(dtype, &device);
            write_base(&base_dir, m.tensors());
            apply_lora(&mut m, &cfg(4, InitLoraWeights::Random), 5).expect("apply");
            let delta = to_vec(m.layers[1].down.delta_weight().expect("delta"));
            export_merged(&m, &base_dir, &out_dir).expect("export");
            assert_eq!(
                std::fs::read(out_dir.join("config.json")).ok(),
                std::fs::read(base_dir.join("config.json")).ok()
            );
            assert!(out_dir.join("tokenizer.json").is_file());
            let base_bytes = std::fs::read(base_dir.join("model.safetensors")).expect("base");
            let out_bytes = std::fs::read(out_dir.join("model.safetensors")).expect("merged");
            let (base, out) = (
                safetensors::SafeTensors::deserialize(&base_bytes).expect("base"),
                safetensors::SafeTensors::deserialize(&out_bytes).expect("out"),
            );
            let mut names = base.names();
            names.sort();
            let mut out_names = out.names();
            out_names.sort();
            assert_eq!(names, out_names);
            for k in names {
                let (b, o) = (base.tensor(k).expect("b"), out.tensor(k).expect("o"));
                assert_eq!(b.dtype(), o.dtype(), "{k}: dtype changed");
                assert_eq!(b.shape(), o.shape());
                let merged = k.ends_with(".weight") && k != "lm_head.weight";
                assert_eq!(b.data() != o.data(), merged, "{k}: merged = {merged}");
            }
            let read = |v: safetensors::tensor::TensorView<'_>| -> Vec<f32> {
                let dt = if v.dtype() == safetensors::Dtype::BF16 {
                    DType::BF16
                } else {
                    DType::F32
                };
                TensorData::from_bytes_vec(v.data().to_vec(), v.shape().to_vec(), dt)
                    .convert::<f32>()
                    .to_vec()
                    .expect("f32")
            };
            let w = read(base.tensor("layers.1.down.weight").expect("w"));
            let got = read(out.tensor("layers.1.down.weight").expect("w"));
            let want: Vec<f32> = w.iter().zip(&delta).map(|(w, d)| w + d).collect();
            let tol = if dtype == DType::F32 { 1e-6 } else { 4e-3 };
            assert!(
                max_abs_diff(&got, &want) <= tol,
                "{dtype:?}: merged weight is not W + s B A"
            );
            let again = export_merged(&m, &base_dir, &out_dir)
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(again.contains("not empty"), "{again}");
        }
    });
}

/// `(key, shape, values)` of an adapter file being edited.
type NamedTensor = (String, Vec<usize>, Vec<f32>);

fn err_of<T>(r: Result<T, LoraError>) -> String {
    match r {
        Ok(_) => panic!("expected an error"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn peft_format_round_trips_and_bad_dirs_give_clear_errors() {
    on_backends!(Op, |B, device| {
        type I<B> = <B as AutodiffBackend>::InnerBackend;
        let tmp = tempfile::tempdir().expect("tmp");
        let dir = tmp.path().join("adapter");
        let c = LoraConfig {
            lora_target: TargetModules::Names(vec!["up".into(), "lm_head".into()]),
            layers_to_transform: None,
            ..cfg(3, InitLoraWeights::Random)
        };
        let mut m = Toy::<I<B>>::new(DType::F32, &device);
        let fresh = m.clone();
        let adapted = apply_lora(&mut m, &c, 9).expect("apply");
        assert_eq!(adapted, ["layers.0.up", "layers.1.up", "lm_head"]);
        let ac = AdapterConfig::from_lora_config(&c, &adapted, Some("toy/base"));
        save_peft(&m, &ac, &dir).expect("save");

        let json: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(dir.join(ADAPTER_CONFIG)).expect("config"),
        )
        .expect("json");
        assert_eq!(json["peft_type"], "LORA");
        assert_eq!(json["r"], 3);
        assert_eq!(json["lora_alpha"], 9);
        assert_eq!(json["target_modules"], serde_json::json!(["up", "lm_head"]));
        assert_eq!(json["base_model_name_or_path"], "toy/base");
        for field in [
            "bias",
            "fan_in_fan_out",
            "use_dora",
            "use_rslora",
            "init_lora_weights",
            "task_type",
            "modules_to_save",
        ] {
            assert!(
                json.get(field).is_some(),
                "adapter_config.json lacks {field}"
            );
        }
        let bytes = std::fs::read(dir.join(ADAPTER_WEIGHTS)).expect("weights");
        let st = safetensors::SafeTensors::deserialize(&bytes).expect("st");
        let mut keys = st.names();
        keys.sort();
        assert_eq!(
            keys,
            [
                "base_model.model.layers.0.up.lora_A.weight",
                "base_model.model.layers.0.up.lora_B.weight",
                "base_model.model.layers.1.up.lora_A.weight",
                "base_model.model.layers.1.up.lora_B.weight",
                "base_model.model.lm_head.lora_A.weight",
                "base_model.model.lm_head.lora_B.weight",
            ]
        );
        assert_eq!(
            st.tensor("base_model.model.layers.0.up.lora_A.weight")
                .expect("a")
                .shape(),
            [3, IN]
        );
        assert_eq!(
            st.tensor("base_model.model.lm_head.lora_B.weight")
                .expect("b")
                .shape(),
            [VOCAB, 3]
        );

        let mut back = fresh.clone();
        let loaded = load_peft(&mut back, &dir).expect("load");
        assert_eq!(loaded, ac);
        let x = input::<I<B>>(&device);
        assert_eq!(
            to_vec(back.forward(x.clone())),
            to_vec(m.forward(x)),
            "reloaded adapter differs"
        );
        for ((p, a), (_, b)) in m.lora_linears().into_iter().zip(back.lora_linears()) {
            let scaling = |l: &LoraLinear<_>| l.adapter().map(|ad| ad.scaling);
            assert_eq!(scaling(a), scaling(b), "{p}");
            if let (Some(x), Some(y)) = (
                a.adapter().map(|ad| &ad.lora_a),
                b.adapter().map(|ad| &ad.lora_a),
            ) {
                assert_eq!(to_vec(x.val()), to_vec(y.val()), "{p}");
            }
        }

        // A config that does not describe the model is refused at save time.
        let wrong = AdapterConfig { r: 4, ..ac.clone() };
        assert!(err_of(save_peft(&m, &wrong, &tmp.path().join("x"))).contains("rank"));

        // Broken copies of the good directory.
        let broken = |name: &str, edit: &dyn Fn(&Path)| -> String {
            let d = tmp.path().join(name);
            std::fs::create_dir_all(&d).expect("dir");
            for f in [ADAPTER_CONFIG, ADAPTER_WEIGHTS] {
                std::fs::copy(dir.join(f), d.join(f)).expect("copy");
            }
            edit(&d);
            let mut model = fresh.clone();
            let e = err_of(load_peft(&mut model, &d));
            assert!(
                model.lora_linears().iter().all(|(_, l)| !l.has_adapter()),
                "{name}: a failed load changed the model"
            );
            e
        };
        let json_ref = &json;
        let set_config = move |key: &'static str, v: serde_json::Value| {
            move |d: &Path| {
                let mut j = json_ref.clone();
                j[key] = v.clone();
                std::fs::write(d.join(ADAPTER_CONFIG), j.to_string()).expect("write");
            }
        };
        let e = err_of(load_peft(&mut fresh.clone(), &tmp.path().join("nope")));
        assert!(e.contains("no such directory"), "{e}");
        let e = broken("no-weights", &|d| {
            std::fs::remove_file(d.join(ADAPTER_WEIGHTS)).expect("rm")
        });
        assert!(e.contains(ADAPTER_WEIGHTS), "{e}");
        let e = broken("no-config", &|d| {
            std::fs::remove_file(d.join(ADAPTER_CONFIG)).expect("rm")
        });
        assert!(e.contains(ADAPTER_CONFIG), "{e}");
        let e = broken("bad-json", &|d| {
            std::fs::write(d.join(ADAPTER_CONFIG), "{").expect("w")
        });
        assert!(e.contains(ADAPTER_CONFIG), "{e}");
        let e = broken("ia3", &set_config("peft_type", "IA3".into()));
        assert!(
            e.contains("peft_type") && e.contains("not supported"),
            "{e}"
        );
        let e = broken("dora", &set_config("use_dora", true.into()));
        assert!(e.contains("use_dora"), "{e}");
        let e = broken("bias", &set_config("bias", "all".into()));
        assert!(e.contains("bias"), "{e}");
        let e = broken("rank", &set_config("r", 2.into()));
        assert!(
            e.contains("lora_A.weight") && e.contains("rank 3") && e.contains("r = 2"),
            "{e}"
        );
        let e = broken(
            "targets",
            &set_config("target_modules", serde_json::json!(["up"])),
        );
        assert!(
            e.contains(&adapter_key("lm_head", 'A')) && e.contains("not a target"),
            "{e}"
        );
        let e = broken(
            "more-targets",
            &set_config(
                "target_modules",
                serde_json::json!(["up", "down", "lm_head"]),
            ),
        );
        assert!(
            e.contains(&adapter_key("layers.0.down", 'A')) && e.contains("missing"),
            "{e}"
        );
        // PEFT reads the layer index after `layers_pattern` (by default only from the third path
        // component on, so these short toy paths need the pattern).
        let e = broken("layers", &|d: &Path| {
            let mut j = json_ref.clone();
            j["layers_to_transform"] = serde_json::json!([0]);
            j["layers_pattern"] = "layers".into();
            std::fs::write(d.join(ADAPTER_CONFIG), j.to_string()).expect("write");
        });
        assert!(
            e.contains(&adapter_key("layers.1.up", 'A')) && e.contains("not a target"),
            "{e}"
        );
        let rewrite = |edit: fn(&mut Vec<NamedTensor>)| {
            move |d: &Path| {
                let bytes = std::fs::read(d.join(ADAPTER_WEIGHTS)).expect("read");
                let st = safetensors::SafeTensors::deserialize(&bytes).expect("st");
                let mut t: Vec<NamedTensor> = st
                    .tensors()
                    .into_iter()
                    .map(|(k, v)| {
                        let data = TensorData::from_bytes_vec(
                            v.data().to_vec(),
                            v.shape().to_vec(),
                            DType::F32,
                        );
                        (k, v.shape().to_vec(), data.to_vec().expect("f32"))
                    })
                    .collect();
                edit(&mut t);
                let datas: Vec<(String, Vec<usize>, Vec<u8>)> = t
                    .into_iter()
                    .map(|(k, s, v)| (k, s.clone(), TensorData::new(v, s).as_bytes().to_vec()))
                    .collect();
                let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = datas
                    .iter()
                    .map(|(k, s, b)| {
                        (
                            k.clone(),
                            safetensors::tensor::TensorView::new(
                                safetensors::Dtype::F32,
                                s.clone(),
                                b,
                            )
                            .expect("v"),
                        )
                    })
                    .collect();
                safetensors::serialize_to_file(views, None, &d.join(ADAPTER_WEIGHTS))
                    .expect("write");
            }
        };
        let e = broken(
            "missing-b",
            &rewrite(|t| t.retain(|(k, _, _)| !k.contains("layers.1.up.lora_B"))),
        );
        assert!(
            e.contains(&adapter_key("layers.1.up", 'B')) && e.contains("missing"),
            "{e}"
        );
        let e = broken(
            "other-model",
            &rewrite(|t| {
                for (k, _, _) in t.iter_mut() {
                    *k = k.replace("layers.1.", "layers.7.");
                }
            }),
        );
        assert!(
            e.contains("base_model.model.layers.7.up.lora_A.weight")
                && e.contains("no linear layer"),
            "{e}"
        );
        let e = broken(
            "shape",
            &rewrite(|t| {
                for (k, s, v) in t.iter_mut() {
                    if k.contains("layers.0.up.lora_A") {
                        *s = vec![3, IN / 2];
                        v.truncate(3 * IN / 2);
                    }
                }
            }),
        );
        assert!(
            e.contains("base_model.model.layers.0.up.lora_A.weight") && e.contains("shape"),
            "{e}"
        );
        let e = broken(
            "dora-key",
            &rewrite(|t| {
                t.push((
                    "base_model.model.layers.0.up.lora_magnitude_vector".into(),
                    vec![HID],
                    vec![1.0; HID],
                ))
            }),
        );
        assert!(
            e.contains("lora_magnitude_vector") && e.contains("does not set `use_dora`"),
            "{e}"
        );
    });
}

#[test]
fn a_config_that_matches_nothing_names_the_available_layers() {
    on_backends!(Op, |B, device| {
        let mut m = Toy::<B>::new(DType::F32, &device);
        let c = LoraConfig {
            lora_target: TargetModules::Names(vec!["q_proj".into()]),
            ..LoraConfig::default()
        };
        let e = err_of(apply_lora(&mut m, &c, 0));
        assert!(
            e.contains("q_proj") && e.contains("down, lm_head, up"),
            "{e}"
        );
        let s: f32 = m.forward(input(&device)).sum().into_scalar().elem();
        assert!(s.is_finite());
    });
}

#[test]
fn a_typo_in_the_targets_or_a_layer_past_the_model_is_named() {
    on_backends!(Op, |B, device| {
        let mut m = Toy::<B>::new(DType::F32, &device);
        // One name matches, one is a typo: the typo is named, nothing is adapted.
        let c = LoraConfig {
            lora_target: TargetModules::Names(vec!["up".into(), "upp".into()]),
            ..LoraConfig::default()
        };
        let e = err_of(apply_lora(&mut m, &c, 0));
        assert!(
            e.contains("lora_target: upp matches no linear layer")
                && e.contains("down, lm_head, up"),
            "{e}"
        );
        assert!(ember_lora::adapted_modules(&m).is_empty());
        // The toy's paths (`layers.0.up`) carry no layer index by PEFT's rule: nothing to pick.
        let c = LoraConfig {
            layers_to_transform: Some(vec![1]),
            ..LoraConfig::default()
        };
        let e = err_of(apply_lora(&mut m, &c, 0));
        assert!(
            e.contains("layers_to_transform: [1]") && e.contains("no numbered layers"),
            "{e}"
        );
    });
}

ember_testing::backend_coverage_test!();

/// DoRA on one biased layer: PEFT's formula in f64 on the host.
fn dora_reference(
    x: &[f32],
    w: &[f32],
    bias: &[f32],
    a: &[f32],
    b: &[f32],
    m: &[f32],
    (rows, inp, out, r, s): (usize, usize, usize, usize, f64),
) -> Vec<f32> {
    // V = W + s·BA and its row norms.
    let v: Vec<f64> = (0..out * inp)
        .map(|i| {
            let (o, j) = (i / inp, i % inp);
            w[i] as f64
                + s * (0..r)
                    .map(|k| b[o * r + k] as f64 * a[k * inp + j] as f64)
                    .sum::<f64>()
        })
        .collect();
    let norm: Vec<f64> = (0..out)
        .map(|o| (0..inp).map(|j| v[o * inp + j].powi(2)).sum::<f64>().sqrt())
        .collect();
    let mut y = vec![0.0f32; rows * out];
    for i in 0..rows {
        for o in 0..out {
            let vx: f64 = (0..inp)
                .map(|j| v[o * inp + j] * x[i * inp + j] as f64)
                .sum();
            y[i * out + o] = (m[o] as f64 / norm[o] * vx + bias[o] as f64) as f32;
        }
    }
    y
}

#[test]
fn dora_computes_peft_formula_merges_and_trains_its_magnitude() {
    on_backends!(Op, |B, device| {
        let (r, s) = (3, 1.5);
        let mut layer = lin::<B>(3, IN, HID, true, DType::F32, &device);
        let a = Tensor::<B, 2>::from_data(TensorData::new(seeded(21, [r, IN]), [r, IN]), &device);
        let b = Tensor::<B, 2>::from_data(TensorData::new(seeded(22, [HID, r]), [HID, r]), &device);
        layer.install(LoraAdapter::new(
            LoraVariant::Dora,
            a.clone(),
            b.clone(),
            s,
            0.0,
        ));
        let ad = layer.adapter().expect("adapter");
        let m0 = to_vec(ad.lora_magnitude_vector.as_ref().expect("magnitude").val());
        assert_eq!(m0.len(), HID);
        // PEFT's init: m = ‖W + s·BA‖ per row, so the layer starts as plain LoRA computes.
        let x = input::<B>(&device);
        let (xv, wv, bv) = (
            to_vec(x.clone()),
            to_vec(layer.weight.val()),
            to_vec(layer.bias.as_ref().expect("bias").val()),
        );
        let (av, bbv) = (to_vec(a.clone()), to_vec(b.clone()));
        let dims = (3, IN, HID, r, s);
        let y0 = to_vec(layer.forward(x.clone()));
        let d = max_abs_diff(&y0, &dora_reference(&xv, &wv, &bv, &av, &bbv, &m0, dims));
        assert!(d <= 1e-5, "DoRA at init differs from PEFT's formula by {d}");
        let mut plain = lin::<B>(3, IN, HID, true, DType::F32, &device);
        plain.set_adapter(a.clone(), b.clone(), s, 0.0);
        assert!(max_abs_diff(&y0, &to_vec(plain.forward(x.clone()))) <= 1e-5);

        // Another magnitude (as a trained or loaded one): the rows rescale to it.
        let m1: Vec<f32> = m0
            .iter()
            .enumerate()
            .map(|(i, v)| v * (0.5 + 0.1 * i as f32))
            .collect();
        layer
            .adapter_mut()
            .expect("adapter")
            .set_magnitude(Tensor::from_data(
                TensorData::new(m1.clone(), [HID]),
                &device,
            ));
        let y1 = to_vec(layer.forward(x.clone()));
        let want = dora_reference(&xv, &wv, &bv, &av, &bbv, &m1, dims);
        let d = max_abs_diff(&y1, &want);
        assert!(d <= 1e-5, "DoRA differs from PEFT's formula by {d}");

        // While dropout applies, the base term is recomputed from the dropped input (PEFT): with a
        // mask that keeps everything, it equals the other branch, bias counted once.
        let mut dropping = layer.clone();
        dropping.adapter_mut().expect("adapter").dropout = 1e-12;
        dropping.set_force_dropout(true);
        let d = max_abs_diff(&to_vec(dropping.forward(x.clone())), &y1);
        assert!(d <= 1e-5, "the dropout branch differs by {d}");

        // Merging rescales W's rows; unmerging needs the norms recorded at the merge.
        let w0 = to_vec(layer.weight.val());
        layer.merge();
        let d = max_abs_diff(&to_vec(layer.forward(x.clone())), &y1);
        assert!(d <= 1e-5, "merged DoRA differs from unmerged by {d}");
        layer.unmerge();
        assert!(max_abs_diff(&to_vec(layer.weight.val()), &w0) <= 1e-6);
        assert!(max_abs_diff(&to_vec(layer.forward(x.clone())), &y1) <= 1e-5);

        // The magnitude is trainable; the norm is detached (PEFT), so B's gradient is the one
        // autodiff gives through the scaled low-rank term only.
        let grads = layer.forward(x).powf_scalar(2.0).sum().backward();
        let ad = layer.adapter().expect("adapter");
        let gm = ad
            .lora_magnitude_vector
            .as_ref()
            .expect("m")
            .grad(&grads)
            .expect("gradient of m");
        assert!(to_vec(gm).iter().all(|g| g.is_finite()) && layer.weight.grad(&grads).is_none());
        assert_eq!(ad.num_adapter_params(), r * (IN + HID) + HID);
    });
}

#[test]
fn dora_and_rank_patterns_are_counted_and_applied_per_module() {
    on_backends!(Op, |B, device| {
        let mut m = Toy::<B>::new(DType::F32, &device);
        let c = LoraConfig::from_toml_str(
            "lora_rank = 2\nuse_dora = true\nlora_target = \"up,down\"\n\
             [rank_pattern]\n\"layers\\\\.1\\\\.down\" = 5\n[alpha_pattern]\nup = 8",
        )
        .expect("config");
        apply_lora(&mut m, &c, 3).expect("apply");
        let up = m.layers[1].up.adapter().expect("up");
        assert_eq!(
            (up.rank(), up.scaling, up.variant),
            (2, 4.0, LoraVariant::Dora)
        );
        let down = m.layers[1].down.adapter().expect("down");
        assert_eq!((down.rank(), down.scaling), (5, 0.8));
        assert_eq!(m.layers[0].down.rank(), Some(2));
        let report = ParamReport::of_model(&m);
        assert_eq!(
            report,
            ParamReport::from_shape(&m.shape(), &c).expect("report")
        );
        let want = 2 * (2 * (IN + HID) + HID) + (2 * (HID + IN) + IN) + (5 * (HID + IN) + IN);
        assert_eq!(report.trainable, want as u64);
        assert_eq!(report.all, m.num_params() as u64);
        // Saved and reloaded: same ranks, scalings, variant and magnitude.
        let dir = tempfile::tempdir().expect("tmp");
        let ac = AdapterConfig::from_lora_config(&c, &ember_lora::adapted_modules(&m), None);
        save_peft(&m, &ac, dir.path()).expect("save");
        let mut again = Toy::<B>::new(DType::F32, &device);
        assert_eq!(load_peft(&mut again, dir.path()).expect("load"), ac);
        for ((p, x), (_, y)) in m.lora_linears().into_iter().zip(again.lora_linears()) {
            let (x, y) = (x.adapter(), y.adapter());
            assert_eq!(
                x.map(|a| (a.rank(), a.scaling, a.variant)),
                y.map(|a| (a.rank(), a.scaling, a.variant)),
                "{p}"
            );
            let mag = |a: Option<&LoraAdapter<B>>| {
                a.and_then(|a| a.lora_magnitude_vector.as_ref())
                    .map(|m| to_vec(m.val()))
            };
            assert_eq!(mag(x), mag(y), "{p}");
        }
        // Two keys that give one module different ranks are refused before anything is built.
        let bad = LoraConfig::from_toml_str("[rank_pattern]\ndown = 4\n\"layers.0.down\" = 8")
            .expect("valid alone");
        let e = apply_lora(&mut m, &bad, 3)
            .expect_err("conflict")
            .to_string();
        assert!(
            e.contains("layers.0.down") && e.contains("sorted keys"),
            "{e}"
        );
        assert!(ParamReport::from_shape(&m.shape(), &bad).is_err());
    });
}
