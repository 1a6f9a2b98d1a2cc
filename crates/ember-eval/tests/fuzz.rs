//! Fuzzing the benchmark file readers: KoBEST TSV, KMMLU CSV and JSON, HAE-RAE JSON Lines and JSON.
//! Property: reading and rendering a file's documents returns Ok or an error naming the task and
//! the file; it never panics (proptest reports a panic as a failure). `EMBER_FUZZ_CASES` sets the
//! cases.

use std::path::Path;

use ember_eval::data::parse_docs;
use ember_eval::tasks::Task;
use ember_testing::fuzz::{self, Counter};
use proptest::prelude::*;

macro_rules! seed {
    ($name:literal) => {
        include_bytes!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../fixtures/eval/data/",
            $name
        ))
        .as_slice()
    };
}

fn task(name: &str) -> Task {
    ember_eval::select(&[name])
        .expect("known task")
        .tasks
        .remove(0)
}

/// Renders `bytes` as `file` of `task`; an error must name both.
fn check(task: &Task, file: &str, bytes: &[u8]) -> Result<bool, TestCaseError> {
    let Err(e) = parse_docs(task, Path::new(file), bytes) else {
        return Ok(true);
    };
    let msg = e.to_string();
    prop_assert!(msg.contains(&task.name) && msg.contains(file), "{msg}");
    Ok(false)
}

fn target(
    name: &'static str,
    tasks: &[&str],
    file: &'static str,
    seeds: &'static [&'static [u8]],
    json: bool,
    jsonl: bool,
) {
    let tasks: Vec<Task> = tasks.iter().map(|t| task(t)).collect();
    let strategy = (fuzz::input(seeds, json, jsonl), prop::sample::select(tasks));
    let counter = Counter::new(name);
    proptest!(fuzz::config(), |((bytes, task) in strategy)| {
        counter.hit(check(&task, file, &bytes)?);
    });
}

#[test]
fn fuzz_kobest_tsv() {
    let name = "kobest_tsv";
    // Each task gets every seed: the wrong columns for a task must be an error too.
    const SEEDS: &[&[u8]] = &[
        seed!("kobest/BoolQ/test.tsv"),
        seed!("kobest/COPA/test.tsv"),
        seed!("kobest/HellaSwag/test.tsv"),
        seed!("kobest/SentiNeg/test.tsv"),
        seed!("kobest/WiC/test.tsv"),
    ];
    let tasks = [
        "kobest_boolq",
        "kobest_copa",
        "kobest_hellaswag",
        "kobest_sentineg",
        "kobest_wic",
    ];
    target(name, &tasks, "test.tsv", SEEDS, false, false);
}

#[test]
fn fuzz_kmmlu_csv() {
    let name = "kmmlu_csv";
    const SEEDS: &[&[u8]] = &[
        seed!("kmmlu/Math-test.csv"),
        seed!("kmmlu/Criminal-Law-dev.csv"),
    ];
    target(name, &["kmmlu_math"], "Math-test.csv", SEEDS, false, false);
}

#[test]
fn fuzz_kmmlu_json() {
    let name = "kmmlu_json";
    const SEEDS: &[&[u8]] = &[
        r#"[{"question": " 1+2는? ", "answer": 3, "A": "1", "B": "2", "C": "3", "D": "4", "Category": "Math", "Human Accuracy": 0.5}, {"question": "x", "answer": 1.0, "A": "a", "B": "b", "C": "c", "D": "d"}]"#
            .as_bytes(),
    ];
    target(name, &["kmmlu_math"], "Math-test.json", SEEDS, true, false);
}

#[test]
fn fuzz_haerae_jsonl() {
    let name = "haerae_jsonl";
    const SEEDS: &[&[u8]] = &[
        seed!("haerae/history.jsonl"),
        seed!("haerae/loan_words.jsonl"),
    ];
    target(
        name,
        &["haerae_history"],
        "history.jsonl",
        SEEDS,
        false,
        true,
    );
}

#[test]
fn fuzz_haerae_json() {
    let name = "haerae_json";
    const SEEDS: &[&[u8]] = &[
        r#"[{"query": "q?\n### 정답:", "options": "['1', '2']", "answer": "(B)"}, {"query": "r", "answer": "(E)"}]"#
            .as_bytes(),
    ];
    target(
        name,
        &["haerae_history"],
        "history.json",
        SEEDS,
        true,
        false,
    );
}
