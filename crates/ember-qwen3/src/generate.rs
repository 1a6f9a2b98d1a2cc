//! Text generation with a KV cache: greedy decoding or temperature / top-k / top-p sampling,
//! stopping at the eos ids, token by token to a callback (streaming); and the sampling defaults a
//! model ships in `generation_config.json`.

use std::path::Path;

use burn::tensor::{Int, Tensor, TensorData, backend::Backend};
use rand::{Rng, SeedableRng};

use crate::Qwen3Error;
use crate::config::EosTokenId;
use crate::model::{LayerCache, ModelInputs, Qwen3ForCausalLM};

/// How to pick each next token.
#[derive(Debug, Clone, PartialEq)]
pub struct GenerationConfig {
    pub max_new_tokens: usize,
    /// `None`: greedy (argmax, lowest id on ties, as `torch.argmax`).
    pub sampling: Option<Sampling>,
    /// Generation stops after emitting one of these (it is included in the output, as in HF).
    pub eos_token_ids: Vec<u32>,
}

/// Temperature, top-k and nucleus sampling (HF's order), seeded so that a run can be repeated.
#[derive(Debug, Clone, PartialEq)]
pub struct Sampling {
    pub temperature: f32,
    /// Keep the `top_k` most likely tokens (ties at the k-th kept, as HF); 0: no limit.
    pub top_k: usize,
    pub top_p: f32,
    pub seed: u64,
}

/// The file whose sampling settings `generate` uses by default (HF `GenerationConfig`).
pub const GENERATION_CONFIG_FILE: &str = "generation_config.json";

/// What a model's `generation_config.json` says about decoding, with HF's defaults for what it
/// leaves out (`do_sample = false`, `temperature = 1`, `top_k = 50`, `top_p = 1`).
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
#[serde(default)]
pub struct GenerationDefaults {
    pub do_sample: bool,
    pub temperature: f32,
    pub top_k: usize,
    pub top_p: f32,
    pub max_new_tokens: Option<usize>,
    pub eos_token_id: Option<EosTokenId>,
}

impl Default for GenerationDefaults {
    fn default() -> Self {
        Self {
            do_sample: false,
            temperature: 1.0,
            top_k: 50,
            top_p: 1.0,
            max_new_tokens: None,
            eos_token_id: None,
        }
    }
}

impl GenerationDefaults {
    /// `dir/generation_config.json`, or HF's defaults where the model has none.
    pub fn load(dir: &Path) -> Result<Self, Qwen3Error> {
        let path = dir.join(GENERATION_CONFIG_FILE);
        match std::fs::read_to_string(&path) {
            Ok(text) => serde_json::from_str(&text).map_err(|e| {
                Qwen3Error::Generation(format!("{}: line {}: {e}", path.display(), e.line()))
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(e) => Err(Qwen3Error::Generation(format!("{}: {e}", path.display()))),
        }
    }

    /// The sampling these defaults ask for (`None`: greedy, as HF without `do_sample`).
    pub fn sampling(&self, seed: u64) -> Option<Sampling> {
        self.do_sample.then_some(Sampling {
            temperature: self.temperature,
            top_k: self.top_k,
            top_p: self.top_p,
            seed,
        })
    }

    /// The eos ids it names (none: the model config's).
    pub fn eos_ids(&self) -> Vec<u32> {
        self.eos_token_id
            .as_ref()
            .map_or_else(Vec::new, EosTokenId::ids)
    }
}

/// Why generation stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    Eos,
    MaxNewTokens,
    /// The prompt and the new tokens fill the model's `max_position_embeddings`.
    ContextLength,
}

impl StopReason {
    /// `eos`, `max_new_tokens` or `context_length` (the JSON of `generate --json`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Eos => "eos",
            Self::MaxNewTokens => "max_new_tokens",
            Self::ContextLength => "context_length",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Generation {
    /// The new tokens, without the prompt.
    pub ids: Vec<u32>,
    pub stop: StopReason,
}

impl GenerationConfig {
    pub fn greedy(max_new_tokens: usize, eos_token_ids: Vec<u32>) -> Self {
        Self {
            max_new_tokens,
            sampling: None,
            eos_token_ids,
        }
    }

    fn validate(&self) -> Result<(), Qwen3Error> {
        if let Some(s) = &self.sampling {
            if s.temperature.is_nan() || s.temperature <= 0.0 {
                return Err(Qwen3Error::Generation(format!(
                    "temperature must be > 0, got {}",
                    s.temperature
                )));
            }
            if s.top_p.is_nan() || s.top_p <= 0.0 || s.top_p > 1.0 {
                return Err(Qwen3Error::Generation(format!(
                    "top_p must be in (0, 1], got {}",
                    s.top_p
                )));
            }
        }
        Ok(())
    }
}

impl<B: Backend> Qwen3ForCausalLM<B> {
    /// The most tokens, prompt and generation together, the model has positions for
    /// (`max_position_embeddings`).
    pub fn context_length(&self) -> usize {
        self.model.rotary_emb.max_positions()
    }

    /// Continues `prompt` (token ids). The prompt is run once; every later step feeds one token and
    /// reuses the cached keys and values. Asking for more tokens than the context holds is an error.
    pub fn generate(
        &self,
        prompt: &[u32],
        gcfg: &GenerationConfig,
        device: &B::Device,
    ) -> Result<Generation, Qwen3Error> {
        let max_positions = self.context_length();
        if prompt.len() + gcfg.max_new_tokens > max_positions {
            // HF only warns; generating past the trained positions yields noise, and unbounded.
            return Err(Qwen3Error::Generation(format!(
                "a prompt of {} tokens plus max_new_tokens = {} exceeds the model's max_position_embeddings = {max_positions}; ask for at most {} new tokens",
                prompt.len(),
                gcfg.max_new_tokens,
                max_positions.saturating_sub(prompt.len())
            )));
        }
        self.generate_streaming(prompt, gcfg, device, &mut |_| ())
    }

    /// [`Self::generate`], handing each new token to `on_token` as it is chosen, and stopping
    /// (with [`StopReason::ContextLength`]) where the context is full rather than refusing.
    pub fn generate_streaming(
        &self,
        prompt: &[u32],
        gcfg: &GenerationConfig,
        device: &B::Device,
        on_token: &mut dyn FnMut(u32),
    ) -> Result<Generation, Qwen3Error> {
        gcfg.validate()?;
        if prompt.is_empty() {
            return Err(Qwen3Error::Generation("the prompt has no tokens".into()));
        }
        let max_positions = self.context_length();
        if prompt.len() >= max_positions {
            return Err(Qwen3Error::Generation(format!(
                "a prompt of {} tokens leaves no room in the model's max_position_embeddings = {max_positions}",
                prompt.len()
            )));
        }
        let room = max_positions - prompt.len();
        let vocab = self.vocab_size();
        if let Some(&id) = prompt.iter().find(|&&id| id as usize >= vocab) {
            return Err(Qwen3Error::TokenOutOfRange { id, vocab });
        }
        let mut rng = gcfg
            .sampling
            .as_ref()
            .map(|s| rand::rngs::StdRng::seed_from_u64(s.seed));
        let mut cache: Vec<LayerCache<B>> = Vec::new();
        let mut input: Vec<u32> = prompt.to_vec();
        let mut out = Vec::new();
        for _ in 0..gcfg.max_new_tokens.min(room) {
            let n = input.len();
            let ids = TensorData::new(input.iter().map(|&i| i as i64).collect::<Vec<_>>(), [1, n]);
            let ids = Tensor::<B, 2, Int>::from_data(ids, device);
            let hidden = self.forward_hidden(&ModelInputs::new(ids), Some(&mut cache));
            let h = hidden.dims()[2];
            let last = hidden.slice([0..1, n - 1..n, 0..h]);
            let logits: Vec<f32> = self
                .lm_head(last)
                .into_data()
                .convert::<f32>()
                .to_vec()
                .map_err(|e| Qwen3Error::Generation(format!("reading logits: {e:?}")))?;
            let next = match (&gcfg.sampling, rng.as_mut()) {
                (Some(s), Some(rng)) => sample(&logits, s, rng),
                _ => argmax(&logits),
            };
            out.push(next);
            on_token(next);
            if gcfg.eos_token_ids.contains(&next) {
                return Ok(Generation {
                    ids: out,
                    stop: StopReason::Eos,
                });
            }
            input = vec![next];
        }
        let stop = if gcfg.max_new_tokens > room {
            StopReason::ContextLength
        } else {
            StopReason::MaxNewTokens
        };
        Ok(Generation { ids: out, stop })
    }
}

/// First index of the maximum (torch.argmax's tie rule).
pub fn argmax(v: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &x) in v.iter().enumerate() {
        if x > v[best] {
            best = i;
        }
    }
    best as u32
}

/// Temperature, then HF's top-k rule (drop what is below the k-th largest), then its top-p rule
/// (keep the smallest set of most likely tokens whose probability reaches `top_p`, at least one),
/// then a draw.
pub fn sample(logits: &[f32], s: &Sampling, rng: &mut impl Rng) -> u32 {
    let mut scaled: Vec<f64> = logits
        .iter()
        .map(|&x| f64::from(x / s.temperature))
        .collect();
    if s.top_k > 0 && s.top_k < scaled.len() {
        let mut sorted = scaled.clone();
        sorted.sort_by(|a, b| b.total_cmp(a));
        let kth = sorted[s.top_k - 1];
        scaled
            .iter_mut()
            .filter(|x| **x < kth)
            .for_each(|x| *x = f64::NEG_INFINITY);
    }
    let max = scaled.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let mut probs: Vec<(usize, f64)> = scaled
        .iter()
        .enumerate()
        .map(|(i, &x)| (i, (x - max).exp()))
        .collect();
    let z: f64 = probs.iter().map(|p| p.1).sum();
    probs.iter_mut().for_each(|p| p.1 /= z);
    probs.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    let mut kept = Vec::new();
    let mut cum = 0.0;
    for p in probs {
        kept.push(p);
        cum += p.1;
        if cum >= f64::from(s.top_p) {
            break;
        }
    }
    let total: f64 = kept.iter().map(|p| p.1).sum();
    let mut u = rng.random::<f64>() * total;
    for (i, p) in &kept {
        if u < *p {
            return *i as u32;
        }
        u -= p;
    }
    kept.last().map_or(0, |p| p.0 as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argmax_takes_first_of_ties() {
        assert_eq!(argmax(&[0.0, 2.0, 2.0, 1.0]), 1);
    }

    #[test]
    fn top_p_keeps_only_the_nucleus() {
        // p = softmax([10, 9, 0, 0]) ≈ [0.731, 0.269, 0.00003, 0.00003]; top_p 0.9 keeps two tokens.
        let s = Sampling {
            temperature: 1.0,
            top_k: 0,
            top_p: 0.9,
            seed: 0,
        };
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let mut seen = [0usize; 4];
        for _ in 0..2000 {
            seen[sample(&[10.0, 9.0, 0.0, 0.0], &s, &mut rng) as usize] += 1;
        }
        assert_eq!(seen[2] + seen[3], 0);
        assert!(seen[0] > seen[1] && seen[1] > 300, "{seen:?}");
    }

    #[test]
    fn low_temperature_is_greedy() {
        let s = Sampling {
            temperature: 1e-3,
            top_k: 0,
            top_p: 1.0,
            seed: 0,
        };
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        for _ in 0..50 {
            assert_eq!(sample(&[0.1, 0.3, 0.2], &s, &mut rng), 1);
        }
    }

    #[test]
    fn top_k_keeps_the_k_most_likely_and_their_ties() {
        let s = Sampling {
            temperature: 1.0,
            top_k: 2,
            top_p: 1.0,
            seed: 0,
        };
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        let mut seen = [0usize; 5];
        for _ in 0..3000 {
            seen[sample(&[1.0, 3.0, 2.0, 2.0, 0.5], &s, &mut rng) as usize] += 1;
        }
        // The 2nd largest (2.0) is tied: both 2.0s stay, as `logits < topk(...)[-1]` removes.
        assert_eq!(seen[0] + seen[4], 0, "{seen:?}");
        assert!(
            seen[1] > seen[2] && seen[2] > 200 && seen[3] > 200,
            "{seen:?}"
        );
    }

    #[test]
    fn generation_config_defaults_are_hfs() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert_eq!(
            GenerationDefaults::load(dir.path()).expect("none"),
            GenerationDefaults::default()
        );
        // Qwen3-8B's generation_config.json.
        std::fs::write(
            dir.path().join(GENERATION_CONFIG_FILE),
            r#"{"bos_token_id": 151643, "do_sample": true, "eos_token_id": [151645, 151643],
                "pad_token_id": 151643, "temperature": 0.6, "top_k": 20, "top_p": 0.95,
                "transformers_version": "4.51.0"}"#,
        )
        .expect("write");
        let d = GenerationDefaults::load(dir.path()).expect("qwen3");
        assert_eq!(
            d.sampling(7),
            Some(Sampling {
                temperature: 0.6,
                top_k: 20,
                top_p: 0.95,
                seed: 7
            })
        );
        assert_eq!(d.eos_ids(), vec![151645, 151643]);
        std::fs::write(
            dir.path().join(GENERATION_CONFIG_FILE),
            "{\n \"top_k\": -1}",
        )
        .expect("w");
        let err = GenerationDefaults::load(dir.path())
            .expect_err("bad")
            .to_string();
        assert!(err.contains("generation_config.json: line 2"), "{err}");
    }
}
