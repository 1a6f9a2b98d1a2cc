//! A linear layer with an optional LoRA adapter, computed as PEFT computes it:
//! `y = x Wᵀ + b + scaling · B(A(dropout(x)))`.

use burn::module::{Module, Param};
use burn::tensor::{Distribution, Tensor, backend::Backend};

/// A linear layer in PyTorch's layout (`weight: [out, in]`) plus an optional adapter.
///
/// The base weight and bias are frozen (no gradient, no optimizer state). The adapter factors keep
/// PEFT's layouts, `lora_a: [r, in]` and `lora_b: [out, r]`, so saving and loading PEFT files needs no
/// transposes.
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
        if let (Some(a), Some(b)) = (&self.lora_a, &self.lora_b) {
            // Adapters stay f32 while the base may be bf16: cast at the boundary.
            let dtype = y.dtype();
            let mut h = x2.cast(a.val().dtype());
            if self.dropout > 0.0 && B::ad_enabled(&h.device()) {
                let keep = 1.0 - self.dropout;
                let mask = h.random_like(Distribution::Bernoulli(keep));
                h = h * mask / keep;
            }
            let delta = h.matmul(a.val().transpose()).matmul(b.val().transpose()) * self.scaling;
            y = y + delta.cast(dtype);
        }
        let mut out_dims = dims;
        out_dims[D - 1] = out;
        y.reshape(out_dims)
    }
}
