//! Checkpoints: exact resume, crash safety under SIGKILL, save_total_limit keeping the best,
//! non-finite losses, and refusing checkpoints of a different run.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use ember_backend::{AutodiffBackend, BackendChoice, BackendOp};
use ember_train::{FinetuneConfig, Run, TrainError, TrainerState, report::Silent};

use ember_testing::on_every_backend;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A small run with dropout on and shuffling, saving every 2 steps: 20 train samples, batch 4 x
/// GA 2 = 3 steps per epoch (windows of 2, 2, 1 micro-batches), 9 steps in all.
fn config(out: &Path, extra: &[&str]) -> FinetuneConfig {
    let text = format!(
        r#"
[model]
model_name_or_path = "{model}"
[lora]
lora_rank = 4
lora_alpha = 8
lora_dropout = 0.1
lora_target = "all"
[data]
dataset_dir = "{data}"
dataset = "interview_ko"
cutoff_len = 256
val_size = 4
[train]
per_device_train_batch_size = 4
gradient_accumulation_steps = 2
num_train_epochs = 3
learning_rate = 5e-3
lr_scheduler_type = "cosine"
warmup_ratio = 0.1
weight_decay = 0.01
logging_steps = 1
[eval]
eval_strategy = "steps"
eval_steps = 2
per_device_eval_batch_size = 4
[output]
output_dir = "{out}"
save_strategy = "steps"
save_steps = 2
"#,
        model = root().join("fixtures/tiny/qwen3-tiny").display(),
        data = root().join("fixtures/demo").display(),
        out = out.display(),
    );
    let overrides: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
    FinetuneConfig::from_table(
        text.parse().expect("toml"),
        Path::new("test.toml"),
        &overrides,
    )
    .expect("config")
}

fn train<B: AutodiffBackend>(
    device: &B::Device,
    cfg: &FinetuneConfig,
) -> Result<ember_train::RunOutput, TrainError> {
    Run::<B>::load(cfg, device)?.train(&mut Silent)
}

fn adapter(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let bytes = std::fs::read(dir.join("adapter_model.safetensors")).expect("adapter");
    let st = safetensors::SafeTensors::deserialize(&bytes).expect("safetensors");
    st.tensors()
        .into_iter()
        .map(|(n, v)| (n, v.data().to_vec()))
        .collect()
}

fn checkpoints(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|r| {
            r.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.retain(|n| n.starts_with("checkpoint-"));
    v.sort();
    v
}

/// Keeps only what existed at `checkpoint-{step}`: later checkpoints and the final outputs go.
fn cut_back_to(dir: &Path, step: u64) {
    for name in checkpoints(dir) {
        let s: u64 = name["checkpoint-".len()..].parse().expect("step");
        if s > step {
            std::fs::remove_dir_all(dir.join(&name)).expect("remove");
        }
    }
    for f in [
        "adapter_model.safetensors",
        "adapter_config.json",
        "trainer_state.json",
        "all_results.json",
    ] {
        let _ = std::fs::remove_file(dir.join(f));
    }
}

fn train_loss(state: &TrainerState) -> f64 {
    state
        .log_history
        .last()
        .and_then(|e| e.train_loss)
        .expect("train_loss")
}

#[test]
fn resumed_run_equals_uninterrupted_run() {
    on_every_backend!(resumed_run_equals_uninterrupted_run_on);
}

fn resumed_run_equals_uninterrupted_run_on<B: AutodiffBackend>(device: B::Device) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    let full = train::<B>(&device, &config(&a, &[])).expect("uninterrupted run");
    assert_eq!(
        checkpoints(&a),
        [
            "checkpoint-2",
            "checkpoint-4",
            "checkpoint-6",
            "checkpoint-8",
            "checkpoint-9"
        ]
    );
    train::<B>(&device, &config(&b, &[])).expect("second run");
    for k in [2, 6] {
        cut_back_to(&b, k);
        let resumed = train::<B>(&device, &config(&b, &["resume_from_checkpoint=true"]))
            .expect("resumed run");
        assert_eq!(
            adapter(&a),
            adapter(&b),
            "final adapter after resuming from step {k}"
        );
        assert_eq!(
            train_loss(&full.state),
            train_loss(&resumed.state),
            "train_loss is the mean over the whole run"
        );
        let losses = |s: &TrainerState| {
            s.log_history
                .iter()
                .filter_map(|e| e.loss.map(|l| (e.step, l)))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            losses(&full.state),
            losses(&resumed.state),
            "log history after resuming from step {k}"
        );
    }
    // An explicit path works too, and an explicit incomplete directory is refused with the reason.
    cut_back_to(&b, 4);
    let ck = b.join("checkpoint-4");
    let ck_arg = format!("resume_from_checkpoint=\"{}\"", ck.display());
    train::<B>(&device, &config(&b, &[&ck_arg])).expect("resume from a path");
    assert_eq!(adapter(&a), adapter(&b));
    std::fs::remove_file(ck.join("optimizer.safetensors")).expect("break the checkpoint");
    let err = train::<B>(&device, &config(&b, &[&ck_arg]))
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        err.contains("cannot resume") && err.contains("optimizer.safetensors"),
        "{err}"
    );
}

/// DoRA (its magnitude and optimizer moments in the checkpoint, dropout 0.1 under recompute),
/// LoRA+ and a rank pattern resume exactly too; a resume that changes the variant is refused.
#[test]
fn adapter_variants_resume_exactly() {
    on_every_backend!(adapter_variants_resume_exactly_on);
}

fn adapter_variants_resume_exactly_on<B: AutodiffBackend>(device: B::Device) {
    const VARIANTS: [&str; 3] = [
        "use_dora=true",
        "loraplus_lr_ratio=8",
        "rank_pattern={down_proj=6}",
    ];
    let tmp = tempfile::tempdir().expect("tempdir");
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    train::<B>(&device, &config(&a, &VARIANTS)).expect("uninterrupted run");
    let saved = adapter(&a);
    assert!(
        saved
            .keys()
            .any(|k| k.ends_with("down_proj.lora_magnitude_vector")),
        "a DoRA adapter"
    );
    train::<B>(&device, &config(&b, &VARIANTS)).expect("second run");
    cut_back_to(&b, 4);
    let mut resume = VARIANTS.to_vec();
    resume.push("resume_from_checkpoint=true");
    train::<B>(&device, &config(&b, &resume)).expect("resumed run");
    assert_eq!(
        saved,
        adapter(&b),
        "final adapter after resuming from step 4"
    );
    cut_back_to(&b, 4);
    let err = train::<B>(
        &device,
        &config(
            &b,
            &[
                "loraplus_lr_ratio=8",
                "rank_pattern={down_proj=6}",
                "resume_from_checkpoint=true",
            ],
        ),
    )
    .err()
    .map(|e| e.to_string())
    .unwrap_or_default();
    assert!(err.contains("use_dora"), "{err}");
}

#[test]
fn a_checkpoint_of_another_run_is_refused_and_nothing_is_overwritten() {
    on_every_backend!(a_checkpoint_of_another_run_is_refused_and_nothing_is_overwritten_on);
}

fn a_checkpoint_of_another_run_is_refused_and_nothing_is_overwritten_on<B: AutodiffBackend>(
    device: B::Device,
) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let out = tmp.path().join("run");
    train::<B>(&device, &config(&out, &["num_train_epochs=1"])).expect("run");
    let before = adapter(&out);
    let err = train::<B>(
        &device,
        &config(
            &out,
            &[
                "num_train_epochs=1",
                "resume_from_checkpoint=true",
                "lora_rank=8",
            ],
        ),
    )
    .err()
    .map(|e| e.to_string())
    .unwrap_or_default();
    assert!(
        err.contains("different run") && err.contains("lora_rank: checkpoint 4 -> now 8"),
        "{err}"
    );
    let err = train::<B>(&device, &config(&out, &["num_train_epochs=1"]))
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        err.contains("already holds a run") && err.contains("overwrite_output_dir"),
        "{err}"
    );
    assert_eq!(
        before,
        adapter(&out),
        "a refused run must not touch the previous outputs"
    );
    // Starting over removes the old run's checkpoints, so a later resume cannot pick them up.
    train::<B>(
        &device,
        &config(&out, &["num_train_epochs=3", "overwrite_output_dir=true"]),
    )
    .expect("explicit overwrite");
    assert_eq!(
        checkpoints(&out).last().map(String::as_str),
        Some("checkpoint-9")
    );
    train::<B>(
        &device,
        &config(&out, &["num_train_epochs=1", "overwrite_output_dir=true"]),
    )
    .expect("explicit overwrite");
    assert_eq!(checkpoints(&out), ["checkpoint-2", "checkpoint-3"]);
}

#[test]
fn save_total_limit_keeps_the_newest_and_the_best() {
    on_every_backend!(save_total_limit_keeps_the_newest_and_the_best_on);
}

fn save_total_limit_keeps_the_newest_and_the_best_on<B: AutodiffBackend>(device: B::Device) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let out = tmp.path().join("run");
    // With greater_is_better the best "eval_loss" is the highest one: the first evaluation, since
    // the loss falls. So the best checkpoint is the oldest, and rotation must keep it.
    let r = train::<B>(
        &device,
        &config(
            &out,
            &[
                "save_total_limit=2",
                "greater_is_better=true",
                "load_best_model_at_end=true",
            ],
        ),
    )
    .expect("run");
    let evals: Vec<(u64, f64)> = r.state.eval_losses();
    ember_testing::assert_finite(
        "eval losses",
        &evals.iter().map(|e| e.1).collect::<Vec<_>>(),
    );
    let (best_step, best) = evals
        .iter()
        .copied()
        .fold((0, f64::MIN), |acc, e| if e.1 > acc.1 { e } else { acc });
    assert_eq!(r.state.best_metric, Some(best));
    assert_eq!(r.state.best_global_step, Some(best_step));
    let best_dir = out.join(format!("checkpoint-{best_step}"));
    assert_eq!(
        r.state.best_model_checkpoint.as_deref(),
        Some(best_dir.display().to_string().as_str())
    );
    let mut want = vec![
        format!("checkpoint-{best_step}"),
        format!("checkpoint-{}", r.state.global_step),
    ];
    want.sort();
    assert_eq!(checkpoints(&out), want);
    // load_best_model_at_end: the final adapter is the best checkpoint's.
    assert_eq!(adapter(&out), adapter(&best_dir));
    let saved = TrainerState::load(&out).expect("trainer_state.json");
    assert_eq!(saved.best_model_checkpoint, r.state.best_model_checkpoint);
}

#[test]
fn non_finite_loss_stops_with_a_clear_error_and_keeps_the_last_checkpoint() {
    on_every_backend!(non_finite_loss_stops_with_a_clear_error_and_keeps_the_last_checkpoint_on);
}

fn non_finite_loss_stops_with_a_clear_error_and_keeps_the_last_checkpoint_on<B: AutodiffBackend>(
    device: B::Device,
) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let out = tmp.path().join("run");
    // A huge learning rate sends the adapter to infinity after the first real update.
    let err = train::<B>(
        &device,
        &config(
            &out,
            &[
                "learning_rate=1e38",
                "warmup_ratio=0.0",
                "save_steps=1",
                "eval_strategy=\"no\"",
            ],
        ),
    )
    .expect_err("training must stop");
    let step = match &err {
        TrainError::NonFinite { step, .. } => *step,
        other => panic!("expected a non-finite error, got {other}"),
    };
    assert!(err.to_string().contains("non-finite"), "{err}");
    let kept = checkpoints(&out);
    assert_eq!(
        kept.last().map(String::as_str),
        Some(format!("checkpoint-{}", step - 1).as_str()),
        "{kept:?}"
    );
    let log = std::fs::read_to_string(out.join("trainer_log.jsonl")).expect("log");
    assert!(
        log.contains(&format!("at step {step}: training stopped")),
        "{log}"
    );
}

/// The child side of the kill test: trains into `EMBER_KILL_TEST_DIR` on the backend
/// `EMBER_KILL_TEST_BACKEND` (run by the parent only). The first run starts over; the resumed run
/// only asks to resume, so one that silently started over again would be refused or caught.
#[test]
#[ignore = "run as a child process by killed_runs_resume_to_the_same_adapter"]
fn child_training_run() {
    struct Child(PathBuf, bool);
    impl BackendOp for Child {
        type Output = ();
        fn run<B: AutodiffBackend>(self, device: B::Device) {
            let extra: &[&str] = if self.1 {
                &["resume_from_checkpoint=true"]
            } else {
                &["overwrite_output_dir=true"]
            };
            train::<B>(&device, &config(&self.0, extra)).expect("child run");
        }
    }
    if let Ok(dir) = std::env::var("EMBER_KILL_TEST_DIR") {
        let backend: BackendChoice = std::env::var("EMBER_KILL_TEST_BACKEND")
            .expect("EMBER_KILL_TEST_BACKEND")
            .parse()
            .expect("backend");
        let resume = std::env::var("EMBER_KILL_TEST_RESUME").is_ok();
        ember_backend::run(backend, Child(dir.into(), resume)).expect("compiled in");
    }
}

fn spawn_child<B: AutodiffBackend>(
    dir: &Path,
    resume: bool,
    slow_save_ms: Option<u64>,
) -> std::process::Child {
    // The harness names a test by its path without the crate: `checkpoints::child_training_run`.
    let module = module_path!().split_once("::").map_or("", |(_, m)| m);
    let test = format!("{module}::child_training_run");
    let mut cmd = std::process::Command::new(std::env::current_exe().expect("test binary"));
    cmd.args([test.as_str(), "--exact", "--ignored", "--quiet"])
        .env("EMBER_KILL_TEST_DIR", dir)
        .env("EMBER_KILL_TEST_BACKEND", backend_of::<B>().to_string())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    if resume {
        cmd.env("EMBER_KILL_TEST_RESUME", "1");
    }
    if let Some(ms) = slow_save_ms {
        cmd.env("EMBER_TEST_SLOW_CHECKPOINT_MS", ms.to_string());
    }
    cmd.spawn().expect("spawn child")
}

/// The backend of this run whose autodiff type is `B` (for the child process to run the same one).
fn backend_of<B: AutodiffBackend>() -> BackendChoice {
    struct Name;
    impl BackendOp for Name {
        type Output = String;
        fn run<B: AutodiffBackend>(self, device: B::Device) -> String {
            B::name(&device)
        }
    }
    let want = B::name(&Default::default());
    ember_testing::backends::selected()
        .into_iter()
        .find(|b| ember_backend::run(*b, Name).is_ok_and(|n| n == want))
        .unwrap_or_else(|| panic!("no backend of this run named {want}"))
}

/// The step numbers the JSONL log holds after its last "resumed from" note, and that note.
fn log_after_resume(dir: &Path) -> (Option<String>, Vec<u64>) {
    let text = std::fs::read_to_string(dir.join("trainer_log.jsonl")).expect("trainer_log.jsonl");
    let mut note = None;
    let mut steps = Vec::new();
    for line in text.lines() {
        let v: serde_json::Value = serde_json::from_str(line).expect("a JSON line");
        if let Some(n) = v["note"].as_str().filter(|n| n.starts_with("resumed from")) {
            note = Some(n.to_string());
            steps.clear();
        } else if v["loss"].is_number() {
            steps.push(v["current_steps"].as_u64().expect("current_steps"));
        }
    }
    (note, steps)
}

fn wait_for(mut cond: impl FnMut() -> bool, what: &str) {
    let t = Instant::now();
    while !cond() {
        assert!(
            t.elapsed() < Duration::from_secs(120),
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn killed_runs_resume_to_the_same_adapter() {
    on_every_backend!(killed_runs_resume_to_the_same_adapter_on);
}

fn killed_runs_resume_to_the_same_adapter_on<B: AutodiffBackend>(device: B::Device) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let reference = tmp.path().join("reference");
    train::<B>(&device, &config(&reference, &[])).expect("uninterrupted run");
    let want = adapter(&reference);
    let has = |dir: &Path, prefix: &str| {
        checkpoints_and_tmp(dir)
            .iter()
            .any(|n| n.starts_with(prefix))
    };
    // Kill points: right after checkpoint-2 exists; in the middle of writing checkpoint-4 (the
    // writer is slowed down there); and before any checkpoint at all.
    type KillPoint = Box<dyn Fn(&Path) -> bool>;
    let cases: Vec<(&str, Option<u64>, KillPoint)> = vec![
        (
            "after checkpoint-2",
            None,
            Box::new(move |d: &Path| has(d, "checkpoint-2")),
        ),
        (
            "during the save of checkpoint-4",
            Some(400),
            Box::new(move |d: &Path| has(d, ".tmp-checkpoint-4")),
        ),
        (
            "before any checkpoint",
            None,
            Box::new(|d: &Path| d.join("trainer_log.jsonl").exists()),
        ),
    ];
    for (i, (label, slow, point)) in cases.into_iter().enumerate() {
        let dir = tmp.path().join(format!("killed-{i}"));
        let mut child = spawn_child::<B>(&dir, false, slow);
        wait_for(|| point(&dir), label);
        child.kill().expect("SIGKILL");
        let _ = child.wait();
        assert!(
            !dir.join("all_results.json").exists(),
            "{label}: the run finished before the kill"
        );
        // Whatever was left is either a complete checkpoint or a hidden temporary directory.
        for name in checkpoints(&dir) {
            let ck = dir.join(&name);
            for f in [
                "adapter_model.safetensors",
                "optimizer.safetensors",
                "scheduler.json",
                "trainer_state.json",
                "ember_state.json",
            ] {
                assert!(ck.join(f).is_file(), "{label}: {name} lacks {f}");
            }
        }
        let newest = checkpoints(&dir).last().cloned();
        if newest.is_none() {
            // Nothing to resume: asking to is an error (as HF), and nothing is touched.
            let before = std::fs::read(dir.join("trainer_log.jsonl")).expect("log");
            let err = train::<B>(&device, &config(&dir, &["resume_from_checkpoint=true"]))
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(err.contains("no complete checkpoint"), "{label}: {err}");
            assert_eq!(
                std::fs::read(dir.join("trainer_log.jsonl")).ok(),
                Some(before)
            );
        }
        // Resume when there is a checkpoint; otherwise start over.
        let mut resumed = spawn_child::<B>(&dir, newest.is_some(), None);
        let status = resumed.wait().expect("resumed child");
        assert!(status.success(), "{label}: the resumed run failed");
        // It resumed from the newest complete checkpoint and did not re-run the steps before it.
        let (note, steps) = log_after_resume(&dir);
        let from: u64 = match &newest {
            Some(name) => {
                let n = name["checkpoint-".len()..].parse().expect("step");
                let note = note.unwrap_or_else(|| panic!("{label}: the log has no resume note"));
                assert!(
                    note.contains(&format!("{name} at step {n}")),
                    "{label}: resumed from the wrong place: {note}"
                );
                n
            }
            None => {
                assert!(
                    note.is_none(),
                    "{label}: resumed without a checkpoint: {note:?}"
                );
                0
            }
        };
        assert_eq!(
            steps,
            (from + 1..=9).collect::<Vec<_>>(),
            "{label}: steps logged by the resumed run (from checkpoint step {from})"
        );
        assert_eq!(
            adapter(&dir),
            want,
            "{label}: resumed adapter differs from the uninterrupted run"
        );
    }
}

fn checkpoints_and_tmp(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|r| {
            r.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

ember_testing::backend_coverage_test!();

/// Every file under `dir` with its bytes (the state a test must find unchanged).
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<PathBuf, Vec<u8>>) {
        for entry in std::fs::read_dir(dir).expect("read_dir") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                walk(root, &path, out);
            } else {
                let rel = path.strip_prefix(root).expect("under root").to_path_buf();
                out.insert(rel, std::fs::read(&path).expect("read"));
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

/// `overwrite_output_dir = true` with a new run that fails before saving anything: the previous
/// run is back as it was, and the error says so.
#[test]
fn a_failed_overwrite_leaves_the_previous_run_as_it_was() {
    on_every_backend!(a_failed_overwrite_leaves_the_previous_run_as_it_was_on);
}

fn a_failed_overwrite_leaves_the_previous_run_as_it_was_on<B: AutodiffBackend>(device: B::Device) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let out = tmp.path().join("run");
    train::<B>(&device, &config(&out, &["num_train_epochs=1"])).expect("previous run");
    let before = snapshot(&out);
    let err = train::<B>(
        &device,
        &config(
            &out,
            &[
                "overwrite_output_dir=true",
                "learning_rate=1e38",
                "warmup_ratio=0.0",
                "save_steps=5",
                "eval_strategy=\"no\"",
            ],
        ),
    )
    .expect_err("the new run fails at step 2");
    match &err {
        TrainError::PreviousRunKept { source, .. } => {
            assert!(matches!(**source, TrainError::NonFinite { .. }), "{err}")
        }
        other => panic!("expected the previous run kept, got {other}"),
    }
    assert!(err.to_string().contains("put back"), "{err}");
    assert_eq!(snapshot(&out), before, "the previous run must be as it was");
    // And a successful overwrite replaces it.
    train::<B>(
        &device,
        &config(&out, &["overwrite_output_dir=true", "num_train_epochs=1"]),
    )
    .expect("overwrite");
    assert!(!out.join(ember_train::previous::PREVIOUS_RUN_DIR).exists());
}

/// An overwrite killed before its first save: the previous run waits in `.previous-run/`, and the
/// next start in that directory puts it back as it was.
#[test]
fn a_killed_overwrite_gets_the_previous_run_back() {
    on_every_backend!(a_killed_overwrite_gets_the_previous_run_back_on);
}

fn a_killed_overwrite_gets_the_previous_run_back_on<B: AutodiffBackend>(device: B::Device) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("run");
    train::<B>(&device, &config(&dir, &[])).expect("previous run");
    let before = snapshot(&dir);
    // The child starts over (overwrite_output_dir) and is killed while its first checkpoint is
    // being written (slowed down to keep it there).
    let mut child = spawn_child::<B>(&dir, false, Some(60_000));
    wait_for(
        || dir.join(".tmp-checkpoint-2").exists(),
        "the first checkpoint's save",
    );
    child.kill().expect("SIGKILL");
    let _ = child.wait();
    let aside = dir.join(ember_train::previous::PREVIOUS_RUN_DIR);
    assert_eq!(snapshot(&aside), before, "set aside, unchanged");
    assert_eq!(
        ember_train::previous::recover(&dir).expect("recover"),
        Some(ember_train::previous::Recovered::Restored)
    );
    assert_eq!(
        snapshot(&dir),
        before,
        "the previous run must be back as it was"
    );
}
