//! What the evaluator needs from a model, and its implementation for ember's Qwen3.
//!
//! lm-eval scores a request `(context, continuation)` by feeding
//! `(context + continuation)[-(max_length + 1):][:-1]` and summing the f32 log-softmax of each
//! continuation token. [`Qwen3Scorer`] computes the same numbers two ways:
//! - [`Strategy::Packed`]: requests that share their context (the choices of one document) become
//!   one segment: the context once, then each choice's tokens as a branch that attends to the
//!   context and to itself. Several segments are packed into one sequence with a block mask and
//!   per-token RoPE positions, so one forward scores many documents, each context computed once.
//! - [`Strategy::PerRequest`]: one ordinary forward per request (what lm-eval does), kept as the
//!   baseline for timing and as a cross-check.

use std::collections::HashMap;

use burn::tensor::activation::log_softmax;
use burn::tensor::{Bool, Int, Tensor, TensorData, backend::Backend};
use ember_qwen3::{ModelInputs, Qwen3Config, Qwen3ForCausalLM};

use crate::EvalError;

/// One log-likelihood request in tokens: lm-eval's `(context_enc, continuation_enc)`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Request {
    pub context: Vec<u32>,
    pub continuation: Vec<u32>,
}

/// lm-eval's answer to a request: the summed log-probability (an f32 sum, widened) and whether
/// every continuation token is the argmax.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LogLikelihood {
    pub ll: f64,
    pub is_greedy: bool,
}

/// A model the evaluator can score: base, base + adapter, or a checkpoint all implement this.
pub trait LogLikelihoodModel {
    /// Longest input in tokens (lm-eval's `max_length`); longer requests are cut from the left.
    fn max_length(&self) -> usize;

    /// One answer per request, in order.
    fn loglikelihood(&mut self, requests: &[Request]) -> Result<Vec<LogLikelihood>, EvalError>;
}

/// How [`Qwen3Scorer`] batches requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    /// Shared contexts computed once, segments packed up to `max_tokens` per forward (a longer
    /// segment runs alone).
    Packed { max_tokens: usize },
    /// One forward per request.
    PerRequest,
}

impl Default for Strategy {
    /// Packing costs attention over the whole pack (quadratic), so only short documents are
    /// packed together: on the tiny model on a CPU, 256 tokens runs ~3x faster than one forward
    /// per choice, 2048 slower (`examples/speed.rs`).
    fn default() -> Self {
        Strategy::Packed { max_tokens: 256 }
    }
}

/// A Qwen3 model (with or without LoRA weights in its layers) as a [`LogLikelihoodModel`].
#[derive(Debug)]
pub struct Qwen3Scorer<B: Backend> {
    pub model: Qwen3ForCausalLM<B>,
    pub cfg: Qwen3Config,
    pub strategy: Strategy,
    /// Score over the first N vocabulary entries only (see [`Qwen3Scorer::with_vocab_limit`]).
    pub vocab_limit: Option<usize>,
    device: B::Device,
}

impl<B: Backend> Qwen3Scorer<B> {
    pub fn new(model: Qwen3ForCausalLM<B>, cfg: Qwen3Config, device: B::Device) -> Self {
        Self {
            model,
            cfg,
            strategy: Strategy::default(),
            vocab_limit: None,
            device,
        }
    }

    /// lm-eval's HFLM, when given a PEFT adapter, resizes the model's embeddings to the
    /// tokenizer's length before loading it; the log-softmax then runs over those entries only
    /// (Qwen3: 151,669 of 151,936). Set this to reproduce its adapter scores.
    pub fn with_vocab_limit(mut self, limit: Option<usize>) -> Self {
        self.vocab_limit = limit.filter(|&n| n > 0 && n < self.cfg.vocab_size);
        self
    }

    pub fn with_strategy(mut self, strategy: Strategy) -> Self {
        self.strategy = strategy;
        self
    }

    pub fn device(&self) -> &B::Device {
        &self.device
    }

    /// The tokens actually fed before the continuation: the context, cut from the left so that
    /// `context + continuation[:-1]` fits in `max_length` (lm-eval's slice, which only ever
    /// removes context tokens because it asserts `len(continuation) <= max_length`).
    fn prefix<'r>(&self, index: usize, req: &'r Request) -> Result<&'r [u32], EvalError> {
        let (c, m, l) = (req.context.len(), req.continuation.len(), self.max_length());
        let bad = |reason: String| EvalError::Request { index, reason };
        if c == 0 || m == 0 {
            return Err(bad("empty context or continuation".into()));
        }
        if m > l {
            return Err(bad(format!(
                "continuation of {m} tokens exceeds max_length {l}"
            )));
        }
        let vocab = self.cfg.vocab_size;
        if let Some(&id) = req
            .context
            .iter()
            .chain(&req.continuation)
            .find(|&&id| id as usize >= vocab)
        {
            return Err(bad(format!(
                "token id {id} is outside the vocabulary of {vocab}"
            )));
        }
        Ok(&req.context[(c + m).saturating_sub(l + 1)..])
    }

    fn score_packed(
        &self,
        requests: &[Request],
        max_tokens: usize,
    ) -> Result<Vec<LogLikelihood>, EvalError> {
        // Requests with the same (cut) context share one segment.
        let mut segments: Vec<Segment> = Vec::new();
        let mut by_prefix: HashMap<&[u32], usize> = HashMap::new();
        for (i, req) in requests.iter().enumerate() {
            let prefix = self.prefix(i, req)?;
            let s = *by_prefix.entry(prefix).or_insert_with(|| {
                segments.push(Segment {
                    prefix,
                    branches: Vec::new(),
                });
                segments.len() - 1
            });
            segments[s].branches.push(i);
        }
        let mut out = vec![None; requests.len()];
        let mut pack: Vec<&Segment> = Vec::new();
        let mut pack_tokens = 0;
        for seg in &segments {
            let n = seg.tokens(requests);
            if !pack.is_empty() && pack_tokens + n > max_tokens {
                self.forward_pack(&pack, requests, &mut out)?;
                pack.clear();
                pack_tokens = 0;
            }
            pack.push(seg);
            pack_tokens += n;
        }
        if !pack.is_empty() {
            self.forward_pack(&pack, requests, &mut out)?;
        }
        out.into_iter()
            .enumerate()
            .map(|(index, r)| {
                r.ok_or_else(|| EvalError::Request {
                    index,
                    reason: "not scored".into(),
                })
            })
            .collect()
    }

    /// One forward over several segments laid end to end.
    fn forward_pack(
        &self,
        pack: &[&Segment],
        requests: &[Request],
        out: &mut [Option<LogLikelihood>],
    ) -> Result<(), EvalError> {
        let mut ids: Vec<i64> = Vec::new();
        let mut pos: Vec<i64> = Vec::new();
        // Per token: segment start offset and branch (0 = the shared prefix).
        let mut seg_start: Vec<usize> = Vec::new();
        let mut branch_of: Vec<usize> = Vec::new();
        // Per scored token: the row whose logits predict it, the target, and its request.
        let mut rows: Vec<i64> = Vec::new();
        let mut targets: Vec<i64> = Vec::new();
        let mut owner: Vec<usize> = Vec::new();
        for seg in pack {
            let start = ids.len();
            let p = seg.prefix.len();
            for (k, &t) in seg.prefix.iter().enumerate() {
                ids.push(i64::from(t));
                pos.push(k as i64);
                seg_start.push(start);
                branch_of.push(0);
            }
            for (b, &ri) in seg.branches.iter().enumerate() {
                let cont = &requests[ri].continuation;
                let branch_start = ids.len();
                for (k, &t) in cont[..cont.len() - 1].iter().enumerate() {
                    ids.push(i64::from(t));
                    pos.push((p + k) as i64);
                    seg_start.push(start);
                    branch_of.push(b + 1);
                }
                // Token 0 is predicted by the last context row, token k by the branch's row k-1.
                for (k, &t) in cont.iter().enumerate() {
                    rows.push(if k == 0 {
                        start + p - 1
                    } else {
                        branch_start + k - 1
                    } as i64);
                    targets.push(i64::from(t));
                    owner.push(ri);
                }
            }
        }
        let t = ids.len();
        // true = may not attend: other segments, later tokens, and other branches.
        let mut forbidden = vec![true; t * t];
        for q in 0..t {
            for k in seg_start[q]..=q {
                if branch_of[k] == 0 || branch_of[k] == branch_of[q] {
                    forbidden[q * t + k] = false;
                }
            }
        }
        let device = &self.device;
        let m = &self.model;
        let input = Tensor::<B, 2, Int>::from_data(TensorData::new(ids, [1, t]), device);
        // Positions restart in each segment; the block mask keeps segments and branches apart.
        let pos = Tensor::<B, 2, Int>::from_data(TensorData::new(pos, [1, t]), device);
        let mask =
            Tensor::<B, 4, Bool>::from_data(TensorData::new(forbidden, [1, 1, t, t]), device);
        let inputs = ModelInputs::new(input)
            .with_position_ids(pos)
            .with_dense_mask(mask);
        let hidden = m.forward_hidden(&inputs, None);
        let n = rows.len();
        let rows = Tensor::<B, 1, Int>::from_data(TensorData::new(rows, [n]), device);
        let logits = m.lm_head(hidden.select(1, rows));
        let scored = read_scores(logits, targets.clone(), self.vocab_limit, device)?;
        let mut acc: HashMap<usize, (f32, bool)> = HashMap::new();
        for ((lp, greedy), ri) in scored.into_iter().zip(owner) {
            let e = acc.entry(ri).or_insert((0.0, true));
            e.0 += lp;
            e.1 &= greedy;
        }
        for (ri, (ll, is_greedy)) in acc {
            out[ri] = Some(LogLikelihood {
                ll: f64::from(ll),
                is_greedy,
            });
        }
        Ok(())
    }

    fn score_per_request(&self, requests: &[Request]) -> Result<Vec<LogLikelihood>, EvalError> {
        let device = &self.device;
        requests
            .iter()
            .enumerate()
            .map(|(i, req)| {
                let prefix = self.prefix(i, req)?;
                let cont = &req.continuation;
                let ids: Vec<i64> = prefix
                    .iter()
                    .chain(&cont[..cont.len() - 1])
                    .map(|&t| i64::from(t))
                    .collect();
                let (len, m) = (ids.len(), cont.len());
                let input = Tensor::<B, 2, Int>::from_data(TensorData::new(ids, [1, len]), device);
                let logits = self.model.forward(&ModelInputs::new(input));
                let v = logits.dims()[2];
                let logits = logits.slice([0..1, len - m..len, 0..v]);
                let targets = cont.iter().map(|&t| i64::from(t)).collect();
                let scored = read_scores(logits, targets, self.vocab_limit, device)?;
                Ok(LogLikelihood {
                    ll: f64::from(scored.iter().map(|s| s.0).sum::<f32>()),
                    is_greedy: scored.iter().all(|s| s.1),
                })
            })
            .collect()
    }
}

/// A shared context and the requests that continue it.
struct Segment<'r> {
    prefix: &'r [u32],
    branches: Vec<usize>,
}

impl Segment<'_> {
    fn tokens(&self, requests: &[Request]) -> usize {
        self.prefix.len()
            + self
                .branches
                .iter()
                .map(|&i| requests[i].continuation.len() - 1)
                .sum::<usize>()
    }
}

/// f32 `log_softmax` of `logits: [1, n, vocab]`, the log-probability of each target, and
/// whether the target is the argmax.
fn read_scores<B: Backend>(
    logits: Tensor<B, 3>,
    targets: Vec<i64>,
    vocab_limit: Option<usize>,
    device: &B::Device,
) -> Result<Vec<(f32, bool)>, EvalError> {
    let n = targets.len();
    let logits = match vocab_limit {
        Some(v) => {
            let [b, t, _] = logits.dims();
            logits.slice([0..b, 0..t, 0..v])
        }
        None => logits,
    };
    let logp = log_softmax(logits, 2);
    let tgt = Tensor::<B, 3, Int>::from_data(TensorData::new(targets.clone(), [1, n, 1]), device);
    let picked = logp.clone().gather(2, tgt).reshape([n]);
    let greedy = logp.argmax(2).reshape([n]);
    let picked: Vec<f32> = picked
        .into_data()
        .convert::<f32>()
        .to_vec()
        .map_err(|e| EvalError::Model(format!("reading log-probabilities: {e:?}")))?;
    let greedy: Vec<i64> = greedy
        .into_data()
        .convert::<i64>()
        .to_vec()
        .map_err(|e| EvalError::Model(format!("reading argmax: {e:?}")))?;
    Ok(picked
        .into_iter()
        .zip(greedy.into_iter().zip(targets))
        .map(|(lp, (g, t))| (lp, g == t))
        .collect())
}

impl<B: Backend> LogLikelihoodModel for Qwen3Scorer<B> {
    /// lm-eval's HFLM takes `max_position_embeddings` from the config.
    fn max_length(&self) -> usize {
        self.cfg.max_position_embeddings
    }

    fn loglikelihood(&mut self, requests: &[Request]) -> Result<Vec<LogLikelihood>, EvalError> {
        match self.strategy {
            Strategy::Packed { max_tokens } => self.score_packed(requests, max_tokens),
            Strategy::PerRequest => self.score_per_request(requests),
        }
    }
}
