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
//!
//! [`Dora`] is the second variant, built that way.

use burn::module::{Module, Param};
use burn::tensor::{DType, Distribution, Tensor, TensorData, backend::Backend};

use crate::linear::DROPOUT_DRAW;

/// Which computation an adapter performs (PEFT's `lora_variant` of a layer; `None` there is
/// [`LoraVariant::Lora`] here).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LoraVariant {
    /// Plain LoRA: `y = base(x) + scaling · B(A(dropout(x)))`.
    #[default]
    Lora,
    /// DoRA (PEFT `use_dora=True`): the adapted weight's rows rescaled to a trained magnitude; see
    /// [`Dora`].
    Dora,
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
    /// DoRA's magnitude `m` `[out]` (PEFT `lora_magnitude_vector`), trainable, f32; `None` for plain
    /// LoRA. [`AdapterVariant::init`] sets it from the base weight unless it is already there (an
    /// adapter loaded from a file brings its own).
    pub lora_magnitude_vector: Option<Param<Tensor<B, 1>>>,
    /// DoRA while merged: the row norms `‖W + ΔW‖` the merge divided by, which unmerging needs and
    /// cannot recover from the merged weight (PEFT's `_cache_store("<name>-weight_norm")`).
    merged_norm: Option<TensorData>,
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
            lora_magnitude_vector: None,
            merged_norm: None,
            merged: false,
        }
    }

    /// Sets DoRA's magnitude `[out]` (cast to a trainable f32 leaf), e.g. from a PEFT file.
    pub fn set_magnitude(&mut self, m: Tensor<B, 1>) {
        self.lora_magnitude_vector = Some(Param::from_tensor(m.cast(DType::F32).detach()));
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

    /// Whether [`LoraAdapter::dropout_input`] changes its input when `active`.
    pub fn dropout_applies(&self, active: bool) -> bool {
        // `> 0.0` rather than `<= 0.0` so that a NaN probability means no dropout.
        active && self.dropout > 0.0
    }

    /// `x` (`[rows, in]`, in the adapter dtype) after dropout when `active`. The mask is drawn by the
    /// backend generator re-seeded with `dropout_seed`, under [`DROPOUT_DRAW`], so that a recompute
    /// replays it.
    pub fn dropout_input(&self, x: Tensor<B, 2>, active: bool) -> Tensor<B, 2> {
        if !self.dropout_applies(active) {
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

    /// `scaling · B A` `[out, in]`, in f32 and detached (PEFT's `get_delta_weight`: the low-rank
    /// update; what a variant's merge does with it is [`LoraAdapter::merged_weight`]).
    pub fn delta_weight(&self) -> Tensor<B, 2> {
        let a = self.lora_a.val().detach().cast(DType::F32);
        let b = self.lora_b.val().detach().cast(DType::F32);
        b.matmul(a) * self.scaling
    }

    /// See [`AdapterVariant::init`].
    pub fn init(&mut self, weight: &Tensor<B, 2>) {
        match self.variant {
            LoraVariant::Lora => PlainLora.init(self, weight),
            LoraVariant::Dora => Dora.init(self, weight),
        }
    }

    /// See [`AdapterVariant::forward`].
    pub fn forward(
        &self,
        x: Tensor<B, 2>,
        base: BaseLayer<B>,
        dropout_active: bool,
    ) -> Tensor<B, 2> {
        match self.variant {
            LoraVariant::Lora => PlainLora.forward(self, x, base, dropout_active),
            LoraVariant::Dora => Dora.forward(self, x, base, dropout_active),
        }
    }

    /// The base `weight` with this adapter merged in, without recording anything (for exports).
    pub fn merged_weight(&self, weight: Tensor<B, 2>) -> Tensor<B, 2> {
        self.clone().merge_into(weight)
    }

    /// See [`AdapterVariant::merge`].
    pub fn merge_into(&mut self, weight: Tensor<B, 2>) -> Tensor<B, 2> {
        match self.variant {
            LoraVariant::Lora => PlainLora.merge(self, weight),
            LoraVariant::Dora => Dora.merge(self, weight),
        }
    }

    /// See [`AdapterVariant::unmerge`].
    pub fn unmerge_from(&mut self, weight: Tensor<B, 2>) -> Tensor<B, 2> {
        match self.variant {
            LoraVariant::Lora => PlainLora.unmerge(self, weight),
            LoraVariant::Dora => Dora.unmerge(self, weight),
        }
    }
}

/// The frozen layer under an adapter, as a variant's forward sees it.
#[derive(Debug, Clone)]
pub struct BaseLayer<B: Backend> {
    /// `[out, in]`, in the base dtype.
    pub weight: Tensor<B, 2>,
    pub bias: Option<Tensor<B, 1>>,
    /// The base layer's output on the adapter's input, `x Wᵀ + b` `[rows, out]`, in the base dtype.
    pub out: Tensor<B, 2>,
}

/// What makes a variant (PEFT's `LoraVariant`: `init`, `forward`, `merge_safe`, `unmerge`). The
/// methods get the whole adapter, as PEFT's static methods get the module.
pub trait AdapterVariant<B: Backend> {
    /// Sets up what the variant adds beyond the factors, from the base `weight` `[out, in]` (DoRA's
    /// magnitude); runs when a layer installs the adapter.
    fn init(&self, adapter: &mut LoraAdapter<B>, weight: &Tensor<B, 2>);

    /// The layer output with the adapter, from its input `x` `[rows, in]` and the `base` layer
    /// (whose output dtype the result keeps).
    fn forward(
        &self,
        adapter: &LoraAdapter<B>,
        x: Tensor<B, 2>,
        base: BaseLayer<B>,
        dropout_active: bool,
    ) -> Tensor<B, 2>;

    /// The base `weight` with the adapter merged in: math in f32, result in the weight's dtype. May
    /// record in the adapter what [`unmerge`](AdapterVariant::unmerge) needs.
    fn merge(&self, adapter: &mut LoraAdapter<B>, weight: Tensor<B, 2>) -> Tensor<B, 2>;

    /// [`merge`](AdapterVariant::merge) undone (exact up to the weight dtype's rounding).
    fn unmerge(&self, adapter: &mut LoraAdapter<B>, weight: Tensor<B, 2>) -> Tensor<B, 2>;
}

/// Plain LoRA: `y = x Wᵀ + b + scaling · B(A(dropout(x)))`, merged as `W + scaling · B A`.
#[derive(Debug, Clone, Copy, Default)]
pub struct PlainLora;

/// `weight + sign · delta`, in f32, back in the weight's dtype.
fn add_delta<B: Backend>(weight: Tensor<B, 2>, delta: Tensor<B, 2>, sign: f64) -> Tensor<B, 2> {
    let dtype = weight.dtype();
    (weight.cast(DType::F32) + delta * sign).cast(dtype)
}

/// `B(A(h)) · scaling` for `h` `[rows, in]` in the adapter dtype.
fn low_rank<B: Backend>(adapter: &LoraAdapter<B>, h: Tensor<B, 2>) -> Tensor<B, 2> {
    let (a, b) = (adapter.lora_a.val(), adapter.lora_b.val());
    h.matmul(a.transpose()).matmul(b.transpose()) * adapter.scaling
}

impl<B: Backend> AdapterVariant<B> for PlainLora {
    fn init(&self, _adapter: &mut LoraAdapter<B>, _weight: &Tensor<B, 2>) {}

    fn forward(
        &self,
        adapter: &LoraAdapter<B>,
        x: Tensor<B, 2>,
        base: BaseLayer<B>,
        dropout_active: bool,
    ) -> Tensor<B, 2> {
        // Adapters stay f32 while the base may be bf16: cast at the boundary.
        let dtype = base.out.dtype();
        let h = adapter.dropout_input(x.cast(adapter.lora_a.val().dtype()), dropout_active);
        let delta = low_rank(adapter, h);
        // PEFT adds in the adapter's dtype (torch promotes bf16 + f32 to f32) and rounds once.
        (base.out.cast(delta.dtype()) + delta).cast(dtype)
    }

    fn merge(&self, adapter: &mut LoraAdapter<B>, weight: Tensor<B, 2>) -> Tensor<B, 2> {
        add_delta(weight, adapter.delta_weight(), 1.0)
    }

    fn unmerge(&self, adapter: &mut LoraAdapter<B>, weight: Tensor<B, 2>) -> Tensor<B, 2> {
        add_delta(weight, adapter.delta_weight(), -1.0)
    }
}

/// DoRA (Liu et al. 2024, PEFT's `DoraLinearVariant` / `DoraLinearLayer`): the adapted weight
/// `W + s·BA`, each output row rescaled to the trained magnitude `m`:
/// `W' = m / ‖W + s·BA‖ ⊙ (W + s·BA)`, the norm taken per output row.
///
/// As PEFT computes it: the forward adds `(m/n − 1) ⊙ base + (m/n) ⊙ s·B(A(x))` to the base output,
/// with `n = ‖W + s·BA‖` computed in the adapter dtype and **detached** (the paper's §4.3: the norm
/// gets no gradient), and `base` the base output without its bias, or, while dropout applies,
/// `dropout(x) Wᵀ` (the same dropped input for both terms). `m` starts as `‖W + s·BA‖` (so the
/// adapter starts as plain LoRA does) and is trainable. Its cost: every forward builds
/// `W + s·BA` in f32 (`[out, in]`, a second copy of the weight in f32) to take its norm.
#[derive(Debug, Clone, Copy, Default)]
pub struct Dora;

/// The per-row norms `‖W + s·BA‖` `[out]` in f32, detached.
fn dora_norm<B: Backend>(adapter: &LoraAdapter<B>, weight: &Tensor<B, 2>) -> Tensor<B, 1> {
    let w = weight.clone().detach().cast(DType::F32) + adapter.delta_weight();
    w.powi_scalar(2).sum_dim(1).sqrt().squeeze_dim(1)
}

impl Dora {
    /// `m`; [`AdapterVariant::init`] sets it, and before that it is what init would set, `norm`.
    fn magnitude<B: Backend>(adapter: &LoraAdapter<B>, norm: &Tensor<B, 1>) -> Tensor<B, 1> {
        adapter
            .lora_magnitude_vector
            .as_ref()
            .map_or_else(|| norm.clone(), Param::val)
    }
}

impl<B: Backend> AdapterVariant<B> for Dora {
    fn init(&self, adapter: &mut LoraAdapter<B>, weight: &Tensor<B, 2>) {
        if adapter.lora_magnitude_vector.is_none() {
            let m = dora_norm(adapter, weight);
            adapter.set_magnitude(m);
        }
    }

    fn forward(
        &self,
        adapter: &LoraAdapter<B>,
        x: Tensor<B, 2>,
        base: BaseLayer<B>,
        dropout_active: bool,
    ) -> Tensor<B, 2> {
        let dtype = base.out.dtype();
        let adapter_dtype = adapter.lora_a.val().dtype();
        let x = x.cast(adapter_dtype);
        let weight = base.weight.cast(adapter_dtype);
        let norm = dora_norm(adapter, &weight);
        let scale = (Self::magnitude(adapter, &norm) / norm).unsqueeze_dim::<2>(0);
        let (h, base_result) = if adapter.dropout_applies(dropout_active) {
            let h = adapter.dropout_input(x, dropout_active);
            let base_result = h.clone().matmul(weight.transpose());
            (h, base_result)
        } else {
            let without_bias = match base.bias {
                Some(b) => base.out.clone() - b.unsqueeze_dim(0),
                None => base.out.clone(),
            };
            (x, without_bias.cast(adapter_dtype))
        };
        let lora = low_rank(adapter, h);
        let dora = (scale.clone() - 1.0) * base_result + scale * lora;
        (base.out.cast(adapter_dtype) + dora).cast(dtype)
    }

    fn merge(&self, adapter: &mut LoraAdapter<B>, weight: Tensor<B, 2>) -> Tensor<B, 2> {
        let dtype = weight.dtype();
        let norm = dora_norm(adapter, &weight);
        adapter.merged_norm = Some(norm.clone().into_data());
        let factor = (Self::magnitude(adapter, &norm).detach() / norm).unsqueeze_dim::<2>(1);
        (factor * (weight.cast(DType::F32) + adapter.delta_weight())).cast(dtype)
    }

    fn unmerge(&self, adapter: &mut LoraAdapter<B>, weight: Tensor<B, 2>) -> Tensor<B, 2> {
        let dtype = weight.dtype();
        let device = weight.device();
        // Merging recorded the norm; without it (never merged) the weight is taken as it is.
        let Some(norm) = adapter.merged_norm.take() else {
            return weight;
        };
        let norm = Tensor::<B, 1>::from_data(norm, &device);
        let factor = (Self::magnitude(adapter, &norm).detach() / norm).unsqueeze_dim::<2>(1);
        (weight.cast(DType::F32) / factor - adapter.delta_weight()).cast(dtype)
    }
}
