//! LibTorch fast path of [`AttentionImpl::Fused`](crate::AttentionImpl::Fused): torch's fused
//! flash attention for CPU tensors (`aten::_scaled_dot_product_flash_attention_for_cpu` and its
//! `_backward`, the kernels behind `F.scaled_dot_product_attention` on CPU) as one autodiff op. Like
//! ember's chunked op it keeps q, k, v, the output and the row log-sum-exp, handles grouped-query
//! attention without repeating K/V, and never forms `[seq, keys]` scores; the kernels are torch's
//! own, vectorised and blocked.
//!
//! It applies where its causal mask is exact for every position that can reach a loss: CPU
//! tensors, no KV-cache offset, as many queries as keys, and key padding only at the end of rows
//! (right padding, what training batches use). A right-padded query then sees earlier padding
//! keys, which changes only the outputs of padding positions; no real position ever reads them
//! (causality), so losses and gradients are exact. Everything else (left padding, a cache, dense
//! masks, CUDA tensors) takes ember's chunked op.

use std::any::Any;

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::NoCheckpointing;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::libtorch::{LibTorchDevice, TchTensor};
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{Tensor, TensorPrimitive};
use ember_backend::{Layer, TchBackend, layer_of, same_type};

use crate::attention::{AttnMask, float_tensor, register};

/// ember's LibTorch backend (ember-backend says which element type) and its inner backend.
type AdT = TchBackend;
type T = <TchBackend as AutodiffBackend>::InnerBackend;

/// The fused attention when it applies to these tensors on `B` (ember's tch backend or its inner
/// backend); `Err` gives the inputs back otherwise.
#[allow(clippy::type_complexity)]
pub(crate) fn try_fused<B: Backend>(
    q: Tensor<B, 4>,
    k: Tensor<B, 4>,
    v: Tensor<B, 4>,
    mask: &AttnMask<B>,
) -> Result<Tensor<B, 4>, (Tensor<B, 4>, Tensor<B, 4>, Tensor<B, 4>)> {
    if !applies(&q, &k, mask) {
        return Err((q, k, v));
    }
    let scale = (q.dims()[3] as f64).powf(-0.5);
    match layer_of::<B, AdT>() {
        Some(Layer::Autodiff) => {
            let out = fused_autodiff(same_type(q), same_type(k), same_type(v), scale);
            Ok(same_type(out))
        }
        Some(Layer::Inner) => {
            let (out, _) = forward(same_type(q), same_type(k), same_type(v), scale);
            Ok(same_type(out))
        }
        // `applies` checked the backend; kept total rather than asserting it.
        None => Err((q, k, v)),
    }
}

/// `B` is ember's tch backend or its inner backend, the tensors are on the CPU, there is no cache
/// offset and any padding is at the end of rows.
pub(crate) fn applies<B: Backend>(q: &Tensor<B, 4>, k: &Tensor<B, 4>, mask: &AttnMask<B>) -> bool {
    let torch = layer_of::<B, AdT>().is_some();
    let device = q.device();
    let on_cpu = (&device as &dyn Any)
        .downcast_ref::<LibTorchDevice>()
        .is_some_and(|d| matches!(d, LibTorchDevice::Cpu));
    torch && on_cpu && q.dims()[2] == k.dims()[2] && causal_right_padded(mask)
}

/// Causal without a cache offset, and any key padding only at the end of each row.
fn causal_right_padded<B: Backend>(mask: &AttnMask<B>) -> bool {
    match mask {
        AttnMask::Causal { past: 0, padding } => match padding {
            None => true,
            Some(p) => {
                let [b, t] = p.dims();
                let pad: Vec<bool> = p.clone().into_data().iter::<bool>().collect();
                pad.chunks(t.max(1))
                    .take(b)
                    // Once padding starts it continues to the end of the row.
                    .all(|row| row.windows(2).all(|w| !w[0] || w[1]))
            }
        },
        _ => false,
    }
}

/// The libtorch tensor, contiguous: the CPU kernels read q, k, v, the output and its gradient
/// as `[b, heads, seq, d]` row-major (ember's q/k/v are transposed views).
fn raw(t: Tensor<T, 4>) -> tch::Tensor {
    t.into_primitive().tensor().tensor.contiguous()
}

fn wrap<const D: usize>(t: tch::Tensor) -> Tensor<T, D> {
    Tensor::from_primitive(TensorPrimitive::Float(TchTensor::new(t)))
}

/// Output `[b, heads, s, d]` and row log-sum-exp `[b, heads, s]` (f32).
fn forward(
    q: Tensor<T, 4>,
    k: Tensor<T, 4>,
    v: Tensor<T, 4>,
    scale: f64,
) -> (Tensor<T, 4>, Tensor<T, 3>) {
    let (out, lse) = tch::Tensor::internal_scaled_dot_product_flash_attention_for_cpu(
        &raw(q),
        &raw(k),
        &raw(v),
        0.0,
        true,
        None::<tch::Tensor>,
        Some(scale),
    );
    (wrap(out), wrap(lse))
}

#[derive(Debug, Clone)]
struct FlashState {
    q: Tensor<T, 4>,
    k: Tensor<T, 4>,
    v: Tensor<T, 4>,
    out: Tensor<T, 4>,
    lse: Tensor<T, 3>,
    scale: f64,
}

#[derive(Debug)]
struct FlashBackward;

impl Backward<T, 3> for FlashBackward {
    type State = FlashState;

    fn backward(
        self,
        ops: Ops<Self::State, 3>,
        grads: &mut Gradients,
        _checkpointer: &mut Checkpointer,
    ) {
        let [node_q, node_k, node_v] = ops.parents;
        let dout = float_tensor::<T, 4>(grads.consume::<T>(&ops.node));
        let FlashState {
            q,
            k,
            v,
            out,
            lse,
            scale,
        } = ops.state;
        let (dq, dk, dv) =
            tch::Tensor::internal_scaled_dot_product_flash_attention_for_cpu_backward(
                &raw(dout),
                &raw(q),
                &raw(k),
                &raw(v),
                &raw(out),
                &lse.into_primitive().tensor().tensor,
                0.0,
                true,
                None::<tch::Tensor>,
                Some(scale),
            );
        for (node, grad) in [(node_q, dq), (node_k, dk), (node_v, dv)] {
            if let Some(node) = node {
                register::<T, 4>(grads, node.id, wrap(grad));
            }
        }
    }
}

fn fused_autodiff(
    q: Tensor<AdT, 4>,
    k: Tensor<AdT, 4>,
    v: Tensor<AdT, 4>,
    scale: f64,
) -> Tensor<AdT, 4> {
    let (q, k, v) = (
        q.into_primitive().tensor(),
        k.into_primitive().tensor(),
        v.into_primitive().tensor(),
    );
    let (qi, ki, vi) = (
        float_tensor::<T, 4>(q.primitive.clone()),
        float_tensor::<T, 4>(k.primitive.clone()),
        float_tensor::<T, 4>(v.primitive.clone()),
    );
    let out = match FlashBackward
        .prepare::<NoCheckpointing>([q.node.clone(), k.node.clone(), v.node.clone()])
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(prep) => {
            let (out, lse) = forward(qi.clone(), ki.clone(), vi.clone(), scale);
            let state = FlashState {
                q: qi,
                k: ki,
                v: vi,
                out: out.clone(),
                lse,
                scale,
            };
            prep.finish(state, out.into_primitive().tensor())
        }
        OpsKind::UnTracked(prep) => {
            let (out, _) = forward(qi, ki, vi, scale);
            prep.finish(out.into_primitive().tensor())
        }
    };
    Tensor::from_primitive(TensorPrimitive::Float(out))
}
