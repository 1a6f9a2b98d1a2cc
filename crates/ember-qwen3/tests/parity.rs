//! Parity with Hugging Face transformers on the tiny fixture models (fixtures/make_reference.py):
//! logits, losses and greedy generations, on every compiled-in CPU backend.

use burn::tensor::{DType, Int, Tensor, TensorData};
use ember_backend::{AutodiffBackend, BackendOp};
use ember_qwen3::{GenerationConfig, ModelInputs, StopReason, load_pretrained};
use ember_testing::for_each_backend;
use safetensors::SafeTensors;

use crate::common;
use common::{fixtures, max_abs_diff};

fn tiny() -> std::path::PathBuf {
    fixtures().join("tiny")
}

struct Reference {
    bytes: Vec<u8>,
    json: serde_json::Value,
}

impl Reference {
    fn load() -> Self {
        let dir = tiny();
        let bytes =
            std::fs::read(dir.join("reference.safetensors")).expect("reference.safetensors");
        let json = serde_json::from_str(
            &std::fs::read_to_string(dir.join("reference.json")).expect("reference.json"),
        )
        .expect("reference.json parses");
        Self { bytes, json }
    }
    fn tensor(&self, name: &str) -> (Vec<usize>, TensorData) {
        let st = SafeTensors::deserialize(&self.bytes).expect("safetensors");
        let v = st
            .tensor(name)
            .unwrap_or_else(|_| panic!("{name} in reference"));
        let dtype = match v.dtype() {
            safetensors::Dtype::F32 => DType::F32,
            safetensors::Dtype::I64 => DType::I64,
            d => panic!("unexpected dtype {d:?}"),
        };
        (
            v.shape().to_vec(),
            TensorData::from_bytes_vec(v.data().to_vec(), v.shape().to_vec(), dtype),
        )
    }
    fn model(&self, name: &str) -> &serde_json::Value {
        &self.json["models"][name]
    }
}

struct LogitsAndLoss {
    model: &'static str,
}

struct Outcome {
    max_diff: f64,
    max_diff_unpadded: f64,
    loss: f64,
    loss_mean_of_sum: f64,
    count: f64,
}

impl BackendOp for LogitsAndLoss {
    type Output = Outcome;
    fn run<B: AutodiffBackend>(self, device: B::Device) -> Outcome {
        let r = Reference::load();
        let (cfg, model) =
            load_pretrained::<B>(tiny().join(self.model), DType::F32, &device).expect("load");
        let (_, ids) = r.tensor("input_ids");
        let (_, mask) = r.tensor("attention_mask");
        let (_, labels) = r.tensor("labels");
        let ids = Tensor::<B, 2, Int>::from_data(ids, &device);
        let mask_t = Tensor::<B, 2, Int>::from_data(mask.clone(), &device);
        let labels = Tensor::<B, 2, Int>::from_data(labels, &device);
        let logits =
            model.forward(&ModelInputs::new(ids.clone()).with_attention_mask(mask_t.clone()));
        let got: Vec<f32> = logits.into_data().convert::<f32>().to_vec().expect("f32");
        let (_, want) = r.tensor(&format!("{}.logits", self.model));
        let want: Vec<f32> = want.to_vec().expect("f32");
        // Compare only real tokens: HF leaves padded query rows unspecified.
        let mask_v: Vec<i64> = mask.to_vec().expect("i64");
        let v = cfg.vocab_size;
        let (mut g, mut w) = (Vec::new(), Vec::new());
        for (pos, m) in mask_v.iter().enumerate() {
            if *m == 1 {
                g.extend_from_slice(&got[pos * v..(pos + 1) * v]);
                w.extend_from_slice(&want[pos * v..(pos + 1) * v]);
            }
        }
        // The first row without any padding or mask argument.
        let n0 = mask_v
            .iter()
            .take(mask_v.len() / 2)
            .filter(|m| **m == 1)
            .count();
        let row0 = ids.clone().slice([0..1, 0..n0]);
        let l0: Vec<f32> = model
            .forward(&ModelInputs::new(row0))
            .into_data()
            .convert::<f32>()
            .to_vec()
            .expect("f32");
        let (_, w0) = r.tensor(&format!("{}.logits_unpadded_row0", self.model));
        let w0: Vec<f32> = w0.to_vec().expect("f32");
        let loss = model.forward_loss(
            &ModelInputs::new(ids)
                .with_attention_mask(mask_t)
                .with_labels(labels),
        );
        let sum: f64 = loss.sum.clone().into_scalar().elem::<f64>();
        let count: f64 = loss.count.clone().into_scalar().elem::<f64>();
        let mean: f64 = loss.mean().into_scalar().elem::<f64>();
        Outcome {
            max_diff: max_abs_diff(&g, &w),
            max_diff_unpadded: max_abs_diff(&l0, &w0),
            loss: mean,
            loss_mean_of_sum: sum / count,
            count,
        }
    }
}
use burn::tensor::ElementConversion;

fn check_model(name: &'static str) {
    let r = Reference::load();
    let want_loss = r.model(name)["loss"].as_f64().expect("loss");
    let want_items = r.model(name)["num_items"].as_f64().expect("num_items");
    let outs = for_each_backend(|| LogitsAndLoss { model: name });
    assert!(!outs.is_empty(), "no backend compiled in");
    for (backend, o) in outs {
        println!(
            "{name} on {backend}: logits max|diff| {:.2e} (unpadded {:.2e}), loss {} vs {}",
            o.max_diff, o.max_diff_unpadded, o.loss, want_loss
        );
        assert!(
            o.max_diff <= 1e-4,
            "{name} on {backend}: logits differ by {}",
            o.max_diff
        );
        assert!(
            o.max_diff_unpadded <= 1e-4,
            "{name} on {backend}: unpadded logits differ by {}",
            o.max_diff_unpadded
        );
        let rel = ember_testing::rel(o.loss, want_loss);
        assert!(
            rel <= 1e-5,
            "{name} on {backend}: loss {} vs HF {want_loss} (rel {rel:.2e})",
            o.loss
        );
        assert!(ember_testing::rel(o.loss_mean_of_sum, o.loss) <= 1e-6);
        assert_eq!(
            o.count, want_items,
            "{name} on {backend}: supervised token count"
        );
    }
}

#[test]
fn untied_gqa_model_matches_transformers() {
    check_model("qwen3-tiny");
}

#[test]
fn tied_bf16_model_with_bias_matches_transformers() {
    check_model("qwen3-tiny-tied");
}

struct Greedy {
    model: &'static str,
    eos: Vec<u32>,
    steps: usize,
}

impl BackendOp for Greedy {
    type Output = (Vec<u32>, StopReason);
    fn run<B: AutodiffBackend>(self, device: B::Device) -> Self::Output {
        let r = Reference::load();
        let prompt: Vec<u32> =
            serde_json::from_value(r.model(self.model)["greedy_prompt_ids"].clone()).expect("ids");
        let (_, model) =
            load_pretrained::<B::InnerBackend>(tiny().join(self.model), DType::F32, &device)
                .expect("load");
        let g = model
            .generate(
                &prompt,
                &GenerationConfig::greedy(self.steps, self.eos),
                &device,
            )
            .expect("generate");
        (g.ids, g.stop)
    }
}

#[test]
fn greedy_generation_equals_transformers() {
    let r = Reference::load();
    for name in ["qwen3-tiny", "qwen3-tiny-tied"] {
        let want: Vec<u32> =
            serde_json::from_value(r.model(name)["greedy_ids"].clone()).expect("ids");
        for (backend, (ids, stop)) in for_each_backend(|| Greedy {
            model: name,
            eos: vec![],
            steps: want.len(),
        }) {
            assert_eq!(ids, want, "{name} on {backend}");
            assert_eq!(stop, StopReason::MaxNewTokens);
        }
        // Making the fifth generated token an eos id stops generation right after it.
        let eos = want[4];
        let first = want.iter().position(|&t| t == eos).expect("present");
        for (backend, (ids, stop)) in for_each_backend(|| Greedy {
            model: name,
            eos: vec![eos],
            steps: want.len(),
        }) {
            assert_eq!(ids, want[..=first].to_vec(), "{name} on {backend} with eos");
            assert_eq!(stop, StopReason::Eos);
        }
    }
}

struct ShardedEqualsSingle;

impl BackendOp for ShardedEqualsSingle {
    type Output = f64;
    fn run<B: AutodiffBackend>(self, device: B::Device) -> f64 {
        let r = Reference::load();
        let (_, ids) = r.tensor("input_ids");
        let ids = Tensor::<B::InnerBackend, 2, Int>::from_data(ids, &device);
        let (c1, single) =
            load_pretrained::<B::InnerBackend>(tiny().join("qwen3-tiny-tied"), DType::F32, &device)
                .expect("single");
        let (c2, sharded) = load_pretrained::<B::InnerBackend>(
            tiny().join("qwen3-tiny-tied-sharded"),
            DType::F32,
            &device,
        )
        .expect("sharded");
        assert_eq!(c1, c2);
        let a: Vec<f32> = single
            .forward(&ModelInputs::new(ids.clone()))
            .into_data()
            .to_vec()
            .expect("f32");
        let b: Vec<f32> = sharded
            .forward(&ModelInputs::new(ids))
            .into_data()
            .to_vec()
            .expect("f32");
        max_abs_diff(&a, &b)
    }
}

#[test]
fn sharded_checkpoint_loads_like_the_single_file() {
    assert!(
        tiny()
            .join("qwen3-tiny-tied-sharded/model.safetensors.index.json")
            .is_file()
    );
    for (backend, d) in for_each_backend(|| ShardedEqualsSingle) {
        assert_eq!(d, 0.0, "on {backend}");
    }
}
