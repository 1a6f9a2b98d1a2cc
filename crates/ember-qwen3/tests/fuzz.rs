//! Fuzzing the readers of a model directory and an adapter: `config.json`, the safetensors header
//! of `model.safetensors`, `adapter_config.json` and `adapter_model.safetensors`. Any bytes give a
//! model (adapter) or an error naming the file or its directory, never a panic (proptest reports a
//! panic as a failure). `EMBER_FUZZ_CASES` sets the cases.

use std::path::{Path, PathBuf};

use burn::tensor::DType;
use ember_backend::FlexBackend;
use ember_qwen3::{Qwen3Config, load_pretrained, random_model};
use ember_testing::fuzz::{self, Counter};
use proptest::prelude::*;

type B = <FlexBackend as ember_backend::AutodiffBackend>::InnerBackend;

macro_rules! seed {
    ($name:literal) => {
        include_bytes!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../fixtures/",
            $name
        ))
        .as_slice()
    };
}

const CONFIG: &[&[u8]] = &[
    seed!("tiny/qwen3-tiny/config.json"),
    seed!("tiny/qwen3-tiny-tied/config.json"),
];
const ADAPTER_CONFIG: &[&[u8]] = &[
    seed!("lora/qwen3-tiny-adapter/adapter_config.json"),
    seed!("lora/qwen3-tiny-rslora-adapter/adapter_config.json"),
];

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures")
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for e in std::fs::read_dir(from).expect("read_dir") {
        let e = e.expect("entry");
        std::fs::copy(e.path(), to.join(e.file_name())).expect("copy");
    }
}

/// A safetensors file split: its 8-byte header length, its JSON header (where the mutations go)
/// and the tensor bytes after it.
struct Split {
    json: &'static [&'static [u8]],
    prefix: [u8; 8],
    tensors: Vec<u8>,
}

impl Split {
    fn of(path: &Path) -> Self {
        let bytes = std::fs::read(path).expect("safetensors");
        let mut prefix = [0u8; 8];
        prefix.copy_from_slice(&bytes[..8]);
        let end = 8 + u64::from_le_bytes(prefix) as usize;
        let json: &'static [u8] = Box::leak(bytes[8..end].to_vec().into_boxed_slice());
        Self {
            json: Box::leak(Box::new([json])),
            prefix,
            tensors: bytes[end..].to_vec(),
        }
    }

    /// The file with header `json`: its length written in front (so the mutated JSON is read),
    /// or the original length kept (so a length that disagrees with the header is tried too).
    fn file(&self, json: &[u8], fix_length: bool) -> Vec<u8> {
        let len = if fix_length {
            (json.len() as u64).to_le_bytes()
        } else {
            self.prefix
        };
        [&len[..], json, &self.tensors].concat()
    }
}

#[test]
fn fuzz_config_json() {
    let tmp = tempfile::tempdir().expect("tmp");
    let file = tmp.path().join("config.json");
    let counter = Counter::new("config_json");
    proptest!(fuzz::config(), |(bytes in fuzz::input(CONFIG, true, false))| {
        std::fs::write(&file, &bytes).expect("write");
        let r = Qwen3Config::from_file(&file);
        if let Err(e) = &r {
            prop_assert!(e.to_string().contains("config.json"), "{e}");
        }
        counter.hit(r.is_ok());
    });
}

#[test]
fn fuzz_model_safetensors_header() {
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path().join("m-dir");
    copy_dir(&fixtures().join("tiny/qwen3-tiny"), &dir);
    let st = Split::of(&dir.join("model.safetensors"));
    let counter = Counter::new("model_safetensors");
    let inputs = (fuzz::input(st.json, true, false), any::<bool>());
    proptest!(fuzz::config(), |((json, fix) in inputs)| {
        std::fs::write(dir.join("model.safetensors"), st.file(&json, fix)).expect("write");
        let r = load_pretrained::<B>(&dir, DType::F32, &Default::default());
        // A header that still parses can name a tensor of the wrong shape or dtype: by the
        // directory.
        if let Err(e) = &r {
            prop_assert!(e.to_string().contains("m-dir"), "{e}");
        }
        counter.hit(r.is_ok());
    });
}

#[test]
fn fuzz_adapter() {
    let cfg = Qwen3Config::from_file(fixtures().join("tiny/qwen3-tiny/config.json")).expect("cfg");
    let model = random_model::<B>(&cfg, 0, DType::F32, &Default::default());
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path().join("a-dir");
    let src = fixtures().join("lora/qwen3-tiny-adapter");
    copy_dir(&src, &dir);
    let counter = Counter::new("adapter_config_json");
    proptest!(fuzz::config(), |(bytes in fuzz::input(ADAPTER_CONFIG, true, false))| {
        std::fs::write(dir.join("adapter_config.json"), &bytes).expect("write");
        let r = ember_lora::load_peft(&mut model.clone(), &dir);
        if let Err(e) = &r {
            prop_assert!(e.to_string().contains("a-dir"), "{e}");
        }
        counter.hit(r.is_ok());
    });
    drop(counter);
    std::fs::copy(
        src.join("adapter_config.json"),
        dir.join("adapter_config.json"),
    )
    .expect("copy");
    let st = Split::of(&src.join("adapter_model.safetensors"));
    let counter = Counter::new("adapter_model_safetensors");
    let inputs = (fuzz::input(st.json, true, false), any::<bool>());
    proptest!(fuzz::config(), |((json, fix) in inputs)| {
        std::fs::write(dir.join("adapter_model.safetensors"), st.file(&json, fix)).expect("write");
        let r = ember_lora::load_peft(&mut model.clone(), &dir);
        if let Err(e) = &r {
            prop_assert!(e.to_string().contains("a-dir"), "{e}");
        }
        counter.hit(r.is_ok());
    });
}
