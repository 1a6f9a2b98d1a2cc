//! Batching: padding (HF `DataCollatorForSeq2Seq`), seeded per-epoch order with a resumable
//! position, optional grouping by length, and label-token counting for loss normalisation.

use serde::{Deserialize, Serialize};

use crate::encode::{Example, IGNORE_INDEX};
use crate::rng::NumpyRng;

/// A padded batch in plain row-major vectors (`[batch_size, seq_len]`); the trainer makes tensors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    pub input_ids: Vec<i64>,
    /// 1 on real tokens, 0 on padding.
    pub attention_mask: Vec<i64>,
    /// Unshifted labels; -100 on masked and padding positions.
    pub labels: Vec<i64>,
    pub batch_size: usize,
    pub seq_len: usize,
    /// Which examples (indices into the dataset) the rows are.
    pub indices: Vec<usize>,
}

impl Batch {
    /// Labels that are not -100: what HF counts as `num_items_in_batch` (summed over an
    /// accumulation window) and divides the summed token loss by.
    pub fn label_tokens(&self) -> usize {
        self.labels
            .iter()
            .filter(|&&l| l != IGNORE_INDEX as i64)
            .count()
    }

    /// Labels that are not -100 after the causal shift (position 0 of each row has no prediction):
    /// the tokens that actually contribute to the loss. Equal to `label_tokens` unless the first
    /// token is labelled (`train_on_prompt`).
    pub fn target_tokens(&self) -> usize {
        if self.seq_len == 0 {
            return 0;
        }
        self.labels
            .chunks(self.seq_len)
            .map(|row| {
                row[1..]
                    .iter()
                    .filter(|&&l| l != IGNORE_INDEX as i64)
                    .count()
            })
            .sum()
    }

    /// Real (non-padding) tokens.
    pub fn real_tokens(&self) -> usize {
        self.attention_mask.iter().filter(|&&m| m != 0).count()
    }
}

/// `num_items_in_batch` of a gradient-accumulation window: the label tokens of all its micro-batches.
pub fn count_label_tokens(window: &[Batch]) -> usize {
    window.iter().map(Batch::label_tokens).sum()
}

/// Shifted count over a window (see [`Batch::target_tokens`]).
pub fn count_target_tokens(window: &[Batch]) -> usize {
    window.iter().map(Batch::target_tokens).sum()
}

/// Right-pad examples to the longest one, rounded up to `pad_to_multiple_of`.
pub fn collate(
    data: &[Example],
    indices: &[usize],
    pad_id: u32,
    pad_to_multiple_of: Option<usize>,
) -> Batch {
    let longest = indices.iter().map(|&i| data[i].len()).max().unwrap_or(0);
    let seq_len = match pad_to_multiple_of {
        Some(m) if m > 1 => longest.div_ceil(m) * m,
        _ => longest,
    };
    let n = indices.len() * seq_len;
    let mut b = Batch {
        input_ids: Vec::with_capacity(n),
        attention_mask: Vec::with_capacity(n),
        labels: Vec::with_capacity(n),
        batch_size: indices.len(),
        seq_len,
        indices: indices.to_vec(),
    };
    for &i in indices {
        let ex = &data[i];
        let pad = seq_len - ex.len();
        b.input_ids.extend(ex.input_ids.iter().map(|&t| t as i64));
        b.input_ids.extend(std::iter::repeat_n(pad_id as i64, pad));
        b.attention_mask.extend(std::iter::repeat_n(1, ex.len()));
        b.attention_mask.extend(std::iter::repeat_n(0, pad));
        b.labels.extend(ex.labels.iter().map(|&l| l as i64));
        b.labels
            .extend(std::iter::repeat_n(IGNORE_INDEX as i64, pad));
    }
    b
}

/// Where a loader is: the next batch to produce. Save it with a checkpoint to resume exactly.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Position {
    pub epoch: u64,
    /// Batch index within the epoch.
    pub batch: usize,
}

/// How a loader orders and pads.
#[derive(Debug, Clone, PartialEq)]
pub struct LoaderConfig {
    pub batch_size: usize,
    /// Reshuffle every epoch (training); `false` keeps dataset order (evaluation).
    pub shuffle: bool,
    /// HF `group_by_length`: batches of similar length, in megabatches of up to 50 batches.
    pub group_by_length: bool,
    pub seed: u64,
    pub pad_id: u32,
    pub pad_to_multiple_of: Option<usize>,
}

/// Produces batches of a dataset in a deterministic, resumable order. The order of epoch `e` is
/// `np.random.default_rng([seed, e]).permutation(n)` (then length-grouped if enabled); the last
/// batch of an epoch may be short (no `drop_last`, as HF).
pub struct Loader<'a> {
    data: &'a [Example],
    cfg: LoaderConfig,
    cache: Option<(u64, Vec<usize>)>,
}

impl<'a> Loader<'a> {
    pub fn new(data: &'a [Example], cfg: LoaderConfig) -> Self {
        assert!(cfg.batch_size > 0, "batch_size must be positive");
        Self {
            data,
            cfg,
            cache: None,
        }
    }

    pub fn config(&self) -> &LoaderConfig {
        &self.cfg
    }

    /// `ceil(n / batch_size)`.
    pub fn batches_per_epoch(&self) -> usize {
        self.data.len().div_ceil(self.cfg.batch_size)
    }

    /// The example order of an epoch.
    pub fn epoch_order(&self, epoch: u64) -> Vec<usize> {
        let n = self.data.len();
        if !self.cfg.shuffle {
            return (0..n).collect();
        }
        let mut rng = NumpyRng::from_entropy(&[self.cfg.seed, epoch]);
        let perm = rng.permutation(n);
        if !self.cfg.group_by_length {
            return perm;
        }
        let lengths: Vec<usize> = self.data.iter().map(Example::len).collect();
        group_by_length(&perm, &lengths, self.cfg.batch_size)
    }

    /// The batch at `pos`, or `None` past the end of that epoch.
    pub fn batch_at(&mut self, pos: Position) -> Option<Batch> {
        let bs = self.cfg.batch_size;
        if pos.batch >= self.batches_per_epoch() {
            return None;
        }
        if self.cache.as_ref().is_none_or(|(e, _)| *e != pos.epoch) {
            self.cache = Some((pos.epoch, self.epoch_order(pos.epoch)));
        }
        let order = self
            .cache
            .as_ref()
            .map(|(_, o)| o.as_slice())
            .unwrap_or(&[]);
        let idx = &order[pos.batch * bs..((pos.batch + 1) * bs).min(order.len())];
        Some(collate(
            self.data,
            idx,
            self.cfg.pad_id,
            self.cfg.pad_to_multiple_of,
        ))
    }

    /// The position after `pos` (rolling over to the next epoch).
    pub fn next_position(&self, pos: Position) -> Position {
        if pos.batch + 1 >= self.batches_per_epoch() {
            Position {
                epoch: pos.epoch + 1,
                batch: 0,
            }
        } else {
            Position {
                epoch: pos.epoch,
                batch: pos.batch + 1,
            }
        }
    }

    /// Batches from `start` on, across epochs without end; each comes with its own position
    /// (store `next_position` of the last one consumed to resume after it).
    pub fn iter_from(self, start: Position) -> impl Iterator<Item = (Position, Batch)> + 'a {
        let mut loader = self;
        let mut pos = start;
        std::iter::from_fn(move || {
            if loader.data.is_empty() {
                return None;
            }
            if pos.batch >= loader.batches_per_epoch() {
                pos = Position {
                    epoch: pos.epoch + 1,
                    batch: 0,
                };
            }
            let b = loader.batch_at(pos)?;
            let here = pos;
            pos = loader.next_position(pos);
            Some((here, b))
        })
    }

    /// All batches of one epoch from `start_batch` on.
    pub fn epoch(&mut self, epoch: u64, start_batch: usize) -> Vec<Batch> {
        (start_batch..self.batches_per_epoch())
            .filter_map(|b| self.batch_at(Position { epoch, batch: b }))
            .collect()
    }
}

/// HF `get_length_grouped_indices` applied to a given random permutation: megabatches of
/// `min(n / (4 * batch_size), 50)` (at least 1) batches, each sorted by length (longest first, stable),
/// and the longest example moved to the very front so an out-of-memory shows up at once.
pub fn group_by_length(perm: &[usize], lengths: &[usize], batch_size: usize) -> Vec<usize> {
    let mult = (lengths.len() / (batch_size * 4)).clamp(1, 50);
    let mega = mult * batch_size;
    let mut megabatches: Vec<Vec<usize>> = perm
        .chunks(mega)
        .map(|c| {
            let mut v = c.to_vec();
            v.sort_by(|&a, &b| lengths[b].cmp(&lengths[a]));
            v
        })
        .collect();
    if let Some(max_idx) = megabatches
        .iter()
        .enumerate()
        .fold(None, |best: Option<(usize, usize)>, (i, m)| {
            let l = lengths[m[0]];
            match best {
                Some((_, bl)) if bl >= l => best,
                _ => Some((i, l)),
            }
        })
        .map(|(i, _)| i)
    {
        let first = megabatches[0][0];
        megabatches[0][0] = megabatches[max_idx][0];
        megabatches[max_idx][0] = first;
    }
    megabatches.concat()
}
