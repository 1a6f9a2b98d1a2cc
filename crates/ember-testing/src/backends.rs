//! The backends the parity tests run on.
//!
//! `EMBER_TEST_BACKENDS` (comma-separated spellings, e.g. `flex,tch`, `wgpu`, or `cuda:0,tch-cuda:0`
//! on a GPU machine) is the exact list to run; a listed backend this build lacks is a failure, not
//! a skip (a crate whose `tch` or `wgpu` feature was not passed through to ember-backend would
//! otherwise test flex alone and pass; [`backend_coverage_test!`](crate::backend_coverage_test)
//! catches that per crate). Unset, the tests run on every compiled-in CPU backend.
//!
//! Each backend runs on the device its spelling names (`tch-cuda:0` on GPU 0, not the CPU): the
//! helpers hand that device to the test body.

pub use ember_backend::{AutodiffBackend, BackendOp};
use ember_backend::{BackendChoice, cpu_backends, run};

/// Runs `make_op()` on every backend of this run (see the module docs).
#[track_caller]
pub fn for_each_backend<Op: BackendOp>(
    make_op: impl FnMut() -> Op,
) -> Vec<(BackendChoice, Op::Output)> {
    run_on(selected(), make_op)
}

/// A tensor dtype a test needs from its backend beyond f32 (see [`for_each_backend_with`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Needs {
    /// bf16 tensors: everywhere but wgpu (WGSL/SPIR-V compute has no bf16 there).
    Bf16,
}

/// Whether `backend` supports what a test `needs`; `Err` is the reason it does not.
pub fn supports(backend: BackendChoice, needs: Needs) -> Result<(), &'static str> {
    match (needs, backend) {
        (Needs::Bf16, BackendChoice::Wgpu(_)) => Err("wgpu has no bf16"),
        _ => Ok(()),
    }
}

/// [`for_each_backend`] on the backends of this run that support `needs`; each one skipped is a
/// line on stderr with the reason. A run none of whose backends supports it (`wgpu` alone, for
/// bf16) runs nothing and returns no outputs: the test is skipped there, and runs where the run's
/// backends have it (flex and libtorch in the README's test command).
#[track_caller]
pub fn for_each_backend_with<Op: BackendOp>(
    needs: Needs,
    make_op: impl FnMut() -> Op,
) -> Vec<(BackendChoice, Op::Output)> {
    let test = std::thread::current()
        .name()
        .unwrap_or("this test")
        .to_string();
    let backends = selected()
        .into_iter()
        .filter(|&b| match supports(b, needs) {
            Ok(()) => true,
            Err(why) => {
                crate::note(format!("skipped {test} on {b}: {why}"));
                false
            }
        })
        .collect::<Vec<_>>();
    if backends.is_empty() {
        return Vec::new();
    }
    run_on(backends, make_op)
}

#[track_caller]
fn run_on<Op: BackendOp>(
    backends: Vec<BackendChoice>,
    mut make_op: impl FnMut() -> Op,
) -> Vec<(BackendChoice, Op::Output)> {
    assert!(!backends.is_empty(), "no backend to run on");
    backends
        .into_iter()
        .map(|b| match run(b, make_op()) {
            Ok(out) => (b, out),
            // selected() lists only compiled-in backends.
            Err(e) => unreachable!("{e}"),
        })
        .collect()
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

/// The backends this run's parity tests run on: `EMBER_TEST_BACKENDS` exactly, each of which
/// must be compiled in (else a panic naming the feature), or every compiled-in CPU backend.
#[track_caller]
pub fn selected() -> Vec<BackendChoice> {
    let asked = requested();
    if asked.is_empty() {
        return cpu_backends();
    }
    for b in &asked {
        assert!(
            b.is_compiled(),
            "EMBER_TEST_BACKENDS asks for `{b}` but this build lacks it: is the crate's `{}` \
             feature passed through to ember-backend (`--features {}`)?",
            b.feature(),
            b.feature()
        );
    }
    asked
}

/// Asserts that this crate's parity tests run on libtorch when the crate was built with its `tch`
/// feature (`crate_has_tch`, from [`backend_coverage_test!`](crate::backend_coverage_test)), and on
/// everything `EMBER_TEST_BACKENDS` asks for (each compiled in).
#[track_caller]
pub fn assert_backend_coverage(crate_has_tch: bool) {
    let ran = selected();
    assert!(!ran.is_empty(), "no backend to run on");
    if crate_has_tch && requested().is_empty() {
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

/// Runs the generic test body `$body::<B>(device)` (a `fn<B: AutodiffBackend>(B::Device)`) on
/// every backend of this run, through [`for_each_backend`], with the device the backend's
/// spelling names.
#[macro_export]
macro_rules! on_every_backend {
    ($body:ident) => {{
        struct Op;
        impl $crate::backends::BackendOp for Op {
            type Output = ();
            fn run<B: $crate::backends::AutodiffBackend>(self, device: B::Device) {
                $body::<B>(device)
            }
        }
        $crate::for_each_backend(|| Op);
    }};
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bf16_is_refused_on_wgpu_only() {
        assert!(supports(BackendChoice::Wgpu(None), Needs::Bf16).is_err());
        for b in [
            BackendChoice::Flex,
            BackendChoice::TchCpu,
            BackendChoice::TchCuda(0),
            BackendChoice::Cuda(0),
        ] {
            assert!(supports(b, Needs::Bf16).is_ok(), "{b}");
        }
    }

    #[test]
    fn the_default_list_is_the_compiled_cpu_backends() {
        if requested().is_empty() {
            assert_eq!(selected(), cpu_backends());
        } else {
            assert_eq!(selected(), requested());
        }
    }
}
