//! Peak-memory estimate of a LoRA run from shapes alone: frozen weights, adapter state, and the
//! activations the backward pass keeps for the largest micro-batch. docs/study.md has the formula
//! and how it compares with measured runs.

use ember_qwen3::Qwen3Config;
use serde::Serialize;

/// Bytes per element of a compute dtype name (`f32`, `bf16`).
pub fn dtype_bytes(dtype: &str) -> u64 {
    match dtype {
        "bf16" | "bfloat16" | "f16" | "float16" => 2,
        _ => 4,
    }
}

/// Bytes the adapter costs per trainable parameter: f32 weight, gradient, accumulated gradient,
/// and AdamW's two moments.
pub const ADAPTER_BYTES_PER_PARAM: u64 = 4 * 5;

/// What the estimate needs to know about the run.
#[derive(Debug, Clone, Serialize)]
pub struct MemoryInputs {
    pub base_params: u64,
    pub trainable_params: u64,
    pub lora_rank: usize,
    pub dtype: String,
    /// Rows of the largest training micro-batch.
    pub batch_size: usize,
    /// Its padded length (the longest sample, rounded up to `pad_to_multiple_of`).
    pub padded_len: usize,
    /// Bytes the process or device holds before the model: the measured resident size of the
    /// planning process on CPU, an assumed context size on a GPU.
    pub runtime_bytes: u64,
    /// Layer recompute (`gradient_checkpointing`): the backward keeps each layer's input and one
    /// layer's activations at a time.
    pub recompute: bool,
    /// DoRA adapters: what their weight norms add ([`DoraWeights`]); `None` for plain LoRA.
    pub dora: Option<DoraWeights>,
}

/// The adapted weights DoRA works on, in elements.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct DoraWeights {
    /// The adapted weights of one decoder layer (`Σ in·out` over its adapted projections).
    pub per_layer: u64,
    /// The largest adapted weight.
    pub largest: u64,
    /// `lora_dropout > 0`: the forward's base term is then `dropout(x) Wᵀ` on an f32 copy of `W`,
    /// which the backward keeps (PEFT computes it so).
    pub dropout: bool,
}

/// The estimate, by part, with ember's memory features (chunked attention and chunked
/// head + cross-entropy, the defaults) and without them (HF eager attention, full logits).
#[derive(Debug, Clone, Serialize)]
pub struct MemoryEstimate {
    pub inputs: MemoryInputs,
    pub weights: u64,
    pub adapter: u64,
    /// What the backward pass keeps of every decoder layer (without attention scores).
    pub layer_activations: u64,
    /// DoRA: one projection's `W + s·BA` in f32 (and the f32 cast of a bf16 `W`) while its norm is
    /// taken, plus, while dropout applies to a bf16 base, the f32 copies of the adapted weights the
    /// backward keeps (one layer's with recompute, every layer's without).
    pub dora: u64,
    /// Chunked attention: row statistics kept per layer plus one chunk's scores at a time.
    pub attention: u64,
    /// Plain attention: repeated K/V and full score matrices kept per layer.
    pub attention_plain: u64,
    /// Chunked loss: the supervised hidden rows plus one chunk's logits at a time.
    pub logits: u64,
    /// Plain loss: f32 logits of every position, their log-softmax and gradient.
    pub logits_plain: u64,
    pub peak: u64,
    pub peak_plain: u64,
}

/// Elements the backward pass keeps per token and decoder layer, attention scores aside
/// (docs/study.md derives it): `12h + 7q + 5kv + 5i + 7r`.
pub fn layer_elements_per_token(c: &Qwen3Config, rank: usize) -> u64 {
    let h = c.hidden_size as u64;
    let q = (c.num_attention_heads * c.head_dim) as u64;
    let kv = (c.kv_heads() * c.head_dim) as u64;
    let i = c.intermediate_size as u64;
    12 * h + 7 * q + 5 * kv + 5 * i + 7 * rank as u64
}

/// The estimate for a model of config `c`.
pub fn estimate(c: &Qwen3Config, inputs: MemoryInputs) -> MemoryEstimate {
    let e = dtype_bytes(&inputs.dtype);
    let (b, len) = (inputs.batch_size as u64, inputs.padded_len as u64);
    let tokens = b * len;
    let layers = c.num_hidden_layers as u64;
    let heads = c.num_attention_heads as u64;
    let (h, v) = (c.hidden_size as u64, c.vocab_size as u64);
    let q = heads * c.head_dim as u64;
    let weights = inputs.base_params * e;
    let adapter = inputs.trainable_params * ADAPTER_BYTES_PER_PARAM;
    // Every layer's kept tensors (with recompute: every layer's input and one layer's kept
    // tensors), the embedding output and the final norm.
    let per_layer = layer_elements_per_token(c, inputs.lora_rank);
    let kept = if inputs.recompute {
        layers * h + per_layer
    } else {
        layers * per_layer
    };
    let layer_activations = tokens * (kept + 2 * h) * e;
    let dora = inputs.dora.map_or(0, |d| {
        // An f32 base is its own f32 copy.
        let copies = if e == 4 { 0 } else { 1 };
        let transient = (1 + copies) * d.largest * 4;
        let kept_layers = if inputs.recompute { 1 } else { layers };
        let kept = if d.dropout {
            copies * d.per_layer * 4 * kept_layers
        } else {
            0
        };
        transient + kept
    });
    // Chunked: max and sum per row and head (f32) in every layer; scores, probabilities and
    // their gradient of one chunk of query rows (f32) at a time.
    let chunk = (ember_qwen3::attention::DEFAULT_ATTENTION_CHUNK as u64).min(len);
    let attention = tokens * layers * heads * 2 * 4 + b * heads * chunk * len * 4 * 3;
    // Plain: K and V repeated to every head, scores and probabilities (f32) per layer, and one
    // layer's score gradient.
    let attention_plain =
        tokens * layers * (2 * q * e + 2 * heads * len * 4) + b * heads * len * len * 4;
    // Chunked: the gathered hidden states and their gradient, and one chunk's f32 logits buffer
    // (twice under bf16: the bf16 logits beside their f32 cast, and the exact gradient form's
    // scatter into a copy).
    let chunk_tokens = ember_qwen3::loss::LossImpl::default_chunk_tokens(v as usize) as u64;
    let chunk_buffers = if e == 4 { 1 } else { 2 };
    let logits = tokens * (h * e + 4) + chunk_tokens.min(tokens) * v * 4 * chunk_buffers;
    let logits_plain = tokens * v * 4 * 3;
    let fixed = inputs.runtime_bytes + weights + adapter + layer_activations + dora;
    MemoryEstimate {
        peak: fixed + attention + logits,
        peak_plain: fixed + attention_plain + logits_plain,
        weights,
        adapter,
        layer_activations,
        dora,
        attention,
        attention_plain,
        logits,
        logits_plain,
        inputs,
    }
}

/// An assumed CUDA context and allocator reserve on a GPU.
pub const GPU_RUNTIME_BYTES: u64 = 512 << 20;

/// The resident set size of this process (Linux `/proc/self/status` `VmRSS`), if known.
pub fn current_rss() -> Option<u64> {
    proc_status_kib("VmRSS:").map(|k| k * 1024)
}

/// The peak resident set size of this process so far (`VmHWM`), if known.
pub fn peak_rss() -> Option<u64> {
    proc_status_kib("VmHWM:").map(|k| k * 1024)
}

fn proc_status_kib(field: &str) -> Option<u64> {
    let text = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = text.lines().find(|l| l.starts_with(field))?;
    line[field.len()..]
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}

/// `1536` -> `1.5 KiB`.
pub fn human_bytes(b: u64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < units.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{b} B")
    } else {
        format!("{v:.1} {}", units[u])
    }
}

impl std::fmt::Display for MemoryEstimate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let i = &self.inputs;
        writeln!(
            f,
            "  Peak memory (estimate, {} base, micro-batch {} x {} tokens) = {}",
            i.dtype,
            i.batch_size,
            i.padded_len,
            human_bytes(self.peak)
        )?;
        writeln!(
            f,
            "    runtime {} + weights {} + adapter/optimizer {} + layer activations {} + attention {} + loss {}",
            human_bytes(i.runtime_bytes),
            human_bytes(self.weights),
            human_bytes(self.adapter),
            human_bytes(self.layer_activations),
            human_bytes(self.attention),
            human_bytes(self.logits)
        )?;
        if self.dora > 0 {
            writeln!(f, "    + DoRA weight norms {}", human_bytes(self.dora))?;
        }
        write!(
            f,
            "    without the memory features (plain attention {}, full logits {}): {}",
            human_bytes(self.attention_plain),
            human_bytes(self.logits_plain),
            human_bytes(self.peak_plain)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qwen3_8b_weights_and_adapter() {
        let c: Qwen3Config = serde_json::from_str(
            r#"{"hidden_size":4096,"intermediate_size":12288,"num_hidden_layers":36,
                "num_attention_heads":32,"num_key_value_heads":8,"head_dim":128,"vocab_size":151936}"#,
        )
        .unwrap();
        let m = estimate(
            &c,
            MemoryInputs {
                base_params: 8_190_735_360,
                trainable_params: 43_646_976,
                lora_rank: 16,
                dtype: "bf16".into(),
                batch_size: 4,
                padded_len: 6504,
                runtime_bytes: 0,
                recompute: false,
                dora: None,
            },
        );
        assert_eq!(m.weights, 8_190_735_360 * 2);
        assert_eq!(m.adapter, 43_646_976 * 20);
        assert!(m.peak < m.peak_plain);
        assert_eq!(
            m.peak,
            m.weights + m.adapter + m.layer_activations + m.attention + m.logits
        );
        // Plain attention keeps two f32 [heads, len] rows per token and layer.
        assert!(m.attention_plain > 4 * 6504 * 36 * 32 * 2 * 6504 * 4);
        // Recompute keeps 36 layer inputs plus one layer's activations instead of 36 layers'.
        let r = estimate(
            &c,
            MemoryInputs {
                recompute: true,
                ..m.inputs.clone()
            },
        );
        let tokens = 4 * 6504;
        let per_layer = layer_elements_per_token(&c, 16);
        assert_eq!(
            m.layer_activations - r.layer_activations,
            tokens * (35 * per_layer - 36 * 4096) * 2
        );
        assert_eq!(human_bytes(1536), "1.5 KiB");
        // DoRA with dropout on a bf16 base under recompute: one layer's f32 weight copies (q, k, v,
        // o: 4096·(4096+1024+1024+4096); gate, up, down: 3·4096·12288) and the transient pair.
        let per_layer = 4096 * (4096 + 1024 + 1024 + 4096) + 3 * 4096 * 12288;
        let d = estimate(
            &c,
            MemoryInputs {
                dora: Some(DoraWeights {
                    per_layer,
                    largest: 4096 * 12288,
                    dropout: true,
                }),
                ..r.inputs.clone()
            },
        );
        assert_eq!(d.dora, per_layer * 4 + 2 * 4096 * 12288 * 4);
        assert_eq!(d.peak - r.peak, d.dora);
    }
}
