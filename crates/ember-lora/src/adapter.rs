//! The adapter a [`LoraLinear`](crate::LoraLinear) can carry, and the seam for adapter variants.
//!
//! As in PEFT (`peft/tuners/lora/layer.py`, `variants.py`), every variant shares the low-rank factors,
//! the scaling and the dropout ([`LoraAdapter`]); what differs is how the adapter is initialised,
//! how it changes the forward, and what merging adds to the base weight: that is an
//! [`AdapterVariant`], chosen by the adapter's [`LoraVariant`]. Plain LoRA is [`PlainLora`].
//!
//! # Adding a variant (DoRA, ...)
//!
//! 1. a unit struct implementing [`AdapterVariant`] (PEFT's `LoraVariant` subclass);
//! 2. an arm in [`LoraVariant`] and in [`LoraAdapter`]'s dispatching methods;
//! 3. parameters of its own (DoRA's magnitude vector) as fields of [`LoraAdapter`]: the layer visits
//!    the adapter's fields as its own, so they get PEFT's paths (`q_proj.lora_magnitude_vector`)
//!    without a change to [`LoraLinear`](crate::LoraLinear);
//! 4. the PEFT keys of those parameters in [`crate::peft`].

use burn::module::{Module, Param};
use burn::tensor::{DType, Distribution, Tensor, backend::Backend};

use crate::linear::DROPOUT_DRAW;

/// Which computation an adapter performs (PEFT's `lora_variant` of a layer; `None` there is
/// [`LoraVariant::Lora`] here).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LoraVariant {
    /// Plain LoRA: `y = base(x) + scaling · B(A(dropout(x)))`.
    #[default]
    Lora,
}

/// An adapter on one linear layer: PEFT's layouts, `lora_a: [r, in]` and `lora_b: [out, r]`, so that
/// PEFT files need no transposes, stored in f32 whatever the base dtype.
#[derive(Module, Debug)]
pub struct LoraAdapter<B: Backend> {
    pub lora_a: Param<Tensor<B, 2>>,
    pub lora_b: Param<Tensor<B, 2>>,
    /// `lora_alpha / r` (or `/ sqrt(r)` with rsLoRA).
    pub scaling: f64,
    /// Dropout probability on the adapter input (see [`crate::linear`] for when it applies).
    pub dropout: f64,
    /// Seeds the dropout mask (see [`crate::linear`]).
    pub dropout_seed: u64,
    pub variant: LoraVariant,
    /// Added into the base weight ([`crate::LoraLinear::merge`]); the forward then skips it. Private:
    /// only the layer, which owns the weight, may say so.
    merged: bool,
}

impl<B: Backend> LoraAdapter<B> {
    /// An unmerged adapter with factors `a: [r, in]`, `b: [out, r]` (cast to trainable f32 leaves),
    /// dropout seed 0. The variant's own [`AdapterVariant::init`] runs when a layer installs it.
    pub fn new(
        variant: LoraVariant,
        a: Tensor<B, 2>,
        b: Tensor<B, 2>,
        scaling: f64,
        dropout: f64,
    ) -> Self {
        Self {
            lora_a: Param::from_tensor(a.cast(DType::F32).detach()),
            lora_b: Param::from_tensor(b.cast(DType::F32).detach()),
            scaling,
            dropout,
            dropout_seed: 0,
            variant,
            merged: false,
        }
    }

    /// The rank r.
    pub fn rank(&self) -> usize {
        self.lora_a.shape().dims::<2>()[0]
    }

    /// Whether the adapter has been added into its layer's base weight.
    pub fn is_merged(&self) -> bool {
        self.merged
    }

    pub(crate) fn set_merged(&mut self, merged: bool) {
        self.merged = merged;
    }

    /// Trainable parameters: the factors (and a variant's own).
    pub fn num_adapter_params(&self) -> usize {
        self.num_params()
    }

    /// `x` (`[rows, in]`, in the adapter dtype) after dropout when `active`. The mask is drawn by the
    /// backend generator re-seeded with `dropout_seed`, under [`DROPOUT_DRAW`], so that a recompute
    /// replays it.
    pub fn dropout_input(&self, x: Tensor<B, 2>, active: bool) -> Tensor<B, 2> {
        // `> 0.0` rather than `<= 0.0` so that a NaN probability means no dropout.
        let apply = active && self.dropout > 0.0;
        if !apply {
            return x;
        }
        let keep = 1.0 - self.dropout;
        let device = x.device();
        let mask = {
            // Seeding and drawing must not interleave with another thread's draw.
            let _draw = DROPOUT_DRAW.lock().unwrap_or_else(|e| e.into_inner());
            B::seed(&device, self.dropout_seed);
            x.random_like(Distribution::Bernoulli(keep))
        };
        x * mask / keep
    }

    /// The variant's change to the base weight, `[out, in]`, in f32 and detached.
    pub fn delta_weight(&self) -> Tensor<B, 2> {
        match self.variant {
            LoraVariant::Lora => PlainLora.delta_weight(self),
        }
    }

    /// See [`AdapterVariant::init`].
    pub fn init(&mut self, weight: &Tensor<B, 2>) {
        match self.variant {
            LoraVariant::Lora => PlainLora.init(self, weight),
        }
    }

    /// See [`AdapterVariant::forward`].
    pub fn forward(
        &self,
        x: Tensor<B, 2>,
        base_out: Tensor<B, 2>,
        dropout_active: bool,
    ) -> Tensor<B, 2> {
        match self.variant {
            LoraVariant::Lora => PlainLora.forward(self, x, base_out, dropout_active),
        }
    }

    /// See [`AdapterVariant::merge`].
    pub fn merge_into(&self, weight: Tensor<B, 2>) -> Tensor<B, 2> {
        match self.variant {
            LoraVariant::Lora => PlainLora.merge(self, weight),
        }
    }

    /// See [`AdapterVariant::unmerge`].
    pub fn unmerge_from(&self, weight: Tensor<B, 2>) -> Tensor<B, 2> {
        match self.variant {
            LoraVariant::Lora => PlainLora.unmerge(self, weight),
        }
    }
}

/// What makes a variant (PEFT's `LoraVariant`: `init`, `forward`, `merge_safe`, `unmerge`). The
/// methods get the whole adapter, as PEFT's static methods get the module.
pub trait AdapterVariant<B: Backend> {
    /// Sets up what the variant adds beyond the factors, from the base `weight` `[out, in]` (DoRA's
    /// magnitude); runs when a layer installs the adapter.
    fn init(&self, adapter: &mut LoraAdapter<B>, weight: &Tensor<B, 2>);

    /// `ΔW` `[out, in]` in f32, detached: what merging changes (also what an export adds).
    fn delta_weight(&self, adapter: &LoraAdapter<B>) -> Tensor<B, 2>;

    /// The layer output with the adapter, from its input `x` `[rows, in]` and the base layer's
    /// output `base_out = x Wᵀ + b` `[rows, out]` (base dtype, which the result keeps).
    fn forward(
        &self,
        adapter: &LoraAdapter<B>,
        x: Tensor<B, 2>,
        base_out: Tensor<B, 2>,
        dropout_active: bool,
    ) -> Tensor<B, 2>;

    /// The base `weight` with the adapter merged in: math in f32, result in the weight's dtype.
    fn merge(&self, adapter: &LoraAdapter<B>, weight: Tensor<B, 2>) -> Tensor<B, 2>;

    /// [`merge`](AdapterVariant::merge) undone (exact up to the weight dtype's rounding).
    fn unmerge(&self, adapter: &LoraAdapter<B>, weight: Tensor<B, 2>) -> Tensor<B, 2>;
}

/// Plain LoRA: `y = x Wᵀ + b + scaling · B(A(dropout(x)))`, merged as `W + scaling · B A`.
#[derive(Debug, Clone, Copy, Default)]
pub struct PlainLora;

/// `weight + sign · delta`, in f32, back in the weight's dtype.
fn add_delta<B: Backend>(weight: Tensor<B, 2>, delta: Tensor<B, 2>, sign: f64) -> Tensor<B, 2> {
    let dtype = weight.dtype();
    (weight.cast(DType::F32) + delta * sign).cast(dtype)
}

impl<B: Backend> AdapterVariant<B> for PlainLora {
    fn init(&self, _adapter: &mut LoraAdapter<B>, _weight: &Tensor<B, 2>) {}

    fn delta_weight(&self, adapter: &LoraAdapter<B>) -> Tensor<B, 2> {
        let a = adapter.lora_a.val().detach().cast(DType::F32);
        let b = adapter.lora_b.val().detach().cast(DType::F32);
        b.matmul(a) * adapter.scaling
    }

    fn forward(
        &self,
        adapter: &LoraAdapter<B>,
        x: Tensor<B, 2>,
        base_out: Tensor<B, 2>,
        dropout_active: bool,
    ) -> Tensor<B, 2> {
        let (a, b) = (adapter.lora_a.val(), adapter.lora_b.val());
        // Adapters stay f32 while the base may be bf16: cast at the boundary.
        let dtype = base_out.dtype();
        let h = adapter.dropout_input(x.cast(a.dtype()), dropout_active);
        let delta = h.matmul(a.transpose()).matmul(b.transpose()) * adapter.scaling;
        // PEFT adds in the adapter's dtype (torch promotes bf16 + f32 to f32) and rounds once.
        (base_out.cast(delta.dtype()) + delta).cast(dtype)
    }

    fn merge(&self, adapter: &LoraAdapter<B>, weight: Tensor<B, 2>) -> Tensor<B, 2> {
        add_delta(weight, self.delta_weight(adapter), 1.0)
    }

    fn unmerge(&self, adapter: &LoraAdapter<B>, weight: Tensor<B, 2>) -> Tensor<B, 2> {
        add_delta(weight, self.delta_weight(adapter), -1.0)
    }
}
