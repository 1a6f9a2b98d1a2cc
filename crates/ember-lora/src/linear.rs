//! A linear layer with an optional LoRA adapter, computed as PEFT computes it:
//! `y = x Wᵀ + b + scaling · B(A(dropout(x)))`.
//!
//! # Dropout and its mask
//!
//! Dropout acts on the adapter input only, and only while autodiff is enabled (training) or when
//! [`LoraLinear::force_dropout`] is set (the first, gradient-free forward of layer recompute runs on
//! the inner backend but must draw the masks its recomputation will draw). The mask
//! is drawn on the device by the backend's random generator, re-seeded with the layer's
//! [`LoraLinear::dropout_seed`] right before the draw. The mask is therefore a function of
//! `(backend, dropout_seed, input shape)`: running the layer again with the same seed (recomputing
//! it in the backward pass, for instance) replays exactly the same mask. The caller owns the seeds:
//! [`crate::set_dropout_seed`] gives every layer of a model a seed derived from one number, and a
//! training loop must call it with a fresh number for every micro-batch (otherwise every step reuses
//! the same masks). The backend generator is process-global: seeding and drawing happen under one
//! process-wide lock ([`DROPOUT_DRAW`]), so threads training (or testing) concurrently do not
//! perturb each other's masks; other code drawing from a backend's generator at the same time
//! still could.

use std::sync::Mutex;

use burn::module::{Module, Param};
use burn::tensor::{DType, Distribution, Tensor, backend::Backend};

/// Held while a dropout mask is seeded and drawn (the backends' generators are process-global).
pub static DROPOUT_DRAW: Mutex<()> = Mutex::new(());

/// A linear layer in PyTorch's layout (`weight: [out, in]`) plus an optional adapter.
///
/// The base weight and bias are frozen (no gradient, no optimizer state). The adapter factors keep
/// PEFT's layouts, `lora_a: [r, in]` and `lora_b: [out, r]`, so saving and loading PEFT files needs no
/// transposes. They are f32 whatever the base dtype; the adapter path casts at its boundary.
#[derive(Module, Debug)]
pub struct LoraLinear<B: Backend> {
    pub weight: Param<Tensor<B, 2>>,
    pub bias: Option<Param<Tensor<B, 1>>>,
    pub lora_a: Option<Param<Tensor<B, 2>>>,
    pub lora_b: Option<Param<Tensor<B, 2>>>,
    /// `lora_alpha / r` (or `/ sqrt(r)` with rsLoRA); unused without an adapter.
    pub scaling: f64,
    /// Dropout probability on the adapter input, applied only while autodiff is active.
    pub dropout: f64,
    /// Seeds the dropout mask (see the module documentation).
    pub dropout_seed: u64,
    /// Apply dropout even without autodiff (layer recompute's forward on the inner backend).
    pub force_dropout: bool,
    /// The adapter has been added into `weight` ([`LoraLinear::merge`]); the forward skips it.
    pub merged: bool,
}

impl<B: Backend> LoraLinear<B> {
    /// A frozen base layer without an adapter. `weight` is `[out, in]`.
    pub fn frozen(weight: Tensor<B, 2>, bias: Option<Tensor<B, 1>>) -> Self {
        Self {
            weight: Param::from_tensor(weight).set_require_grad(false),
            bias: bias.map(|b| Param::from_tensor(b).set_require_grad(false)),
            lora_a: None,
            lora_b: None,
            scaling: 0.0,
            dropout: 0.0,
            dropout_seed: 0,
            force_dropout: false,
            merged: false,
        }
    }

    /// `[in, out]` features of the base layer.
    pub fn dims(&self) -> (usize, usize) {
        let [out, inp] = self.weight.shape().dims();
        (inp, out)
    }

    /// The rank of the adapter, if there is one.
    pub fn rank(&self) -> Option<usize> {
        self.lora_a.as_ref().map(|a| a.shape().dims::<2>()[0])
    }

    pub fn has_adapter(&self) -> bool {
        self.lora_a.is_some() && self.lora_b.is_some()
    }

    /// Installs an adapter (`a: [r, in]`, `b: [out, r]`, stored as trainable f32 parameters),
    /// replacing any previous one. The base weight must not hold a merged adapter.
    ///
    /// # Panics
    /// If the shapes do not fit the base layer (callers check shapes of user data first).
    pub fn set_adapter(&mut self, a: Tensor<B, 2>, b: Tensor<B, 2>, scaling: f64, dropout: f64) {
        let (inp, out) = self.dims();
        let [r, a_in] = a.dims();
        let [b_out, rb] = b.dims();
        assert!(
            a_in == inp && b_out == out && rb == r,
            "adapter shapes A {:?} / B {:?} do not fit a {inp} -> {out} layer",
            a.dims(),
            b.dims()
        );
        assert!(
            !self.merged,
            "set_adapter on a layer with a merged adapter; unmerge first"
        );
        self.lora_a = Some(Param::from_tensor(a.cast(DType::F32).detach()));
        self.lora_b = Some(Param::from_tensor(b.cast(DType::F32).detach()));
        self.scaling = scaling;
        self.dropout = dropout;
    }

    /// Drops the adapter (after unmerging it if it was merged).
    pub fn remove_adapter(&mut self) {
        self.unmerge();
        self.lora_a = None;
        self.lora_b = None;
        self.scaling = 0.0;
        self.dropout = 0.0;
    }

    /// `scaling · B A`, `[out, in]`, in f32 and detached from any autodiff graph.
    pub fn delta_weight(&self) -> Option<Tensor<B, 2>> {
        let (a, b) = (self.lora_a.as_ref()?, self.lora_b.as_ref()?);
        let a = a.val().detach().cast(DType::F32);
        let b = b.val().detach().cast(DType::F32);
        Some(b.matmul(a) * self.scaling)
    }

    fn add_to_weight(&mut self, sign: f64) {
        let Some(delta) = self.delta_weight() else {
            return;
        };
        let w = self.weight.val().detach();
        let dtype = w.dtype();
        let merged = (w.cast(DType::F32) + delta * sign).cast(dtype);
        self.weight = Param::initialized(self.weight.id, merged).set_require_grad(false);
    }

    /// Adds the adapter into the base weight (math in f32, result in the base dtype); the forward
    /// then skips the adapter path. No effect without an adapter or when already merged.
    pub fn merge(&mut self) {
        if !self.merged && self.has_adapter() {
            self.add_to_weight(1.0);
            self.merged = true;
        }
    }

    /// Subtracts a merged adapter from the base weight again (exact in f32 up to rounding; a bf16
    /// base loses what bf16 cannot hold, as in PEFT).
    pub fn unmerge(&mut self) {
        if self.merged {
            self.add_to_weight(-1.0);
            self.merged = false;
        }
    }

    /// Applies the layer to the last dimension of `x`.
    pub fn forward<const D: usize>(&self, x: Tensor<B, D>) -> Tensor<B, D> {
        let dims = x.dims();
        let (inp, out) = self.dims();
        let rows: usize = dims[..D - 1].iter().product();
        let x2: Tensor<B, 2> = x.reshape([rows, inp]);
        let mut y = x2.clone().matmul(self.weight.val().transpose());
        if let Some(b) = &self.bias {
            y = y + b.val().unsqueeze_dim(0);
        }
        if let (Some(a), Some(b), false) = (&self.lora_a, &self.lora_b, self.merged) {
            // Adapters stay f32 while the base may be bf16: cast at the boundary.
            let dtype = y.dtype();
            let mut h = x2.cast(a.val().dtype());
            let device = h.device();
            if self.dropout > 0.0 && (self.force_dropout || B::ad_enabled(&device)) {
                let keep = 1.0 - self.dropout;
                let mask = {
                    // Seeding and drawing must not interleave with another thread's draw.
                    let _draw = DROPOUT_DRAW.lock().unwrap_or_else(|e| e.into_inner());
                    B::seed(&device, self.dropout_seed);
                    h.random_like(Distribution::Bernoulli(keep))
                };
                h = h * mask / keep;
            }
            let delta = h.matmul(a.val().transpose()).matmul(b.val().transpose()) * self.scaling;
            // PEFT adds in the adapter's dtype (torch promotes bf16 + f32 to f32) and rounds once.
            y = (y.cast(delta.dtype()) + delta).cast(dtype);
        }
        let mut out_dims = dims;
        out_dims[D - 1] = out;
        y.reshape(out_dims)
    }
}
