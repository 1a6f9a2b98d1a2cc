//! Scaled dot-product attention for the decoder: the plain form (HF eager: repeat K/V, full
//! `[batch, heads, seq, keys]` scores, softmax in f32) and a memory-efficient chunked form.
//!
//! # Chunked attention
//!
//! Queries are processed in chunks of rows. Each chunk computes its scores against the keys it may
//! see (with a causal mask, keys past the chunk's last position are skipped), a full-row softmax
//! in f32, and its output; only that chunk's scores exist at any time. Grouped-query attention
//! reshapes the query heads of a kv group into rows (`[b, kv, group * rows, d]`), so K and V are
//! never repeated.
//!
//! Under autodiff the chunked form is one custom operation ([`Backward`]): the forward saves q, k,
//! v, the output and each row's softmax statistics (maximum and sum of exponentials, i.e. the
//! log-sum-exp kept in a form that stays exact for fully masked rows) and the backward recomputes
//! the scores chunk by chunk (as FlashAttention does). The graph thus holds O(seq) instead of
//! O(seq²) per layer. The custom op needs the concrete `Autodiff<Inner>` type, while the model is
//! generic over any `Backend`; [`ember_backend::dispatch_autodiff`] says whether `B` is one of
//! ember's autodiff backends and gives its inner backend. On any other backend the same chunked
//! forward runs with ordinary ops: exact, and memory-efficient when autodiff is off (inference);
//! with an unknown autodiff backend the graph keeps every chunk's probabilities (same memory as the
//! plain form).
//!
//! Fully masked query rows (a left-padded query that sees only padding) get what the plain form
//! gives them: all scores equal the finite mask value, so softmax is uniform over *all* keys and the
//! output is the mean of V; their gradient reaches only V. Such rows never reach a loss, but
//! keeping them identical makes the two forms interchangeable everywhere.

use burn::backend::Autodiff;
use burn::backend::autodiff::NodeId;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::{CheckpointStrategy, NoCheckpointing};
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::tensor::activation::softmax;
use burn::tensor::backend::Backend;
use burn::tensor::{Bool, DType, Tensor, TensorPrimitive};
use ember_backend::{AutodiffOp, dispatch_autodiff, same_type};

/// Large negative score for masked attention positions. Finite, so a fully masked row (a padded
/// query) gives a uniform row instead of NaN; such rows never reach the loss.
pub const MASK_VALUE: f32 = -1e30;

/// A row whose maximum score is below this saw only masked keys.
const FULLY_MASKED_BELOW: f32 = -1e29;

/// Query rows per chunk by default: scores of one chunk are `batch * heads * 128 * keys` floats
/// (about 64 MiB for 32 heads at 4k keys), big enough for efficient matmuls.
pub const DEFAULT_ATTENTION_CHUNK: usize = 128;

/// Which attention implementation a layer uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttentionImpl {
    /// HF eager attention: repeated K/V and full score matrices (kept by autodiff for backward).
    Plain,
    /// Query chunks of `chunk` rows; custom backward that recomputes scores (see module docs).
    Chunked { chunk: usize },
    /// The backend's own fused kernels where they apply (LibTorch on CPU: torch's flash attention
    /// forward and backward, see `attention_torch`), else [`AttentionImpl::Chunked`]. Measured as
    /// fast as `Chunked` on CPU with slightly more memory (docs/performance.md), so not the default.
    Fused { chunk: usize },
}

impl Default for AttentionImpl {
    fn default() -> Self {
        AttentionImpl::Chunked {
            chunk: DEFAULT_ATTENTION_CHUNK,
        }
    }
}

/// `plain`, `chunked`, `chunked:ROWS`, `fused` or `fused:ROWS` (the spelling of `--attention` and
/// of the run config's `model.attention`).
impl std::str::FromStr for AttentionImpl {
    type Err = crate::Qwen3Error;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || crate::Qwen3Error::UnknownChoice {
            what: "attention",
            value: s.to_string(),
            expected: "plain, chunked, chunked:ROWS, fused or fused:ROWS (ROWS >= 1)",
        };
        let (name, rows) = match s.trim().split_once(':') {
            None => (s.trim(), DEFAULT_ATTENTION_CHUNK),
            Some((name, n)) => match n.trim().parse::<usize>() {
                Ok(n) if n >= 1 => (name, n),
                _ => return Err(bad()),
            },
        };
        match name {
            "plain" if !s.contains(':') => Ok(AttentionImpl::Plain),
            "chunked" => Ok(AttentionImpl::Chunked { chunk: rows }),
            "fused" => Ok(AttentionImpl::Fused { chunk: rows }),
            _ => Err(bad()),
        }
    }
}

/// Which keys each query may not see.
#[derive(Debug, Clone)]
pub enum AttnMask<B: Backend> {
    /// Causal with `past` cached positions: query `i` (absolute position `past + i`) sees keys
    /// `0..=past + i`, except keys flagged in `padding: [batch, past + seq]` (true = padding).
    /// Never materialises a `[seq, keys]` mask.
    Causal {
        past: usize,
        padding: Option<Tensor<B, 2, Bool>>,
    },
    /// Any mask `[batch or 1, 1, seq, keys]`, true where attention is forbidden.
    Dense(Tensor<B, 4, Bool>),
}

impl<B: Backend> From<Tensor<B, 4, Bool>> for AttnMask<B> {
    fn from(mask: Tensor<B, 4, Bool>) -> Self {
        AttnMask::Dense(mask)
    }
}

impl<B: Backend> AttnMask<B> {
    /// Rows `i0..i1` of the mask over keys `0..bound`: `[batch or 1, 1, i1 - i0, bound]`.
    pub fn rows(
        &self,
        i0: usize,
        i1: usize,
        bound: usize,
        device: &B::Device,
    ) -> Tensor<B, 4, Bool> {
        let c = i1 - i0;
        match self {
            AttnMask::Causal { past, padding } => {
                let causal =
                    Tensor::<B, 2, Bool>::tril_mask([c, bound], (past + i0) as i64, device)
                        .unsqueeze::<4>();
                match padding {
                    None => causal,
                    Some(pad) => {
                        let b = pad.dims()[0];
                        let pad = pad.clone().narrow(1, 0, bound).reshape([b, 1, 1, bound]);
                        causal
                            .expand([b, 1, c, bound])
                            .bool_or(pad.expand([b, 1, c, bound]))
                    }
                }
            }
            AttnMask::Dense(m) => m.clone().narrow(2, i0, c).narrow(3, 0, bound),
        }
    }

    /// The whole mask, `[batch or 1, 1, seq, keys]`.
    pub fn to_dense(&self, seq: usize, keys: usize, device: &B::Device) -> Tensor<B, 4, Bool> {
        self.rows(0, seq, keys, device)
    }

    /// Keys a chunk of rows ending (exclusive) at `i1` can see at most: with a causal mask, keys
    /// after the chunk's last position are masked for every row and need not be computed.
    fn key_bound(&self, i1: usize, keys: usize) -> usize {
        match self {
            AttnMask::Causal { past, .. } => (past + i1).min(keys),
            AttnMask::Dense(_) => keys,
        }
    }

    /// The same mask with its tensors mapped (e.g. to or from an inner backend).
    pub fn map_bool<B2: Backend>(
        self,
        f: impl Fn(Tensor<B, 2, Bool>) -> Tensor<B2, 2, Bool>,
        g: impl Fn(Tensor<B, 4, Bool>) -> Tensor<B2, 4, Bool>,
    ) -> AttnMask<B2> {
        match self {
            AttnMask::Causal { past, padding } => AttnMask::Causal {
                past,
                padding: padding.map(f),
            },
            AttnMask::Dense(m) => AttnMask::Dense(g(m)),
        }
    }
}

/// Attention of `q: [b, heads, s, d]` over `k, v: [b, kv_heads, t, d]` (heads a multiple of
/// kv_heads; head `h` reads kv head `h / (heads / kv_heads)`), scaled by `1/sqrt(d)`. Returns
/// `[b, heads, s, d]`.
pub fn attention<B: Backend>(
    q: Tensor<B, 4>,
    k: Tensor<B, 4>,
    v: Tensor<B, 4>,
    mask: AttnMask<B>,
    imp: AttentionImpl,
) -> Tensor<B, 4> {
    match imp {
        AttentionImpl::Plain => plain_attention(q, k, v, mask),
        AttentionImpl::Chunked { chunk } => chunked_attention(q, k, v, mask, chunk.max(1)),
        AttentionImpl::Fused { chunk } => {
            #[cfg(feature = "tch")]
            let (q, k, v) = match crate::attention_torch::try_fused(q, k, v, &mask) {
                Ok(out) => return out,
                Err(qkv) => qkv,
            };
            chunked_attention(q, k, v, mask, chunk.max(1))
        }
    }
}

/// HF eager attention (`repeat_kv`, full scores, softmax in f32).
pub fn plain_attention<B: Backend>(
    q: Tensor<B, 4>,
    k: Tensor<B, 4>,
    v: Tensor<B, 4>,
    mask: AttnMask<B>,
) -> Tensor<B, 4> {
    let [b, nh, s, hd] = q.dims();
    let [_, nkv, t, _] = k.dims();
    let mask = mask.to_dense(s, t, &q.device());
    let (k, v) = (repeat_kv(k, nh / nkv), repeat_kv(v, nh / nkv));
    let dtype = q.dtype();
    let scores = q.matmul(k.swap_dims(2, 3)) * (hd as f64).powf(-0.5);
    let scores = scores.mask_fill(mask.expand([b, nh, s, t]), MASK_VALUE);
    // Softmax in f32, as HF's eager attention.
    let probs = softmax(scores.cast(DType::F32), 3).cast(dtype);
    probs.matmul(v)
}

/// Grouped-query attention: each of the `n_rep` query heads of a group reads the same kv head
/// (HF's `repeat_kv`: head `h` uses kv head `h / n_rep`).
pub fn repeat_kv<B: Backend>(x: Tensor<B, 4>, n_rep: usize) -> Tensor<B, 4> {
    if n_rep == 1 {
        return x;
    }
    let [b, kv, s, d] = x.dims();
    x.unsqueeze_dim::<5>(2)
        .expand([b, kv, n_rep, s, d])
        .reshape([b, kv * n_rep, s, d])
}

/// Chunked attention; under one of ember's autodiff backends a custom op with a recomputing
/// backward, elsewhere the chunked forward with ordinary ops.
pub fn chunked_attention<B: Backend>(
    q: Tensor<B, 4>,
    k: Tensor<B, 4>,
    v: Tensor<B, 4>,
    mask: AttnMask<B>,
    chunk: usize,
) -> Tensor<B, 4> {
    match dispatch_autodiff(ChunkedAttentionOp {
        q,
        k,
        v,
        mask,
        chunk,
    }) {
        Ok(out) => out,
        Err(ChunkedAttentionOp {
            q,
            k,
            v,
            mask,
            chunk,
        }) => chunked_forward(q, k, v, &mask, chunk).out,
    }
}

/// [`chunked_attention`]'s arguments, for [`dispatch_autodiff`].
struct ChunkedAttentionOp<B: Backend> {
    q: Tensor<B, 4>,
    k: Tensor<B, 4>,
    v: Tensor<B, 4>,
    mask: AttnMask<B>,
    chunk: usize,
}

impl<B: Backend> AutodiffOp<B> for ChunkedAttentionOp<B> {
    type Output = Tensor<B, 4>;

    fn run<I: Backend>(self) -> Tensor<B, 4> {
        let out = chunked_attention_autodiff::<I, NoCheckpointing>(
            same_type(self.q),
            same_type(self.k),
            same_type(self.v),
            same_type(self.mask),
            self.chunk,
        );
        same_type(out)
    }
}

/// Whether [`AttentionImpl::Fused`] runs the backend's fused kernel (rather than the chunked op) for
/// queries `q`, keys `k` and this mask.
pub fn fused_kernel_applies<B: Backend>(
    q: &Tensor<B, 4>,
    k: &Tensor<B, 4>,
    mask: &AttnMask<B>,
) -> bool {
    #[cfg(feature = "tch")]
    {
        crate::attention_torch::applies(q, k, mask)
    }
    #[cfg(not(feature = "tch"))]
    {
        let _ = (q, k, mask);
        false
    }
}

/// Whether the chunked forms (attention and loss) run as custom autodiff ops with a recomputing
/// backward on `B`, i.e. `B` is one of ember's autodiff backends compiled into this build.
pub fn has_custom_backward<B: Backend>() -> bool {
    ember_backend::is_ember_autodiff::<B>()
}

/// Output `[b, heads, s, d]` and per-row softmax statistics `[b, heads, s, 1]` (f32): the maximum
/// score and the sum of `exp(score - max)`.
pub struct ChunkedForward<B: Backend> {
    pub out: Tensor<B, 4>,
    pub row_max: Tensor<B, 4>,
    pub row_sum: Tensor<B, 4>,
}

struct Dims {
    b: usize,
    nh: usize,
    nkv: usize,
    g: usize,
    s: usize,
    t: usize,
    d: usize,
    scale: f64,
}

fn dims<B: Backend>(q: &Tensor<B, 4>, k: &Tensor<B, 4>) -> Dims {
    let [b, nh, s, d] = q.dims();
    let [_, nkv, t, _] = k.dims();
    assert!(
        nkv > 0 && nh % nkv == 0,
        "{nh} query heads are not a multiple of {nkv} kv heads"
    );
    Dims {
        b,
        nh,
        nkv,
        g: nh / nkv,
        s,
        t,
        d,
        scale: (d as f64).powf(-0.5),
    }
}

/// Masked f32 scores of query rows `i0..i1` against keys `0..bound`: `[b, kv, g * c, bound]`.
fn chunk_scores<B: Backend>(
    qc: Tensor<B, 4>,
    kc: Tensor<B, 4>,
    mask: &AttnMask<B>,
    n: &Dims,
    (i0, i1, bound): (usize, usize, usize),
) -> Tensor<B, 4> {
    let c = i1 - i0;
    // Scores in the input dtype, then f32, as the plain form (and HF) does.
    let scores = qc
        .matmul(kc.swap_dims(2, 3))
        .mul_scalar(n.scale)
        .cast(DType::F32);
    let m = mask
        .rows(i0, i1, bound, &scores.device())
        .unsqueeze_dim::<5>(2)
        .expand([n.b, n.nkv, n.g, c, bound]);
    scores
        .reshape([n.b, n.nkv, n.g, c, bound])
        .mask_fill(m, MASK_VALUE)
        .reshape([n.b, n.nkv, n.g * c, bound])
}

/// Query rows `i0..i1` of a `[b, heads, s, x]` tensor as `[b, kv, g * c, x]`: the heads of a kv
/// group become rows, which is how GQA avoids repeating K and V.
fn group_rows<B: Backend>(x: &Tensor<B, 4>, n: &Dims, i0: usize, c: usize) -> Tensor<B, 4> {
    let last = x.dims()[3];
    x.clone()
        .narrow(2, i0, c)
        .reshape([n.b, n.nkv, n.g * c, last])
}

fn ungroup_rows<B: Backend>(x: Tensor<B, 4>, n: &Dims, c: usize) -> Tensor<B, 4> {
    let last = x.dims()[3];
    x.reshape([n.b, n.nh, c, last])
}

/// `(start, end)` of consecutive chunks of `chunk` (at least 1) items covering `0..n`; the last may
/// be shorter. Shared by the chunked attention (query rows) and the chunked loss (tokens).
pub(crate) fn chunk_ranges(n: usize, chunk: usize) -> impl Iterator<Item = (usize, usize)> {
    let chunk = chunk.max(1);
    (0..n)
        .step_by(chunk)
        .map(move |i0| (i0, (i0 + chunk).min(n)))
}

/// The chunked forward with plain tensor ops (differentiable by ordinary autodiff as well).
pub fn chunked_forward<B: Backend>(
    q: Tensor<B, 4>,
    k: Tensor<B, 4>,
    v: Tensor<B, 4>,
    mask: &AttnMask<B>,
    chunk: usize,
) -> ChunkedForward<B> {
    let n = dims(&q, &k);
    let dtype = q.dtype();
    // Fully masked rows average V over all keys (see module docs).
    let v_mean = v.clone().cast(DType::F32).mean_dim(2);
    let (mut outs, mut maxs, mut sums) = (Vec::new(), Vec::new(), Vec::new());
    for (i0, i1) in chunk_ranges(n.s, chunk) {
        let c = i1 - i0;
        let bound = mask.key_bound(i1, n.t);
        let qc = group_rows(&q, &n, i0, c);
        let kc = k.clone().narrow(2, 0, bound);
        let vc = v.clone().narrow(2, 0, bound);
        let scores = chunk_scores(qc, kc, mask, &n, (i0, i1, bound));
        let row_max = scores.clone().max_dim(3);
        let e = (scores - row_max.clone()).exp();
        let row_sum = e.clone().sum_dim(3);
        let probs = (e / row_sum.clone()).cast(dtype);
        let out = probs.matmul(vc).cast(DType::F32);
        let full = row_max.clone().lower_elem(FULLY_MASKED_BELOW).float();
        let out = (out * (full.clone().neg() + 1.0) + full * v_mean.clone()).cast(dtype);
        outs.push(ungroup_rows(out, &n, c));
        maxs.push(ungroup_rows(row_max, &n, c));
        sums.push(ungroup_rows(row_sum, &n, c));
    }
    ChunkedForward {
        out: Tensor::cat(outs, 2),
        row_max: Tensor::cat(maxs, 2),
        row_sum: Tensor::cat(sums, 2),
    }
}

/// Gradients `(dq, dk, dv)` of the chunked attention given the output gradient `dout`, recomputing
/// each chunk's probabilities from the saved row statistics. Math in f32; gradients are returned in
/// the dtypes of q, k, v.
#[allow(clippy::too_many_arguments)]
pub fn chunked_backward<B: Backend>(
    q: Tensor<B, 4>,
    k: Tensor<B, 4>,
    v: Tensor<B, 4>,
    fwd: &ChunkedForward<B>,
    mask: &AttnMask<B>,
    chunk: usize,
    dout: Tensor<B, 4>,
) -> (Tensor<B, 4>, Tensor<B, 4>, Tensor<B, 4>) {
    let n = dims(&q, &k);
    let (q_dtype, k_dtype, v_dtype) = (q.dtype(), k.dtype(), v.dtype());
    let device = q.device();
    let dout = dout.cast(DType::F32);
    let mut dk = Tensor::<B, 4>::zeros([n.b, n.nkv, n.t, n.d], (&device, DType::F32));
    let mut dv = Tensor::<B, 4>::zeros([n.b, n.nkv, n.t, n.d], (&device, DType::F32));
    // Output gradient of fully masked rows, spread uniformly over all keys of V at the end.
    let mut dv_uniform = Tensor::<B, 4>::zeros([n.b, n.nkv, 1, n.d], (&device, DType::F32));
    let mut dqs = Vec::new();
    for (i0, i1) in chunk_ranges(n.s, chunk) {
        let c = i1 - i0;
        let bound = mask.key_bound(i1, n.t);
        let qc = group_rows(&q, &n, i0, c);
        let kc = k.clone().narrow(2, 0, bound);
        let vc = v.clone().narrow(2, 0, bound).cast(DType::F32);
        // Recompute exactly as the forward did (same dtype path), then use the saved statistics.
        let scores = chunk_scores(qc.clone(), kc.clone(), mask, &n, (i0, i1, bound));
        let row_max = group_rows(&fwd.row_max, &n, i0, c);
        let row_sum = group_rows(&fwd.row_sum, &n, i0, c);
        let probs = (scores - row_max.clone()).exp() / row_sum;
        let full = row_max.lower_elem(FULLY_MASKED_BELOW).float();
        let keep = full.clone().neg() + 1.0;
        let doc = group_rows(&dout, &n, i0, c);
        dv_uniform = dv_uniform + (doc.clone() * full).sum_dim(2);
        let doc = doc * keep;
        let oc = group_rows(&fwd.out, &n, i0, c).cast(DType::F32);
        let delta = (doc.clone() * oc).sum_dim(3);
        let dv_c = probs.clone().swap_dims(2, 3).matmul(doc.clone());
        let dp = doc.matmul(vc.swap_dims(2, 3));
        let ds = probs * (dp - delta) * n.scale;
        let dq_c = ds.clone().matmul(kc.cast(DType::F32));
        let dk_c = ds.swap_dims(2, 3).matmul(qc.cast(DType::F32));
        dqs.push(ungroup_rows(dq_c, &n, c));
        if bound == n.t {
            dk = dk + dk_c;
            dv = dv + dv_c;
        } else {
            let r = [0..n.b, 0..n.nkv, 0..bound, 0..n.d];
            dk = dk
                .clone()
                .slice_assign(r.clone(), dk.slice(r.clone()) + dk_c);
            dv = dv.clone().slice_assign(r.clone(), dv.slice(r) + dv_c);
        }
    }
    let dv = dv + dv_uniform / n.t as f64;
    (
        Tensor::cat(dqs, 2).cast(q_dtype),
        dk.cast(k_dtype),
        dv.cast(v_dtype),
    )
}

/// What the backward needs: inputs, output and row statistics on the inner backend.
#[derive(Debug, Clone)]
struct AttnState<I: Backend> {
    q: Tensor<I, 4>,
    k: Tensor<I, 4>,
    v: Tensor<I, 4>,
    out: Tensor<I, 4>,
    row_max: Tensor<I, 4>,
    row_sum: Tensor<I, 4>,
    mask: AttnMask<I>,
    chunk: usize,
}

#[derive(Debug)]
struct ChunkedAttentionBackward;

impl<I: Backend> Backward<I, 3> for ChunkedAttentionBackward {
    type State = AttnState<I>;

    fn backward(
        self,
        ops: Ops<Self::State, 3>,
        grads: &mut Gradients,
        _checkpointer: &mut Checkpointer,
    ) {
        let [node_q, node_k, node_v] = ops.parents;
        let dout = float_tensor::<I, 4>(grads.consume::<I>(&ops.node));
        let AttnState {
            q,
            k,
            v,
            out,
            row_max,
            row_sum,
            mask,
            chunk,
        } = ops.state;
        let fwd = ChunkedForward {
            out,
            row_max,
            row_sum,
        };
        let (dq, dk, dv) = chunked_backward(q, k, v, &fwd, &mask, chunk, dout);
        for (node, grad) in [(node_q, dq), (node_k, dk), (node_v, dv)] {
            if let Some(node) = node {
                register(grads, node.id, grad);
            }
        }
    }
}

pub(crate) fn float_tensor<I: Backend, const D: usize>(p: I::FloatTensorPrimitive) -> Tensor<I, D> {
    Tensor::from_primitive(TensorPrimitive::Float(p))
}

pub(crate) fn register<I: Backend, const D: usize>(
    grads: &mut Gradients,
    id: NodeId,
    grad: Tensor<I, D>,
) {
    grads.register::<I>(id, grad.into_primitive().tensor());
}

/// The chunked attention as one autodiff node over `q`, `k`, `v`.
pub fn chunked_attention_autodiff<I: Backend, C: CheckpointStrategy>(
    q: Tensor<Autodiff<I, C>, 4>,
    k: Tensor<Autodiff<I, C>, 4>,
    v: Tensor<Autodiff<I, C>, 4>,
    mask: AttnMask<Autodiff<I, C>>,
    chunk: usize,
) -> Tensor<Autodiff<I, C>, 4> {
    let (q, k, v) = (
        q.into_primitive().tensor(),
        k.into_primitive().tensor(),
        v.into_primitive().tensor(),
    );
    let mask = mask.map_bool(|t| t.inner(), |t| t.inner());
    let (qi, ki, vi) = (
        float_tensor::<I, 4>(q.primitive.clone()),
        float_tensor::<I, 4>(k.primitive.clone()),
        float_tensor::<I, 4>(v.primitive.clone()),
    );
    let out = match ChunkedAttentionBackward
        .prepare::<C>([q.node.clone(), k.node.clone(), v.node.clone()])
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(prep) => {
            let fwd = chunked_forward(qi.clone(), ki.clone(), vi.clone(), &mask, chunk);
            let out = fwd.out.clone().into_primitive().tensor();
            let state = AttnState {
                q: qi,
                k: ki,
                v: vi,
                out: fwd.out,
                row_max: fwd.row_max,
                row_sum: fwd.row_sum,
                mask,
                chunk,
            };
            prep.finish(state, out)
        }
        OpsKind::UnTracked(prep) => {
            let fwd = chunked_forward(qi, ki, vi, &mask, chunk);
            prep.finish(fwd.out.into_primitive().tensor())
        }
    };
    Tensor::from_primitive(TensorPrimitive::Float(out))
}
