//! LoRA adapters for Qwen3: the model's linear layers under their HF module paths, and its shape
//! from a config alone (for the trainable-parameter report without weights). Everything else (adding,
//! saving, loading, merging adapters) is ember-lora's generic code.

use burn::tensor::backend::Backend;
use ember_lora::{LinearShape, LoraLinear, LoraModel, ModelShape};

use crate::model::DecoderLayer;
use crate::{Qwen3Config, Qwen3ForCausalLM};

/// The seven projections of a decoder layer, under their HF paths below `model.layers.N`, in the
/// order of [`DecoderLayer::linears_mut`] and of every list of a layer's linear layers.
pub const PROJECTIONS: [&str; 7] = [
    "self_attn.q_proj",
    "self_attn.k_proj",
    "self_attn.v_proj",
    "self_attn.o_proj",
    "mlp.gate_proj",
    "mlp.up_proj",
    "mlp.down_proj",
];

/// The projections of one decoder layer: `(HF path under model.layers.N, in, out, has bias)`.
fn layer_linears(c: &Qwen3Config) -> [(&'static str, usize, usize, bool); 7] {
    let (h, i) = (c.hidden_size, c.intermediate_size);
    let (q, kv) = (
        c.num_attention_heads * c.head_dim,
        c.kv_heads() * c.head_dim,
    );
    let b = c.attention_bias;
    // (in, out, bias) in PROJECTIONS order.
    let dims = [
        (h, q, b),
        (h, kv, b),
        (h, kv, b),
        (q, h, b),
        (h, i, false),
        (h, i, false),
        (i, h, false),
    ];
    std::array::from_fn(|k| (PROJECTIONS[k], dims[k].0, dims[k].1, dims[k].2))
}

/// A layer's projections, read-only, in [`PROJECTIONS`] order (as [`DecoderLayer::linears_mut`]).
fn linears<B: Backend>(l: &DecoderLayer<B>) -> [&LoraLinear<B>; 7] {
    let (a, m) = (&l.self_attn, &l.mlp);
    [
        &a.q_proj,
        &a.k_proj,
        &a.v_proj,
        &a.o_proj,
        &m.gate_proj,
        &m.up_proj,
        &m.down_proj,
    ]
}

/// The linear layers and parameter count of the model `cfg` describes, without building it. Tied
/// embeddings are counted once.
pub fn model_shape(cfg: &Qwen3Config) -> ModelShape {
    let mut linears = Vec::new();
    let mut params: u64 = 0;
    let embed = (cfg.vocab_size * cfg.hidden_size) as u64;
    params += embed;
    for n in 0..cfg.num_hidden_layers {
        for (name, inp, out, bias) in layer_linears(cfg) {
            linears.push(LinearShape {
                path: format!("model.layers.{n}.{name}"),
                in_features: inp,
                out_features: out,
            });
            params += (inp * out + if bias { out } else { 0 }) as u64;
        }
        // q_norm, k_norm, input_layernorm, post_attention_layernorm
        params += (2 * cfg.head_dim + 2 * cfg.hidden_size) as u64;
    }
    params += cfg.hidden_size as u64; // model.norm
    if !cfg.tie_word_embeddings {
        linears.push(LinearShape {
            path: "lm_head".into(),
            in_features: cfg.hidden_size,
            out_features: cfg.vocab_size,
        });
        params += embed;
    }
    ModelShape {
        linears,
        base_params: params,
        output_layers: vec!["lm_head".into()],
    }
}

impl<B: Backend> LoraModel<B> for Qwen3ForCausalLM<B> {
    fn lora_linears(&self) -> Vec<(String, &LoraLinear<B>)> {
        let mut v = Vec::with_capacity(self.model.layers.len() * PROJECTIONS.len() + 1);
        for (n, l) in self.model.layers.iter().enumerate() {
            for (name, lin) in PROJECTIONS.iter().zip(linears(l)) {
                v.push((format!("model.layers.{n}.{name}"), lin));
            }
        }
        if let Some(head) = &self.lm_head {
            v.push(("lm_head".to_string(), head));
        }
        v
    }

    fn lora_linears_mut(&mut self) -> Vec<(String, &mut LoraLinear<B>)> {
        let mut v = Vec::with_capacity(self.model.layers.len() * PROJECTIONS.len() + 1);
        for (n, l) in self.model.layers.iter_mut().enumerate() {
            for (name, lin) in PROJECTIONS.iter().zip(l.linears_mut()) {
                v.push((format!("model.layers.{n}.{name}"), lin));
            }
        }
        if let Some(head) = &mut self.lm_head {
            v.push(("lm_head".to_string(), head));
        }
        v
    }
}
