//! `cargo xtask finetune --backend wgpu` on the embedded demo (a few steps) gives flex's per-step
//! losses, and its PEFT adapter loads on flex and generates what flex's own adapter generates.
//!
//! Runs where the parity tests run on wgpu: when `EMBER_TEST_BACKENDS` lists it (as
//! `scripts/ci-wgpu.sh` sets it), like every parity test; otherwise it skips with a line on stderr
//! (the README's test command builds wgpu in but runs the CPU backends). A listed wgpu that this
//! build lacks is a failure; so is a missing Vulkan adapter when `EMBER_REQUIRE` lists `wgpu`.

use std::path::Path;
use std::process::{Command, Output};

use ember_backend::BackendChoice;
use ember_testing::{rel, skip_or_fail};

/// Steps trained on each backend: enough for the optimizer and scheduler to move the adapter
/// (warm-up included), few enough for lavapipe on 2 cores.
const STEPS: &str = "max_steps=3";
/// Per-step losses on wgpu vs flex, relative: both f32, differing in reduction order only. The
/// first two steps agree to 6e-8 on lavapipe; AdamW's first update is about lr * sign(g), so a
/// near-zero gradient component whose last bits differ moves a full step either way, and the third
/// step's loss differed by 8.4e-5. The same bound as ember-train's backend-swapping check.
const LOSS_TOL: f64 = 1e-4;

fn xtask(args: &[&str], dir: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run xtask")
}

fn finetune(backend: &str, out: &Path, dir: &Path) -> Output {
    let out_dir = format!("output_dir={}", out.display());
    xtask(
        &[
            "finetune",
            "--backend",
            backend,
            "--set",
            STEPS,
            "--set",
            &out_dir,
            "--set",
            "eval_strategy=no",
            "--set",
            "save_strategy=no",
            "--set",
            "plot_loss=false",
        ],
        dir,
    )
}

fn losses(run: &Path) -> Vec<f64> {
    let text = std::fs::read_to_string(run.join("trainer_log.jsonl")).expect("trainer_log.jsonl");
    text.lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("a JSON line"))
        .filter_map(|v| v["loss"].as_f64())
        .collect()
}

fn generate_on_flex(adapter: &Path, dir: &Path) -> String {
    let model = ember_testing::env::workspace_root().join("fixtures/tiny/qwen3-tiny");
    let out = xtask(
        &[
            "generate",
            "--backend",
            "flex",
            "--model",
            &model.display().to_string(),
            "--adapter",
            &adapter.display().to_string(),
            "--prompt",
            "면접 질문: 본인의 장점은",
            "--greedy",
            "--max-new-tokens",
            "12",
            "--json",
        ],
        dir,
    );
    assert!(
        out.status.success(),
        "generate with {adapter:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn the_demo_trains_on_wgpu_as_on_flex() {
    // selected() fails on a listed backend this build lacks, naming its feature.
    let selected = ember_testing::backends::selected();
    if !selected.iter().any(|b| matches!(b, BackendChoice::Wgpu(_))) {
        ember_testing::note("skipped: EMBER_TEST_BACKENDS does not list wgpu");
        return;
    }
    let tmp = tempfile::tempdir().expect("tmp");
    let (flex, wgpu) = (tmp.path().join("flex"), tmp.path().join("wgpu"));
    let out = finetune("wgpu", &wgpu, tmp.path());
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        if err.to_lowercase().contains("adapter") && !wgpu.join("trainer_log.jsonl").exists() {
            skip_or_fail("wgpu", &format!("no Vulkan adapter: {}", err.trim()));
            return;
        }
        panic!("finetune --backend wgpu failed: {err}");
    }
    let out = finetune("flex", &flex, tmp.path());
    assert!(
        out.status.success(),
        "finetune --backend flex failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (want, got) = (losses(&flex), losses(&wgpu));
    assert_eq!(got.len(), want.len(), "logged steps: {got:?} vs {want:?}");
    assert!(!want.is_empty(), "no loss logged");
    let worst = got
        .iter()
        .zip(&want)
        .map(|(a, b)| rel(*a, *b))
        .fold(0.0f64, f64::max);
    ember_testing::note(format!(
        "demo on wgpu: {} steps, losses within {worst:.1e} of flex's (relative)",
        got.len()
    ));
    assert!(
        worst <= LOSS_TOL,
        "wgpu losses {got:?} vs flex {want:?}: {worst:.2e}"
    );
    let (a, b) = (
        generate_on_flex(&wgpu, tmp.path()),
        generate_on_flex(&flex, tmp.path()),
    );
    assert_eq!(a, b, "the wgpu adapter generates differently on flex");
}
