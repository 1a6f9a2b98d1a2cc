//! ember's ids and labels against LLaMA-Factory's, case by case (fixtures/data/reference.json,
//! written by fixtures/data/make_data_reference.py), and the numpy-compatible generator against numpy.

use std::path::{Path, PathBuf};

use ember_data::rng::NumpyRng;
use ember_data::{DataArgs, Example, Tokenizer, load_sft};
use serde_json::Value;

fn fixtures() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../fixtures/data"))
}

/// `../shared` (or `$EMBER_SHARED`) when it has `needs`; otherwise a skip, or a failure in CI.
fn shared(needs: &[&str]) -> Option<PathBuf> {
    ember_testing::shared_dir(needs)
}

fn read_json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

fn rows(v: &Value) -> Vec<(Vec<u32>, Vec<i32>)> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let ids = r["input_ids"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_u64().unwrap() as u32)
                .collect();
            let labels = r["labels"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_i64().unwrap() as i32)
                .collect();
            (ids, labels)
        })
        .collect()
}

fn ours(examples: &[Example]) -> Vec<(Vec<u32>, Vec<i32>)> {
    examples
        .iter()
        .map(|e| (e.input_ids.clone(), e.labels.clone()))
        .collect()
}

/// Run every case of one tokenizer; report all mismatching cases at once.
fn check_tokenizer(name: &str, tok_path: &Path) {
    let reference = read_json(&fixtures().join("reference.json"));
    let cases = reference["tokenizers"][name]
        .as_object()
        .expect("tokenizer in reference.json");
    let tok = Tokenizer::from_file(tok_path).unwrap();
    let mut failures = Vec::new();
    for (case, expected) in cases {
        // The case's keys are DataArgs keys: deserializing them also checks the names agree.
        let mut args: DataArgs = serde_json::from_value(expected["args"].clone())
            .unwrap_or_else(|e| panic!("{case}: args do not deserialize into DataArgs: {e}"));
        args.dataset_dir = fixtures();
        let data = match load_sft(&args, &tok) {
            Ok(d) => d,
            Err(e) => {
                failures.push(format!("{case}: load failed: {e}"));
                continue;
            }
        };
        for (split, got, want) in [
            ("train", &data.train, &expected["train"]),
            ("eval", &data.eval, &expected["eval"]),
        ] {
            let want = rows(want);
            let got = ours(got);
            if got.len() != want.len() {
                failures.push(format!(
                    "{case}/{split}: {} examples, LLaMA-Factory has {}",
                    got.len(),
                    want.len()
                ));
                continue;
            }
            for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                if g.0 != w.0 {
                    let at =
                        g.0.iter()
                            .zip(&w.0)
                            .position(|(a, b)| a != b)
                            .unwrap_or(g.0.len().min(w.0.len()));
                    failures.push(format!(
                        "{case}/{split}[{i}]: input_ids differ at {at} (lens {} vs {}):\n  ours {:?}\n  LF   {:?}",
                        g.0.len(),
                        w.0.len(),
                        &g.0[at.saturating_sub(3)..(at + 8).min(g.0.len())],
                        &w.0[at.saturating_sub(3)..(at + 8).min(w.0.len())],
                    ));
                } else if g.1 != w.1 {
                    let at = g.1.iter().zip(&w.1).position(|(a, b)| a != b).unwrap_or(0);
                    failures.push(format!("{case}/{split}[{i}]: labels differ at {at}"));
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} mismatch(es):\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn small_tokenizer_matches_llamafactory() {
    check_tokenizer("small", &fixtures().join("tokenizer-small.json"));
}

const QWEN3_TOKENIZER: &str = "tokenizers/qwen3/tokenizer.json";

#[test]
fn qwen3_tokenizer_matches_llamafactory() {
    let Some(shared) = shared(&[QWEN3_TOKENIZER]) else {
        return;
    };
    check_tokenizer("qwen3", &shared.join(QWEN3_TOKENIZER));
}

#[test]
fn permutations_match_numpy() {
    let reference = read_json(&fixtures().join("rng.json"));
    for case in reference["cases"].as_array().unwrap() {
        let seed: Vec<u64> = case["seed"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_u64().unwrap())
            .collect();
        let n = case["n"].as_u64().unwrap() as usize;
        let want: Vec<usize> = case["perm"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_u64().unwrap() as usize)
            .collect();
        let got = NumpyRng::from_entropy(&seed).permutation(n);
        assert_eq!(&got[..want.len()], &want[..], "seed {seed:?}, n {n}");
    }
}

/// FNV-1a 64 of the export lines, as `digest` in make_data_reference.py.
fn digest(examples: &[Example]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for ex in examples {
        let line = ember_data::export_line(ex) + "\n";
        for b in line.bytes() {
            h = (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3);
        }
    }
    format!("{h:016x}")
}

/// Whole real datasets from ../shared (LLaMA-Factory demo sets incl. tool calls, the Korean
/// chatbot CSV) with the Qwen3 tokenizer: counts and digests of LLaMA-Factory's output.
#[test]
fn shared_datasets_match_llamafactory() {
    let Some(shared) = shared(&[QWEN3_TOKENIZER, "data/sft"]) else {
        return;
    };
    let tok_path = shared.join(QWEN3_TOKENIZER);
    let reference = read_json(&fixtures().join("reference.json"));
    let cases = reference["shared"]
        .as_object()
        .expect("shared cases in reference.json");
    let tok = Tokenizer::from_file(&tok_path).unwrap();
    for (name, case) in cases {
        let mut args: DataArgs = serde_json::from_value(case["args"].clone()).unwrap();
        // reference.json names `../shared/...` as the reference script saw it.
        let dir = case["dataset_dir"].as_str().unwrap();
        args.dataset_dir = shared.join(dir.strip_prefix("../shared/").unwrap_or(dir));
        if !case["dataset_info"].is_null() {
            args.dataset_info = serde_json::from_value(case["dataset_info"].clone()).unwrap();
        }
        let data = load_sft(&args, &tok).unwrap_or_else(|e| panic!("{name}: {e}"));
        println!("{name}:\n{}", data.stats);
        for (split, got) in [("train", &data.train), ("eval", &data.eval)] {
            assert_eq!(
                got.len() as u64,
                case[format!("{split}_count")].as_u64().unwrap(),
                "{name}/{split} count"
            );
            assert_eq!(
                digest(got),
                case[format!("{split}_digest")].as_str().unwrap(),
                "{name}/{split} digest"
            );
        }
    }
}
