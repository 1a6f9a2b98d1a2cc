//! Loss-curve analysis of one run: where eval loss was lowest, whether the run overfits (eval loss
//! rising for several evaluations in a row while training loss falls), and which saved checkpoint
//! to keep.

use ember_train::TrainerState;
use serde::{Deserialize, Serialize};

/// Consecutive rising evaluations that count as overfitting, unless told otherwise.
pub const DEFAULT_PATIENCE: usize = 3;

/// What the curves say.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CurveAnalysis {
    /// Step and value of the lowest `eval_loss` logged during training.
    pub min_eval_step: Option<u64>,
    pub min_eval_loss: Option<f64>,
    /// Overfitting: `patience` consecutive rises of eval loss while the training loss fell.
    pub overfitting: bool,
    /// The evaluation step where the first such rise began.
    pub overfit_from_step: Option<u64>,
    /// The longest run of consecutive eval-loss rises.
    pub longest_rise: usize,
    /// The checkpoint to keep (`checkpoint-N`), and why.
    pub recommended_checkpoint: Option<String>,
    pub recommended_step: Option<u64>,
    pub recommended_by: String,
}

/// Mean training loss of the log entries in `(after, upto]`, or the last one at or before `upto`.
fn train_loss_near(train: &[(u64, f64)], after: u64, upto: u64) -> Option<f64> {
    let window: Vec<f64> = train
        .iter()
        .filter(|(s, _)| *s > after && *s <= upto)
        .map(|p| p.1)
        .collect();
    if !window.is_empty() {
        return Some(window.iter().sum::<f64>() / window.len() as f64);
    }
    train.iter().rev().find(|(s, _)| *s <= upto).map(|p| p.1)
}

/// Analyses `state`'s curves; `checkpoints` are the steps with a saved `checkpoint-N`.
pub fn analyse(state: &TrainerState, checkpoints: &[u64], patience: usize) -> CurveAnalysis {
    let evals = state.eval_losses();
    let train = state.losses();
    let mut a = CurveAnalysis::default();
    if let Some(&(step, loss)) = evals
        .iter()
        .filter(|(_, l)| l.is_finite())
        .min_by(|x, y| x.1.total_cmp(&y.1).then(x.0.cmp(&y.0)))
    {
        (a.min_eval_step, a.min_eval_loss) = (Some(step), Some(loss));
    }
    // Runs of consecutive rises: evals[start] is the low point, evals[start+1..=end] each higher
    // than the one before.
    let patience = patience.max(1);
    let mut i = 1;
    while i < evals.len() {
        if evals[i].1 > evals[i - 1].1 {
            let start = i - 1;
            let mut end = i;
            while end + 1 < evals.len() && evals[end + 1].1 > evals[end].1 {
                end += 1;
            }
            let rises = end - start;
            a.longest_rise = a.longest_rise.max(rises);
            if rises >= patience && !a.overfitting {
                let before = |k: usize| if k == 0 { 0 } else { evals[k - 1].0 };
                let t0 = train_loss_near(&train, before(start), evals[start].0);
                let t1 = train_loss_near(&train, evals[end - 1].0, evals[end].0);
                if let (Some(t0), Some(t1)) = (t0, t1)
                    && t1 < t0
                {
                    a.overfitting = true;
                    a.overfit_from_step = Some(evals[start].0);
                }
            }
            i = end + 1;
        } else {
            i += 1;
        }
    }
    // The saved checkpoint with the lowest eval loss at its own step; else the one nearest the
    // minimum.
    let at_checkpoint: Vec<(u64, f64)> = evals
        .iter()
        .filter(|(s, l)| l.is_finite() && checkpoints.contains(s))
        .copied()
        .collect();
    if let Some(&(step, _)) = at_checkpoint
        .iter()
        .min_by(|x, y| x.1.total_cmp(&y.1).then(x.0.cmp(&y.0)))
    {
        a.recommended_step = Some(step);
        a.recommended_by = "eval_loss".into();
    } else if let (Some(best), false) = (a.min_eval_step, checkpoints.is_empty()) {
        a.recommended_step = checkpoints
            .iter()
            .copied()
            .min_by_key(|c| (c.abs_diff(best), *c));
        a.recommended_by = "nearest to the eval_loss minimum".into();
    } else if let Some(&last) = checkpoints.iter().max() {
        a.recommended_step = Some(last);
        a.recommended_by = "last (no eval_loss)".into();
    }
    a.recommended_checkpoint = a.recommended_step.map(|s| format!("checkpoint-{s}"));
    a
}

/// Re-chooses the recommended checkpoint by a benchmark metric (higher is better):
/// `scores` are `(step, value)` per checkpoint.
pub fn recommend_by_metric(a: &mut CurveAnalysis, metric: &str, scores: &[(u64, f64)]) {
    if let Some(&(step, _)) = scores
        .iter()
        .filter(|(_, v)| v.is_finite())
        .max_by(|x, y| x.1.total_cmp(&y.1).then(y.0.cmp(&x.0)))
    {
        a.recommended_step = Some(step);
        a.recommended_checkpoint = Some(format!("checkpoint-{step}"));
        a.recommended_by = metric.to_string();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ember_train::LogEntry;

    fn state(train: &[f64], evals: &[(u64, f64)]) -> TrainerState {
        let mut s = TrainerState::default();
        for (i, &l) in train.iter().enumerate() {
            let step = i as u64 + 1;
            s.log_history.push(LogEntry {
                loss: Some(l),
                step,
                ..Default::default()
            });
            if let Some(&(_, e)) = evals.iter().find(|(st, _)| *st == step) {
                s.log_history.push(LogEntry {
                    eval_loss: Some(e),
                    step,
                    ..Default::default()
                });
            }
        }
        s
    }

    #[test]
    fn flags_rising_eval_with_falling_train_loss() {
        let train: Vec<f64> = (0..10).map(|i| 5.0 - 0.4 * i as f64).collect();
        let evals = [(2, 4.0), (4, 3.5), (6, 3.6), (8, 3.7), (10, 3.9)];
        let a = analyse(&state(&train, &evals), &[6, 8, 10], 3);
        assert_eq!((a.min_eval_step, a.min_eval_loss), (Some(4), Some(3.5)));
        assert!(a.overfitting);
        assert_eq!(a.overfit_from_step, Some(4));
        assert_eq!(a.longest_rise, 3);
        // checkpoint-4 was not kept: the best kept one by eval loss is checkpoint-6.
        assert_eq!(a.recommended_checkpoint.as_deref(), Some("checkpoint-6"));
        assert_eq!(a.recommended_by, "eval_loss");
    }

    #[test]
    fn no_flag_for_short_rises_or_rising_train_loss() {
        let train: Vec<f64> = (0..10).map(|i| 5.0 - 0.4 * i as f64).collect();
        let a = analyse(
            &state(&train, &[(2, 4.0), (4, 4.1), (6, 4.2), (8, 4.0)]),
            &[8],
            3,
        );
        assert!(!a.overfitting);
        assert_eq!(a.longest_rise, 2);
        let rising: Vec<f64> = (0..10).map(|i| 1.0 + 0.4 * i as f64).collect();
        let evals = [(2, 4.0), (4, 4.1), (6, 4.2), (8, 4.3)];
        let a = analyse(&state(&rising, &evals), &[2, 4, 6, 8], 3);
        assert!(
            !a.overfitting,
            "training loss rose too: divergence, not overfitting"
        );
        assert_eq!(a.recommended_checkpoint.as_deref(), Some("checkpoint-2"));
    }

    #[test]
    fn metric_choice_overrides_eval_loss() {
        let mut a = analyse(&state(&[3.0, 2.0], &[(1, 2.5), (2, 2.4)]), &[1, 2], 3);
        assert_eq!(a.recommended_step, Some(2));
        recommend_by_metric(&mut a, "kobest/acc", &[(1, 0.61), (2, 0.58)]);
        assert_eq!(a.recommended_checkpoint.as_deref(), Some("checkpoint-1"));
        assert_eq!(a.recommended_by, "kobest/acc");
    }
}
