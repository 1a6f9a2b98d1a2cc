//! Strings to token requests, as lm-eval's `TemplateLM._encode_pair` does it for decoder-only
//! models.

use std::path::Path;

use crate::EvalError;
use crate::data::py_rstrip;
use crate::model::Request;

/// A Hugging Face `tokenizer.json`, encoding as `tokenizer.encode(text)` does in Python (the
/// tokenizer's own special-token handling; Qwen3's adds no BOS).
pub struct Encoder {
    tokenizer: tokenizers::Tokenizer,
}

impl std::fmt::Debug for Encoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Encoder").finish_non_exhaustive()
    }
}

impl Encoder {
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, EvalError> {
        let path = path.as_ref();
        let tokenizer = tokenizers::Tokenizer::from_file(path)
            .map_err(|e| EvalError::Tokenizer(format!("{}: {e}", path.display())))?;
        Ok(Self { tokenizer })
    }

    pub fn new(tokenizer: tokenizers::Tokenizer) -> Self {
        Self { tokenizer }
    }

    pub fn encode(&self, text: &str) -> Result<Vec<u32>, EvalError> {
        Ok(self
            .tokenizer
            .encode(text, true)
            .map_err(|e| EvalError::Tokenizer(e.to_string()))?
            .get_ids()
            .to_vec())
    }

    /// lm-eval's `_encode_pair`: trailing whitespace of the context moves to the front of the
    /// continuation; the continuation's tokens are those of `encode(context + continuation)` past
    /// `len(encode(context))`, so a merge across the boundary is scored the way lm-eval scores it.
    pub fn encode_pair(&self, context: &str, continuation: &str) -> Result<Request, EvalError> {
        let trimmed = py_rstrip(context);
        let (context, continuation) = if trimmed.len() < context.len() {
            (
                trimmed,
                format!("{}{continuation}", &context[trimmed.len()..]),
            )
        } else {
            (context, continuation.to_string())
        };
        let whole = self.encode(&format!("{context}{continuation}"))?;
        let context_enc = self.encode(context)?;
        let continuation_enc = whole.get(context_enc.len()..).unwrap_or_default().to_vec();
        Ok(Request {
            context: context_enc,
            continuation: continuation_enc,
        })
    }
}
