//! Smoke test on the real KoBEST and KMMLU files in `../shared/data` (skipped with its reason on
//! stderr when absent, a failure in CI): every file parses into the split sizes the sets publish, and a few
//! documents per task score on the tiny model, the same with and without prefix sharing. Prints
//! the timing of both strategies. Never writes there.

use std::path::{Path, PathBuf};
use std::time::Instant;

use ember_backend::{AutodiffBackend, BackendOp};
use ember_eval::data::{Split, load_docs};
use ember_eval::sources::ModelSpec;
use ember_eval::{
    Encoder, EvalOptions, EvalReport, NoAdapterLoader, Prepared, Strategy, evaluate, load_scorer,
    prepare, select,
};
use ember_testing::for_each_backend;

/// `../shared/data` (or `$EMBER_SHARED/data`) with KoBEST and KMMLU; otherwise a skip, or a
/// failure in CI.
fn shared() -> Option<PathBuf> {
    ember_testing::shared_dir(&["data/kobest", "data/kmmlu"]).map(|d| d.join("data"))
}

fn model_dir() -> PathBuf {
    PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../fixtures/tiny/qwen3-tiny"
    ))
}

#[test]
fn real_files_parse_to_the_published_split_sizes() {
    let Some(dir) = shared() else { return };
    let sel = select(&["kobest", "kmmlu_criminal_law"]).expect("known names");
    // Test / train sizes of the HF datasets (skt/kobest_v1 viewer; KMMLU Criminal-Law test).
    let sizes = [
        ("kobest_boolq", 1404, Some(3665)),
        ("kobest_copa", 1000, Some(3076)),
        ("kobest_hellaswag", 500, Some(2029)),
        ("kobest_sentineg", 397, Some(3649)),
        ("kobest_wic", 1260, Some(3318)),
        ("kmmlu_criminal_law", 200, None),
    ];
    for (name, test, train) in sizes {
        let task = sel.tasks.iter().find(|t| t.name == name).expect("selected");
        let (_, docs) = load_docs(task, &dir, Split::Eval).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(docs.len(), test, "{name} test documents");
        assert!(
            docs.iter().all(|d| d.gold < d.choices.len()),
            "{name}: gold in range"
        );
        if let Some(train) = train {
            let (_, pool) = load_docs(task, &dir, Split::FewShot).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(pool.len(), train, "{name} train documents");
        }
    }
}

struct Score {
    prepared: Prepared,
    strategy: Strategy,
}

impl BackendOp for Score {
    type Output = (EvalReport, f64);
    fn run<B: AutodiffBackend>(self, device: B::Device) -> (EvalReport, f64) {
        let spec = ModelSpec::base(model_dir());
        let scorer = load_scorer::<B::InnerBackend>(&spec, &NoAdapterLoader, &device)
            .expect("tiny model loads");
        let mut scorer = scorer.with_strategy(self.strategy);
        let t = Instant::now();
        let r =
            evaluate(&mut scorer, &self.prepared, "base", &EvalOptions::default()).expect("scores");
        (r, t.elapsed().as_secs_f64())
    }
}

fn prepare_real(dir: &Path, names: &[&str], limit: usize, num_fewshot: usize) -> Prepared {
    let sel = select(names).expect("known names");
    let enc = Encoder::from_file(model_dir().join("tokenizer.json")).expect("tokenizer");
    let opts = EvalOptions {
        limit: Some(limit),
        num_fewshot,
        ..Default::default()
    };
    prepare(&sel, dir, &enc, &opts).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn a_few_real_documents_score_the_same_with_prefix_sharing() {
    let Some(dir) = shared() else { return };
    let prepared = prepare_real(&dir, &["kobest", "kmmlu_criminal_law"], 3, 0);
    assert_eq!(prepared.tasks.len(), 6);
    let mut runs = Vec::new();
    for strategy in [Strategy::default(), Strategy::PerRequest] {
        let outs = for_each_backend(|| Score {
            prepared: prepared.clone(),
            strategy,
        });
        let (backend, (report, secs)) = outs.into_iter().next().expect("a CPU backend");
        println!(
            "{backend} {strategy:?}: {} requests in {secs:.2}s",
            prepared.num_requests()
        );
        runs.push(report);
    }
    let (packed, single) = (&runs[0], &runs[1]);
    for (a, b) in packed.tasks.iter().zip(&single.tasks) {
        assert_eq!(a.samples, 3, "{}", a.name);
        for (da, db) in a.docs.iter().zip(&b.docs) {
            let d = ember_testing::max_abs_diff(&da.lls, &db.lls);
            assert!(
                d <= 1e-4,
                "{} doc {}: {:?} vs {:?}",
                a.name,
                da.doc,
                da.lls,
                db.lls
            );
            assert_eq!(da.pred, db.pred);
        }
        for v in a.metrics.values() {
            assert!((0.0..=1.0).contains(v), "{}: {v}", a.name);
        }
    }
    assert!(
        packed
            .groups
            .iter()
            .any(|g| g.name == "kobest" && g.samples == 15)
    );
}

#[test]
fn kobest_few_shot_prompts_build_from_the_real_train_split() {
    let Some(dir) = shared() else { return };
    let prepared = prepare_real(&dir, &["kobest"], 2, 3);
    assert_eq!(prepared.tasks.len(), 5);
    for t in &prepared.tasks {
        for d in &t.docs {
            assert!(
                d.context.matches("\n\n").count() >= 3,
                "{}: 3 examples",
                t.task.name
            );
            assert!(d.context.ends_with(&d.doc.text), "{}", t.task.name);
        }
    }
}
