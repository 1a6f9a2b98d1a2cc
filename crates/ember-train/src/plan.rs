//! HF Trainer's step arithmetic, in one place (the trainer and `xtask plan` both use it).

use serde::Serialize;

/// How many micro-batches, optimizer steps and warm-up steps a run has.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StepPlan {
    pub train_samples: usize,
    pub batch_size: usize,
    pub grad_accum: usize,
    /// `ceil(N / batch)`: there is no `drop_last`.
    pub micro_batches_per_epoch: usize,
    /// `ceil(micro_batches / GA)`: the last window of an epoch may be partial and still steps.
    pub steps_per_epoch: usize,
    /// `ceil(epochs * steps_per_epoch)`, or `max_steps` when given.
    pub max_steps: u64,
    /// Epochs the loop runs (the last may stop early at `max_steps`).
    pub epochs: u64,
}

impl StepPlan {
    /// `max_steps > 0` overrides `num_train_epochs`, as in HF.
    pub fn new(
        train_samples: usize,
        batch_size: usize,
        grad_accum: usize,
        num_train_epochs: f64,
        max_steps: i64,
    ) -> Self {
        let micro = train_samples.div_ceil(batch_size.max(1));
        let steps_per_epoch = micro.div_ceil(grad_accum.max(1)).max(1);
        let (max_steps, epochs) = if max_steps > 0 {
            let m = max_steps as u64;
            (m, m.div_ceil(steps_per_epoch as u64))
        } else {
            (
                (num_train_epochs * steps_per_epoch as f64).ceil() as u64,
                num_train_epochs.ceil() as u64,
            )
        };
        Self {
            train_samples,
            batch_size,
            grad_accum,
            micro_batches_per_epoch: micro,
            steps_per_epoch,
            max_steps,
            epochs,
        }
    }

    /// The accumulation windows of one epoch as ranges of micro-batch indices.
    pub fn windows(&self) -> Vec<std::ops::Range<usize>> {
        (0..self.steps_per_epoch)
            .map(|w| {
                w * self.grad_accum..((w + 1) * self.grad_accum).min(self.micro_batches_per_epoch)
            })
            .filter(|r| !r.is_empty())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reference_study_step_counts() {
        // REFERENCE.md: batch 4 x GA 8, 3 epochs -> 18, 45, 90 steps for 162, 477, 958 samples.
        for (n, per_epoch, total) in [(162, 6, 18), (477, 15, 45), (958, 30, 90)] {
            let p = StepPlan::new(n, 4, 8, 3.0, -1);
            assert_eq!(
                (p.steps_per_epoch, p.max_steps),
                (per_epoch, total),
                "{n} samples"
            );
        }
    }

    #[test]
    fn partial_last_window_and_max_steps() {
        let p = StepPlan::new(13, 2, 3, 2.0, -1);
        assert_eq!(p.micro_batches_per_epoch, 7);
        assert_eq!(p.windows(), vec![0..3, 3..6, 6..7]);
        assert_eq!(p.max_steps, 6);
        let p = StepPlan::new(13, 2, 3, 2.0, 4);
        assert_eq!((p.max_steps, p.epochs), (4, 2));
        let p = StepPlan::new(13, 2, 3, 1.5, -1);
        assert_eq!((p.max_steps, p.epochs), (5, 2));
    }
}
