//! Fuzzing the readers of user files: dataset_info.json, alpaca / sharegpt / openai rows in JSON and
//! JSON Lines, and CSV. Property: the load returns Ok or an error naming the file; it never panics
//! (proptest catches a panic and reports it as a failure). `EMBER_FUZZ_CASES` sets the cases.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use ember_data::info::parse_dataset_info;
use ember_data::source::{parse_json_rows, read_csv};
use ember_data::{DataArgs, Tokenizer, load_sft};
use ember_testing::fuzz::{self, Counter};
use proptest::prelude::*;

fn fixture(name: &str) -> PathBuf {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../../fixtures/data")).join(name)
}

fn tokenizer() -> &'static Tokenizer {
    static TOK: OnceLock<Tokenizer> = OnceLock::new();
    TOK.get_or_init(|| Tokenizer::from_file(fixture("tokenizer-small.json")).expect("tokenizer"))
}

macro_rules! seed {
    ($name:literal) => {
        include_bytes!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../fixtures/data/",
            $name
        ))
        .as_slice()
    };
}

const ALPACA: &[&[u8]] = &[seed!("alpaca.json")];
const TOOLCALL: &[&[u8]] = &[seed!("toolcall.json")];
const SHAREGPT: &[&[u8]] = &[seed!("sharegpt.jsonl")];
const OPENAI: &[&[u8]] = &[seed!("openai.jsonl"), seed!("openai_tools.jsonl")];
const CSV: &[&[u8]] = &[seed!("ko_qa.csv")];
const INFO: &[&[u8]] = &[seed!("dataset_info.json")];

/// A folder with the fixtures' dataset_info.json, whose dataset `entry` reads `file`: each case
/// overwrites that file and loads it as training would.
struct Target {
    dir: tempfile::TempDir,
    file: PathBuf,
    args: DataArgs,
}

impl Target {
    fn new(entry: &str, file: &str) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let info: serde_json::Value =
            serde_json::from_slice(INFO[0]).expect("fixture dataset_info.json");
        let mut e = info[entry].clone();
        e["file_name"] = file.into();
        let info = serde_json::json!({ "d": e });
        std::fs::write(dir.path().join("dataset_info.json"), info.to_string()).expect("write");
        let args = DataArgs {
            dataset_dir: dir.path().into(),
            dataset: vec!["d".into()],
            ..DataArgs::default()
        };
        Self {
            file: dir.path().join(file),
            dir,
            args,
        }
    }

    /// Loads `bytes` (with `skip_invalid` and a validation split when asked); an error must name
    /// the file.
    fn check(&self, bytes: &[u8], skip_invalid: bool, val: bool) -> Result<bool, TestCaseError> {
        std::fs::write(&self.file, bytes).expect("write");
        let args = DataArgs {
            skip_invalid,
            val_size: if val { 0.25 } else { 0.0 },
            ..self.args.clone()
        };
        let Err(e) = load_sft(&args, tokenizer()) else {
            return Ok(true);
        };
        let msg = e.to_string();
        let name = self.file.file_name().and_then(|n| n.to_str()).unwrap_or("");
        // A split of too few rows is a config error about val_size, not about the file.
        let split = msg.contains("val_size");
        prop_assert!(split || msg.contains(name), "{msg}");
        let _ = &self.dir;
        Ok(false)
    }
}

fn rows_target(
    name: &'static str,
    entry: &str,
    file: &str,
    seeds: &'static [&'static [u8]],
    jsonl: bool,
) {
    let t = Target::new(entry, file);
    let strategy = (
        fuzz::input(seeds, !jsonl, jsonl),
        any::<bool>(),
        any::<bool>(),
    );
    let counter = Counter::new(name);
    proptest!(fuzz::config(), |((bytes, skip, val) in strategy)| {
        counter.hit(t.check(&bytes, skip, val)?);
    });
}

#[test]
fn fuzz_alpaca_json() {
    rows_target("alpaca_json", "alpaca_mix", "fuzz.json", ALPACA, false);
}

#[test]
fn fuzz_sharegpt_tools_json() {
    rows_target(
        "sharegpt_tools_json",
        "toolcall",
        "fuzz.json",
        TOOLCALL,
        false,
    );
}

#[test]
fn fuzz_sharegpt_jsonl() {
    rows_target(
        "sharegpt_jsonl",
        "sharegpt_think",
        "fuzz.jsonl",
        SHAREGPT,
        true,
    );
}

#[test]
fn fuzz_openai_jsonl() {
    rows_target("openai_jsonl", "openai_tools", "fuzz.jsonl", OPENAI, true);
}

#[test]
fn fuzz_csv() {
    let c = Counter::new("csv");
    let t = Target::new("ko_qa", "fuzz.csv");
    let file = Arc::new(PathBuf::from("fuzz.csv"));
    proptest!(fuzz::config(), |((bytes, skip) in (fuzz::input(CSV, false, false), any::<bool>()))| {
        // The reader alone, with and without a required column, then the whole load.
        if let Err(e) = read_csv(&bytes, file.clone(), &[("A", "the response column")]) {
            prop_assert!(e.to_string().contains("fuzz.csv"), "{e}");
        }
        let _ = read_csv(&bytes, file.clone(), &[]);
        c.hit(t.check(&bytes, skip, false)?);
    });
}

#[test]
fn fuzz_json_rows_reader() {
    let c = Counter::new("json_rows_reader");
    const SEEDS: &[&[u8]] = &[
        seed!("alpaca.json"),
        seed!("toolcall.json"),
        seed!("sharegpt.jsonl"),
        seed!("openai.jsonl"),
    ];
    let file = Arc::new(PathBuf::from("fuzz.json"));
    proptest!(fuzz::config(), |((bytes, ext) in (fuzz::input(SEEDS, true, false), any::<bool>()))| {
        let result = parse_json_rows(&bytes, ext, file.clone());
        c.hit(result.as_ref().is_ok_and(|rows| rows.iter().all(|r| r.value.is_ok())));
        match result {
            Ok(rows) => {
                for r in rows {
                    if let Err(e) = &r.value {
                        prop_assert!(r.error(e.clone()).to_string().contains("fuzz.json"));
                    }
                }
            }
            Err(e) => prop_assert!(e.to_string().contains("fuzz.json"), "{e}"),
        }
    });
}

#[test]
fn fuzz_dataset_info() {
    let c = Counter::new("dataset_info");
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("dataset_info.json");
    proptest!(fuzz::config(), |(bytes in fuzz::input(INFO, true, false))| {
        // The parser on its own, then resolution of every entry through the loader.
        let parsed = parse_dataset_info(&bytes, &path);
        c.hit(parsed.is_ok());
        let entries = match parsed {
            Ok(entries) => entries,
            Err(e) => {
                prop_assert!(e.to_string().contains("dataset_info.json"), "{e}");
                return Ok(());
            }
        };
        std::fs::write(&path, &bytes).expect("write");
        for name in entries.keys().take(8) {
            let args = DataArgs {
                dataset_dir: dir.path().into(),
                dataset: vec![name.clone()],
                ..DataArgs::default()
            };
            if let Err(e) = ember_data::info::resolve_datasets(&args.dataset, &args.dataset_dir, &args.dataset_info) {
                prop_assert!(e.to_string().contains("dataset_info.json"), "{e}");
            }
        }
    });
}
