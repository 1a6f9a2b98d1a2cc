//! The study end to end on the shipped tiny model: plan against the real run, nested subsets, a
//! sweep that is interrupted and resumed, report figures against `trainer_state.json`, benchmark
//! scores per checkpoint; and the Qwen3-8B plan of the reference study.

use std::path::{Path, PathBuf};

use ember_backend::AutodiffBackend;
use ember_study::bench::{self, BenchOptions};
use ember_study::plan::{PlanOptions, plan};
use ember_study::record::{ALL_RESULTS_FILE, RunRecord, RunStatus, status};
use ember_study::report::{
    BENCH_PNG, BEST_EVAL_PNG, EVAL_LOSS_PNG, REPORT_JSON, REPORT_MD, Report, TRAIN_LOSS_PNG,
};
use ember_study::sweep::{Outcome, Sweep, root_paths, train_run};
use ember_study::{Grid, StudyError};
use ember_train::report::Silent;
use ember_train::{FinetuneConfig, Run, TrainerState};

use ember_testing::on_every_backend;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A config file of the repository, its paths made absolute.
fn table(rel: &str) -> (toml::Table, PathBuf) {
    let path = root().join(rel);
    let mut t: toml::Table = std::fs::read_to_string(&path).unwrap().parse().unwrap();
    root_paths(&mut t, &root());
    (t, path)
}

fn config(rel: &str, overrides: &[&str]) -> FinetuneConfig {
    let (t, path) = table(rel);
    let ov: Vec<String> = overrides.iter().map(|s| s.to_string()).collect();
    FinetuneConfig::from_table(t, &path, &ov).unwrap()
}

/// Small, fast settings for the tiny study config.
const SMALL: &[&str] = &[
    "train.num_train_epochs=2",
    "train.per_device_train_batch_size=4",
    "train.gradient_accumulation_steps=1",
    "eval.eval_strategy=\"epoch\"",
    "output.save_strategy=\"epoch\"",
];

#[test]
fn qwen3_8b_reference_study_plan() {
    let cfg = config("fixtures/study/qwen3-8b.toml", &[]);
    for (n, per_epoch, total, ratio) in [
        (162, 6, 18, 0.072),
        (477, 15, 45, 0.213),
        (958, 30, 90, 0.428),
    ] {
        let opts = PlanOptions {
            samples: Some(n),
            tokens_per_sample: Some(6500),
            runtime_bytes: Some(0),
            ..Default::default()
        };
        let p = plan(&cfg, &opts).unwrap().plan;
        let b = &p.banner;
        assert_eq!(b.trainable_params, 43_646_976);
        assert_eq!(
            b.trainable_line,
            "trainable params: 43,646,976 || all params: 8,234,382,336 || trainable%: 0.5301"
        );
        assert_eq!(
            (b.plan.steps_per_epoch, b.plan.max_steps),
            (per_epoch, total),
            "{n} samples"
        );
        assert_eq!(b.train_tokens, n * 6500);
        assert!(
            ember_testing::max_abs_diff(&[b.tokens_per_param()], &[ratio]) < 5e-4,
            "{n}: {}",
            b.tokens_per_param()
        );
        println!("{p}");
        // bf16 weights of 8.19e9 parameters; 20 bytes per adapter parameter.
        assert_eq!(p.memory.weights, 8_190_735_360 * 2);
        assert_eq!(p.memory.adapter, 43_646_976 * 20);
        assert!(p.memory.peak < p.memory.peak_plain);
    }
    for (r, trainable) in [(8, 21_823_488u64), (32, 87_293_952)] {
        let cfg = config(
            "fixtures/study/qwen3-8b.toml",
            &[&format!("lora.lora_rank={r}")],
        );
        let opts = PlanOptions {
            samples: Some(162),
            ..Default::default()
        };
        assert_eq!(
            plan(&cfg, &opts).unwrap().plan.banner.trainable_params,
            trainable
        );
    }
}

#[test]
fn plan_equals_the_real_run() {
    on_every_backend!(plan_equals_the_real_run_on);
}

fn plan_equals_the_real_run_on<B: AutodiffBackend>(device: B::Device) {
    let cfg = config(
        "fixtures/study/finetune.toml",
        &[SMALL, &["train_samples=12"]].concat(),
    );
    let out = tempfile::tempdir().unwrap();
    let mut cfg = cfg;
    cfg.output.output_dir = out.path().join("run");
    let planned = plan(&cfg, &PlanOptions::default()).unwrap();
    let p = planned.plan;
    let run = Run::<B>::load(&cfg, &device).unwrap();
    let real = run.banner().unwrap();
    assert_eq!(p.banner.train_samples, 12);
    assert_eq!(p.banner.eval_samples, 16);
    assert_eq!(p.banner.plan, real.plan);
    assert_eq!(p.banner.warmup_steps, real.warmup_steps);
    assert_eq!(p.banner.trainable_line, real.trainable_line);
    assert_eq!(p.banner.train_tokens, real.train_tokens);
    assert_eq!(p.banner.supervised_tokens, real.supervised_tokens);
    let done = run.train(&mut Silent).unwrap();
    let st = &done.state;
    assert_eq!(st.global_step, p.banner.plan.max_steps);
    // Two full epochs: every training token twice.
    assert_eq!(st.num_input_tokens_seen, 2 * p.banner.train_tokens as u64);
    let evals = st
        .log_history
        .iter()
        .filter(|e| e.eval_loss.is_some())
        .count() as u64;
    assert_eq!(evals, p.evaluations);
    assert_eq!(
        ember_study::record::checkpoints(&cfg.output.output_dir).len() as u64,
        p.saves
    );
}

#[test]
fn subsets_are_nested() {
    let tok =
        ember_data::Tokenizer::from_file(root().join("fixtures/tiny/qwen3-tiny/tokenizer.json"))
            .unwrap();
    let load = |n: usize| {
        let cfg = config(
            "fixtures/study/finetune.toml",
            &[&format!("train_samples={n}")],
        );
        ember_data::load_sft(&cfg.data, &tok).unwrap()
    };
    let sets: Vec<_> = [26, 52, 104].into_iter().map(load).collect();
    for w in sets.windows(2) {
        assert!(w[0].train.len() < w[1].train.len());
        assert!(
            w[0].train.iter().all(|e| w[1].train.contains(e)),
            "a smaller subset is not inside the larger"
        );
        assert_eq!(
            w[0].eval, w[1].eval,
            "the eval split must not change with train_samples"
        );
    }
    // And they are not all the same prefix of the file: the permutation is seeded.
    assert_eq!(sets[2].train.len(), 104);
}

fn approx(a: f64, b: f64) -> bool {
    ember_testing::rel(a, b) <= 1e-9 || ember_testing::max_abs_diff(&[a], &[b]) <= 1e-9
}

#[test]
fn interrupted_sweep_resumes_and_report_matches_trainer_state() {
    fn body<B: AutodiffBackend>(_device: B::Device) {
        interrupted_sweep_on::<B>().unwrap_or_else(|e| panic!("{e}"));
    }
    on_every_backend!(body);
}

fn interrupted_sweep_on<B: AutodiffBackend>() -> Result<(), StudyError> {
    let (t, path) = table("fixtures/study/finetune.toml");
    let out = tempfile::tempdir().unwrap();
    let sweep = Sweep {
        table: t,
        file: path,
        overrides: SMALL.iter().map(|s| s.to_string()).collect(),
        grid: Grid::parse(&["train_samples=8,16"])?,
        out: out.path().to_path_buf(),
    };
    let device = Default::default();
    let runs = sweep.runs()?;
    assert_eq!(runs.len(), 2);
    assert!(runs.iter().all(|r| r.status == RunStatus::NotStarted));

    // The first sweep stops after one run.
    let (o, _) = train_run::<B>(&sweep, &runs[0], &device, &mut Silent)?;
    assert_eq!(o, Outcome::Trained);
    let runs = sweep.runs()?;
    assert_eq!(runs[0].status, RunStatus::Finished);
    assert_eq!(runs[1].status, RunStatus::NotStarted);
    let first_state = std::fs::read_to_string(runs[0].dir.join("trainer_state.json")).unwrap();

    // The second run is interrupted after its first epoch: its final files and last checkpoint
    // are gone, checkpoint-4 (end of epoch 1 of 16 samples at batch 4) remains.
    let (_, full) = train_run::<B>(&sweep, &runs[1], &device, &mut Silent)?;
    let full = full.unwrap().state;
    assert_eq!(full.global_step, 8);
    let dir = runs[1].dir.clone();
    std::fs::remove_file(dir.join(ALL_RESULTS_FILE)).unwrap();
    std::fs::remove_dir_all(dir.join("checkpoint-8")).unwrap();
    assert_eq!(
        status(&dir),
        RunStatus::Interrupted {
            checkpoint: Some(4)
        }
    );

    // The sweep again: the finished run is skipped untouched, the interrupted one resumes.
    let runs = sweep.runs()?;
    let (o, _) = train_run::<B>(&sweep, &runs[0], &device, &mut Silent)?;
    assert_eq!(o, Outcome::Skipped);
    assert_eq!(
        std::fs::read_to_string(runs[0].dir.join("trainer_state.json")).unwrap(),
        first_state
    );
    let (o, resumed) = train_run::<B>(&sweep, &runs[1], &device, &mut Silent)?;
    assert_eq!(o, Outcome::Resumed(4));
    let resumed = resumed.unwrap().state;
    assert_eq!(status(&dir), RunStatus::Finished);
    assert_eq!(resumed.global_step, full.global_step);
    let steps = |s: &TrainerState| s.log_history.iter().map(|e| e.step).collect::<Vec<_>>();
    assert_eq!(steps(&resumed), steps(&full));
    // Resuming continues the same run bit for bit (docs/finetune.md).
    assert_eq!(
        resumed.losses(),
        full.losses(),
        "resumed vs uninterrupted losses"
    );

    // Report rows against each run's own files.
    let records: Vec<RunRecord> = sweep
        .runs()?
        .iter()
        .map(|r| RunRecord::load(&r.dir, 3))
        .collect::<Result<_, _>>()?;
    for (rec, n) in records.iter().zip([8usize, 16]) {
        let st = TrainerState::load(&rec.output_dir)?;
        let last = st.log_history.last().unwrap();
        assert_eq!(rec.planned.train_samples, n);
        assert_eq!(rec.planned.eval_samples, 16);
        assert_eq!(rec.total_steps, st.global_step);
        assert_eq!(rec.planned.steps_per_epoch as u64 * 2, st.max_steps);
        assert!(approx(rec.train_loss, last.train_loss.unwrap()));
        assert!(approx(rec.train_runtime, last.train_runtime.unwrap()));
        assert!(approx(
            rec.seconds_per_step,
            last.train_runtime.unwrap() / st.max_steps as f64
        ));
        let evals = st.eval_losses();
        let losses: Vec<f64> = evals.iter().map(|p| p.1).collect();
        ember_testing::assert_finite("eval losses", &losses);
        let min = losses.iter().copied().fold(f64::INFINITY, f64::min);
        assert!(approx(rec.best_eval_loss.unwrap(), min));
        assert_eq!(
            rec.best_eval_step,
            evals.iter().find(|p| p.1 == min).map(|p| p.0)
        );
        assert_eq!(rec.tokens_seen, st.num_input_tokens_seen);
        let results: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(rec.output_dir.join(ALL_RESULTS_FILE)).unwrap(),
        )
        .unwrap();
        assert!(approx(
            rec.final_eval_loss.unwrap(),
            results["eval_loss"].as_f64().unwrap()
        ));
        assert_eq!(rec.train_curve, st.losses());
        let ckpt = rec.analysis.recommended_checkpoint.clone().unwrap();
        assert!(rec.output_dir.join(&ckpt).is_dir(), "{ckpt} must exist");
    }

    // Benchmark scores per checkpoint (two KoBEST COPA documents), then the report.
    let base = root().join("fixtures/tiny/qwen3-tiny");
    let opts = BenchOptions {
        tasks: vec!["kobest_copa".into()],
        data_dir: root().join("fixtures/eval/data"),
        limit: Some(2),
        num_fewshot: 0,
        skip_missing: false,
        pack_tokens: 256,
    };
    let prepared = bench::prepare(&base, &opts)?;
    type Inner<B> = <B as AutodiffBackend>::InnerBackend;
    let table =
        bench::score_run::<Inner<B>>(&base, &records[1].output_dir, &prepared, &opts, &device)?;
    let labels: Vec<&str> = table.rows.iter().map(|r| r.model.as_str()).collect();
    assert_eq!(labels, ["checkpoint-4", "checkpoint-8", "final"]);
    let base_scores = bench::score_base::<Inner<B>>(&base, out.path(), &prepared, &opts, &device)?;
    let records: Vec<RunRecord> = sweep
        .runs()?
        .iter()
        .map(|r| RunRecord::load(&r.dir, 3))
        .collect::<Result<_, _>>()?;
    assert!(records[1].benchmarks.is_some() && records[0].benchmarks.is_none());
    let report = Report::new(
        sweep.grid.clone(),
        records,
        vec![],
        Some(base_scores),
        Some("kobest_copa/acc".into()),
    );
    assert_eq!(report.runs[1].analysis.recommended_by, "kobest_copa/acc");
    let written = report.write(out.path())?;
    for f in [
        REPORT_MD,
        REPORT_JSON,
        TRAIN_LOSS_PNG,
        EVAL_LOSS_PNG,
        BEST_EVAL_PNG,
        BENCH_PNG,
    ] {
        assert!(written.contains(&out.path().join(f)), "{f} not written");
    }
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.path().join(REPORT_JSON)).unwrap())
            .unwrap();
    assert_eq!(json["runs"][1]["total_steps"], 8);
    let md = std::fs::read_to_string(out.path().join(REPORT_MD)).unwrap();
    assert!(
        md.contains("| train_samples-16 | 16 / 16 | 4 | 8 |"),
        "{md}"
    );
    Ok(())
}

ember_testing::backend_coverage_test!();

#[test]
fn planning_with_too_few_tokens_per_sample_is_refused() {
    let cfg = config("fixtures/study/qwen3-8b.toml", &[]);
    for t in [0, 1] {
        let opts = PlanOptions {
            samples: Some(10),
            tokens_per_sample: Some(t),
            runtime_bytes: Some(0),
            ..Default::default()
        };
        let err = plan(&cfg, &opts)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            err.contains("--tokens-per-sample") && err.contains(&format!("got {t}")),
            "{t}: {err}"
        );
    }
}

#[test]
fn planning_past_cutoff_len_or_the_context_is_refused() {
    let cfg = config("fixtures/study/qwen3-8b.toml", &[]);
    let msg = |cfg: &FinetuneConfig, t: usize| {
        let opts = PlanOptions {
            samples: Some(10),
            tokens_per_sample: Some(t),
            runtime_bytes: Some(0),
            ..Default::default()
        };
        plan(cfg, &opts)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default()
    };
    let err = msg(&cfg, 10_001);
    assert!(
        err.contains("--tokens-per-sample 10001") && err.contains("cutoff_len = 10000"),
        "{err}"
    );
    assert_eq!(msg(&cfg, 10_000), "", "cutoff_len itself is a valid length");
    // cutoff_len past the model's 40,960 positions: the context is the limit.
    let long = config("fixtures/study/qwen3-8b.toml", &["data.cutoff_len=50000"]);
    let err = msg(&long, 45_000);
    assert!(
        err.contains("--tokens-per-sample 45000")
            && err.contains("max_position_embeddings = 40960"),
        "{err}"
    );
}
