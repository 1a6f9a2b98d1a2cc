//! transformers' learning-rate schedules (`get_scheduler`) driven like torch's `LambdaLR`.
//!
//! Burn's schedulers have no HF warm-up and reject a zero LR, so these are written out: each
//! multiplier is the transformers lambda evaluated in f64 with the same operation order, and the LR
//! is `base_lr * lambda(step)` where `step` counts scheduler steps taken, starting at 0. The first
//! optimizer step therefore uses LR 0 whenever there is warm-up.

use std::collections::BTreeMap;
use std::f64::consts::PI;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

use crate::error::{OptimError, Result};

/// The schedule names supported, spelled as HF's `lr_scheduler_type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SchedulerType {
    Constant,
    ConstantWithWarmup,
    Linear,
    Cosine,
    CosineWithMinLr,
    Polynomial,
}

impl SchedulerType {
    pub const ALL: [SchedulerType; 6] = [
        SchedulerType::Constant,
        SchedulerType::ConstantWithWarmup,
        SchedulerType::Linear,
        SchedulerType::Cosine,
        SchedulerType::CosineWithMinLr,
        SchedulerType::Polynomial,
    ];

    pub fn name(self) -> &'static str {
        match self {
            SchedulerType::Constant => "constant",
            SchedulerType::ConstantWithWarmup => "constant_with_warmup",
            SchedulerType::Linear => "linear",
            SchedulerType::Cosine => "cosine",
            SchedulerType::CosineWithMinLr => "cosine_with_min_lr",
            SchedulerType::Polynomial => "polynomial",
        }
    }
}

impl fmt::Display for SchedulerType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for SchedulerType {
    type Err = OptimError;

    fn from_str(s: &str) -> Result<Self> {
        Self::ALL
            .into_iter()
            .find(|t| t.name() == s)
            .ok_or_else(|| OptimError::UnknownScheduler {
                name: s.to_string(),
                valid: Self::ALL.map(Self::name).join(", "),
            })
    }
}

/// A schedule's multiplier function with all its parameters resolved (transformers' lambdas).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Schedule {
    Constant,
    ConstantWithWarmup {
        warmup: u64,
    },
    Linear {
        warmup: u64,
        total: u64,
    },
    Cosine {
        warmup: u64,
        total: u64,
        num_cycles: f64,
    },
    /// `min_lr_rate` is the final LR as a fraction of the initial one.
    CosineWithMinLr {
        warmup: u64,
        total: u64,
        num_cycles: f64,
        min_lr_rate: f64,
    },
    /// `lr_init` is the optimizer's initial LR, which transformers divides by.
    Polynomial {
        warmup: u64,
        total: u64,
        lr_end: f64,
        power: f64,
        lr_init: f64,
    },
}

impl Schedule {
    /// The LR multiplier after `step` scheduler steps.
    pub fn multiplier(&self, step: u64) -> f64 {
        let s = step as f64;
        let warming = |w: u64| (step < w).then(|| s / (w.max(1) as f64));
        match *self {
            Schedule::Constant => 1.0,
            Schedule::ConstantWithWarmup { warmup } => warming(warmup).unwrap_or(1.0),
            Schedule::Linear { warmup, total } => warming(warmup).unwrap_or_else(|| {
                let remaining = total as i64 - step as i64;
                let span = (total as i64 - warmup as i64).max(1);
                (remaining as f64 / span as f64).max(0.0)
            }),
            Schedule::Cosine {
                warmup,
                total,
                num_cycles,
            } => warming(warmup)
                .unwrap_or_else(|| cosine_factor(step, warmup, total, num_cycles).max(0.0)),
            Schedule::CosineWithMinLr {
                warmup,
                total,
                num_cycles,
                min_lr_rate,
            } => warming(warmup).unwrap_or_else(|| {
                let factor = cosine_factor(step, warmup, total, num_cycles);
                (factor * (1.0 - min_lr_rate) + min_lr_rate).max(0.0)
            }),
            Schedule::Polynomial {
                warmup,
                total,
                lr_end,
                power,
                lr_init,
            } => warming(warmup).unwrap_or_else(|| {
                if step > total {
                    lr_end / lr_init
                } else {
                    let lr_range = lr_init - lr_end;
                    let decay_steps = total as i64 - warmup as i64;
                    let pct_remaining =
                        1.0 - (step as i64 - warmup as i64) as f64 / decay_steps as f64;
                    let decay = lr_range * pct_remaining.powf(power) + lr_end;
                    decay / lr_init
                }
            }),
        }
    }
}

/// `0.5 * (1 + cos(pi * num_cycles * 2 * progress))`, multiplied left to right as in Python.
fn cosine_factor(step: u64, warmup: u64, total: u64, num_cycles: f64) -> f64 {
    let progress =
        (step as i64 - warmup as i64) as f64 / ((total as i64 - warmup as i64).max(1) as f64);
    0.5 * (1.0 + (PI * num_cycles * 2.0 * progress).cos())
}

/// torch `LambdaLR` over a [`Schedule`]: holds the base LR and the number of steps taken.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LrScheduler {
    pub base_lr: f64,
    pub schedule: Schedule,
    /// Scheduler steps taken (torch's `last_epoch`).
    pub step: u64,
}

impl LrScheduler {
    pub fn new(base_lr: f64, schedule: Schedule) -> Self {
        Self {
            base_lr,
            schedule,
            step: 0,
        }
    }

    /// The LR for the next optimizer step.
    pub fn lr(&self) -> f64 {
        self.lr_at(self.step)
    }

    /// The LR after `step` scheduler steps.
    pub fn lr_at(&self, step: u64) -> f64 {
        self.base_lr * self.schedule.multiplier(step)
    }

    /// Advances one step; call after each optimizer step. Returns the new LR.
    pub fn step(&mut self) -> f64 {
        self.step += 1;
        self.lr()
    }
}

/// HF `TrainingArguments` keys that choose the schedule, deserializable from a trainer config.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SchedulerArgs {
    pub lr_scheduler_type: String,
    pub warmup_ratio: f64,
    /// An integer count, or (newer transformers) a float below 1 meaning a ratio of the total.
    pub warmup_steps: f64,
    /// Extra keyword arguments (`num_cycles`, `min_lr`, `min_lr_rate`, `lr_end`, `power`); HF also
    /// accepts them as a JSON string.
    #[serde(deserialize_with = "kwargs_from_map_or_string")]
    pub lr_scheduler_kwargs: BTreeMap<String, Value>,
}

impl Default for SchedulerArgs {
    /// HF defaults: linear, no warm-up.
    fn default() -> Self {
        Self {
            lr_scheduler_type: "linear".to_string(),
            warmup_ratio: 0.0,
            warmup_steps: 0.0,
            lr_scheduler_kwargs: BTreeMap::new(),
        }
    }
}

impl SchedulerArgs {
    /// Warm-up steps for a run of `total` steps: `warmup_steps` if it is at least 1, otherwise
    /// `ceil(total * ratio)` with the ratio from `warmup_steps` (if in (0, 1)) or `warmup_ratio`.
    pub fn warmup_steps_for(&self, total: u64) -> Result<u64> {
        let bad = |reason: String| OptimError::SchedulerArgs {
            scheduler: self.lr_scheduler_type.clone(),
            reason,
        };
        let ws = self.warmup_steps;
        if ws.is_nan() || ws < 0.0 || ws.is_infinite() {
            return Err(bad(format!("warmup_steps must be >= 0, got {ws}")));
        }
        if ws >= 1.0 {
            if ws.fract() != 0.0 {
                return Err(bad(format!(
                    "warmup_steps must be an integer or a ratio below 1, got {ws}"
                )));
            }
            return Ok(ws as u64);
        }
        let ratio = if ws > 0.0 { ws } else { self.warmup_ratio };
        if !(0.0..=1.0).contains(&ratio) {
            return Err(bad(format!("warmup_ratio must be in [0, 1], got {ratio}")));
        }
        Ok((total as f64 * ratio).ceil() as u64)
    }

    /// The scheduler for a run of `total` optimizer steps at peak LR `base_lr`, as
    /// `transformers.get_scheduler(name, optimizer, warmup, total, **kwargs)` builds it.
    pub fn build(&self, base_lr: f64, total: u64) -> Result<LrScheduler> {
        let kind: SchedulerType = self.lr_scheduler_type.parse()?;
        let warmup = self.warmup_steps_for(total)?;
        let schedule =
            schedule_from_kwargs(kind, base_lr, warmup, total, &self.lr_scheduler_kwargs)?;
        Ok(LrScheduler::new(base_lr, schedule))
    }
}

/// Resolves a [`Schedule`] from a type and transformers' keyword arguments, rejecting keywords the
/// schedule function does not take (Python would raise a `TypeError`).
pub fn schedule_from_kwargs(
    kind: SchedulerType,
    base_lr: f64,
    warmup: u64,
    total: u64,
    kwargs: &BTreeMap<String, Value>,
) -> Result<Schedule> {
    let bad = |reason: String| OptimError::SchedulerArgs {
        scheduler: kind.name().to_string(),
        reason,
    };
    let allowed: &[&str] = match kind {
        // get_scheduler passes no kwargs to these two.
        SchedulerType::Constant | SchedulerType::ConstantWithWarmup => &[],
        SchedulerType::Linear => &[],
        SchedulerType::Cosine => &["num_cycles"],
        SchedulerType::CosineWithMinLr => &["num_cycles", "min_lr", "min_lr_rate"],
        SchedulerType::Polynomial => &["lr_end", "power"],
    };
    // transformers silently ignores kwargs for constant / constant_with_warmup only.
    let ignores_kwargs = matches!(
        kind,
        SchedulerType::Constant | SchedulerType::ConstantWithWarmup
    );
    if !ignores_kwargs && let Some(k) = kwargs.keys().find(|k| !allowed.contains(&k.as_str())) {
        return Err(bad(format!(
            "unexpected lr_scheduler_kwargs key `{k}` (accepted: {})",
            if allowed.is_empty() {
                "none".to_string()
            } else {
                allowed.join(", ")
            }
        )));
    }
    let num = |key: &str| -> Result<Option<f64>> {
        match kwargs.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => v
                .as_f64()
                .map(Some)
                .ok_or_else(|| bad(format!("`{key}` must be a number, got {v}"))),
        }
    };
    Ok(match kind {
        SchedulerType::Constant => Schedule::Constant,
        SchedulerType::ConstantWithWarmup => Schedule::ConstantWithWarmup { warmup },
        SchedulerType::Linear => Schedule::Linear { warmup, total },
        SchedulerType::Cosine => Schedule::Cosine {
            warmup,
            total,
            num_cycles: num("num_cycles")?.unwrap_or(0.5),
        },
        SchedulerType::CosineWithMinLr => {
            let min_lr_rate = match (num("min_lr")?, num("min_lr_rate")?) {
                (Some(_), Some(_)) => {
                    return Err(bad("only one of min_lr or min_lr_rate should be set".into()));
                }
                (Some(min_lr), None) => min_lr / base_lr,
                (None, Some(rate)) => rate,
                (None, None) => {
                    return Err(bad(
                        "one of min_lr or min_lr_rate must be set in lr_scheduler_kwargs".into(),
                    ));
                }
            };
            Schedule::CosineWithMinLr {
                warmup,
                total,
                num_cycles: num("num_cycles")?.unwrap_or(0.5),
                min_lr_rate,
            }
        }
        SchedulerType::Polynomial => {
            let lr_end = num("lr_end")?.unwrap_or(1e-7);
            if base_lr.is_nan() || lr_end.is_nan() || base_lr <= lr_end {
                return Err(bad(format!(
                    "lr_end ({lr_end}) must be smaller than initial lr ({base_lr})"
                )));
            }
            // Python divides by zero at step == warmup == total; refuse that up front.
            if warmup >= total {
                return Err(bad(format!(
                    "needs more total steps ({total}) than warm-up steps ({warmup})"
                )));
            }
            Schedule::Polynomial {
                warmup,
                total,
                lr_end,
                power: num("power")?.unwrap_or(1.0),
                lr_init: base_lr,
            }
        }
    })
}

fn kwargs_from_map_or_string<'de, D: Deserializer<'de>>(
    de: D,
) -> std::result::Result<BTreeMap<String, Value>, D::Error> {
    match Value::deserialize(de)? {
        Value::Null => Ok(BTreeMap::new()),
        Value::Object(map) => Ok(map.into_iter().collect()),
        Value::String(s) if s.trim().is_empty() => Ok(BTreeMap::new()),
        Value::String(s) => serde_json::from_str(&s).map_err(serde::de::Error::custom),
        other => Err(serde::de::Error::custom(format!(
            "lr_scheduler_kwargs must be a map or a JSON string, got {other}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_name_lists_valid_ones() {
        let err = "cosine_restarts"
            .parse::<SchedulerType>()
            .unwrap_err()
            .to_string();
        assert!(err.contains("cosine_restarts"), "{err}");
        for t in SchedulerType::ALL {
            assert!(err.contains(t.name()), "{err}");
        }
    }

    #[test]
    fn warmup_ratio_rounds_up() {
        let args = SchedulerArgs {
            lr_scheduler_type: "cosine".into(),
            warmup_ratio: 0.03,
            ..Default::default()
        };
        assert_eq!(args.warmup_steps_for(18).unwrap(), 1);
        assert_eq!(args.warmup_steps_for(45).unwrap(), 2);
        assert_eq!(args.warmup_steps_for(90).unwrap(), 3);
        let steps = SchedulerArgs {
            warmup_steps: 5.0,
            ..args.clone()
        };
        assert_eq!(steps.warmup_steps_for(90).unwrap(), 5);
        let ratio = SchedulerArgs {
            warmup_steps: 0.1,
            ..args
        };
        assert_eq!(ratio.warmup_steps_for(45).unwrap(), 5);
    }

    #[test]
    fn first_step_uses_zero_lr_under_warmup() {
        let mut s = LrScheduler::new(
            2e-5,
            Schedule::Cosine {
                warmup: 1,
                total: 18,
                num_cycles: 0.5,
            },
        );
        assert_eq!(s.lr(), 0.0);
        assert_eq!(s.step(), 2e-5);
    }

    #[test]
    fn kwargs_may_be_a_json_string_and_unknown_keys_fail() {
        let args: SchedulerArgs = serde_json::from_str(
            r#"{"lr_scheduler_type":"cosine_with_min_lr","lr_scheduler_kwargs":"{\"min_lr\": 1e-6}"}"#,
        )
        .unwrap();
        let s = args.build(1e-5, 10).unwrap();
        assert!(
            matches!(s.schedule, Schedule::CosineWithMinLr { min_lr_rate, .. } if min_lr_rate == 1e-6 / 1e-5)
        );

        let bad: SchedulerArgs = serde_json::from_str(
            r#"{"lr_scheduler_type":"cosine","lr_scheduler_kwargs":{"power":2}}"#,
        )
        .unwrap();
        let err = bad.build(1e-5, 10).unwrap_err().to_string();
        assert!(err.contains("power") && err.contains("num_cycles"), "{err}");
    }
}
