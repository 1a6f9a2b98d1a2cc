//! The Qwen3 decoder, with Hugging Face's module names: the path of every parameter, as Burn's
//! module visitor reports it, is its key in an HF checkpoint (`model.layers.0.self_attn.q_proj.weight`).
//!
//! Follows `modeling_qwen3.py`: pre-norm blocks, RMSNorm computed in f32, per-head RMSNorm on q and
//! k before rotate-half RoPE, grouped-query attention, SwiGLU MLP.

use burn::module::{Module, Param};
use burn::tensor::activation::{log_softmax, silu};
use burn::tensor::{Bool, DType, Int, Tensor, TensorData, backend::Backend};

use ember_data::Batch;
use ember_lora::LoraLinear;

use crate::attention::{AttentionImpl, AttnMask, attention};
use crate::config::Qwen3Config;
use crate::loss::{LossImpl, chunked_head_cross_entropy, int_tensor, shifted_targets};
use crate::weights::{Init, WeightSource};

/// Label value excluded from the loss (PyTorch's `ignore_index`): ember-data's, as a tensor element.
pub const IGNORE_INDEX: i64 = ember_data::IGNORE_INDEX as i64;

/// RMSNorm: the statistics are computed in f32 whatever the input dtype, and the weight is applied
/// after casting back (as HF's `Qwen3RMSNorm`).
#[derive(Module, Debug)]
pub struct RmsNorm<B: Backend> {
    pub weight: Param<Tensor<B, 1>>,
    pub eps: f64,
}

impl<B: Backend> RmsNorm<B> {
    fn load(src: &mut impl WeightSource<B>, name: &str, dim: usize, eps: f64) -> Self {
        let w = src.tensor(&format!("{name}.weight"), [dim], Init::Ones);
        Self {
            weight: Param::from_tensor(w).set_require_grad(false),
            eps,
        }
    }

    pub fn forward<const D: usize>(&self, x: Tensor<B, D>) -> Tensor<B, D> {
        let dtype = x.dtype();
        let x = x.cast(DType::F32);
        let var = x.clone().square().mean_dim(D - 1);
        let x = x * (var + self.eps).sqrt().recip();
        let w = self.weight.val();
        let w = w.clone().reshape(broadcast_last::<D>(w.dims()[0]));
        w * x.cast(dtype)
    }
}

fn broadcast_last<const D: usize>(n: usize) -> [usize; D] {
    let mut s = [1; D];
    s[D - 1] = n;
    s
}

/// The token embedding, `[vocab, hidden]`.
#[derive(Module, Debug)]
pub struct Embedding<B: Backend> {
    pub weight: Param<Tensor<B, 2>>,
}

impl<B: Backend> Embedding<B> {
    pub fn forward(&self, ids: Tensor<B, 2, Int>) -> Tensor<B, 3> {
        burn::tensor::module::embedding(self.weight.val(), ids)
    }
}

fn linear<B: Backend>(
    src: &mut impl WeightSource<B>,
    name: &str,
    inp: usize,
    out: usize,
    bias: bool,
) -> LoraLinear<B> {
    let w = src.tensor(&format!("{name}.weight"), [out, inp], Init::Normal);
    let b = bias.then(|| src.tensor(&format!("{name}.bias"), [out], Init::Zeros));
    LoraLinear::frozen(w, b)
}

/// HF `Qwen3RotaryEmbedding`: the inverse frequencies, derived from the config once and kept by
/// the model; [`RotaryEmbedding::tables`] turns positions into the cos/sin tables a forward uses.
#[derive(Debug, Clone)]
pub struct RotaryEmbedding {
    /// `1 / theta^(2i/d) / linear_scale`, `d/2` values in f32, exactly as HF computes them.
    inv_freq: Vec<f32>,
    /// The positions the model was trained for (`max_position_embeddings`).
    max_positions: usize,
}

impl RotaryEmbedding {
    pub fn new(cfg: &Qwen3Config) -> Self {
        let d = cfg.head_dim;
        let theta = cfg.rope_theta as f32;
        let scale = cfg.rope_position_scale() as f32;
        let inv_freq = (0..d / 2)
            .map(|i| 1.0 / theta.powf((2 * i) as f32 / d as f32) / scale)
            .collect();
        Self {
            inv_freq,
            max_positions: cfg.max_position_embeddings,
        }
    }

    /// `max_position_embeddings`: positions past it are outside what the model was trained on.
    pub fn max_positions(&self) -> usize {
        self.max_positions
    }

    fn head_dim(&self) -> usize {
        2 * self.inv_freq.len()
    }

    /// Tables for `positions` (`rows` rows of equal length, row-major): `[rows, len, head_dim]`,
    /// `emb = cat(freqs, freqs)` with `freqs = pos * inv_freq` in f32, as HF.
    pub fn tables<B: Backend>(
        &self,
        positions: &[i64],
        rows: usize,
        dtype: DType,
        device: &B::Device,
    ) -> Rope<B> {
        let d = self.head_dim();
        let len = positions.len() / rows.max(1);
        let mut cos = Vec::with_capacity(positions.len() * d);
        let mut sin = Vec::with_capacity(positions.len() * d);
        for &p in positions {
            for _half in 0..2 {
                for f in &self.inv_freq {
                    let a = p as f32 * f;
                    cos.push(a.cos());
                    sin.push(a.sin());
                }
            }
        }
        let mk = |v: Vec<f32>| {
            Tensor::<B, 3>::from_data(TensorData::new(v, [rows, len, d]), device).cast(dtype)
        };
        Rope {
            cos: mk(cos),
            sin: mk(sin),
        }
    }

    /// Tables for positions `start..start + len` of every row: `[1, len, head_dim]`.
    pub fn range<B: Backend>(
        &self,
        start: usize,
        len: usize,
        dtype: DType,
        device: &B::Device,
    ) -> Rope<B> {
        let positions: Vec<i64> = (start..start + len).map(|p| p as i64).collect();
        self.tables(&positions, 1, dtype, device)
    }
}

/// RoPE tables of one forward: `cos`, `sin` of shape `[batch or 1, seq, head_dim]`.
#[derive(Debug, Clone)]
pub struct Rope<B: Backend> {
    pub cos: Tensor<B, 3>,
    pub sin: Tensor<B, 3>,
}

impl<B: Backend> Rope<B> {
    /// `x * cos + rotate_half(x) * sin` for `x: [batch, heads, seq, head_dim]`.
    pub fn apply(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        let [b, h, s, d] = x.dims();
        let x1 = x.clone().slice([0..b, 0..h, 0..s, 0..d / 2]);
        let x2 = x.clone().slice([0..b, 0..h, 0..s, d / 2..d]);
        let rotated = Tensor::cat(vec![x2.neg(), x1], 3);
        let cos = self.cos.clone().unsqueeze_dim::<4>(1);
        let sin = self.sin.clone().unsqueeze_dim::<4>(1);
        x * cos + rotated * sin
    }

    /// The same tables on the inner backend (layer recompute's gradient-free forward).
    pub fn inner(&self) -> Rope<B::InnerBackend>
    where
        B: burn::tensor::backend::AutodiffBackend,
    {
        Rope {
            cos: self.cos.clone().inner(),
            sin: self.sin.clone().inner(),
        }
    }
}

/// Keys and values of the positions already seen, for generation.
#[derive(Debug, Clone, Default)]
pub struct LayerCache<B: Backend> {
    pub k: Option<Tensor<B, 4>>,
    pub v: Option<Tensor<B, 4>>,
}

impl<B: Backend> LayerCache<B> {
    pub fn len(&self) -> usize {
        self.k.as_ref().map_or(0, |k| k.dims()[2])
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[derive(Module, Debug)]
pub struct Attention<B: Backend> {
    pub q_proj: LoraLinear<B>,
    pub k_proj: LoraLinear<B>,
    pub v_proj: LoraLinear<B>,
    pub o_proj: LoraLinear<B>,
    pub q_norm: RmsNorm<B>,
    pub k_norm: RmsNorm<B>,
    pub num_heads: usize,
    pub num_kv_heads: usize,
    pub head_dim: usize,
    /// Plain or chunked attention; not a parameter (not saved, kept across record loads).
    pub attention_impl: AttentionImpl,
}

impl<B: Backend> Attention<B> {
    fn load(src: &mut impl WeightSource<B>, name: &str, c: &Qwen3Config) -> Self {
        let (h, q_out, kv_out) = (
            c.hidden_size,
            c.num_attention_heads * c.head_dim,
            c.kv_heads() * c.head_dim,
        );
        Self {
            q_proj: linear(src, &format!("{name}.q_proj"), h, q_out, c.attention_bias),
            k_proj: linear(src, &format!("{name}.k_proj"), h, kv_out, c.attention_bias),
            v_proj: linear(src, &format!("{name}.v_proj"), h, kv_out, c.attention_bias),
            o_proj: linear(src, &format!("{name}.o_proj"), q_out, h, c.attention_bias),
            q_norm: RmsNorm::load(src, &format!("{name}.q_norm"), c.head_dim, c.rms_norm_eps),
            k_norm: RmsNorm::load(src, &format!("{name}.k_norm"), c.head_dim, c.rms_norm_eps),
            num_heads: c.num_attention_heads,
            num_kv_heads: c.kv_heads(),
            head_dim: c.head_dim,
            attention_impl: AttentionImpl::default(),
        }
    }

    /// `x: [batch, seq, hidden]`; `mask`: a [`AttnMask`], or a `[batch, 1, seq, past+seq]` bool
    /// tensor, true where attention is forbidden. With a cache, the new keys and values are
    /// appended to it.
    pub fn forward(
        &self,
        x: Tensor<B, 3>,
        rope: &Rope<B>,
        mask: impl Into<AttnMask<B>>,
        cache: Option<&mut LayerCache<B>>,
    ) -> Tensor<B, 3> {
        let [b, s, _] = x.dims();
        let (nh, nkv, hd) = (self.num_heads, self.num_kv_heads, self.head_dim);
        let q = self
            .q_norm
            .forward(self.q_proj.forward(x.clone()).reshape([b, s, nh, hd]));
        let k = self
            .k_norm
            .forward(self.k_proj.forward(x.clone()).reshape([b, s, nkv, hd]));
        let v = self.v_proj.forward(x).reshape([b, s, nkv, hd]);
        let q = rope.apply(q.swap_dims(1, 2));
        let mut k = rope.apply(k.swap_dims(1, 2));
        let mut v = v.swap_dims(1, 2);
        if let Some(cache) = cache {
            if let (Some(pk), Some(pv)) = (cache.k.take(), cache.v.take()) {
                k = Tensor::cat(vec![pk, k], 2);
                v = Tensor::cat(vec![pv, v], 2);
            }
            cache.k = Some(k.clone());
            cache.v = Some(v.clone());
        }
        let out = attention(q, k, v, mask.into(), self.attention_impl);
        self.o_proj
            .forward(out.swap_dims(1, 2).reshape([b, s, nh * hd]))
    }
}

#[derive(Module, Debug)]
pub struct Mlp<B: Backend> {
    pub gate_proj: LoraLinear<B>,
    pub up_proj: LoraLinear<B>,
    pub down_proj: LoraLinear<B>,
}

impl<B: Backend> Mlp<B> {
    fn load(src: &mut impl WeightSource<B>, name: &str, c: &Qwen3Config) -> Self {
        let (h, i) = (c.hidden_size, c.intermediate_size);
        Self {
            gate_proj: linear(src, &format!("{name}.gate_proj"), h, i, false),
            up_proj: linear(src, &format!("{name}.up_proj"), h, i, false),
            down_proj: linear(src, &format!("{name}.down_proj"), i, h, false),
        }
    }

    pub fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        self.down_proj
            .forward(silu(self.gate_proj.forward(x.clone())) * self.up_proj.forward(x))
    }
}

#[derive(Module, Debug)]
pub struct DecoderLayer<B: Backend> {
    pub self_attn: Attention<B>,
    pub mlp: Mlp<B>,
    pub input_layernorm: RmsNorm<B>,
    pub post_attention_layernorm: RmsNorm<B>,
}

impl<B: Backend> DecoderLayer<B> {
    fn load(src: &mut impl WeightSource<B>, name: &str, c: &Qwen3Config) -> Self {
        Self {
            self_attn: Attention::load(src, &format!("{name}.self_attn"), c),
            mlp: Mlp::load(src, &format!("{name}.mlp"), c),
            input_layernorm: RmsNorm::load(
                src,
                &format!("{name}.input_layernorm"),
                c.hidden_size,
                c.rms_norm_eps,
            ),
            post_attention_layernorm: RmsNorm::load(
                src,
                &format!("{name}.post_attention_layernorm"),
                c.hidden_size,
                c.rms_norm_eps,
            ),
        }
    }

    /// The layer's seven projections (where adapters live), in [`crate::lora::PROJECTIONS`] order.
    pub fn linears_mut(&mut self) -> [&mut LoraLinear<B>; 7] {
        let (a, m) = (&mut self.self_attn, &mut self.mlp);
        [
            &mut a.q_proj,
            &mut a.k_proj,
            &mut a.v_proj,
            &mut a.o_proj,
            &mut m.gate_proj,
            &mut m.up_proj,
            &mut m.down_proj,
        ]
    }

    /// One pre-norm block. Callable on its own so that a trainer can recompute a layer.
    pub fn forward(
        &self,
        x: Tensor<B, 3>,
        rope: &Rope<B>,
        mask: impl Into<AttnMask<B>>,
        cache: Option<&mut LayerCache<B>>,
    ) -> Tensor<B, 3> {
        let h = x.clone()
            + self
                .self_attn
                .forward(self.input_layernorm.forward(x), rope, mask, cache);
        h.clone() + self.mlp.forward(self.post_attention_layernorm.forward(h))
    }
}

/// HF `Qwen3Model`: embeddings, decoder layers, final norm, and the rotary embedding they share.
#[derive(Module, Debug)]
pub struct Qwen3Model<B: Backend> {
    pub embed_tokens: Embedding<B>,
    pub layers: Vec<DecoderLayer<B>>,
    pub norm: RmsNorm<B>,
    /// Not a parameter (HF's `inv_freq` is a non-persistent buffer).
    pub rotary_emb: RotaryEmbedding,
}

/// HF `Qwen3ForCausalLM`. `lm_head` is `None` when the embeddings are tied.
#[derive(Module, Debug)]
pub struct Qwen3ForCausalLM<B: Backend> {
    pub model: Qwen3Model<B>,
    pub lm_head: Option<LoraLinear<B>>,
    /// How [`Qwen3ForCausalLM::forward_loss`] computes the loss; not a parameter.
    pub loss_impl: LossImpl,
}

/// What one forward reads, under HF's argument names.
#[derive(Debug, Clone)]
pub struct ModelInputs<B: Backend> {
    /// `[batch, seq]` token ids.
    pub input_ids: Tensor<B, 2, Int>,
    /// HF's 2D `attention_mask` over the `past + seq` keys (1 = token, 0 = padding); `None`: all
    /// tokens. The mask is always causal on top.
    pub attention_mask: Option<Tensor<B, 2, Int>>,
    /// A whole `[batch or 1, 1, seq, past + seq]` mask, true where attention is forbidden (HF's 4D
    /// `attention_mask`); replaces the causal and padding mask. How packed sequences keep apart.
    pub dense_mask: Option<Tensor<B, 4, Bool>>,
    /// `[batch, seq]` RoPE positions (HF's `position_ids`); `None`: `past..past + seq` in every
    /// row, as HF's default.
    pub position_ids: Option<Tensor<B, 2, Int>>,
    /// `[batch, seq]` labels for the loss; positions labelled [`IGNORE_INDEX`] are not supervised.
    /// `None`: the loss takes the input ids (every token supervised, HF's `labels = input_ids`).
    pub labels: Option<Tensor<B, 2, Int>>,
}

impl<B: Backend> ModelInputs<B> {
    pub fn new(input_ids: Tensor<B, 2, Int>) -> Self {
        Self {
            input_ids,
            attention_mask: None,
            dense_mask: None,
            position_ids: None,
            labels: None,
        }
    }

    pub fn with_attention_mask(mut self, mask: Tensor<B, 2, Int>) -> Self {
        self.attention_mask = Some(mask);
        self
    }

    pub fn with_dense_mask(mut self, mask: Tensor<B, 4, Bool>) -> Self {
        self.dense_mask = Some(mask);
        self
    }

    pub fn with_position_ids(mut self, position_ids: Tensor<B, 2, Int>) -> Self {
        self.position_ids = Some(position_ids);
        self
    }

    pub fn with_labels(mut self, labels: Tensor<B, 2, Int>) -> Self {
        self.labels = Some(labels);
        self
    }

    /// A collated batch's input ids, attention mask and labels on `device`.
    pub fn from_batch(batch: &Batch, device: &B::Device) -> Self {
        let shape = [batch.batch_size, batch.seq_len];
        let t =
            |v: &[i64]| Tensor::<B, 2, Int>::from_data(TensorData::new(v.to_vec(), shape), device);
        Self::new(t(&batch.input_ids))
            .with_attention_mask(t(&batch.attention_mask))
            .with_labels(t(&batch.labels))
    }

    /// The labels the loss uses (see [`ModelInputs::labels`]).
    pub(crate) fn loss_labels(&self) -> Tensor<B, 2, Int> {
        self.labels
            .clone()
            .unwrap_or_else(|| self.input_ids.clone())
    }
}

/// What the first decoder layer gets: hidden states `[batch, seq, hidden]`, the RoPE tables of
/// the positions and the attention mask (causal plus key padding is never materialised as
/// `[seq, keys]`: attention chunks build their rows).
#[derive(Debug, Clone)]
pub struct DecoderInput<B: Backend> {
    pub hidden: Tensor<B, 3>,
    pub rope: Rope<B>,
    pub mask: AttnMask<B>,
}

/// Sum of token cross-entropies and the number of supervised tokens: the loss is `sum / count`,
/// and a trainer can divide by a whole accumulation window's count instead (HF `num_items_in_batch`).
#[derive(Debug, Clone)]
pub struct LossSum<B: Backend> {
    pub sum: Tensor<B, 1>,
    pub count: Tensor<B, 1>,
}

impl<B: Backend> LossSum<B> {
    /// The mean token loss.
    pub fn mean(self) -> Tensor<B, 1> {
        self.sum / self.count
    }
}

impl<B: Backend> Qwen3ForCausalLM<B> {
    /// Builds the model, taking every tensor from `src` by its HF name.
    pub fn load(cfg: &Qwen3Config, src: &mut impl WeightSource<B>) -> Self {
        let embed = src.tensor(
            "model.embed_tokens.weight",
            [cfg.vocab_size, cfg.hidden_size],
            Init::Normal,
        );
        let layers = (0..cfg.num_hidden_layers)
            .map(|i| DecoderLayer::load(src, &format!("model.layers.{i}"), cfg))
            .collect();
        let norm = RmsNorm::load(src, "model.norm", cfg.hidden_size, cfg.rms_norm_eps);
        let lm_head = if cfg.tie_word_embeddings {
            // Tied checkpoints may still carry a copy; HF ties it to the embedding regardless.
            src.ignore("lm_head.weight");
            None
        } else {
            Some(linear(
                src,
                "lm_head",
                cfg.hidden_size,
                cfg.vocab_size,
                false,
            ))
        };
        Self {
            model: Qwen3Model {
                embed_tokens: Embedding {
                    weight: Param::from_tensor(embed).set_require_grad(false),
                },
                layers,
                norm,
                rotary_emb: RotaryEmbedding::new(cfg),
            },
            lm_head,
            loss_impl: LossImpl::chunked_for_vocab(cfg.vocab_size),
        }
    }

    /// Selects the attention implementation of every layer.
    pub fn set_attention(&mut self, imp: AttentionImpl) {
        for layer in &mut self.model.layers {
            layer.self_attn.attention_impl = imp;
        }
    }

    /// The attention implementation of the first layer (all layers share it unless set one by one).
    pub fn attention_impl(&self) -> AttentionImpl {
        self.model
            .layers
            .first()
            .map_or_else(AttentionImpl::default, |l| l.self_attn.attention_impl)
    }

    /// Selects how [`Qwen3ForCausalLM::forward_loss`] computes the loss.
    pub fn set_loss(&mut self, imp: LossImpl) {
        self.loss_impl = imp;
    }

    pub fn num_layers(&self) -> usize {
        self.model.layers.len()
    }

    /// Causal plus key-padding mask, `[batch, 1, seq, past+seq]`, true where attention is forbidden.
    /// `attention_mask` (1 = token, 0 = padding) covers all `past+seq` positions.
    pub fn attention_mask(
        attention_mask: Option<Tensor<B, 2, Int>>,
        batch: usize,
        seq: usize,
        past: usize,
        device: &B::Device,
    ) -> Tensor<B, 4, Bool> {
        let total = past + seq;
        // Query i (absolute position past+i) may see keys 0..=past+i.
        let causal = Tensor::<B, 2, Bool>::tril_mask([seq, total], past as i64, device)
            .unsqueeze::<4>()
            .expand([batch, 1, seq, total]);
        match attention_mask {
            None => causal,
            Some(am) => {
                let pad = am
                    .equal_elem(0)
                    .reshape([batch, 1, 1, total])
                    .expand([batch, 1, seq, total]);
                causal.bool_or(pad)
            }
        }
    }

    /// The embeddings, RoPE tables and mask of `inputs`, after `past` cached positions.
    pub fn decoder_input(&self, inputs: &ModelInputs<B>, past: usize) -> DecoderInput<B> {
        let [b, s] = inputs.input_ids.dims();
        let device = inputs.input_ids.device();
        let hidden = self.model.embed_tokens.forward(inputs.input_ids.clone());
        let dtype = hidden.dtype();
        let rotary = &self.model.rotary_emb;
        let rope = match &inputs.position_ids {
            None => rotary.range(past, s, dtype, &device),
            Some(p) => {
                let positions: Vec<i64> = p.clone().into_data().iter::<i64>().collect();
                rotary.tables(&positions, b, dtype, &device)
            }
        };
        let mask = match &inputs.dense_mask {
            Some(m) => AttnMask::Dense(m.clone()),
            None => AttnMask::Causal {
                past,
                padding: inputs.attention_mask.clone().map(|am| am.equal_elem(0)),
            },
        };
        DecoderInput { hidden, rope, mask }
    }

    /// The decoder loop, the only one: every layer in order (without the final norm).
    /// `observe(i, x)` sees each layer's input first (layer recompute keeps them); with a cache,
    /// each layer appends its keys and values.
    pub fn decode_layers(
        &self,
        input: DecoderInput<B>,
        mut cache: Option<&mut Vec<LayerCache<B>>>,
        mut observe: impl FnMut(usize, &Tensor<B, 3>),
    ) -> Tensor<B, 3> {
        let DecoderInput {
            hidden: mut x,
            rope,
            mask,
        } = input;
        if let Some(c) = cache.as_mut() {
            c.resize_with(self.model.layers.len(), LayerCache::default);
        }
        for (i, layer) in self.model.layers.iter().enumerate() {
            observe(i, &x);
            let layer_cache = cache.as_mut().map(|c| &mut c[i]);
            x = layer.forward(x, &rope, mask.clone(), layer_cache);
        }
        x
    }

    /// Final hidden states (after `model.norm`), `[batch, seq, hidden]`. With a cache, the
    /// positions continue after the cached ones.
    pub fn forward_hidden(
        &self,
        inputs: &ModelInputs<B>,
        cache: Option<&mut Vec<LayerCache<B>>>,
    ) -> Tensor<B, 3> {
        let past = cache
            .as_ref()
            .and_then(|c| c.first())
            .map_or(0, |c| c.len());
        let x = self.decode_layers(self.decoder_input(inputs, past), cache, |_, _| {});
        self.model.norm.forward(x)
    }

    /// The output projection applied to hidden states; logits in f32.
    pub fn lm_head(&self, hidden: Tensor<B, 3>) -> Tensor<B, 3> {
        let logits = match &self.lm_head {
            Some(head) => head.forward(hidden),
            None => {
                let [b, s, h] = hidden.dims();
                let w = self.model.embed_tokens.weight.val();
                let v = w.dims()[0];
                hidden
                    .reshape([b * s, h])
                    .matmul(w.transpose())
                    .reshape([b, s, v])
            }
        };
        logits.cast(DType::F32)
    }

    /// Logits `[batch, seq, vocab]` in f32.
    pub fn forward(&self, inputs: &ModelInputs<B>) -> Tensor<B, 3> {
        self.lm_head(self.forward_hidden(inputs, None))
    }

    /// Shifted next-token cross-entropy over positions whose label is not [`IGNORE_INDEX`]:
    /// position `t` predicts `labels[t + 1]` (HF `ForCausalLMLoss`). Computed as
    /// [`Qwen3ForCausalLM::loss_impl`] says (chunked by default; the same sum and count).
    pub fn forward_loss(&self, inputs: &ModelInputs<B>) -> LossSum<B> {
        let hidden = self.forward_hidden(inputs, None);
        self.loss_from_hidden(hidden, inputs.loss_labels())
    }

    /// The loss of [`Qwen3ForCausalLM::forward_loss`] from the final hidden states (after
    /// `model.norm`), as [`Qwen3ForCausalLM::loss_impl`] says.
    pub fn loss_from_hidden(&self, hidden: Tensor<B, 3>, labels: Tensor<B, 2, Int>) -> LossSum<B> {
        match self.loss_impl {
            LossImpl::Plain => shifted_cross_entropy(self.lm_head(hidden), labels),
            LossImpl::Chunked { tokens } => self.chunked_loss_from_hidden(hidden, labels, tokens),
        }
    }

    /// [`Qwen3ForCausalLM::forward_loss`] with the head and loss computed `chunk_tokens`
    /// supervised positions at a time (see [`crate::loss`]); positions whose label is ignored are
    /// never projected. Reads the labels back to the host to find the supervised positions.
    pub fn forward_loss_chunked(&self, inputs: &ModelInputs<B>, chunk_tokens: usize) -> LossSum<B> {
        let hidden = self.forward_hidden(inputs, None);
        self.chunked_loss_from_hidden(hidden, inputs.loss_labels(), chunk_tokens)
    }

    fn chunked_loss_from_hidden(
        &self,
        hidden: Tensor<B, 3>,
        labels: Tensor<B, 2, Int>,
        chunk_tokens: usize,
    ) -> LossSum<B> {
        let [b, s] = labels.dims();
        let device = labels.device();
        let host: Vec<i64> = labels.into_data().iter::<i64>().collect();
        let vocab = self.vocab_size();
        let picked = shifted_targets(&host, b, s, vocab);
        let n = picked.rows.len();
        let count = Tensor::<B, 1>::from_data(TensorData::new(vec![n as f32], [1]), &device);
        if n == 0 {
            // Keep the graph (and a zero gradient) as the plain loss does.
            return LossSum {
                sum: hidden.sum().cast(DType::F32) * 0.0,
                count,
            };
        }
        let h = hidden.dims()[2];
        let rows = hidden
            .reshape([b * s, h])
            .select(0, int_tensor::<B>(picked.rows, &device));
        let targets = int_tensor::<B>(picked.targets, &device);
        let sum = match self.frozen_head_weight() {
            Some(w) => chunked_head_cross_entropy(rows, w, targets, chunk_tokens),
            None => {
                // A trainable head: plain loss on the supervised rows only.
                let logits = self.lm_head(rows.unsqueeze::<3>());
                let logp = log_softmax(logits.squeeze_dim::<2>(0), 1);
                logp.gather(1, targets.reshape([n, 1])).neg().sum()
            }
        };
        LossSum { sum, count }
    }

    /// Rows of the output projection (the tokenizer's ids must stay below it).
    pub fn vocab_size(&self) -> usize {
        match &self.lm_head {
            Some(head) => head.dims().1,
            None => self.model.embed_tokens.weight.dims()[0],
        }
    }

    /// The `[vocab, hidden]` head weight when the head is a plain frozen projection (no adapter, no
    /// bias, no gradient): what the chunked loss's custom backward supports.
    fn frozen_head_weight(&self) -> Option<Tensor<B, 2>> {
        let w = match &self.lm_head {
            Some(head) => {
                let adapter = head.has_active_adapter();
                if adapter || head.bias.is_some() {
                    return None;
                }
                head.weight.val()
            }
            None => self.model.embed_tokens.weight.val(),
        };
        (!w.is_require_grad()).then_some(w)
    }
}

/// Sum and count of the shifted cross-entropy of f32 `logits: [b, s, v]` against `labels: [b, s]`.
pub fn shifted_cross_entropy<B: Backend>(
    logits: Tensor<B, 3>,
    labels: Tensor<B, 2, Int>,
) -> LossSum<B> {
    let [b, s, _] = logits.dims();
    let device = logits.device();
    let tail = Tensor::<B, 2, Int>::full([b, 1], IGNORE_INDEX, &device);
    let shifted = Tensor::cat(vec![labels.slice([0..b, 1..s]), tail], 1);
    let ignored = shifted.clone().equal_elem(IGNORE_INDEX);
    let targets = shifted.mask_fill(ignored.clone(), 0);
    let logp = log_softmax(logits, 2);
    let picked: Tensor<B, 2> = logp.gather(2, targets.unsqueeze_dim(2)).squeeze_dim(2);
    let keep = ignored.bool_not().float();
    let sum = (picked.neg() * keep.clone()).sum();
    LossSum {
        sum,
        count: keep.sum(),
    }
}
