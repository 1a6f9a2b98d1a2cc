//! AdamW + global clipping + cosine schedule against torch's trajectory
//! (`fixtures/optim/adamw_trajectory.json`), on every CPU backend.

use crate::common;

use burn::optim::{GradientsParams, Optimizer};
use burn::tensor::backend::AutodiffBackend;
use common::*;
use ember_backend::BackendOp;
use ember_optim::{AdamW, clip_grad_norm, trainable_params};
use ember_testing::for_each_backend;

// The errors come from ember_testing, which fails on NaN/inf, so `e > TOL` cannot let NaN through.
const TOL: f64 = 1e-6;

/// Runs the fixture's 20 steps and reports the worst relative errors (params, moments, grad norm)
/// and any step where something exceeds [`TOL`].
struct RunTrajectory;

#[derive(Debug, Default)]
struct Errors {
    params: f64,
    moments: f64,
    grad_norm: f64,
    failures: Vec<String>,
}

impl BackendOp for RunTrajectory {
    type Output = Errors;

    fn run<B: AutodiffBackend>(self, device: B::Device) -> Errors {
        let fx = trajectory();
        let spec = ToySpec::from_fixture(&fx);
        let mut module = spec.build::<B>(&device);
        let frozen_before = module.values(FROZEN);
        let mut opt = AdamW::<B>::new(fx.adamw_config());
        let mut sched = fx.scheduler();
        let mut errs = Errors::default();

        for (t, step) in fx.steps.iter().enumerate() {
            let lr = sched.lr();
            if lr != step.lr {
                errs.failures
                    .push(format!("step {t}: lr {lr} != torch {}", step.lr));
            }
            let mut grads = fixture_grads(&module, &fx, step, &device);
            let norm = clip_grad_norm(&module, &mut grads, fx.config.max_grad_norm);
            let e = ember_testing::rel(norm, step.grad_norm);
            errs.grad_norm = errs.grad_norm.max(e);
            if e > TOL {
                errs.failures.push(format!(
                    "step {t}: grad_norm {norm} vs torch {}",
                    step.grad_norm
                ));
            }
            module = opt.step(lr, module, grads);
            sched.step();

            for p in &fx.params {
                let e = max_rel_err(&module.values(&p.name), &step.params[&p.name]);
                errs.params = errs.params.max(e);
                if e > TOL {
                    errs.failures
                        .push(format!("step {t}: {} rel err {e:e}", p.name));
                }
                let (m, v) = moments::<B>(&opt, &p.name, p.shape.len());
                for (kind, ours, torch) in [
                    ("exp_avg", m, &step.exp_avg[&p.name]),
                    ("exp_avg_sq", v, &step.exp_avg_sq[&p.name]),
                ] {
                    let e = max_rel_err(&ours, torch);
                    errs.moments = errs.moments.max(e);
                    if e > TOL {
                        errs.failures
                            .push(format!("step {t}: {}.{kind} rel err {e:e}", p.name));
                    }
                }
                if opt.param_step(&p.name) != Some(t as u64 + 1) {
                    errs.failures
                        .push(format!("step {t}: {} step count", p.name));
                }
            }
        }
        // Frozen parameters are neither updated nor given state.
        if module.values(FROZEN) != frozen_before {
            errs.failures.push("frozen parameter changed".into());
        }
        if opt.param_step(FROZEN).is_some() || opt.state_paths().count() != fx.params.len() {
            errs.failures.push(format!(
                "state for {:?}",
                opt.state_paths().collect::<Vec<_>>()
            ));
        }
        errs
    }
}

fn moments<B: AutodiffBackend>(opt: &AdamW<B>, path: &str, rank: usize) -> (Vec<f32>, Vec<f32>) {
    let to_vec = |d: burn::tensor::TensorData| d.to_vec::<f32>().expect("f32 moments");
    match rank {
        1 => {
            let ember_optim::Moments {
                exp_avg: m,
                exp_avg_sq: v,
            } = opt.moments::<1>(path).expect("state");
            (to_vec(m.into_data()), to_vec(v.into_data()))
        }
        2 => {
            let ember_optim::Moments {
                exp_avg: m,
                exp_avg_sq: v,
            } = opt.moments::<2>(path).expect("state");
            (to_vec(m.into_data()), to_vec(v.into_data()))
        }
        r => panic!("rank {r}"),
    }
}

#[test]
fn adamw_clip_and_cosine_follow_torch_within_1e_6() {
    let fx = trajectory();
    assert!(fx.steps.iter().any(|s| s.clipped) && fx.steps.iter().any(|s| !s.clipped));
    let results = for_each_backend(|| RunTrajectory);
    assert!(!results.is_empty(), "no CPU backend compiled in");
    for (backend, errs) in results {
        println!(
            "{backend}: max rel err params {:e}, moments {:e}, grad_norm {:e}",
            errs.params, errs.moments, errs.grad_norm
        );
        assert!(errs.failures.is_empty(), "{backend}: {:#?}", errs.failures);
    }
}

/// The decay groups follow HF's rule: LoRA matrices decay, the bias and norm weight do not.
#[test]
fn decay_groups_match_the_fixture() {
    let fx = trajectory();
    struct Check;
    impl BackendOp for Check {
        type Output = Vec<(String, bool)>;
        fn run<B: AutodiffBackend>(self, device: B::Device) -> Self::Output {
            let fx = trajectory();
            let module = ToySpec::from_fixture(&fx).build::<B>(&device);
            let opt = AdamW::<B>::new(fx.adamw_config());
            trainable_params::<B, _>(&module)
                .into_iter()
                .map(|p| {
                    let decays = opt.decays(&p.path);
                    (p.path, decays)
                })
                .collect()
        }
    }
    for (backend, got) in for_each_backend(|| Check) {
        let want: Vec<_> = [LORA_A, LORA_B, BIAS, NORM]
            .iter()
            .map(|n| (n.to_string(), fx.param(n).decay))
            .collect();
        assert_eq!(
            got, want,
            "{backend}: trainable params in visiting order, frozen base left out"
        );
    }
}

/// A trainable parameter that got no gradient is skipped entirely (torch skips `p.grad is None`).
#[test]
fn parameter_without_gradient_is_untouched_and_stateless() {
    struct Op;
    impl BackendOp for Op {
        type Output = (bool, Option<u64>, Option<u64>);
        fn run<B: AutodiffBackend>(self, device: B::Device) -> Self::Output {
            let fx = trajectory();
            let module = ToySpec::from_fixture(&fx).build::<B>(&device);
            let before = module.values(NORM);
            let mut grads = fixture_grads(&module, &fx, &fx.steps[1], &device);
            grads.remove::<B::InnerBackend, 1>(module.norm.weight.id);
            let mut opt = AdamW::<B>::new(fx.adamw_config());
            let module = opt.step(0.1, module, grads);
            (
                module.values(NORM) == before,
                opt.param_step(NORM),
                opt.param_step(LORA_A),
            )
        }
    }
    for (backend, (same, norm_step, lora_step)) in for_each_backend(|| Op) {
        assert!(same, "{backend}");
        assert_eq!((norm_step, lora_step), (None, Some(1)), "{backend}");
    }
}

/// `max_grad_norm = 0` disables clipping (HF) but still reports the norm.
#[test]
fn zero_max_norm_reports_but_does_not_clip() {
    struct Op;
    impl BackendOp for Op {
        type Output = (f64, f64, Vec<f32>, Vec<f32>);
        fn run<B: AutodiffBackend>(self, device: B::Device) -> Self::Output {
            let fx = trajectory();
            let module = ToySpec::from_fixture(&fx).build::<B>(&device);
            let step = &fx.steps[0];
            let mut grads = fixture_grads(&module, &fx, step, &device);
            let norm = clip_grad_norm(&module, &mut grads, 0.0);
            let g = grads
                .get::<B::InnerBackend, 2>(module.layers[0].q_proj.lora_a.id)
                .expect("grad")
                .into_data()
                .to_vec::<f32>()
                .expect("f32");
            (norm, step.grad_norm, g, step.grads[LORA_A].clone())
        }
    }
    for (backend, (norm, torch_norm, g, g0)) in for_each_backend(|| Op) {
        assert!(torch_norm > 1.0, "fixture step 0 must exceed max_grad_norm");
        assert!(
            ember_testing::rel(norm, torch_norm) <= 1e-6,
            "{backend}: {norm}"
        );
        assert_eq!(g, g0, "{backend}: gradients must be untouched");
    }
}

/// Why burn-optim's `AdamW` is not reused. Configured like torch (eps 1e-8, same decay and betas,
/// our global clipping) its math is torch's: decay of the pre-update weight, eps added to
/// `sqrt(v_hat)`, the same bias corrections. But it rounds every scalar (betas, `1 - beta`,
/// `beta^t`) to f32, which on this trajectory puts it past the 1e-6 budget and an order of
/// magnitude further from torch than [`AdamW`]. (It also keys state by `ParamId`, which does not
/// survive a restart, and has no no-decay group.) Only decayed parameters are compared.
#[test]
fn burn_optim_adamw_is_further_from_torch() {
    struct Op;
    impl BackendOp for Op {
        type Output = (f64, f64);
        fn run<B: AutodiffBackend>(self, device: B::Device) -> (f64, f64) {
            let fx = trajectory();
            let spec = ToySpec::from_fixture(&fx);
            let mut ours_module = spec.build::<B>(&device);
            let mut burn_module = spec.build::<B>(&device);
            let mut ours = AdamW::<B>::new(fx.adamw_config());
            let mut burn = burn::optim::AdamWConfig::new()
                .with_beta_1(fx.config.betas[0] as f32)
                .with_beta_2(fx.config.betas[1] as f32)
                .with_epsilon(fx.config.eps as f32)
                .with_weight_decay(fx.config.weight_decay as f32)
                .init::<B, Toy<B>>();
            let mut sched = fx.scheduler();
            let (mut ours_err, mut burn_err) = (0f64, 0f64);
            for step in &fx.steps {
                let lr = sched.lr();
                let mut grads = fixture_grads(&ours_module, &fx, step, &device);
                clip_grad_norm(&ours_module, &mut grads, fx.config.max_grad_norm);
                ours_module = ours.step(lr, ours_module, grads);
                let mut grads: GradientsParams = fixture_grads(&burn_module, &fx, step, &device);
                clip_grad_norm(&burn_module, &mut grads, fx.config.max_grad_norm);
                burn_module = burn.step(lr, burn_module, grads);
                sched.step();
                for name in [LORA_A, LORA_B] {
                    let torch = &step.params[name];
                    ours_err = ours_err.max(max_rel_err(&ours_module.values(name), torch));
                    burn_err = burn_err.max(max_rel_err(&burn_module.values(name), torch));
                }
            }
            (ours_err, burn_err)
        }
    }
    for (backend, (ours, burn)) in for_each_backend(|| Op) {
        println!("{backend}: max rel err ember-optim {ours:e}, burn-optim {burn:e}");
        assert!(ours <= TOL, "{backend}: {ours:e}");
        assert!(
            burn > 5.0 * ours,
            "{backend}: burn-optim ({burn:e}) is now as close to torch as ours ({ours:e}); reconsider"
        );
    }
}
