//! lm-eval's multiple-choice metrics (`ConfigurableTask.process_results`) and their aggregation.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::tasks::{Group, Metric, Weighting};

/// One document's outcome.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DocResult {
    /// Position in the evaluated split (0-based).
    pub doc: usize,
    pub gold: usize,
    /// `argmax(lls)`, lowest index on ties (`np.argmax`).
    pub pred: usize,
    /// `argmax(lls / len_chars(choice))`.
    pub pred_norm: usize,
    pub lls: Vec<f64>,
    pub is_greedy: Vec<bool>,
}

impl DocResult {
    /// `choices` are the answer strings (their length in characters, Python's `len`, normalises).
    pub fn new(
        doc: usize,
        gold: usize,
        choices: &[String],
        lls: Vec<f64>,
        is_greedy: Vec<bool>,
    ) -> Self {
        let norm: Vec<f64> = lls
            .iter()
            .zip(choices)
            .map(|(ll, c)| ll / c.chars().count() as f64)
            .collect();
        Self {
            doc,
            gold,
            pred: argmax(&lls),
            pred_norm: argmax(&norm),
            lls,
            is_greedy,
        }
    }

    pub fn acc(&self) -> f64 {
        f64::from(u8::from(self.pred == self.gold))
    }

    pub fn acc_norm(&self) -> f64 {
        f64::from(u8::from(self.pred_norm == self.gold))
    }
}

/// First index of the maximum (`np.argmax` on finite values).
pub fn argmax(v: &[f64]) -> usize {
    let mut best = 0;
    for (i, &x) in v.iter().enumerate() {
        if x > v[best] {
            best = i;
        }
    }
    best
}

/// sklearn's `f1_score(golds, preds, average="macro")`: the mean over every label seen in either
/// list of `2 tp / (2 tp + fp + fn)`.
pub fn macro_f1(pairs: &[(usize, usize)]) -> f64 {
    let mut labels: Vec<usize> = pairs.iter().flat_map(|&(g, p)| [g, p]).collect();
    labels.sort_unstable();
    labels.dedup();
    if labels.is_empty() {
        return 0.0;
    }
    let f1s = labels.iter().map(|&l| {
        let tp = pairs.iter().filter(|&&(g, p)| g == l && p == l).count() as f64;
        let fp = pairs.iter().filter(|&&(g, p)| g != l && p == l).count() as f64;
        let fnn = pairs.iter().filter(|&&(g, p)| g == l && p != l).count() as f64;
        let denom = 2.0 * tp + fp + fnn;
        if denom == 0.0 { 0.0 } else { 2.0 * tp / denom }
    });
    f1s.sum::<f64>() / labels.len() as f64
}

/// A task's metrics over its documents.
pub fn task_metrics(metrics: &[Metric], docs: &[DocResult]) -> BTreeMap<String, f64> {
    let n = docs.len() as f64;
    let mean = |f: &dyn Fn(&DocResult) -> f64| docs.iter().map(f).sum::<f64>() / n;
    metrics
        .iter()
        .map(|&m| {
            let v = match m {
                Metric::Acc => mean(&DocResult::acc),
                Metric::AccNorm => mean(&DocResult::acc_norm),
                Metric::F1 => macro_f1(&docs.iter().map(|d| (d.gold, d.pred)).collect::<Vec<_>>()),
            };
            (m.name().to_string(), v)
        })
        .collect()
}

/// One group's value per metric: lm-eval's `aggregate_subtask_metrics`, `sum(m_i * n_i) / sum(n_i)`
/// over the members that report the metric, or the plain mean for [`Weighting::Macro`].
/// `members` are (metrics, document count) of the evaluated member tasks.
pub fn group_metrics(
    group: &Group,
    members: &[(&BTreeMap<String, f64>, usize)],
) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    for m in &group.metrics {
        let have: Vec<(f64, f64)> = members
            .iter()
            .filter_map(|(ms, n)| ms.get(m.name()).map(|&v| (v, *n as f64)))
            .collect();
        if have.is_empty() {
            continue;
        }
        let v = match group.weighting {
            Weighting::BySize => {
                have.iter().map(|(v, n)| v * n).sum::<f64>()
                    / have.iter().map(|(_, n)| n).sum::<f64>()
            }
            Weighting::Macro => have.iter().map(|(v, _)| v).sum::<f64>() / have.len() as f64,
        };
        out.insert(m.name().to_string(), v);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    // sklearn.metrics.f1_score([0,0,1,1,1,2], [0,1,1,1,0,0], average="macro") == 0.35555555555555557
    // (label 2 is never predicted; its F1 is 0 and it still counts).
    #[test]
    fn macro_f1_matches_sklearn() {
        let pairs = [(0, 0), (0, 1), (1, 1), (1, 1), (1, 0), (2, 0)];
        assert!((macro_f1(&pairs) - 0.35555555555555557).abs() < 1e-15);
        assert_eq!(macro_f1(&[(1, 1), (1, 1)]), 1.0);
    }

    #[test]
    fn acc_norm_divides_by_characters_not_bytes() {
        // "가나" is 2 characters (6 bytes), "abcd" 4 characters (4 bytes).
        let choices = vec!["가나".to_string(), "abcd".to_string()];
        let d = DocResult::new(0, 1, &choices, vec![-3.0, -5.0], vec![false, false]);
        assert_eq!(d.pred, 0);
        // Per character -1.5 vs -1.25 picks choice 1; per byte (-0.5 vs -1.25) would pick 0.
        assert_eq!(d.pred_norm, 1);
        assert_eq!((d.acc(), d.acc_norm()), (0.0, 1.0));
    }

    #[test]
    fn ties_take_the_first_choice() {
        assert_eq!(argmax(&[-1.0, -1.0, -2.0]), 0);
    }

    #[test]
    fn groups_weight_by_size_or_not() {
        let g = |w| Group {
            name: "g".into(),
            members: vec![],
            metrics: vec![Metric::Acc, Metric::AccNorm],
            weighting: w,
        };
        let a: BTreeMap<String, f64> = [("acc".to_string(), 1.0)].into();
        let b: BTreeMap<String, f64> =
            [("acc".to_string(), 0.0), ("acc_norm".to_string(), 0.5)].into();
        let by_size = group_metrics(&g(Weighting::BySize), &[(&a, 3), (&b, 1)]);
        assert_eq!(by_size.get("acc"), Some(&0.75));
        // Only members that report a metric count towards it.
        assert_eq!(by_size.get("acc_norm"), Some(&0.5));
        assert_eq!(
            group_metrics(&g(Weighting::Macro), &[(&a, 3), (&b, 1)]).get("acc"),
            Some(&0.5)
        );
    }
}
