//! The trainable-parameter report, printed as PEFT's `print_trainable_parameters` prints it:
//! `trainable params: 43,646,976 || all params: 8,234,382,336 || trainable%: 0.5301`.

use std::fmt;

use burn::tensor::backend::Backend;

use crate::LoraError;
use crate::adapter::LoraVariant;
use crate::config::LoraConfig;
use crate::model::{LoraModel, ModelShape};

/// Trainable and total parameter counts (the total includes the adapter, as PEFT counts it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParamReport {
    pub trainable: u64,
    pub all: u64,
}

impl ParamReport {
    /// From shapes alone: what adding the adapter `cfg` describes to a model of this shape gives.
    pub fn from_shape(shape: &ModelShape, cfg: &LoraConfig) -> Result<Self, LoraError> {
        cfg.validate()?;
        let selector = cfg.selector()?;
        let chosen = shape.select(&selector)?;
        cfg.check_patterns_for(chosen.iter().map(|l| l.path.as_str()))?;
        let trainable: u64 = chosen
            .iter()
            .map(|l| {
                let r = cfg.module_rank(&l.path).r;
                adapter_params(r, l.in_features, l.out_features, cfg.use_dora)
            })
            .sum();
        Ok(Self {
            trainable,
            all: shape.base_params + trainable,
        })
    }

    /// From a model's parameters: the adapter factors are the trainable ones.
    pub fn of_model<B: Backend, M: LoraModel<B>>(model: &M) -> Self {
        let trainable: u64 = model
            .lora_linears()
            .iter()
            .filter(|(_, l)| l.has_adapter())
            .map(|(_, l)| {
                let (inp, out) = l.dims();
                let dora = l.adapter().is_some_and(|a| a.variant == LoraVariant::Dora);
                adapter_params(l.rank().unwrap_or(0), inp, out, dora)
            })
            .sum();
        Self {
            trainable,
            all: model.num_params() as u64,
        }
    }

    /// `100 * trainable / all`.
    pub fn trainable_percent(&self) -> f64 {
        if self.all == 0 {
            0.0
        } else {
            100.0 * self.trainable as f64 / self.all as f64
        }
    }
}

/// The trainable parameters of one adapter: `r (in + out)`, plus DoRA's magnitude `[out]`.
pub fn adapter_params(r: usize, in_features: usize, out_features: usize, dora: bool) -> u64 {
    (r * (in_features + out_features) + if dora { out_features } else { 0 }) as u64
}

/// `1234567` -> `1,234,567` (Python's `{:,d}`).
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

impl fmt::Display for ParamReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "trainable params: {} || all params: {} || trainable%: {:.4}",
            thousands(self.trainable),
            thousands(self.all),
            self.trainable_percent()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_as_peft() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(8_234_382_336), "8,234,382,336");
        let r = ParamReport {
            trainable: 1,
            all: 3,
        };
        assert_eq!(
            r.to_string(),
            "trainable params: 1 || all params: 3 || trainable%: 33.3333"
        );
    }
}
