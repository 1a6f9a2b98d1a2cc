//! A linear layer with an optional adapter, computed as PEFT computes it (for plain LoRA
//! `y = x Wᵀ + b + scaling · B(A(dropout(x)))`; the adapter and its variants are in
//! [`crate::adapter`]).
//!
//! # Parameter paths
//!
//! The adapter's parameters are visited as the layer's own: `q_proj.lora_a`, `q_proj.lora_b`, not
//! `q_proj.adapter.lora_a`. Optimizer state is saved under these paths (ember-optim), so they must
//! not change; that is why [`LoraLinear`] implements [`Module`] by hand instead of deriving it
//! (Burn's derive names every field).
//!
//! # Dropout and its mask
//!
//! Dropout acts on the adapter input only, and only while autodiff is enabled (training) or when
//! [`LoraLinear::set_force_dropout`] is on (the first, gradient-free forward of layer recompute runs
//! on the inner backend but must draw the masks its recomputation will draw). The mask is drawn on
//! the device by the backend's random generator, re-seeded with the adapter's
//! [`LoraAdapter::dropout_seed`] right before the draw. The mask is therefore a function of
//! `(backend, dropout_seed, input shape)`: running the layer again with the same seed (recomputing
//! it in the backward pass, for instance) replays exactly the same mask. The caller owns the seeds:
//! [`crate::set_dropout_seed`] gives every adapter of a model a seed derived from one number, and a
//! training loop must call it with a fresh number for every micro-batch (otherwise every step reuses
//! the same masks); an adapter installed by [`crate::load_peft`] starts with seed 0. The backend generator is process-global: seeding and drawing happen under one
//! process-wide lock ([`DROPOUT_DRAW`]), so threads training (or testing) concurrently do not
//! perturb each other's masks; other code drawing from a backend's generator at the same time
//! still could.

use std::sync::Mutex;

use burn::module::{
    AutodiffModule, Content, Devices, HasAutodiffModule, Module, ModuleDisplay,
    ModuleDisplayDefault, ModuleMapper, ModuleVisitor, Param,
};
use burn::record::Record;
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::{Tensor, backend::Backend};

use crate::adapter::{BaseLayer, LoraAdapter, LoraVariant};

/// Held while a dropout mask is seeded and drawn (the backends' generators are process-global).
pub static DROPOUT_DRAW: Mutex<()> = Mutex::new(());

/// A linear layer in PyTorch's layout (`weight: [out, in]`) plus an optional [`LoraAdapter`].
///
/// The base weight and bias are frozen (no gradient, no optimizer state); the adapter's factors are
/// the trainable parameters.
#[derive(Debug)]
pub struct LoraLinear<B: Backend> {
    pub weight: Param<Tensor<B, 2>>,
    pub bias: Option<Param<Tensor<B, 1>>>,
    /// Private so that a merged adapter is only dropped after unmerging it.
    adapter: Option<LoraAdapter<B>>,
    /// Apply dropout even without autodiff (layer recompute's forward on the inner backend).
    force_dropout: bool,
}

impl<B: Backend> LoraLinear<B> {
    /// A frozen base layer without an adapter. `weight` is `[out, in]`.
    pub fn frozen(weight: Tensor<B, 2>, bias: Option<Tensor<B, 1>>) -> Self {
        Self {
            weight: Param::from_tensor(weight).set_require_grad(false),
            bias: bias.map(|b| Param::from_tensor(b).set_require_grad(false)),
            adapter: None,
            force_dropout: false,
        }
    }

    /// `[in, out]` features of the base layer.
    pub fn dims(&self) -> (usize, usize) {
        let [out, inp] = self.weight.shape().dims();
        (inp, out)
    }

    /// The rank of the adapter, if there is one.
    pub fn rank(&self) -> Option<usize> {
        self.adapter.as_ref().map(LoraAdapter::rank)
    }

    /// Whether the layer carries an adapter (merged or not).
    pub fn has_adapter(&self) -> bool {
        self.adapter.is_some()
    }

    /// Whether the forward runs an adapter path: there is one and it is not merged into `weight`.
    pub fn has_active_adapter(&self) -> bool {
        self.adapter.as_ref().is_some_and(|a| !a.is_merged())
    }

    pub fn adapter(&self) -> Option<&LoraAdapter<B>> {
        self.adapter.as_ref()
    }

    /// The adapter, to change its factors, scaling, dropout or seed. Changing what a merged adapter
    /// computes leaves the merged weight as it was: unmerge first.
    pub fn adapter_mut(&mut self) -> Option<&mut LoraAdapter<B>> {
        self.adapter.as_mut()
    }

    /// See the module documentation; also set on layers without an adapter (no effect there).
    pub fn set_force_dropout(&mut self, force: bool) {
        self.force_dropout = force;
    }

    pub fn force_dropout(&self) -> bool {
        self.force_dropout
    }

    /// Installs a plain LoRA adapter (`a: [r, in]`, `b: [out, r]`, stored as trainable f32
    /// parameters), replacing any previous one; see [`LoraLinear::install`].
    ///
    /// # Panics
    /// As [`LoraLinear::install`].
    pub fn set_adapter(&mut self, a: Tensor<B, 2>, b: Tensor<B, 2>, scaling: f64, dropout: f64) {
        self.install(LoraAdapter::new(LoraVariant::Lora, a, b, scaling, dropout));
    }

    /// Installs `adapter` (unmerged), replacing any previous one, and runs its variant's init. The
    /// base weight must not hold a merged adapter.
    ///
    /// # Panics
    /// If the shapes do not fit the base layer (callers check shapes of user data first), or if the
    /// layer holds a merged adapter.
    pub fn install(&mut self, mut adapter: LoraAdapter<B>) {
        let (inp, out) = self.dims();
        let [r, a_in] = adapter.lora_a.dims();
        let [b_out, rb] = adapter.lora_b.dims();
        assert!(
            a_in == inp && b_out == out && rb == r,
            "adapter shapes A {:?} / B {:?} do not fit a {inp} -> {out} layer",
            adapter.lora_a.dims(),
            adapter.lora_b.dims()
        );
        assert!(
            !self.adapter.as_ref().is_some_and(LoraAdapter::is_merged),
            "set_adapter on a layer with a merged adapter; unmerge first"
        );
        adapter.set_merged(false);
        adapter.init(&self.weight.val());
        self.adapter = Some(adapter);
    }

    /// Drops the adapter (after unmerging it if it was merged).
    pub fn remove_adapter(&mut self) {
        self.unmerge();
        self.adapter = None;
    }

    /// Merges the adapter and drops it, leaving a plain layer (PEFT `merge_and_unload`).
    pub fn merge_and_unload(&mut self) {
        self.merge();
        self.adapter = None;
    }

    /// The adapter's low-rank update `scaling · B A`, `[out, in]`, in f32 and detached from any
    /// autodiff graph (what merging adds for plain LoRA; DoRA also rescales the rows).
    pub fn delta_weight(&self) -> Option<Tensor<B, 2>> {
        self.adapter.as_ref().map(LoraAdapter::delta_weight)
    }

    fn set_weight(&mut self, w: Tensor<B, 2>) {
        self.weight = Param::initialized(self.weight.id, w).set_require_grad(false);
    }

    /// Adds the adapter into the base weight (math in f32, result in the base dtype); the forward
    /// then skips the adapter path. No effect without an adapter or when already merged.
    pub fn merge(&mut self) {
        let weight = self.weight.val().detach();
        let Some(adapter) = self.adapter.as_mut().filter(|a| !a.is_merged()) else {
            return;
        };
        let merged = adapter.merge_into(weight);
        adapter.set_merged(true);
        self.set_weight(merged);
    }

    /// Subtracts a merged adapter from the base weight again (exact in f32 up to rounding; a bf16
    /// base loses what bf16 cannot hold, as in PEFT).
    pub fn unmerge(&mut self) {
        let weight = self.weight.val().detach();
        let Some(adapter) = self.adapter.as_mut().filter(|a| a.is_merged()) else {
            return;
        };
        let unmerged = adapter.unmerge_from(weight);
        adapter.set_merged(false);
        self.set_weight(unmerged);
    }

    /// Applies the layer to the last dimension of `x`.
    pub fn forward<const D: usize>(&self, x: Tensor<B, D>) -> Tensor<B, D> {
        let dims = x.dims();
        let (inp, out) = self.dims();
        let rows: usize = dims[..D - 1].iter().product();
        let x2: Tensor<B, 2> = x.reshape([rows, inp]);
        let weight = self.weight.val();
        let bias = self.bias.as_ref().map(Param::val);
        let mut y = x2.clone().matmul(weight.clone().transpose());
        if let Some(b) = &bias {
            y = y + b.clone().unsqueeze_dim(0);
        }
        if let Some(adapter) = self.adapter.as_ref().filter(|a| !a.is_merged()) {
            let dropout_active = self.force_dropout || B::ad_enabled(&x2.device());
            let base = BaseLayer {
                weight,
                bias,
                out: y,
            };
            y = adapter.forward(x2, base, dropout_active);
        }
        let mut out_dims = dims;
        out_dims[D - 1] = out;
        y.reshape(out_dims)
    }
}

// Burn's `Module` by hand, as the derive would write it except that the adapter's fields are
// visited and mapped without an `adapter` segment (see the module documentation).

const CONTAINER: &str = "Struct:LoraLinear";

/// The record of a [`LoraLinear`].
#[derive(Record)]
pub struct LoraLinearRecord<B: Backend> {
    pub weight: <Param<Tensor<B, 2>> as Module<B>>::Record,
    pub bias: <Option<Param<Tensor<B, 1>>> as Module<B>>::Record,
    pub adapter: <Option<LoraAdapter<B>> as Module<B>>::Record,
}

impl<B: Backend> Clone for LoraLinear<B> {
    fn clone(&self) -> Self {
        Self {
            weight: self.weight.clone(),
            bias: self.bias.clone(),
            adapter: self.adapter.clone(),
            force_dropout: self.force_dropout,
        }
    }
}

impl<B: Backend> Module<B> for LoraLinear<B> {
    type Record = LoraLinearRecord<B>;

    fn load_record(self, record: Self::Record) -> Self {
        Self {
            weight: Module::<B>::load_record(self.weight, record.weight),
            bias: Module::<B>::load_record(self.bias, record.bias),
            adapter: Module::<B>::load_record(self.adapter, record.adapter),
            force_dropout: self.force_dropout,
        }
    }

    fn into_record(self) -> Self::Record {
        LoraLinearRecord {
            weight: Module::<B>::into_record(self.weight),
            bias: Module::<B>::into_record(self.bias),
            adapter: Module::<B>::into_record(self.adapter),
        }
    }

    fn num_params(&self) -> usize {
        Module::<B>::num_params(&self.weight)
            + Module::<B>::num_params(&self.bias)
            + Module::<B>::num_params(&self.adapter)
    }

    fn visit<V: ModuleVisitor<B>>(&self, visitor: &mut V) {
        visitor.enter_module("weight", CONTAINER);
        Module::visit(&self.weight, visitor);
        visitor.exit_module("weight", CONTAINER);
        visitor.enter_module("bias", CONTAINER);
        Module::visit(&self.bias, visitor);
        visitor.exit_module("bias", CONTAINER);
        // No `adapter` segment: the adapter enters `lora_a`, `lora_b` itself.
        Module::visit(&self.adapter, visitor);
    }

    fn map<M: ModuleMapper<B>>(self, mapper: &mut M) -> Self {
        mapper.enter_module("weight", CONTAINER);
        let weight = Module::map(self.weight, mapper);
        mapper.exit_module("weight", CONTAINER);
        mapper.enter_module("bias", CONTAINER);
        let bias = Module::map(self.bias, mapper);
        mapper.exit_module("bias", CONTAINER);
        let adapter = Module::map(self.adapter, mapper);
        Self {
            weight,
            bias,
            adapter,
            force_dropout: self.force_dropout,
        }
    }

    fn collect_devices(&self, devices: Devices<B>) -> Devices<B> {
        let devices = Module::<B>::collect_devices(&self.weight, devices);
        let devices = Module::<B>::collect_devices(&self.bias, devices);
        Module::<B>::collect_devices(&self.adapter, devices)
    }

    fn to_device(self, device: &B::Device) -> Self {
        Self {
            weight: Module::<B>::to_device(self.weight, device),
            bias: Module::<B>::to_device(self.bias, device),
            adapter: Module::<B>::to_device(self.adapter, device),
            force_dropout: self.force_dropout,
        }
    }

    fn fork(self, device: &B::Device) -> Self {
        Self {
            weight: Module::<B>::fork(self.weight, device),
            bias: Module::<B>::fork(self.bias, device),
            adapter: Module::<B>::fork(self.adapter, device),
            force_dropout: self.force_dropout,
        }
    }
}

impl<B: AutodiffBackend> AutodiffModule<B> for LoraLinear<B> {
    type InnerModule = LoraLinear<B::InnerBackend>;

    fn valid(&self) -> Self::InnerModule {
        LoraLinear {
            weight: AutodiffModule::<B>::valid(&self.weight),
            bias: AutodiffModule::<B>::valid(&self.bias),
            adapter: AutodiffModule::<B>::valid(&self.adapter),
            force_dropout: self.force_dropout,
        }
    }

    fn from_inner(module: Self::InnerModule) -> Self {
        Self {
            weight: AutodiffModule::<B>::from_inner(module.weight),
            bias: AutodiffModule::<B>::from_inner(module.bias),
            adapter: AutodiffModule::<B>::from_inner(module.adapter),
            force_dropout: module.force_dropout,
        }
    }
}

impl<B: AutodiffBackend> HasAutodiffModule<B> for LoraLinear<B::InnerBackend> {
    type TrainModule = LoraLinear<B>;
}

impl<B: Backend> core::fmt::Display for LoraLinear<B> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{}", ModuleDisplay::format(self, Default::default()))
    }
}

impl<B: Backend> ModuleDisplayDefault for LoraLinear<B> {
    fn content(&self, content: Content) -> Option<Content> {
        content
            .set_top_level_type("LoraLinear")
            .add("weight", &self.weight)
            .add("bias", &self.bias)
            .add("adapter", &self.adapter)
            .add_debug_attribute("force_dropout", &self.force_dropout)
            .optional()
    }

    fn num_params(&self) -> usize {
        Module::num_params(self)
    }
}

impl<B: Backend> ModuleDisplay for LoraLinear<B> {}
