//! Saving optimizer + scheduler state mid-run and resuming in a "new process" (fresh module with
//! new `ParamId`s, fresh optimizer) must continue bit for bit; bad state must fail clearly.

use crate::common;

use std::path::Path;

use burn::tensor::backend::AutodiffBackend;
use common::*;
use ember_backend::BackendOp;
use ember_optim::{AdamW, LrScheduler, OptimError, clip_grad_norm};
use ember_testing::for_each_backend;

/// Runs fixture steps `range` on `module`, returning the module.
fn run_steps<B: AutodiffBackend>(
    fx: &Trajectory,
    range: std::ops::Range<usize>,
    mut module: Toy<B>,
    opt: &mut AdamW<B>,
    sched: &mut LrScheduler,
    device: &B::Device,
) -> Toy<B> {
    for step in &fx.steps[range] {
        let mut grads = fixture_grads(&module, fx, step, device);
        clip_grad_norm(&module, &mut grads, fx.config.max_grad_norm);
        module = opt.step(sched.lr(), module, grads);
        sched.step();
    }
    module
}

/// Everything observable about a run's end state, as raw bits.
fn snapshot<B: AutodiffBackend>(module: &Toy<B>, opt: &AdamW<B>) -> Vec<(String, Vec<u32>)> {
    let bits = |v: Vec<f32>| v.into_iter().map(f32::to_bits).collect::<Vec<_>>();
    let mut out = Vec::new();
    for name in [LORA_A, LORA_B, BIAS, NORM, FROZEN] {
        out.push((name.to_string(), bits(module.values(name))));
    }
    for name in [LORA_A, LORA_B] {
        let ember_optim::Moments {
            exp_avg: m,
            exp_avg_sq: v,
        } = opt.moments::<2>(name).expect("state");
        out.push((format!("{name}.m"), bits(m.into_data().to_vec().unwrap())));
        out.push((format!("{name}.v"), bits(v.into_data().to_vec().unwrap())));
    }
    for name in [BIAS, NORM] {
        let ember_optim::Moments {
            exp_avg: m,
            exp_avg_sq: v,
        } = opt.moments::<1>(name).expect("state");
        out.push((format!("{name}.m"), bits(m.into_data().to_vec().unwrap())));
        out.push((format!("{name}.v"), bits(v.into_data().to_vec().unwrap())));
    }
    out
}

struct Resume {
    split: usize,
}

impl BackendOp for Resume {
    type Output = (Vec<(String, Vec<u32>)>, Vec<(String, Vec<u32>)>, u64);

    fn run<B: AutodiffBackend>(self, device: B::Device) -> Self::Output {
        let fx = trajectory();
        let n = fx.steps.len();
        let spec = ToySpec::from_fixture(&fx);

        let mut opt = AdamW::<B>::new(fx.adamw_config());
        let mut sched = fx.scheduler();
        let straight = run_steps(
            &fx,
            0..n,
            spec.build::<B>(&device),
            &mut opt,
            &mut sched,
            &device,
        );
        let uninterrupted = snapshot(&straight, &opt);

        let dir = tempfile::tempdir().unwrap();
        let mut opt = AdamW::<B>::new(fx.adamw_config());
        let mut sched = fx.scheduler();
        let first = run_steps(
            &fx,
            0..self.split,
            spec.build::<B>(&device),
            &mut opt,
            &mut sched,
            &device,
        );
        opt.save(dir.path()).unwrap();
        sched.save(dir.path()).unwrap();
        // A new process: weights reloaded into a freshly built module, empty optimizer.
        let respec = first.respec(&spec);
        drop((first, opt, sched));
        let module = respec.build::<B>(&device);
        let mut opt = AdamW::<B>::new(fx.adamw_config());
        opt.load(dir.path(), &module).unwrap();
        let mut sched = LrScheduler::load(dir.path()).unwrap();
        let resumed_at = sched.step;
        let second = run_steps(&fx, self.split..n, module, &mut opt, &mut sched, &device);
        (uninterrupted, snapshot(&second, &opt), resumed_at)
    }
}

#[test]
fn save_load_midway_then_continue_is_bitwise_identical() {
    for split in [1, 7] {
        for (backend, (straight, resumed, at)) in for_each_backend(|| Resume { split }) {
            assert_eq!(at, split as u64, "{backend}: scheduler step restored");
            assert_eq!(
                straight, resumed,
                "{backend}: resumed after {split} steps differs"
            );
        }
    }
}

/// Each kind of bad state gives its own error naming the parameter.
struct BadState;

impl BackendOp for BadState {
    type Output = Vec<(String, Result<(), OptimError>)>;

    fn run<B: AutodiffBackend>(self, device: B::Device) -> Self::Output {
        let fx = trajectory();
        let spec = ToySpec::from_fixture(&fx);
        let dir = tempfile::tempdir().unwrap();
        let mut opt = AdamW::<B>::new(fx.adamw_config());
        let mut sched = fx.scheduler();
        let module = run_steps(
            &fx,
            0..3,
            spec.build::<B>(&device),
            &mut opt,
            &mut sched,
            &device,
        );
        opt.save(dir.path()).unwrap();
        let spec = module.respec(&spec);
        let load = |spec: &ToySpec, dir: &Path, config| {
            let module = spec.build::<B>(&device);
            AdamW::<B>::new(config).load(dir, &module)
        };
        let cfg = fx.adamw_config();
        let mut out = vec![("ok".to_string(), load(&spec, dir.path(), cfg))];

        let wrong_shape = spec.clone().set(LORA_A, vec![0.5; 20], vec![4, 5], true);
        out.push(("shape".into(), load(&wrong_shape, dir.path(), cfg)));

        let frozen_norm = spec.clone().set(NORM, vec![1.0; 6], vec![6], false);
        out.push(("unexpected".into(), load(&frozen_norm, dir.path(), cfg)));

        let base_trainable = spec.clone().set(FROZEN, vec![0.1; 36], vec![6, 6], true);
        out.push(("missing".into(), load(&base_trainable, dir.path(), cfg)));

        let other_cfg = ember_optim::AdamWConfig {
            weight_decay: 0.0,
            ..cfg
        };
        out.push(("config".into(), load(&spec, dir.path(), other_cfg)));

        let corrupt = tempfile::tempdir().unwrap();
        for f in [
            ember_optim::OPTIMIZER_JSON_FILE,
            ember_optim::OPTIMIZER_TENSORS_FILE,
        ] {
            std::fs::copy(dir.path().join(f), corrupt.path().join(f)).unwrap();
        }
        let st = corrupt.path().join(ember_optim::OPTIMIZER_TENSORS_FILE);
        let bytes = std::fs::read(&st).unwrap();
        std::fs::write(&st, &bytes[..bytes.len() / 2]).unwrap();
        out.push(("truncated".into(), load(&spec, corrupt.path(), cfg)));

        let empty = tempfile::tempdir().unwrap();
        out.push(("absent".into(), load(&spec, empty.path(), cfg)));
        out
    }
}

#[test]
fn bad_state_is_a_clear_error() {
    for (backend, results) in for_each_backend(|| BadState) {
        for (case, result) in results {
            let msg = result
                .as_ref()
                .err()
                .map(ToString::to_string)
                .unwrap_or_default();
            println!("{backend} {case}: {msg}");
            match case.as_str() {
                "ok" => assert!(result.is_ok(), "{backend}: {msg}"),
                "shape" => assert!(
                    matches!(&result, Err(OptimError::ShapeMismatch { name, state, param })
                        if name == LORA_A && state == &[4, 6] && param == &[4, 5]),
                    "{backend}: {msg}"
                ),
                "unexpected" => assert!(
                    matches!(&result, Err(OptimError::UnexpectedParam(p)) if p == NORM),
                    "{backend}: {msg}"
                ),
                "missing" => assert!(
                    matches!(&result, Err(OptimError::MissingParam(p)) if p == FROZEN),
                    "{backend}: {msg}"
                ),
                "config" => assert!(
                    matches!(result, Err(OptimError::ConfigMismatch { .. })),
                    "{backend}: {msg}"
                ),
                "truncated" => assert!(
                    matches!(result, Err(OptimError::Format { .. })),
                    "{backend}: {msg}"
                ),
                "absent" => assert!(
                    matches!(result, Err(OptimError::Io { .. })),
                    "{backend}: {msg}"
                ),
                other => panic!("case {other}"),
            }
        }
    }
}

#[test]
fn scheduler_state_round_trips_exactly() {
    let fx = trajectory();
    let mut sched = fx.scheduler();
    for _ in 0..5 {
        sched.step();
    }
    let dir = tempfile::tempdir().unwrap();
    sched.save(dir.path()).unwrap();
    let back = LrScheduler::load(dir.path()).unwrap();
    assert_eq!(back, sched);
    assert_eq!(back.lr().to_bits(), sched.lr().to_bits());
}
