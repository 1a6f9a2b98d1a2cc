//! The backends the parity tests run on.
//!
//! Every compiled-in CPU backend, checked against what the run asks for: `EMBER_TEST_BACKENDS`
//! (comma-separated spellings, e.g. `flex,tch`; `.ci/run` sets it) must all have run. A crate
//! whose `tch` feature was not passed through to ember-backend would otherwise test flex alone and
//! pass; [`backend_coverage_test!`](crate::backend_coverage_test) catches that per crate.

pub use ember_backend::{AutodiffBackend, BackendOp};
use ember_backend::{BackendChoice, cpu_backends, for_each_cpu_backend};

/// Runs `make_op()` on every compiled-in CPU backend, then asserts the run covered every backend
/// the run asks for (see the module docs).
#[track_caller]
pub fn for_each_backend<Op: BackendOp>(
    make_op: impl FnMut() -> Op,
) -> Vec<(BackendChoice, Op::Output)> {
    let outs = for_each_cpu_backend(make_op);
    let ran: Vec<_> = outs.iter().map(|(b, _)| *b).collect();
    assert_covers(&ran);
    outs
}

/// The backends `EMBER_TEST_BACKENDS` names (empty when unset); panics on a bad spelling.
pub fn requested() -> Vec<BackendChoice> {
    let Ok(list) = std::env::var("EMBER_TEST_BACKENDS") else {
        return Vec::new();
    };
    list.split(',')
        .filter(|s| !s.trim().is_empty())
        .map(|s| {
            s.parse()
                .unwrap_or_else(|e| panic!("EMBER_TEST_BACKENDS: {e}"))
        })
        .collect()
}

#[track_caller]
fn assert_covers(ran: &[BackendChoice]) {
    assert!(!ran.is_empty(), "no backend ran");
    for want in requested() {
        assert!(
            ran.contains(&want),
            "EMBER_TEST_BACKENDS asks for `{want}` but the tests ran on {ran:?}: is the crate's \
             `{}` feature passed through to ember-backend?",
            want.feature()
        );
    }
}

/// Asserts that this crate's parity tests run on libtorch when the crate was built with its `tch`
/// feature (`crate_has_tch`, from [`backend_coverage_test!`](crate::backend_coverage_test)), and on
/// everything `EMBER_TEST_BACKENDS` asks for.
#[track_caller]
pub fn assert_backend_coverage(crate_has_tch: bool) {
    let ran = cpu_backends();
    assert_covers(&ran);
    if crate_has_tch {
        assert!(
            ran.contains(&BackendChoice::TchCpu),
            "built with `--features tch` but the parity tests run on {ran:?} only"
        );
    }
}

/// Defines a test asserting that the calling crate's parity tests run on libtorch under its `tch`
/// feature (the `cfg!` is evaluated in the calling crate, which is the point).
#[macro_export]
macro_rules! backend_coverage_test {
    () => {
        #[test]
        fn parity_tests_run_on_every_compiled_backend() {
            $crate::assert_backend_coverage(cfg!(feature = "tch"));
        }
    };
}

/// Runs the generic test body `$body::<B>()` (a `fn<B: AutodiffBackend>()`) on every compiled-in
/// CPU backend, through [`for_each_backend`].
#[macro_export]
macro_rules! on_every_backend {
    ($body:ident) => {{
        struct Op;
        impl $crate::backends::BackendOp for Op {
            type Output = ();
            fn run<B: $crate::backends::AutodiffBackend>(self, _device: B::Device) {
                $body::<B>()
            }
        }
        $crate::for_each_backend(|| Op);
    }};
}
