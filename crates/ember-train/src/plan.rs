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

    /// Every optimizer step of the run in order: its number (from 1), epoch and window.
    pub fn steps(&self) -> impl Iterator<Item = PlannedStep> + '_ {
        let windows = self.windows();
        let per_epoch = windows.len();
        (0..self.epochs)
            .flat_map(move |epoch| {
                let windows = windows.clone();
                windows
                    .into_iter()
                    .enumerate()
                    .map(move |(w, window)| (epoch, w, window))
            })
            .zip(1..=self.max_steps)
            .map(move |((epoch, w, window), step)| PlannedStep {
                step,
                epoch,
                window,
                epoch_end: w + 1 == per_epoch,
                micro_batches_per_epoch: self.micro_batches_per_epoch,
            })
    }
}

/// One optimizer step of a [`StepPlan`].
#[derive(Debug, Clone, PartialEq)]
pub struct PlannedStep {
    /// 1-based global step.
    pub step: u64,
    pub epoch: u64,
    /// Micro-batch indices of this step's accumulation window within the epoch.
    pub window: std::ops::Range<usize>,
    /// The last window of its epoch.
    pub epoch_end: bool,
    micro_batches_per_epoch: usize,
}

impl PlannedStep {
    /// The run-wide number of the window's first micro-batch (what dropout seeds derive from).
    pub fn first_micro_batch(&self) -> u64 {
        self.epoch * self.micro_batches_per_epoch as u64 + self.window.start as u64
    }

    /// HF's fractional `epoch` after this step.
    pub fn epoch_after(&self) -> f64 {
        self.epoch as f64 + self.window.end as f64 / self.micro_batches_per_epoch as f64
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

    #[test]
    fn steps_walk_epochs_and_stop_at_max_steps() {
        let p = StepPlan::new(13, 2, 3, 1.5, -1);
        let steps: Vec<_> = p.steps().collect();
        assert_eq!(steps.len(), 5);
        let seen: Vec<_> = steps
            .iter()
            .map(|s| (s.step, s.epoch, s.window.clone(), s.epoch_end))
            .collect();
        assert_eq!(
            seen,
            vec![
                (1, 0, 0..3, false),
                (2, 0, 3..6, false),
                (3, 0, 6..7, true),
                (4, 1, 0..3, false),
                (5, 1, 3..6, false),
            ]
        );
        assert_eq!(steps[3].first_micro_batch(), 7);
        assert_eq!(steps[4].first_micro_batch(), 10);
        assert_eq!(steps[2].epoch_after(), 1.0);
        assert_eq!(steps[3].epoch_after(), 1.0 + 3.0 / 7.0);
    }
}
