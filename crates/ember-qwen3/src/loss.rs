//! Chunked cross-entropy over the output projection: logits, log-sum-exp and loss are computed a
//! chunk of tokens at a time, so the full `[tokens, vocab]` f32 logits (600 MB for 1k tokens of
//! Qwen3's 151,936-word vocabulary) and their gradient never exist at once.
//!
//! Only supervised positions (shifted label not -100) are projected at all. Under one of ember's
//! autodiff backends the head and loss form one custom autodiff op. The loss ends the graph, so its
//! upstream gradient is a scalar: the forward computes `(softmax - onehot) @ W` for each chunk while
//! that chunk's logits exist (the "fused linear cross-entropy" trick) and keeps only that `[n, h]`
//! gradient; the backward scales it. No logits are recomputed. The head weight gets no
//! gradient: ember keeps `lm_head` (and tied embeddings) frozen; a trainable head (a LoRA adapter on
//! `lm_head`, an unfrozen weight) takes the plain path in the model instead. On other backends the
//! same chunked forward runs with ordinary ops (exact; memory-efficient when autodiff is off).

use burn::backend::Autodiff;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::{CheckpointStrategy, NoCheckpointing};
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::tensor::backend::Backend;
use burn::tensor::{DType, IndexingUpdateOp, Int, Tensor, TensorData, TensorPrimitive};

use ember_backend::{AutodiffOp, dispatch_autodiff, same_type};

use crate::attention::{chunk_ranges, float_tensor, register};
use crate::model::IGNORE_INDEX;

/// Logits per chunk by default (64 Mi floats, 256 MiB in f32): 441 tokens of a 151,936-word
/// vocabulary, 8,192 (the most) of an 8,192-word one. Smaller chunks run the head matmuls slower
/// (220 tokens: ~20 % slower steps on the q06b4 bench); one chunk's f32 buffer is the loss's
/// whole extra memory (docs/performance.md).
pub const DEFAULT_LOSS_CHUNK_LOGITS: usize = 1 << 26;

/// How the model computes its training loss.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LossImpl {
    /// Full f32 logits, `log_softmax`, gather (HF's `ForCausalLMLoss`).
    Plain,
    /// Chunks of `tokens` supervised positions through the head and the loss.
    Chunked { tokens: usize },
}

impl LossImpl {
    /// Chunked, with chunks of about [`DEFAULT_LOSS_CHUNK_LOGITS`] logits.
    pub fn chunked_for_vocab(vocab: usize) -> Self {
        LossImpl::Chunked {
            tokens: Self::default_chunk_tokens(vocab),
        }
    }

    /// Tokens per chunk of [`LossImpl::chunked_for_vocab`].
    pub fn default_chunk_tokens(vocab: usize) -> usize {
        (DEFAULT_LOSS_CHUNK_LOGITS / vocab.max(1)).clamp(16, 8192)
    }

    /// A choice parsed from text ([`LossChoice`]) for a model of `vocab` tokens.
    pub fn for_vocab(choice: LossChoice, vocab: usize) -> Self {
        match choice {
            LossChoice::Plain => LossImpl::Plain,
            LossChoice::Chunked(None) => LossImpl::chunked_for_vocab(vocab),
            LossChoice::Chunked(Some(tokens)) => LossImpl::Chunked { tokens },
        }
    }
}

/// A [`LossImpl`] as a user writes it, before the model's vocabulary sizes the default chunk:
/// `plain`, `chunked` or `chunked:TOKENS` (`--loss`, the run config's `model.loss`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LossChoice {
    Plain,
    /// Tokens per chunk; `None`: sized for the vocabulary ([`LossImpl::chunked_for_vocab`]).
    Chunked(Option<usize>),
}

impl std::str::FromStr for LossChoice {
    type Err = crate::Qwen3Error;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || crate::Qwen3Error::UnknownChoice {
            what: "loss",
            value: s.to_string(),
            expected: "plain, chunked or chunked:TOKENS (TOKENS >= 1)",
        };
        match s.trim().split_once(':') {
            None if s.trim() == "plain" => Ok(LossChoice::Plain),
            None if s.trim() == "chunked" => Ok(LossChoice::Chunked(None)),
            Some(("chunked", n)) => match n.trim().parse::<usize>() {
                Ok(n) if n >= 1 => Ok(LossChoice::Chunked(Some(n))),
                _ => Err(bad()),
            },
            _ => Err(bad()),
        }
    }
}

/// Supervised positions of a shifted next-token loss: position `t` of row `r` (flattened index
/// `r * seq + t`) predicts `labels[r][t + 1]` when that label is not [`IGNORE_INDEX`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ShiftedTargets {
    pub rows: Vec<i64>,
    pub targets: Vec<i64>,
}

/// The supervised positions of row-major `labels: [batch, seq]`.
///
/// # Panics
/// If a label is neither [`IGNORE_INDEX`] nor in `0..vocab` (the plain path would index out of
/// bounds; tokenizers never produce such labels).
pub fn shifted_targets(labels: &[i64], batch: usize, seq: usize, vocab: usize) -> ShiftedTargets {
    assert_eq!(labels.len(), batch * seq, "labels are not [batch, seq]");
    let mut out = ShiftedTargets::default();
    for r in 0..batch {
        for t in 0..seq.saturating_sub(1) {
            let label = labels[r * seq + t + 1];
            if label == IGNORE_INDEX {
                continue;
            }
            assert!(
                (0..vocab as i64).contains(&label),
                "label {label} is neither {IGNORE_INDEX} nor a token id below the vocabulary size {vocab}"
            );
            out.rows.push((r * seq + t) as i64);
            out.targets.push(label);
        }
    }
    out
}

/// Summed cross-entropy of `hidden: [n, h] @ weight: [vocab, h]ᵀ` against `targets: [n]`, chunk
/// by chunk (`chunk` rows). Logits are computed in the hidden dtype and cast to f32, as
/// [`crate::Qwen3ForCausalLM::lm_head`] does. `weight` must not need a gradient.
pub fn chunked_head_cross_entropy<B: Backend>(
    hidden: Tensor<B, 2>,
    weight: Tensor<B, 2>,
    targets: Tensor<B, 1, Int>,
    chunk: usize,
) -> Tensor<B, 1> {
    let chunk = chunk.max(1);
    match dispatch_autodiff(HeadCrossEntropyOp {
        hidden,
        weight,
        targets,
        chunk,
    }) {
        Ok(sum) => sum,
        Err(HeadCrossEntropyOp {
            hidden,
            weight,
            targets,
            chunk,
        }) => ce_forward(hidden, weight, targets, chunk, false).0,
    }
}

/// [`chunked_head_cross_entropy`]'s arguments, for [`dispatch_autodiff`].
struct HeadCrossEntropyOp<B: Backend> {
    hidden: Tensor<B, 2>,
    weight: Tensor<B, 2>,
    targets: Tensor<B, 1, Int>,
    chunk: usize,
}

impl<B: Backend> AutodiffOp<B> for HeadCrossEntropyOp<B> {
    type Output = Tensor<B, 1>;

    fn run<I: Backend>(self) -> Tensor<B, 1> {
        let out = head_cross_entropy_autodiff::<I, NoCheckpointing>(
            same_type(self.hidden),
            same_type(self.weight),
            same_type(self.targets),
            self.chunk,
        );
        same_type(out)
    }
}

fn chunk_logits<B: Backend>(
    hidden: &Tensor<B, 2>,
    weight: &Tensor<B, 2>,
    i0: usize,
    c: usize,
) -> Tensor<B, 2> {
    hidden
        .clone()
        .narrow(0, i0, c)
        .matmul(weight.clone().transpose())
        .cast(DType::F32)
}

/// The loss sum `[1]` and, when `with_grad`, its gradient w.r.t. `hidden` (`[n, h]`, in the hidden
/// dtype). The loss is the end of the graph, so its upstream gradient is a scalar: computing
/// `(softmax - onehot) W` here, while each chunk's logits exist anyway, saves the backward a second
/// head matmul per chunk (the backward only scales it).
fn ce_forward<B: Backend>(
    hidden: Tensor<B, 2>,
    weight: Tensor<B, 2>,
    targets: Tensor<B, 1, Int>,
    chunk: usize,
    with_grad: bool,
) -> (Tensor<B, 1>, Option<Tensor<B, 2>>) {
    let n = hidden.dims()[0];
    let dtype = hidden.dtype();
    let device = hidden.device();
    let mut sum = Tensor::<B, 1>::zeros([1], (&device, DType::F32));
    let mut grads = Vec::new();
    for (i0, i1) in chunk_ranges(n, chunk) {
        let c = i1 - i0;
        let logits = chunk_logits(&hidden, &weight, i0, c);
        let idx = targets.clone().narrow(0, i0, c);
        // Ordered so that one `[c, vocab]` buffer lives at a time where the backend works in place
        // on a tensor it owns alone (libtorch does): `sub` and `exp` reuse the logits' buffer.
        let picked = logits.clone().gather(1, idx.clone().reshape([c, 1]));
        let max = logits.clone().max_dim(1);
        let e = (logits - max.clone()).exp();
        let sum_exp = e.clone().sum_dim(1);
        let lse = sum_exp.clone().log() + max;
        sum = sum + (lse - picked).sum();
        if with_grad {
            grads.push(hidden_grad(e, sum_exp, &weight, idx, dtype));
        }
    }
    let grad = with_grad.then(|| {
        if grads.is_empty() {
            hidden.zeros_like()
        } else {
            Tensor::cat(grads, 0)
        }
    });
    (sum, grad)
}

/// `(softmax - onehot(target)) @ weight` for one chunk, from `e = exp(logits - max)` and its row
/// sums, in `dtype`.
///
/// In f32 it is `(e @ W) / Σe - W[target]`: the `[c, vocab]` buffer is only read by the matmul, with
/// no division over it and no scatter (libtorch's scatter copies the whole buffer). The subtraction
/// cancels where the target's probability is near 1, leaving an error of about one rounding of
/// |W[target]| per token: ~1e-7 relative in f32 (the HF parity tests hold) but ~2e-3 after a bf16
/// matmul, so lower precisions take the exact form, rounding `softmax - onehot` (not its parts) to
/// `dtype` as HF does.
fn hidden_grad<B: Backend>(
    e: Tensor<B, 2>,
    sum_exp: Tensor<B, 2>,
    weight: &Tensor<B, 2>,
    targets: Tensor<B, 1, Int>,
    dtype: DType,
) -> Tensor<B, 2> {
    if dtype == DType::F32 {
        let target_rows = weight.clone().select(0, targets);
        return e.matmul(weight.clone()) / sum_exp - target_rows;
    }
    let c = targets.dims()[0];
    let minus_one = Tensor::<B, 2>::full([c, 1], -1.0, (&e.device(), DType::F32));
    (e / sum_exp)
        .scatter(1, targets.reshape([c, 1]), minus_one, IndexingUpdateOp::Add)
        .cast(dtype)
        .matmul(weight.clone())
}

#[derive(Debug, Clone)]
struct CeState<I: Backend> {
    /// d(sum) / d(hidden), computed in the forward.
    grad: Tensor<I, 2>,
}

#[derive(Debug)]
struct HeadCrossEntropyBackward;

impl<I: Backend> Backward<I, 1> for HeadCrossEntropyBackward {
    type State = CeState<I>;

    fn backward(
        self,
        ops: Ops<Self::State, 1>,
        grads: &mut Gradients,
        _checkpointer: &mut Checkpointer,
    ) {
        let [node_hidden] = ops.parents;
        let upstream = float_tensor::<I, 1>(grads.consume::<I>(&ops.node));
        if let Some(node) = node_hidden {
            let g = ops.state.grad;
            let scale = upstream.cast(g.dtype()).reshape([1, 1]);
            register(grads, node.id, g * scale);
        }
    }
}

/// The chunked head cross-entropy as one autodiff node over `hidden` (the weight is treated as a
/// constant).
pub fn head_cross_entropy_autodiff<I: Backend, C: CheckpointStrategy>(
    hidden: Tensor<Autodiff<I, C>, 2>,
    weight: Tensor<Autodiff<I, C>, 2>,
    targets: Tensor<Autodiff<I, C>, 1, Int>,
    chunk: usize,
) -> Tensor<Autodiff<I, C>, 1> {
    let (weight, targets) = (weight.inner(), targets.inner());
    let hidden = hidden.into_primitive().tensor();
    let hi = float_tensor::<I, 2>(hidden.primitive.clone());
    let out = match HeadCrossEntropyBackward
        .prepare::<C>([hidden.node.clone()])
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(prep) => {
            let (sum, grad) = ce_forward(hi.clone(), weight, targets, chunk, true);
            let grad = grad.unwrap_or_else(|| hi.zeros_like());
            prep.finish(CeState { grad }, sum.into_primitive().tensor())
        }
        OpsKind::UnTracked(prep) => {
            let (sum, _) = ce_forward(hi, weight, targets, chunk, false);
            prep.finish(sum.into_primitive().tensor())
        }
    };
    Tensor::from_primitive(TensorPrimitive::Float(out))
}

/// `Tensor<B, 1, Int>` of host indices.
pub(crate) fn int_tensor<B: Backend>(v: Vec<i64>, device: &B::Device) -> Tensor<B, 1, Int> {
    let n = v.len();
    Tensor::from_data(TensorData::new(v, [n]), device)
}

#[cfg(test)]
mod choice_tests {
    use super::*;
    use crate::AttentionImpl;

    #[test]
    fn spellings_parse_and_bad_ones_name_the_choices() {
        assert_eq!("plain".parse::<LossChoice>().ok(), Some(LossChoice::Plain));
        assert_eq!(
            LossImpl::for_vocab("chunked".parse().expect("chunked"), 1000),
            LossImpl::chunked_for_vocab(1000)
        );
        assert_eq!(
            "chunked:64".parse::<LossChoice>().ok(),
            Some(LossChoice::Chunked(Some(64)))
        );
        assert_eq!(
            "chunked:32".parse::<AttentionImpl>().ok(),
            Some(AttentionImpl::Chunked { chunk: 32 })
        );
        assert_eq!(
            "chunked".parse::<AttentionImpl>().ok(),
            Some(AttentionImpl::default())
        );
        assert_eq!(
            "plain".parse::<AttentionImpl>().ok(),
            Some(AttentionImpl::Plain)
        );
        assert!(matches!(
            "fused".parse::<AttentionImpl>(),
            Ok(AttentionImpl::Fused { .. })
        ));
        for bad in ["flash", "chunked:0", "chunked:x", "plain:3", ""] {
            let e = bad.parse::<AttentionImpl>().expect_err(bad).to_string();
            assert!(e.contains("chunked:ROWS") && e.contains("attention"), "{e}");
        }
        for bad in ["fused", "chunked:0", "plain:1"] {
            let e = bad.parse::<LossChoice>().expect_err(bad).to_string();
            assert!(e.contains("chunked:TOKENS"), "{e}");
        }
    }
}
