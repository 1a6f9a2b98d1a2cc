//! Supervised encoding: LLaMA-Factory's `SupervisedDatasetProcessor._encode_data_example` —
//! `cutoff_len` truncation by `infer_seqlen`, and labels `-100` on what is not trained.

use crate::convert::Conversation;
use crate::error::FieldError;
use crate::template::Template;
use crate::tokenizer::Tokenizer;

/// Label of a token that is not trained on (PyTorch's `ignore_index`).
pub const IGNORE_INDEX: i32 = -100;

/// One tokenized training example.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Example {
    pub input_ids: Vec<u32>,
    /// `IGNORE_INDEX` or the token id to predict at that position (unshifted, as HF labels).
    pub labels: Vec<i32>,
    /// Tokens before `cutoff_len` truncation.
    pub full_len: usize,
}

impl Example {
    pub fn len(&self) -> usize {
        self.input_ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.input_ids.is_empty()
    }

    /// Some turn was cut or dropped by `cutoff_len`.
    pub fn truncated(&self) -> bool {
        self.full_len > self.input_ids.len()
    }

    /// Labels that are not `IGNORE_INDEX`.
    pub fn supervised_tokens(&self) -> usize {
        self.labels.iter().filter(|&&l| l != IGNORE_INDEX).count()
    }
}

/// The masking and truncation options of the supervised processor.
#[derive(Debug, Clone, Copy)]
pub struct EncodeOptions {
    pub cutoff_len: usize,
    pub train_on_prompt: bool,
    pub mask_history: bool,
}

/// `infer_seqlen(source_len, target_len, cutoff_len)`: how much of a (prompt, response) pair fits.
pub fn infer_seqlen(source_len: usize, target_len: usize, cutoff_len: usize) -> (usize, usize) {
    let max_target_len = if target_len * 2 < cutoff_len {
        cutoff_len
    } else if source_len * 2 < cutoff_len {
        cutoff_len - source_len
    } else {
        // Python: int(cutoff_len * (target_len / (source_len + target_len))), in doubles.
        (cutoff_len as f64 * (target_len as f64 / (source_len + target_len) as f64)) as usize
    };
    let new_target_len = max_target_len.min(target_len);
    let max_source_len = cutoff_len.saturating_sub(new_target_len);
    let new_source_len = max_source_len.min(source_len);
    (new_source_len, new_target_len)
}

/// Tokenize a conversation into input ids and labels.
pub fn encode_example(
    template: &Template,
    tok: &Tokenizer,
    conv: &Conversation,
    opts: &EncodeOptions,
) -> Result<Example, FieldError> {
    let discarding_history_cot = opts.mask_history && !template.preserve_thinking;
    let mut pairs = template.encode_multiturn(tok, conv, discarding_history_cot)?;
    let full_len = pairs.iter().map(|(s, t)| s.len() + t.len()).sum();
    if opts.mask_history {
        pairs.reverse(); // the last turns have priority within cutoff_len
    }
    // With mask_history the pairs are prepended, so collect them and assemble at the end.
    let mut kept: Vec<(Vec<u32>, Vec<i32>)> = Vec::with_capacity(pairs.len());
    let mut total = 0usize;
    for (turn_idx, (mut source, mut target)) in pairs.into_iter().enumerate() {
        if total >= opts.cutoff_len {
            break;
        }
        let (sl, tl) = infer_seqlen(source.len(), target.len(), opts.cutoff_len - total);
        source.truncate(sl);
        target.truncate(tl);
        total += sl + tl;
        let source_label: Vec<i32> = if opts.train_on_prompt {
            source.iter().map(|&t| t as i32).collect()
        } else {
            vec![IGNORE_INDEX; sl]
        };
        let target_label: Vec<i32> = if opts.mask_history && turn_idx != 0 {
            vec![IGNORE_INDEX; tl]
        } else {
            target.iter().map(|&t| t as i32).collect()
        };
        let mut ids = source;
        ids.extend(target);
        let mut labels = source_label;
        labels.extend(target_label);
        kept.push((ids, labels));
    }
    if opts.mask_history {
        kept.reverse();
    }
    let mut ex = Example {
        input_ids: Vec::with_capacity(total),
        labels: Vec::with_capacity(total),
        full_len,
    };
    for (ids, labels) in kept {
        ex.input_ids.extend(ids);
        ex.labels.extend(labels);
    }
    Ok(ex)
}
