//! Run-time choice of the Burn backend and device.
//!
//! All model and training code in ember is generic over `B: AutodiffBackend`. This crate is the one
//! place that turns a user's `--backend` string into a concrete backend type and calls that generic
//! code with it, so the CLI and the tests pick backends the same way.
//!
//! | spelling      | backend                             | cargo feature |
//! |---------------|-------------------------------------|---------------|
//! | `flex`        | `Autodiff<Flex>` (pure-Rust CPU)    | `flex`        |
//! | `tch`         | `Autodiff<LibTorch>` on the CPU     | `tch`         |
//! | `tch-cuda:N`  | `Autodiff<LibTorch>` on CUDA GPU N  | `tch`         |
//! | `cuda:N`      | `Autodiff<Cuda>` (CubeCL) on GPU N  | `cuda`        |

use std::fmt;
use std::str::FromStr;

pub use burn::tensor::backend::{AutodiffBackend, Backend};

/// Errors from choosing a backend.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    #[error("unknown backend `{0}`: expected one of flex, tch, tch-cuda:N, cuda:N")]
    Unknown(String),
    #[error(
        "backend `{name}` needs the cargo feature `{feature}`; rebuild with `--features {feature}`"
    )]
    NotCompiled { name: String, feature: &'static str },
}

/// A backend and device, as the user spells it on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BackendChoice {
    Flex,
    TchCpu,
    TchCuda(usize),
    Cuda(usize),
}

impl BackendChoice {
    /// The cargo feature that compiles this backend in.
    pub fn feature(&self) -> &'static str {
        match self {
            BackendChoice::Flex => "flex",
            BackendChoice::TchCpu | BackendChoice::TchCuda(_) => "tch",
            BackendChoice::Cuda(_) => "cuda",
        }
    }

    /// Whether this binary was built with the backend.
    pub fn is_compiled(&self) -> bool {
        match self {
            BackendChoice::Flex => cfg!(feature = "flex"),
            BackendChoice::TchCpu | BackendChoice::TchCuda(_) => cfg!(feature = "tch"),
            BackendChoice::Cuda(_) => cfg!(feature = "cuda"),
        }
    }

    /// The first compiled-in backend in the order flex, tch (the default for the CLI).
    pub fn default_compiled() -> BackendChoice {
        cpu_backends()
            .into_iter()
            .next()
            .unwrap_or(BackendChoice::Flex)
    }
}

impl Default for BackendChoice {
    fn default() -> Self {
        Self::default_compiled()
    }
}

impl fmt::Display for BackendChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BackendChoice::Flex => write!(f, "flex"),
            BackendChoice::TchCpu => write!(f, "tch"),
            BackendChoice::TchCuda(i) => write!(f, "tch-cuda:{i}"),
            BackendChoice::Cuda(i) => write!(f, "cuda:{i}"),
        }
    }
}

impl FromStr for BackendChoice {
    type Err = BackendError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let index = |rest: &str| -> Result<usize, BackendError> {
            rest.parse::<usize>()
                .map_err(|_| BackendError::Unknown(s.to_string()))
        };
        match s {
            "flex" | "cpu" => Ok(BackendChoice::Flex),
            "tch" | "tch-cpu" => Ok(BackendChoice::TchCpu),
            "tch-cuda" => Ok(BackendChoice::TchCuda(0)),
            "cuda" => Ok(BackendChoice::Cuda(0)),
            _ => {
                if let Some(rest) = s.strip_prefix("tch-cuda:") {
                    Ok(BackendChoice::TchCuda(index(rest)?))
                } else if let Some(rest) = s.strip_prefix("cuda:") {
                    Ok(BackendChoice::Cuda(index(rest)?))
                } else {
                    Err(BackendError::Unknown(s.to_string()))
                }
            }
        }
    }
}

/// Generic code to run on whichever backend the user chose.
///
/// A closure cannot be generic over a type, so callers implement this trait on a small struct that
/// carries the arguments.
pub trait BackendOp {
    type Output;
    fn run<B: AutodiffBackend>(self, device: B::Device) -> Self::Output;
}

#[cfg(feature = "flex")]
pub type FlexBackend = burn::backend::Autodiff<burn::backend::Flex>;
#[cfg(feature = "tch")]
pub type TchBackend = burn::backend::Autodiff<burn::backend::LibTorch<f32>>;
#[cfg(feature = "cuda")]
pub type CudaBackend = burn::backend::Autodiff<burn::backend::Cuda<f32, i32>>;

/// Runs `op` on the chosen backend, or says which feature is missing.
pub fn run<Op: BackendOp>(choice: BackendChoice, op: Op) -> Result<Op::Output, BackendError> {
    #[allow(unreachable_patterns)]
    match choice {
        #[cfg(feature = "flex")]
        BackendChoice::Flex => Ok(op.run::<FlexBackend>(burn::backend::flex::FlexDevice)),
        #[cfg(feature = "tch")]
        BackendChoice::TchCpu => {
            Ok(op.run::<TchBackend>(burn::backend::libtorch::LibTorchDevice::Cpu))
        }
        #[cfg(feature = "tch")]
        BackendChoice::TchCuda(i) => {
            Ok(op.run::<TchBackend>(burn::backend::libtorch::LibTorchDevice::Cuda(i)))
        }
        #[cfg(feature = "cuda")]
        BackendChoice::Cuda(i) => {
            Ok(op.run::<CudaBackend>(burn::backend::cuda::CudaDevice::new(i)))
        }
        other => Err(BackendError::NotCompiled {
            name: other.to_string(),
            feature: other.feature(),
        }),
    }
}

/// The CPU backends compiled into this build: what the parity tests run on.
pub fn cpu_backends() -> Vec<BackendChoice> {
    let mut v = Vec::new();
    if cfg!(feature = "flex") {
        v.push(BackendChoice::Flex);
    }
    if cfg!(feature = "tch") {
        v.push(BackendChoice::TchCpu);
    }
    v
}

/// Runs `make_op()` on every compiled-in CPU backend, returning `(backend, output)` pairs.
pub fn for_each_cpu_backend<Op: BackendOp>(
    mut make_op: impl FnMut() -> Op,
) -> Vec<(BackendChoice, Op::Output)> {
    cpu_backends()
        .into_iter()
        .map(|b| match run(b, make_op()) {
            Ok(out) => (b, out),
            // cpu_backends() lists only compiled-in backends, which `run` always accepts.
            Err(e) => unreachable!("{e}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_spelling() {
        assert_eq!(
            "flex".parse::<BackendChoice>().ok(),
            Some(BackendChoice::Flex)
        );
        assert_eq!(
            "tch".parse::<BackendChoice>().ok(),
            Some(BackendChoice::TchCpu)
        );
        assert_eq!(
            "tch-cuda:3".parse::<BackendChoice>().ok(),
            Some(BackendChoice::TchCuda(3))
        );
        assert_eq!(
            "cuda:1".parse::<BackendChoice>().ok(),
            Some(BackendChoice::Cuda(1))
        );
        for bad in ["gpu", "cuda:x", "tch-cuda:", ""] {
            assert!(
                bad.parse::<BackendChoice>().is_err(),
                "{bad} should be rejected"
            );
        }
    }

    #[test]
    fn display_round_trips() {
        for b in [
            BackendChoice::Flex,
            BackendChoice::TchCpu,
            BackendChoice::TchCuda(2),
            BackendChoice::Cuda(0),
        ] {
            assert_eq!(b.to_string().parse::<BackendChoice>().ok(), Some(b));
        }
    }

    struct Sum;
    impl BackendOp for Sum {
        type Output = f32;
        fn run<B: AutodiffBackend>(self, device: B::Device) -> f32 {
            let t = burn::tensor::Tensor::<B, 1>::from_floats([1.0, 2.0, 3.5], &device);
            t.sum().into_scalar().elem()
        }
    }
    use burn::tensor::ElementConversion;

    #[test]
    fn runs_generic_code_on_every_cpu_backend() {
        let outs = for_each_cpu_backend(|| Sum);
        let ran: Vec<_> = outs.iter().map(|(b, _)| *b).collect();
        // Each compiled feature's backend ran, computed on its own device: the feature list is
        // spelled out here, not derived from cpu_backends().
        let want: Vec<_> = [
            (cfg!(feature = "flex"), BackendChoice::Flex),
            (cfg!(feature = "tch"), BackendChoice::TchCpu),
        ]
        .into_iter()
        .filter_map(|(on, b)| on.then_some(b))
        .collect();
        assert_eq!(ran, want);
        assert!(!ran.is_empty(), "no CPU backend compiled in");
        for (b, v) in outs {
            assert_eq!(v, 6.5, "backend {b}");
        }
        let names: Vec<String> = ran
            .iter()
            .map(|b| run(*b, Name).expect("compiled"))
            .collect();
        if cfg!(feature = "tch") {
            assert!(
                names.iter().any(|n| n.contains("libtorch")),
                "libtorch did not run: {names:?}"
            );
        }
    }

    struct Name;
    impl BackendOp for Name {
        type Output = String;
        fn run<B: AutodiffBackend>(self, device: B::Device) -> String {
            B::name(&device)
        }
    }

    #[test]
    fn missing_feature_is_named() {
        if !cfg!(feature = "cuda") {
            let err = run(BackendChoice::Cuda(0), Sum)
                .err()
                .map(|e| e.to_string());
            assert!(err.unwrap_or_default().contains("--features cuda"));
        }
    }
}
