//! LR sequences against `transformers.get_scheduler` (`fixtures/optim/lr_schedules.json`).
//!
//! Schedules are pure f64 arithmetic, independent of the tensor backend.

use crate::common;

use std::collections::BTreeSet;

use ember_optim::{OptimError, SchedulerArgs, SchedulerType};
use ember_testing::max_abs_diff;
use serde::Deserialize;

#[derive(Deserialize)]
struct Fixture {
    cases: Vec<Case>,
}

#[derive(Deserialize)]
struct Case {
    args: SchedulerArgs,
    learning_rate: f64,
    total_steps: u64,
    num_warmup_steps: u64,
    lrs: Vec<f64>,
}

fn cases() -> Vec<Case> {
    let text = std::fs::read_to_string(common::fixture_path("lr_schedules.json")).expect("fixture");
    serde_json::from_str::<Fixture>(&text)
        .expect("parses")
        .cases
}

/// Both sides evaluate the same f64 expressions in the same order, and Rust's `cos`/`powf` call
/// the same C library as CPython's `math.cos`/`**`, so every LR must be bit-identical.
#[test]
fn lr_sequences_equal_transformers() {
    let mut checked = 0;
    for case in cases() {
        let label = format!("{:?} T={}", case.args, case.total_steps);
        assert_eq!(
            case.args.warmup_steps_for(case.total_steps).unwrap(),
            case.num_warmup_steps,
            "{label}: warm-up steps"
        );
        let mut sched = case
            .args
            .build(case.learning_rate, case.total_steps)
            .unwrap();
        for (step, &want) in case.lrs.iter().enumerate() {
            let got = sched.lr();
            assert_eq!(
                got, want,
                "{label} step {step}: {got:e} vs transformers {want:e}"
            );
            checked += 1;
            sched.step();
        }
    }
    assert!(checked > 300, "only {checked} LRs checked");
}

#[test]
fn fixture_covers_every_schedule_and_the_reference_runs() {
    let cases = cases();
    let kinds: BTreeSet<String> = cases
        .iter()
        .map(|c| c.args.lr_scheduler_type.clone())
        .collect();
    for t in SchedulerType::ALL {
        assert!(kinds.contains(t.name()), "no fixture for {t}");
    }
    for total in [18, 45, 90] {
        assert!(cases.iter().any(|c| c.args.lr_scheduler_type == "cosine"
            && c.total_steps == total
            && c.args.warmup_ratio == 0.03
            && c.learning_rate == 2e-5));
    }
}

/// REFERENCE.md section 6: lr 2e-5, T=18, W=1 gives [0, 2.00e-5, 1.98e-5, 1.93e-5, ... 1.70e-7].
#[test]
fn reference_run_schedule_starts_at_zero() {
    let args = SchedulerArgs {
        lr_scheduler_type: "cosine".into(),
        warmup_ratio: 0.03,
        ..Default::default()
    };
    let mut s = args.build(2e-5, 18).unwrap();
    let lrs: Vec<f64> = (0..18)
        .map(|_| {
            let lr = s.lr();
            s.step();
            lr
        })
        .collect();
    assert_eq!(lrs[0], 0.0);
    assert_eq!(lrs[1], 2e-5);
    // REFERENCE.md quotes three significant digits.
    assert!(
        max_abs_diff(&lrs[2..4], &[1.98e-5, 1.93e-5]) < 5e-8,
        "{lrs:?}"
    );
    assert!(max_abs_diff(&lrs[17..18], &[1.70e-7]) < 5e-10, "{lrs:?}");
    let mean = lrs.iter().sum::<f64>() / 18.0;
    assert!(max_abs_diff(&[mean], &[1.0e-5]) < 1e-6, "mean {mean}");
}

#[test]
fn unknown_schedule_name_lists_the_valid_ones() {
    let args = SchedulerArgs {
        lr_scheduler_type: "cosine_with_restarts".into(),
        ..Default::default()
    };
    let err = args.build(1e-4, 10).unwrap_err();
    assert!(matches!(err, OptimError::UnknownScheduler { .. }));
    let msg = err.to_string();
    for t in SchedulerType::ALL {
        assert!(msg.contains(t.name()), "{msg}");
    }
}

#[test]
fn invalid_kwargs_are_rejected() {
    let build = |json: &str| {
        serde_json::from_str::<SchedulerArgs>(json)
            .unwrap()
            .build(1e-4, 10)
    };
    // cosine_with_min_lr needs exactly one of min_lr / min_lr_rate.
    assert!(build(r#"{"lr_scheduler_type":"cosine_with_min_lr"}"#).is_err());
    assert!(build(
        r#"{"lr_scheduler_type":"cosine_with_min_lr","lr_scheduler_kwargs":{"min_lr":1e-6,"min_lr_rate":0.1}}"#
    )
    .is_err());
    // polynomial's lr_end must be below the initial LR.
    assert!(
        build(r#"{"lr_scheduler_type":"polynomial","lr_scheduler_kwargs":{"lr_end":1e-3}}"#)
            .is_err()
    );
    // linear takes no kwargs.
    assert!(
        build(r#"{"lr_scheduler_type":"linear","lr_scheduler_kwargs":{"num_cycles":1}}"#).is_err()
    );
    // fractional warm-up counts above 1 are neither a count nor a ratio.
    assert!(build(r#"{"lr_scheduler_type":"linear","warmup_steps":2.5}"#).is_err());
}
