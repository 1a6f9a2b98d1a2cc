//! A HF `tokenizer.json` (through the `tokenizers` crate) with special-token lookup by text.

use std::path::{Path, PathBuf};

use crate::error::{DataError, Result};

/// The tokenizer plus the facts about it this crate needs.
pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
    path: PathBuf,
}

impl Tokenizer {
    /// Load a `tokenizer.json`.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        let inner = tokenizers::Tokenizer::from_file(&path).map_err(|e| DataError::Tokenizer {
            path: path.clone(),
            message: e.to_string(),
        })?;
        Ok(Self { inner, path })
    }

    /// Wrap an already loaded tokenizer.
    pub fn from_tokenizers(inner: tokenizers::Tokenizer, path: PathBuf) -> Self {
        Self { inner, path }
    }

    pub fn inner(&self) -> &tokenizers::Tokenizer {
        &self.inner
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `tokenizer.encode(text, add_special_tokens=False)`; added tokens in the text are matched.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        if text.is_empty() {
            return Ok(Vec::new());
        }
        self.inner
            .encode_fast(text, false)
            .map(|e| e.get_ids().to_vec())
            .map_err(|e| DataError::Encode(e.to_string()))
    }

    /// Decode ids, keeping special tokens (LLaMA-Factory's preview does the same).
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        self.inner
            .decode(ids, false)
            .map_err(|e| DataError::Encode(e.to_string()))
    }

    /// The id of a template token, which must be one added token so that text containing it
    /// encodes to that id (otherwise the rendered prompts would silently differ from the model's).
    pub fn special_token(&self, text: &str, needed_by: &str) -> Result<u32> {
        let missing = || DataError::MissingSpecialToken {
            token: text.to_owned(),
            needed_by: needed_by.to_owned(),
        };
        let id = self.inner.token_to_id(text).ok_or_else(missing)?;
        if self.encode(text)? != [id] {
            return Err(DataError::Tokenizer {
                path: self.path.clone(),
                message: format!("`{text}` (id {id}) is in the vocabulary but not an added token"),
            });
        }
        Ok(id)
    }

    /// The padding id: `pad_token` if given, else the tokenizer's padding token, else `<|endoftext|>`
    /// (what Qwen3's tokenizer_config.json names).
    pub fn pad_id(&self, pad_token: Option<&str>) -> Result<u32> {
        let text = match pad_token {
            Some(t) => t.to_owned(),
            None => match self.inner.get_padding() {
                Some(p) => return Ok(p.pad_id),
                None => "<|endoftext|>".to_owned(),
            },
        };
        self.inner
            .token_to_id(&text)
            .ok_or(DataError::MissingSpecialToken {
                token: text,
                needed_by: "padding".into(),
            })
    }
}
