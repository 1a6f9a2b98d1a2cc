//! One micro-batch's loss and gradients, with the whole autodiff graph kept for the backward or
//! with layer recompute (HF's `gradient_checkpointing`, on by default in LLaMA-Factory).
//!
//! Layer recompute keeps only each decoder layer's input between the forward and the backward:
//!
//! 1. forward through the embeddings and every layer on the **inner** backend (no graph), saving
//!    each layer's input `x_i`;
//! 2. with autodiff, from `x_L` (a leaf) through the final norm and the loss, `.backward()`, and read
//!    `g_L = d loss / d x_L`;
//! 3. for each layer from the last to the first, run it again with autodiff on its saved input and
//!    backpropagate `g_{i+1}` through it with `(y · g_{i+1}).sum().backward()`, whose gradient at `y`
//!    is exactly `g_{i+1}`; keep the layer's parameter gradients and `g_i = d / d x_i`;
//! 4. the embeddings are frozen, so the chain stops at layer 0.
//!
//! The backward runs in the caller, not inside a custom autodiff op, because calling `.backward()`
//! inside an op's backward deadlocks in Burn 0.21. LoRA dropout replays the same masks in both
//! forwards: a mask is a function of the layer's `dropout_seed` and the input shape (see
//! `ember_lora::linear`), and the gradient-free first forward draws them too
//! (`LoraLinear::force_dropout`). The memory of a step is then the layer inputs, one layer's
//! activations and the loss's, instead of every layer's activations.

use burn::module::AutodiffModule;
use burn::optim::{GradientsAccumulator, GradientsParams};
use burn::tensor::Tensor;
use burn::tensor::backend::AutodiffBackend;

use crate::model::{DecoderInput, ModelInputs, Qwen3ForCausalLM};

/// How the backward pass gets the activations it needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Backprop {
    /// Autodiff keeps every layer's activations from the forward (fastest, most memory).
    FullGraph,
    /// Keep each layer's input only and recompute the layer during the backward (about one more
    /// forward of compute; activation memory of one layer).
    #[default]
    Recompute,
}

impl Backprop {
    /// `gradient_checkpointing = true` → [`Backprop::Recompute`].
    pub fn from_gradient_checkpointing(on: bool) -> Self {
        if on {
            Backprop::Recompute
        } else {
            Backprop::FullGraph
        }
    }
}

impl<B: AutodiffBackend> Qwen3ForCausalLM<B> {
    /// The summed token loss divided by `divisor` (a trainer passes the supervised tokens of the
    /// whole accumulation window) and the gradients of every trainable parameter, computed as
    /// `backprop` says. Both ways give the same gradients up to float rounding.
    pub fn loss_and_grads(
        &self,
        inputs: ModelInputs<B>,
        divisor: f64,
        backprop: Backprop,
    ) -> (Tensor<B::InnerBackend, 1>, GradientsParams) {
        match backprop {
            Backprop::FullGraph => {
                let loss = self.forward_loss(&inputs).sum.div_scalar(divisor);
                let value = loss.clone().inner();
                (value, GradientsParams::from_grads(loss.backward(), self))
            }
            Backprop::Recompute => self.loss_and_grads_recompute(inputs, divisor),
        }
    }

    fn loss_and_grads_recompute(
        &self,
        inputs: ModelInputs<B>,
        divisor: f64,
    ) -> (Tensor<B::InnerBackend, 1>, GradientsParams) {
        let layers = &self.model.layers;
        let input = self.decoder_input(&inputs, 0);
        let (rope, mask) = (input.rope.clone(), input.mask.clone());

        // 1. Gradient-free forward on the inner backend (drawing the dropout masks the recompute
        // will draw), keeping each layer's input.
        let mut inner = self.valid();
        for layer in &mut inner.model.layers {
            for linear in layer.linears_mut() {
                linear.force_dropout = true;
            }
        }
        let inner_input = DecoderInput {
            hidden: input.hidden.inner(),
            rope: rope.inner(),
            mask: mask.clone().map_bool(|t| t.inner(), |t| t.inner()),
        };
        let mut saved = Vec::with_capacity(layers.len());
        let hidden = inner.decode_layers(inner_input, None, |_, x| saved.push(x.clone()));

        // 2. Final norm and loss with autodiff from the last layer's output.
        let mut acc = GradientsAccumulator::<Self>::new();
        let last = Tensor::<B, 3>::from_inner(hidden).require_grad();
        let loss = self
            .loss_from_hidden(self.model.norm.forward(last.clone()), inputs.loss_labels())
            .sum
            .div_scalar(divisor);
        let value = loss.clone().inner();
        let mut grads = loss.backward();
        let mut upstream = last.grad(&grads);
        // A trainable head (LoRA on lm_head) has its gradients here.
        acc.accumulate(self, GradientsParams::from_module(&mut grads, self));
        drop(grads);

        // 3. Each layer again, last to first, with autodiff, fed the gradient of its output.
        for (i, (layer, input)) in layers.iter().zip(saved).enumerate().rev() {
            let Some(g) = upstream.take() else {
                break; // nothing below depends on the loss (cannot happen with a real loss)
            };
            let input = Tensor::<B, 3>::from_inner(input);
            // The embeddings are frozen: layer 0's input needs no gradient.
            let input = if i > 0 { input.require_grad() } else { input };
            let y = layer.forward(input.clone(), &rope, mask.clone(), None);
            let mut grads = (y * Tensor::from_inner(g)).sum().backward();
            if i > 0 {
                upstream = input.grad(&grads);
            }
            acc.accumulate(self, GradientsParams::from_module(&mut grads, layer));
        }
        (value, acc.grads())
    }
}
