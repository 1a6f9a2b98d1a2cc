//! LoRA adapters for Qwen3: the model's linear layers under their HF module paths, and its shape
//! from a config alone (for the trainable-parameter report without weights). Everything else (adding,
//! saving, loading, merging adapters) is ember-lora's generic code.

use burn::tensor::backend::Backend;
use ember_lora::{LinearShape, LoraLinear, LoraModel, ModelShape};

use crate::{Qwen3Config, Qwen3ForCausalLM};

/// The projections of one decoder layer: `(HF path under model.layers.N, in, out, has bias)`.
fn layer_linears(c: &Qwen3Config) -> [(&'static str, usize, usize, bool); 7] {
    let (h, i) = (c.hidden_size, c.intermediate_size);
    let (q, kv) = (
        c.num_attention_heads * c.head_dim,
        c.kv_heads() * c.head_dim,
    );
    let b = c.attention_bias;
    [
        ("self_attn.q_proj", h, q, b),
        ("self_attn.k_proj", h, kv, b),
        ("self_attn.v_proj", h, kv, b),
        ("self_attn.o_proj", q, h, b),
        ("mlp.gate_proj", h, i, false),
        ("mlp.up_proj", h, i, false),
        ("mlp.down_proj", i, h, false),
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
        let mut v = Vec::with_capacity(self.model.layers.len() * 7 + 1);
        for (n, l) in self.model.layers.iter().enumerate() {
            let (a, m) = (&l.self_attn, &l.mlp);
            for (name, lin) in [
                ("self_attn.q_proj", &a.q_proj),
                ("self_attn.k_proj", &a.k_proj),
                ("self_attn.v_proj", &a.v_proj),
                ("self_attn.o_proj", &a.o_proj),
                ("mlp.gate_proj", &m.gate_proj),
                ("mlp.up_proj", &m.up_proj),
                ("mlp.down_proj", &m.down_proj),
            ] {
                v.push((format!("model.layers.{n}.{name}"), lin));
            }
        }
        if let Some(head) = &self.lm_head {
            v.push(("lm_head".to_string(), head));
        }
        v
    }

    fn lora_linears_mut(&mut self) -> Vec<(String, &mut LoraLinear<B>)> {
        let mut v = Vec::with_capacity(self.model.layers.len() * 7 + 1);
        for (n, l) in self.model.layers.iter_mut().enumerate() {
            let (a, m) = (&mut l.self_attn, &mut l.mlp);
            for (name, lin) in [
                ("self_attn.q_proj", &mut a.q_proj),
                ("self_attn.k_proj", &mut a.k_proj),
                ("self_attn.v_proj", &mut a.v_proj),
                ("self_attn.o_proj", &mut a.o_proj),
                ("mlp.gate_proj", &mut m.gate_proj),
                ("mlp.up_proj", &mut m.up_proj),
                ("mlp.down_proj", &mut m.down_proj),
            ] {
                v.push((format!("model.layers.{n}.{name}"), lin));
            }
        }
        if let Some(head) = &mut self.lm_head {
            v.push(("lm_head".to_string(), head));
        }
        v
    }
}
