//! Text generation with a KV cache: greedy decoding or temperature / top-p sampling, stopping at
//! the eos ids.

use burn::tensor::{Int, Tensor, TensorData, backend::Backend};
use rand::{Rng, SeedableRng};

use crate::Qwen3Error;
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

/// Temperature and nucleus sampling, seeded so that a run can be repeated.
#[derive(Debug, Clone, PartialEq)]
pub struct Sampling {
    pub temperature: f32,
    pub top_p: f32,
    pub seed: u64,
}

/// Why generation stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    Eos,
    MaxNewTokens,
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
    /// Continues `prompt` (token ids). The prompt is run once; every later step feeds one token and
    /// reuses the cached keys and values.
    pub fn generate(
        &self,
        prompt: &[u32],
        gcfg: &GenerationConfig,
        device: &B::Device,
    ) -> Result<Generation, Qwen3Error> {
        gcfg.validate()?;
        if prompt.is_empty() {
            return Err(Qwen3Error::Generation("the prompt has no tokens".into()));
        }
        let max_positions = self.model.rotary_emb.max_positions();
        if prompt.len() + gcfg.max_new_tokens > max_positions {
            // HF only warns; generating past the trained positions yields noise, and unbounded.
            return Err(Qwen3Error::Generation(format!(
                "a prompt of {} tokens plus max_new_tokens = {} exceeds the model's max_position_embeddings = {max_positions}; ask for at most {} new tokens",
                prompt.len(),
                gcfg.max_new_tokens,
                max_positions.saturating_sub(prompt.len())
            )));
        }
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
        for _ in 0..gcfg.max_new_tokens {
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
            if gcfg.eos_token_ids.contains(&next) {
                return Ok(Generation {
                    ids: out,
                    stop: StopReason::Eos,
                });
            }
            input = vec![next];
        }
        Ok(Generation {
            ids: out,
            stop: StopReason::MaxNewTokens,
        })
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

/// Temperature, then HF's top-p rule (keep the smallest set of most likely tokens whose probability
/// reaches `top_p`, at least one), then a draw.
pub fn sample(logits: &[f32], s: &Sampling, rng: &mut impl Rng) -> u32 {
    let scaled: Vec<f64> = logits
        .iter()
        .map(|&x| f64::from(x / s.temperature))
        .collect();
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
            top_p: 1.0,
            seed: 0,
        };
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        for _ in 0..50 {
            assert_eq!(sample(&[0.1, 0.3, 0.2], &s, &mut rng), 1);
        }
    }
}
