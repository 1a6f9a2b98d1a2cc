//! Everything ember knows about Burn backends, in one place.
//!
//! All model and training code in ember is generic over `B: Backend` / `B: AutodiffBackend`. This
//! crate is the one place that names concrete backends:
//!
//! - [`BackendChoice`]: a backend and device as the user spells it (`--backend`), parsed and shown.
//! - [`run`] / [`BackendOp`]: call generic code with the concrete backend of a choice;
//!   [`cpu_backends`] / [`for_each_cpu_backend`]: every compiled-in CPU backend (the parity tests).
//! - [`dispatch_autodiff`] / [`AutodiffOp`]: ember's custom autodiff ops (chunked attention and
//!   loss in ember-qwen3) need the concrete `Autodiff<Inner>` type while the model is generic;
//!   this tells generic code whether `B` is one of ember's autodiff backends and hands it the inner
//!   backend. [`is_ember_autodiff`] asks only the question; [`same_type`] moves values across.
//! - [`layer_of`]: whether `B` is a given backend or the inner backend under it (how a
//!   backend-specific kernel, e.g. ember-qwen3's LibTorch flash attention, recognises its backend).
//!
//! | spelling      | backend                             | alias          | cargo feature |
//! |---------------|-------------------------------------|----------------|---------------|
//! | `flex`        | `Autodiff<Flex>` (pure-Rust CPU)    | `FlexBackend`  | `flex`        |
//! | `tch`         | `Autodiff<LibTorch>` on the CPU     | `TchBackend`   | `tch`         |
//! | `tch-cuda:N`  | `Autodiff<LibTorch>` on CUDA GPU N  | `TchBackend`   | `tch`         |
//! | `cuda:N`      | `Autodiff<Cuda>` (CubeCL) on GPU N  | `CudaBackend`  | `cuda`        |
//! | `wgpu`        | `Autodiff<Wgpu>` (CubeCL, Vulkan) on the default adapter | `WgpuBackend` | `wgpu` |
//! | `wgpu:N`      | `Autodiff<Wgpu>` on discrete GPU N  | `WgpuBackend`  | `wgpu`        |
//!
//! # Adding a backend
//!
//! 1. A cargo feature here enabling the burn feature (other crates forward theirs to it).
//! 2. A [`BackendChoice`] variant, with its spelling in `Display` and `FromStr` (and in
//!    [`BackendError::Unknown`]'s message).
//! 3. A row in the `backends!` table below: feature, alias, inner backend, and each variant's
//!    device. The aliases, [`BackendChoice::feature`], [`BackendChoice::is_compiled`], [`run`],
//!    [`cpu_backends`] and [`dispatch_autodiff`] all come from that table, so a variant without a
//!    row does not compile, and a backend in the table gets ember's custom autodiff ops.

// No unwrap/expect on anything a user controls: library code returns errors. An `expect` on an
// invariant the code itself establishes carries `#[allow(clippy::expect_used, reason = ...)]`.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

use std::any::{Any, TypeId};
use std::fmt;
use std::str::FromStr;

pub use burn::tensor::backend::{AutodiffBackend, Backend};

/// Errors from choosing a backend.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    #[error("unknown backend `{0}`: expected one of flex, tch, tch-cuda:N, cuda:N, wgpu, wgpu:N")]
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
    /// CubeCL on Vulkan: `None` is wgpu's default adapter (lavapipe on a machine without a GPU),
    /// `Some(n)` discrete GPU `n`.
    Wgpu(Option<usize>),
}

impl BackendChoice {
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
            BackendChoice::Wgpu(None) => write!(f, "wgpu"),
            BackendChoice::Wgpu(Some(i)) => write!(f, "wgpu:{i}"),
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
            "wgpu" => Ok(BackendChoice::Wgpu(None)),
            _ => {
                if let Some(rest) = s.strip_prefix("tch-cuda:") {
                    Ok(BackendChoice::TchCuda(index(rest)?))
                } else if let Some(rest) = s.strip_prefix("cuda:") {
                    Ok(BackendChoice::Cuda(index(rest)?))
                } else if let Some(rest) = s.strip_prefix("wgpu:") {
                    Ok(BackendChoice::Wgpu(Some(index(rest)?)))
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

/// Generates, from the backend table below, everything that lists ember's backends: the aliases,
/// [`BackendChoice::feature`] / [`BackendChoice::is_compiled`], [`run`], [`cpu_backends`] and
/// [`dispatch_autodiff`]. A row is `feature => Alias = Autodiff<Inner> { kind Variant => device }`,
/// `kind` being `cpu` (a parity-test backend; no device index) or `gpu`.
macro_rules! backends {
    (@cpu $v:ident, $feature:literal, cpu $variant:ident) => {
        if cfg!(feature = $feature) {
            $v.push(BackendChoice::$variant);
        }
    };
    (@cpu $v:ident, $feature:literal, gpu $variant:ident $(($index:ident))?) => {};
    ($(
        $(#[$attr:meta])*
        $feature:literal => $alias:ident = Autodiff<$inner:ty> {
            $($kind:ident $variant:ident $(($index:ident))? => $device:expr),+ $(,)?
        }
    )*) => {
        $(
            $(#[$attr])*
            #[cfg(feature = $feature)]
            pub type $alias = burn::backend::Autodiff<$inner>;
        )*

        impl BackendChoice {
            /// The cargo feature that compiles this backend in.
            pub fn feature(&self) -> &'static str {
                match self {
                    $($(BackendChoice::$variant { .. } => $feature,)+)*
                }
            }

            /// Whether this binary was built with the backend.
            pub fn is_compiled(&self) -> bool {
                match self {
                    $($(BackendChoice::$variant { .. } => cfg!(feature = $feature),)+)*
                }
            }
        }

        /// Runs `op` on the chosen backend, or says which feature is missing.
        pub fn run<Op: BackendOp>(choice: BackendChoice, op: Op) -> Result<Op::Output, BackendError> {
            #[allow(unreachable_patterns)]
            match choice {
                $($(
                    #[cfg(feature = $feature)]
                    BackendChoice::$variant $(($index))? => Ok(op.run::<$alias>($device)),
                )+)*
                other => Err(BackendError::NotCompiled {
                    name: other.to_string(),
                    feature: other.feature(),
                }),
            }
        }

        /// The CPU backends compiled into this build, in table order: what the parity tests run
        /// on.
        pub fn cpu_backends() -> Vec<BackendChoice> {
            let mut v = Vec::new();
            $($(backends!(@cpu v, $feature, $kind $variant $(($index))?);)+)*
            v
        }

        /// Runs `op` with the inner backend of `B` when `B` is one of ember's autodiff backends
        /// compiled into this build; gives `op` back otherwise.
        pub fn dispatch_autodiff<B: Backend, Op: AutodiffOp<B>>(op: Op) -> Result<Op::Output, Op> {
            $(
                #[cfg(feature = $feature)]
                if TypeId::of::<B>() == TypeId::of::<$alias>() {
                    return Ok(op.run::<$inner>());
                }
            )*
            Err(op)
        }
    };
}

// The backend table: the one list of ember's backends (see "Adding a backend" above).
backends! {
    /// Pure-Rust CPU backend.
    "flex" => FlexBackend = Autodiff<burn::backend::Flex> {
        cpu Flex => burn::backend::flex::FlexDevice,
    }
    /// LibTorch (f32) on the CPU or a CUDA GPU.
    "tch" => TchBackend = Autodiff<burn::backend::LibTorch<f32>> {
        cpu TchCpu => burn::backend::libtorch::LibTorchDevice::Cpu,
        gpu TchCuda(i) => burn::backend::libtorch::LibTorchDevice::Cuda(i),
    }
    /// CubeCL's CUDA backend.
    "cuda" => CudaBackend = Autodiff<burn::backend::Cuda<f32, i32>> {
        gpu Cuda(i) => burn::backend::cuda::CudaDevice::new(i),
    }
    /// CubeCL on Vulkan (SPIR-V), without fusion as cuda.
    "wgpu" => WgpuBackend = Autodiff<burn::backend::Wgpu<f32, i32>> {
        gpu Wgpu(i) => match i {
            None => burn::backend::wgpu::WgpuDevice::DefaultDevice,
            Some(n) => burn::backend::wgpu::WgpuDevice::DiscreteGpu(n),
        },
    }
}

/// Generic code that needs `B` as the concrete `Autodiff<I>` (a custom autodiff op), given to
/// [`dispatch_autodiff`].
///
/// Like [`BackendOp`], a struct carrying the arguments, since a closure cannot be generic over a
/// type.
pub trait AutodiffOp<B: Backend> {
    type Output;
    /// Runs with `B` known to be `Autodiff<I>` (no checkpointing strategy, as all of ember's
    /// autodiff backends): move the op's `B` values to `Autodiff<I>` and back with [`same_type`].
    fn run<I: Backend>(self) -> Self::Output;
}

/// Whether `B` is one of ember's autodiff backends compiled into this build, i.e. whether
/// [`dispatch_autodiff`] runs ops on it (and ember's custom backward passes apply).
pub fn is_ember_autodiff<B: Backend>() -> bool {
    struct Probe;
    impl<B: Backend> AutodiffOp<B> for Probe {
        type Output = ();
        fn run<I: Backend>(self) {}
    }
    dispatch_autodiff::<B, Probe>(Probe).is_ok()
}

/// Moves `x` to the type `U`, which must be `T` itself: how an [`AutodiffOp`] turns its
/// `Tensor<B, _>` into `Tensor<Autodiff<I>, _>` once [`dispatch_autodiff`] has checked they are
/// one type.
///
/// # Panics
/// If `T` and `U` differ (a bug in the caller, never a matter of input).
pub fn same_type<T: 'static, U: 'static>(x: T) -> U {
    let mut slot = Some(x);
    match (&mut slot as &mut dyn Any).downcast_mut::<Option<U>>() {
        Some(u) => match u.take() {
            Some(u) => u,
            None => unreachable!("the slot was just filled"),
        },
        None => panic!(
            "same_type: {} is not {}",
            std::any::type_name::<T>(),
            std::any::type_name::<U>()
        ),
    }
}

/// Which layer of an autodiff backend `A` a backend is (see [`layer_of`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layer {
    /// `A` itself.
    Autodiff,
    /// `A::InnerBackend`, without autodiff.
    Inner,
}

/// Whether `B` is the autodiff backend `A` (e.g. `TchBackend`) or its inner backend, so that
/// backend-specific code can [`same_type`] its tensors to either.
pub fn layer_of<B: Backend, A: AutodiffBackend>() -> Option<Layer> {
    if TypeId::of::<B>() == TypeId::of::<A>() {
        Some(Layer::Autodiff)
    } else if TypeId::of::<B>() == TypeId::of::<A::InnerBackend>() {
        Some(Layer::Inner)
    } else {
        None
    }
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
        assert_eq!(
            "wgpu".parse::<BackendChoice>().ok(),
            Some(BackendChoice::Wgpu(None))
        );
        assert_eq!(
            "wgpu:2".parse::<BackendChoice>().ok(),
            Some(BackendChoice::Wgpu(Some(2)))
        );
        for bad in ["gpu", "cuda:x", "tch-cuda:", "wgpu:", "wgpu:a", ""] {
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
            BackendChoice::Wgpu(None),
            BackendChoice::Wgpu(Some(1)),
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

    /// Sums a tensor of `B` on `Autodiff<I>`, reporting which `I` the dispatch chose.
    struct InnerSum<B: Backend>(burn::tensor::Tensor<B, 1>);
    impl<B: Backend> AutodiffOp<B> for InnerSum<B> {
        type Output = (TypeId, f32);
        fn run<I: Backend>(self) -> (TypeId, f32) {
            let t: burn::tensor::Tensor<burn::backend::Autodiff<I>, 1> = same_type(self.0);
            (TypeId::of::<I>(), t.sum().into_scalar().elem())
        }
    }

    struct Dispatch;
    impl BackendOp for Dispatch {
        type Output = (bool, bool);
        fn run<B: AutodiffBackend>(self, device: B::Device) -> (bool, bool) {
            let t = burn::tensor::Tensor::<B, 1>::from_floats([1.0, 2.0, 3.5], &device);
            let reached = matches!(
                dispatch_autodiff::<B, _>(InnerSum(t)),
                Ok((inner, sum)) if inner == TypeId::of::<B::InnerBackend>() && sum == 6.5
            );
            // Without autodiff there is no graph for a custom op to join.
            let t = burn::tensor::Tensor::<B::InnerBackend, 1>::from_floats([1.0], &device);
            let inner_refused = dispatch_autodiff::<B::InnerBackend, _>(InnerSum(t)).is_err()
                && !is_ember_autodiff::<B::InnerBackend>();
            (reached && is_ember_autodiff::<B>(), inner_refused)
        }
    }

    #[test]
    fn dispatch_reaches_the_inner_backend_of_every_cpu_backend() {
        let outs = for_each_cpu_backend(|| Dispatch);
        assert!(!outs.is_empty(), "no CPU backend compiled in");
        for (b, (reached, inner_refused)) in outs {
            assert!(reached, "{b}: dispatch did not run on its inner backend");
            assert!(inner_refused, "{b}: dispatch accepted the inner backend");
        }
    }

    #[cfg(feature = "flex")]
    #[test]
    fn dispatch_refuses_other_backends() {
        use burn::backend::autodiff::checkpoint::strategy::BalancedCheckpointing;
        use burn::backend::{Autodiff, Flex};
        let device = burn::backend::flex::FlexDevice;
        let t = burn::tensor::Tensor::<Flex, 1>::from_floats([1.0], &device);
        assert!(dispatch_autodiff::<Flex, _>(InnerSum(t)).is_err());
        // The custom ops build their nodes without checkpointing: another strategy is another
        // backend.
        type Balanced = Autodiff<Flex, BalancedCheckpointing>;
        let t = burn::tensor::Tensor::<Balanced, 1>::from_floats([1.0], &device);
        assert!(dispatch_autodiff::<Balanced, _>(InnerSum(t)).is_err());
        assert!(!is_ember_autodiff::<Balanced>());
    }

    #[test]
    fn layer_of_tells_autodiff_from_inner() {
        struct Layers;
        impl BackendOp for Layers {
            type Output = [Option<Layer>; 2];
            fn run<B: AutodiffBackend>(self, _device: B::Device) -> [Option<Layer>; 2] {
                [layer_of::<B, B>(), layer_of::<B::InnerBackend, B>()]
            }
        }
        for (b, layers) in for_each_cpu_backend(|| Layers) {
            assert_eq!(layers, [Some(Layer::Autodiff), Some(Layer::Inner)], "{b}");
        }
        #[cfg(all(feature = "flex", feature = "tch"))]
        assert_eq!(layer_of::<FlexBackend, TchBackend>(), None);
    }

    #[test]
    #[should_panic(expected = "is not")]
    fn same_type_refuses_different_types() {
        let _: u32 = same_type(1u64);
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
