//! Parity with lm-evaluation-harness on the tiny fixture model: contexts, token ids,
//! per-choice log-likelihoods (<= 1e-4), predictions and metrics against
//! `fixtures/eval/reference.json` (written by `fixtures/eval/make_eval_reference.py`), zero- and
//! 2-shot, with both scoring strategies, on every compiled-in CPU backend.

use std::path::PathBuf;

use ember_backend::{AutodiffBackend, BackendOp};
use ember_eval::sources::ModelSpec;
use ember_eval::{
    Encoder, EvalOptions, EvalReport, PeftAdapterLoader, Prepared, Strategy, evaluate, load_scorer,
    prepare, select,
};
use ember_testing::{for_each_backend, max_abs_diff};
use serde_json::Value;

fn root() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
}

fn reference() -> Value {
    let path = root().join("fixtures/eval/reference.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).expect("reference.json parses")
}

fn prepared(num_fewshot: usize) -> Prepared {
    // `kmmlu` with skip_missing: the fixture has two subjects; the group averages what ran.
    let sel = select(&["kobest", "kmmlu", "haerae"]).expect("known groups");
    let enc = Encoder::from_file(root().join("fixtures/tiny/qwen3-tiny/tokenizer.json"))
        .expect("tokenizer");
    let opts = EvalOptions {
        num_fewshot,
        skip_missing: true,
        ..Default::default()
    };
    prepare(&sel, &root().join("fixtures/eval/data"), &enc, &opts).expect("fixture data prepares")
}

fn run(reference: &Value, k: usize) -> &Value {
    reference["runs"]
        .as_array()
        .and_then(|runs| {
            runs.iter()
                .find(|r| r["num_fewshot"] == k && r["adapter"].is_null())
        })
        .unwrap_or_else(|| panic!("no {k}-shot run in the reference"))
}

fn ids(v: &Value) -> Vec<Vec<u32>> {
    serde_json::from_value(v.clone()).expect("token id lists")
}

#[test]
fn contexts_and_token_ids_match_lm_eval() {
    let reference = reference();
    for k in [0, 2] {
        let expected = &run(&reference, k)["tasks"];
        let p = prepared(k);
        let names: Vec<&str> = p.tasks.iter().map(|t| t.task.name.as_str()).collect();
        let mut want: Vec<&str> = expected
            .as_object()
            .expect("tasks")
            .keys()
            .map(String::as_str)
            .collect();
        want.sort_unstable();
        let mut got = names.clone();
        got.sort_unstable();
        assert_eq!(got, want, "{k}-shot: evaluated tasks");
        for t in &p.tasks {
            let docs = expected[&t.task.name]["docs"].as_array().expect("docs");
            assert_eq!(
                t.docs.len(),
                docs.len(),
                "{k}-shot {}: number of documents",
                t.task.name
            );
            for (d, e) in t.docs.iter().zip(docs) {
                let at = format!("{k}-shot {} doc {}", t.task.name, e["doc_id"]);
                assert_eq!(
                    Some(d.context.as_str()),
                    e["context"].as_str(),
                    "{at}: context"
                );
                let conts: Vec<String> = d.doc.choices.iter().map(|c| format!(" {c}")).collect();
                let want_conts: Vec<String> =
                    serde_json::from_value(e["continuations"].clone()).expect("strings");
                assert_eq!(conts, want_conts, "{at}: continuations");
                let ctx: Vec<Vec<u32>> = d.requests.iter().map(|r| r.context.clone()).collect();
                let cont: Vec<Vec<u32>> =
                    d.requests.iter().map(|r| r.continuation.clone()).collect();
                assert_eq!(ctx, ids(&e["context_enc"]), "{at}: context tokens");
                assert_eq!(
                    cont,
                    ids(&e["continuation_enc"]),
                    "{at}: continuation tokens"
                );
            }
        }
    }
}

struct Score {
    prepared: Prepared,
    strategy: Strategy,
    adapter: Option<PathBuf>,
}

impl BackendOp for Score {
    type Output = EvalReport;
    fn run<B: AutodiffBackend>(self, device: B::Device) -> EvalReport {
        let base = root().join("fixtures/tiny/qwen3-tiny");
        let spec = match self.adapter {
            Some(dir) => ModelSpec::with_adapter(base, dir),
            None => ModelSpec::base(base),
        };
        let scorer = load_scorer::<B::InnerBackend>(&spec, &PeftAdapterLoader, &device)
            .expect("tiny model loads");
        let mut scorer = scorer.with_strategy(self.strategy);
        evaluate(&mut scorer, &self.prepared, "base", &EvalOptions::default())
            .expect("evaluation runs")
    }
}

fn assert_matches(report: &EvalReport, expected: &Value, at: &str) {
    for t in &report.tasks {
        let e = &expected["tasks"][&t.name];
        let docs = e["docs"].as_array().expect("docs");
        for (d, ed) in t.docs.iter().zip(docs) {
            let lls: Vec<f64> = serde_json::from_value(ed["lls"].clone()).expect("lls");
            let greedy: Vec<bool> =
                serde_json::from_value(ed["is_greedy"].clone()).expect("is_greedy");
            let diff = max_abs_diff(&d.lls, &lls);
            assert!(
                diff <= 1e-4,
                "{at} {} doc {}: lls {:?} vs lm-eval {lls:?}",
                t.name,
                d.doc,
                d.lls
            );
            assert_eq!(
                d.is_greedy, greedy,
                "{at} {} doc {}: is_greedy",
                t.name, d.doc
            );
            let pred = ember_eval::metrics::argmax(&lls);
            assert_eq!(d.pred, pred, "{at} {} doc {}: prediction", t.name, d.doc);
            if let Some(acc) = ed["acc"].as_f64() {
                assert_eq!(d.acc(), acc, "{at} {} doc {}: acc", t.name, d.doc);
            }
        }
        assert_eq!(
            Some(t.samples as u64),
            e["samples"].as_u64(),
            "{at} {}: samples",
            t.name
        );
        let want = e["metrics"].as_object().expect("metrics");
        assert_eq!(
            t.metrics.len(),
            want.len(),
            "{at} {}: metric names {:?}",
            t.name,
            t.metrics
        );
        for (m, v) in &t.metrics {
            let w = want[m].as_f64().unwrap_or(f64::NAN);
            assert!(
                max_abs_diff(&[*v], &[w]) < 1e-12,
                "{at} {} {m}: {v} vs lm-eval {w}",
                t.name
            );
        }
    }
    for (name, e) in expected["groups"].as_object().expect("groups") {
        let g = report
            .groups
            .iter()
            .find(|g| &g.name == name)
            .unwrap_or_else(|| panic!("{at}: group {name} not reported"));
        for (m, w) in e["metrics"].as_object().expect("metrics") {
            let v = g.metrics.get(m).copied().unwrap_or(f64::NAN);
            let w = w.as_f64().unwrap_or(f64::NAN);
            assert!(
                max_abs_diff(&[v], &[w]) < 1e-12,
                "{at} group {name} {m}: {v} vs lm-eval {w}"
            );
        }
    }
}

#[test]
fn scores_match_lm_eval_on_every_cpu_backend() {
    let reference = reference();
    for k in [0, 2] {
        let expected = run(&reference, k);
        let p = prepared(k);
        // 700 tokens per forward: several packs, and the truncated BoolQ document alone in one.
        for strategy in [Strategy::Packed { max_tokens: 700 }, Strategy::PerRequest] {
            let outs = for_each_backend(|| Score {
                prepared: p.clone(),
                strategy,
                adapter: None,
            });
            assert!(!outs.is_empty(), "no CPU backend compiled in");
            for (backend, report) in outs {
                assert_matches(
                    &report,
                    expected,
                    &format!("{backend} {strategy:?} {k}-shot"),
                );
            }
        }
    }
}

#[test]
fn scores_with_a_peft_adapter_match_lm_eval() {
    let reference = reference();
    let expected = reference["runs"]
        .as_array()
        .and_then(|runs| runs.iter().find(|r| !r["adapter"].is_null()))
        .expect("an adapter run in reference.json");
    let adapter = root().join(expected["adapter"].as_str().expect("adapter path"));
    let p = prepared(0);
    for (backend, report) in for_each_backend(|| Score {
        prepared: p.clone(),
        strategy: Strategy::Packed { max_tokens: 700 },
        adapter: Some(adapter.clone()),
    }) {
        assert_matches(&report, expected, &format!("{backend} with adapter"));
    }
    // The adapter changes the scores: the comparison above is not the base run's again.
    let base = run(&reference, 0);
    let task = "kobest_copa";
    assert_ne!(
        base["tasks"][task]["docs"][0]["lls"], expected["tasks"][task]["docs"][0]["lls"],
        "the adapter run must differ from the base run"
    );
}

ember_testing::backend_coverage_test!();

#[test]
fn a_zero_limit_is_refused_not_a_table_of_nan() {
    let sel = select(&["kobest"]).expect("known group");
    let enc = Encoder::from_file(root().join("fixtures/tiny/qwen3-tiny/tokenizer.json"))
        .expect("tokenizer");
    let opts = EvalOptions {
        limit: Some(0),
        skip_missing: true,
        ..Default::default()
    };
    let err = prepare(&sel, &root().join("fixtures/eval/data"), &enc, &opts)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        err.contains("--limit") && err.contains("at least 1"),
        "{err}"
    );
}
