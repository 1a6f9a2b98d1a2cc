//! The sweep grid: `--grid key=v1,v2,...` axes, their cross product, and run names made from the
//! values (`train_samples-162_lora_rank-16`), so a run's directory says what it is.

use serde::{Deserialize, Serialize};

use crate::StudyError;

/// One `--grid` axis: a config key (`train_samples`, `lora.lora_rank`, ...) and its values as
/// written (TOML: `2e-5`, `16`, `"text"`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Axis {
    pub key: String,
    pub values: Vec<String>,
}

impl Axis {
    /// Parses `key=v1,v2,...`.
    pub fn parse(spec: &str) -> Result<Self, StudyError> {
        let err = |reason: &str| StudyError::Grid {
            spec: spec.to_string(),
            reason: reason.to_string(),
        };
        let (key, values) = spec
            .split_once('=')
            .ok_or_else(|| err("expected key=v1,v2,..."))?;
        let key = key.trim();
        if key.is_empty() {
            return Err(err("the key is empty"));
        }
        let values: Vec<String> = values.split(',').map(|v| v.trim().to_string()).collect();
        if values.iter().any(String::is_empty) {
            return Err(err("empty value"));
        }
        for (i, v) in values.iter().enumerate() {
            if values[..i].contains(v) {
                return Err(err(&format!("`{v}` is listed twice")));
            }
        }
        Ok(Self {
            key: key.to_string(),
            values,
        })
    }

    /// The key without its section (`lora.lora_rank` -> `lora_rank`): the name used in run names.
    pub fn short_key(&self) -> &str {
        self.key.rsplit('.').next().unwrap_or(&self.key)
    }
}

/// One point of the grid: its name and its `key=value` overrides.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunSpec {
    pub name: String,
    /// `(key, value)` per axis, in axis order.
    pub settings: Vec<(String, String)>,
}

impl RunSpec {
    /// The `--set` overrides of this run.
    pub fn overrides(&self) -> Vec<String> {
        self.settings
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect()
    }

    /// The value of `key` (full or short form) in this run.
    pub fn value(&self, key: &str) -> Option<&str> {
        self.settings
            .iter()
            .find(|(k, _)| k == key || k.rsplit('.').next() == Some(key))
            .map(|(_, v)| v.as_str())
    }
}

/// The axes of a sweep.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Grid {
    pub axes: Vec<Axis>,
}

impl Grid {
    /// Parses each `--grid` argument; a key may appear once.
    pub fn parse<S: AsRef<str>>(specs: &[S]) -> Result<Self, StudyError> {
        let mut axes: Vec<Axis> = Vec::new();
        for spec in specs {
            let axis = Axis::parse(spec.as_ref())?;
            if axes.iter().any(|a| a.short_key() == axis.short_key()) {
                return Err(StudyError::Grid {
                    spec: spec.as_ref().to_string(),
                    reason: format!("`{}` already has an axis", axis.key),
                });
            }
            axes.push(axis);
        }
        Ok(Self { axes })
    }

    /// The cross product, first axis slowest; a grid without axes is one run named `run`.
    pub fn runs(&self) -> Vec<RunSpec> {
        let mut points: Vec<Vec<(String, String)>> = vec![Vec::new()];
        for axis in &self.axes {
            points = points
                .into_iter()
                .flat_map(|p| {
                    axis.values.iter().map(move |v| {
                        let mut q = p.clone();
                        q.push((axis.key.clone(), v.clone()));
                        q
                    })
                })
                .collect();
        }
        points
            .into_iter()
            .map(|settings| RunSpec {
                name: run_name(&settings),
                settings,
            })
            .collect()
    }
}

/// `train_samples-162_lora_rank-16`; characters other than letters, digits, `.`, `+` and `-` in a
/// value become `-`.
pub fn run_name(settings: &[(String, String)]) -> String {
    if settings.is_empty() {
        return "run".into();
    }
    settings
        .iter()
        .map(|(k, v)| {
            let k = k.rsplit('.').next().unwrap_or(k);
            let v: String = v
                .trim_matches('"')
                .chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() || matches!(c, '.' | '+' | '-') {
                        c
                    } else {
                        '-'
                    }
                })
                .collect();
            format!("{k}-{v}")
        })
        .collect::<Vec<_>>()
        .join("_")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cross_product_first_axis_slowest() {
        let g = Grid::parse(&["train_samples=162,477", "lora.lora_rank=8,16,32"]).unwrap();
        let runs = g.runs();
        assert_eq!(runs.len(), 6);
        assert_eq!(runs[0].name, "train_samples-162_lora_rank-8");
        assert_eq!(runs[1].name, "train_samples-162_lora_rank-16");
        assert_eq!(runs[5].name, "train_samples-477_lora_rank-32");
        assert_eq!(
            runs[4].overrides(),
            vec!["train_samples=477", "lora.lora_rank=16"]
        );
        assert_eq!(runs[4].value("lora_rank"), Some("16"));
        assert_eq!(Grid::default().runs()[0].name, "run");
    }

    #[test]
    fn bad_axes_are_rejected() {
        for bad in ["train_samples", "=1,2", "x=1,,2", "x=1,1"] {
            assert!(Grid::parse(&[bad]).is_err(), "{bad}");
        }
        assert!(Grid::parse(&["lora_rank=8", "lora.lora_rank=16"]).is_err());
        assert_eq!(
            run_name(&[("learning_rate".into(), "2e-5".into())]),
            "learning_rate-2e-5"
        );
        assert_eq!(
            run_name(&[("template".into(), "\"a b\"".into())]),
            "template-a-b"
        );
    }
}
