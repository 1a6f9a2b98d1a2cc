//! Contexts as lm-eval builds them without a chat template: zero-shot the context is
//! `doc_to_text(doc)`; k-shot it is prefixed by k examples drawn by lm-eval's `ContextSampler`,
//! each rendered `text + " " + answer + "\n\n"`.

use crate::data::Doc;
use crate::pyrandom::PyRandom;

/// lm-eval's `TaskConfig.target_delimiter`: between a context and a choice.
pub const TARGET_DELIMITER: &str = " ";
/// lm-eval's `TaskConfig.fewshot_delimiter`: after each few-shot example.
pub const FEWSHOT_DELIMITER: &str = "\n\n";
/// lm-eval's default `fewshot_random_seed`.
pub const FEWSHOT_SEED: u64 = 1234;

/// Draws few-shot examples exactly as lm-eval: one `random.Random(seed)` per task, one
/// `rnd.sample(pool, n)` per evaluated document in document order.
#[derive(Debug)]
pub struct FewShotSampler<'a> {
    pool: &'a [Doc],
    rng: PyRandom,
    num_fewshot: usize,
    /// The pool is the evaluated split: draw one more and drop the evaluated document.
    same_split: bool,
}

impl<'a> FewShotSampler<'a> {
    pub fn new(pool: &'a [Doc], num_fewshot: usize, same_split: bool, seed: u64) -> Self {
        Self {
            pool,
            rng: PyRandom::new(seed),
            num_fewshot,
            same_split,
        }
    }

    /// How many documents each draw takes from the pool.
    pub fn draw_size(&self) -> usize {
        if self.same_split {
            self.num_fewshot + 1
        } else {
            self.num_fewshot
        }
    }

    /// The context for the next evaluated document. `None` if the pool is smaller than a draw
    /// (Python raises there too).
    pub fn context(&mut self, doc: &Doc) -> Option<String> {
        if self.num_fewshot == 0 {
            return Some(doc.text.clone());
        }
        let picks = self.rng.sample(self.pool.len(), self.draw_size())?;
        // lm-eval compares documents as dicts, so an equal duplicate is dropped as well.
        let mut chosen: Vec<&Doc> = picks
            .into_iter()
            .map(|i| &self.pool[i])
            .filter(|ex| !self.same_split || ex.fields != doc.fields)
            .take(self.num_fewshot)
            .collect();
        if chosen.len() < self.num_fewshot {
            // Several copies of the evaluated document were drawn: lm-eval (0.4.10+) draws again
            // from the pool without any copy.
            let rest: Vec<&Doc> = self
                .pool
                .iter()
                .filter(|ex| ex.fields != doc.fields)
                .collect();
            let picks = self.rng.sample(rest.len(), self.num_fewshot)?;
            chosen = picks.into_iter().map(|i| rest[i]).collect();
        }
        let mut ctx = String::new();
        for ex in chosen {
            ctx.push_str(&ex.text);
            ctx.push_str(TARGET_DELIMITER);
            ctx.push_str(&ex.choices[ex.gold]);
            ctx.push_str(FEWSHOT_DELIMITER);
        }
        ctx.push_str(&doc.text);
        Some(ctx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(i: usize) -> Doc {
        Doc {
            text: format!("q{i}"),
            choices: vec!["no".into(), "yes".into()],
            gold: i % 2,
            row: i + 1,
            fields: vec![("id".into(), i.to_string())],
        }
    }

    #[test]
    fn zero_shot_is_the_document_text() {
        let pool: Vec<Doc> = (0..3).map(doc).collect();
        let mut s = FewShotSampler::new(&pool, 0, false, FEWSHOT_SEED);
        assert_eq!(s.context(&doc(7)).as_deref(), Some("q7"));
    }

    // random.Random(1234): sample(range(10), 2) -> [7, 1], then sample(range(10), 2) -> [0, 1].
    #[test]
    fn k_shot_uses_one_rng_across_documents() {
        let pool: Vec<Doc> = (0..10).map(doc).collect();
        let mut s = FewShotSampler::new(&pool, 2, false, FEWSHOT_SEED);
        assert_eq!(
            s.context(&doc(20)).as_deref(),
            Some("q7 yes\n\nq1 yes\n\nq20")
        );
        assert_eq!(
            s.context(&doc(21)).as_deref(),
            Some("q0 no\n\nq1 yes\n\nq21")
        );
    }

    // Same split: draws 3 = sample(range(10), 3) -> [7, 1, 0]; evaluating doc 1 drops it.
    #[test]
    fn same_split_drops_the_evaluated_document() {
        let pool: Vec<Doc> = (0..10).map(doc).collect();
        let mut s = FewShotSampler::new(&pool, 2, true, FEWSHOT_SEED);
        assert_eq!(
            s.context(&pool[1]).as_deref(),
            Some("q7 yes\n\nq0 no\n\nq1")
        );
        let mut small = FewShotSampler::new(&pool[..2], 2, true, FEWSHOT_SEED);
        assert_eq!(small.context(&pool[0]), None);
    }
}
