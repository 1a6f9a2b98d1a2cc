//! Dataset statistics (for the trainer, the planner and the `data` command) and their table.

use std::fmt;

use crate::encode::Example;
use crate::error::RowError;

/// Statistics of one split.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DataStats {
    pub samples: usize,
    /// Tokens after truncation.
    pub tokens: usize,
    /// Labels that are trained on (not -100).
    pub supervised_tokens: usize,
    pub mean_len: f64,
    /// Nearest-rank percentiles of the per-sample length.
    pub p50_len: usize,
    pub p95_len: usize,
    pub max_len: usize,
    /// Samples that `cutoff_len` cut.
    pub truncated: usize,
}

impl DataStats {
    pub fn of(examples: &[Example]) -> Self {
        let mut lens: Vec<usize> = examples.iter().map(Example::len).collect();
        lens.sort_unstable();
        let tokens: usize = lens.iter().sum();
        let pct = |p: f64| -> usize {
            if lens.is_empty() {
                return 0;
            }
            let rank = (p * lens.len() as f64).ceil() as usize;
            lens[rank.clamp(1, lens.len()) - 1]
        };
        DataStats {
            samples: examples.len(),
            tokens,
            supervised_tokens: examples.iter().map(Example::supervised_tokens).sum(),
            mean_len: if lens.is_empty() {
                0.0
            } else {
                tokens as f64 / lens.len() as f64
            },
            p50_len: pct(0.50),
            p95_len: pct(0.95),
            max_len: lens.last().copied().unwrap_or(0),
            truncated: examples.iter().filter(|e| e.truncated()).count(),
        }
    }
}

/// Statistics of a load: both splits and the rows skipped by `skip_invalid`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SftStats {
    pub train: DataStats,
    pub eval: Option<DataStats>,
    /// Rows skipped as invalid (only with `skip_invalid`).
    pub skipped: usize,
    /// The first few skipped rows and why.
    pub skipped_examples: Vec<RowError>,
}

impl fmt::Display for SftStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut rows = vec![("train", &self.train)];
        if let Some(e) = &self.eval {
            rows.push(("eval", e));
        }
        writeln!(
            f,
            "{:<6} {:>9} {:>12} {:>12} {:>9} {:>7} {:>7} {:>7} {:>9}",
            "split",
            "samples",
            "tokens",
            "supervised",
            "mean len",
            "p50",
            "p95",
            "max",
            "truncated"
        )?;
        for (name, s) in rows {
            writeln!(
                f,
                "{:<6} {:>9} {:>12} {:>12} {:>9.1} {:>7} {:>7} {:>7} {:>9}",
                name,
                s.samples,
                s.tokens,
                s.supervised_tokens,
                s.mean_len,
                s.p50_len,
                s.p95_len,
                s.max_len,
                s.truncated
            )?;
        }
        if self.skipped > 0 {
            writeln!(f, "skipped {} invalid row(s):", self.skipped)?;
            for e in &self.skipped_examples {
                writeln!(f, "  {e}")?;
            }
            if self.skipped > self.skipped_examples.len() {
                writeln!(
                    f,
                    "  ... and {} more",
                    self.skipped - self.skipped_examples.len()
                )?;
            }
        }
        Ok(())
    }
}
