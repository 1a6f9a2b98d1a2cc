//! Saving and loading optimizer and scheduler state, so a resumed run continues bit for bit.
//!
//! A checkpoint directory holds `optimizer.safetensors` (f32 moments named `<path>.exp_avg` and
//! `<path>.exp_avg_sq`), `optimizer.json` (format tag, config and per-parameter step counts) and
//! `scheduler.json`. Names are parameter paths, so state survives new processes.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use burn::module::AutodiffModule;
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{DType, FloatDType, Tensor, TensorData, TensorPrimitive};
use safetensors::tensor::{Dtype, SafeTensors, TensorView};
use serde::{Deserialize, Serialize};

use crate::adamw::{AdamW, AdamWConfig, ParamState};
use crate::error::{OptimError, Result};
use crate::params::trainable_params;
use crate::schedule::LrScheduler;

pub const OPTIMIZER_TENSORS_FILE: &str = "optimizer.safetensors";
pub const OPTIMIZER_JSON_FILE: &str = "optimizer.json";
pub const SCHEDULER_JSON_FILE: &str = "scheduler.json";

const FORMAT: &str = "ember-optim/adamw/1";
const EXP_AVG: &str = "exp_avg";
const EXP_AVG_SQ: &str = "exp_avg_sq";

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct OptimizerJson {
    format: String,
    config: AdamWConfig,
    /// Step count per parameter with state (torch keeps one per parameter too).
    steps: BTreeMap<String, u64>,
}

impl<B: AutodiffBackend> AdamW<B> {
    /// Writes the optimizer state into `dir` (created if needed).
    pub fn save(&self, dir: &Path) -> Result<()> {
        fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
        let mut data = Vec::with_capacity(self.state.len() * 2);
        let mut steps = BTreeMap::new();
        for (path, s) in &self.state {
            for (kind, t) in [(EXP_AVG, &s.exp_avg), (EXP_AVG_SQ, &s.exp_avg_sq)] {
                // The stored primitive is rank-erased; the rank-1 wrapper only carries it to
                // `shape()`/`into_data()`, which read the primitive's own shape.
                let t = Tensor::<B::InnerBackend, 1>::from_primitive(t.clone());
                let shape = t.shape().to_vec();
                let values = t.cast(FloatDType::F32).into_data();
                data.push((format!("{path}.{kind}"), shape, values));
            }
            steps.insert(path.clone(), s.step);
        }
        let views = data
            .iter()
            .map(|(name, shape, values)| {
                TensorView::new(Dtype::F32, shape.clone(), values.as_bytes())
                    .map(|v| (name.clone(), v))
                    .map_err(|e| OptimError::Format {
                        path: dir.join(OPTIMIZER_TENSORS_FILE),
                        reason: e.to_string(),
                    })
            })
            .collect::<Result<Vec<_>>>()?;
        let bytes = safetensors::serialize(views, None).map_err(|e| OptimError::Format {
            path: dir.join(OPTIMIZER_TENSORS_FILE),
            reason: e.to_string(),
        })?;
        write_atomic(&dir.join(OPTIMIZER_TENSORS_FILE), &bytes)?;
        let json = OptimizerJson {
            format: FORMAT.to_string(),
            config: self.config,
            steps,
        };
        write_json(&dir.join(OPTIMIZER_JSON_FILE), &json)
    }

    /// Replaces the optimizer state with the one saved in `dir`, checked against `module`: every
    /// saved name must be a trainable parameter of the same shape, and the saved config must equal
    /// this optimizer's. Moments are placed on each parameter's device.
    pub fn load<M: AutodiffModule<B>>(&mut self, dir: &Path, module: &M) -> Result<()> {
        let json_path = dir.join(OPTIMIZER_JSON_FILE);
        let json: OptimizerJson = read_json(&json_path)?;
        if json.format != FORMAT {
            return Err(OptimError::Format {
                path: json_path,
                reason: format!("format `{}`, expected `{FORMAT}`", json.format),
            });
        }
        if json.config != self.config {
            return Err(OptimError::ConfigMismatch {
                saved: format!("{:?}", json.config),
                current: format!("{:?}", self.config),
            });
        }
        let tensors_path = dir.join(OPTIMIZER_TENSORS_FILE);
        let bytes = fs::read(&tensors_path).map_err(|e| io(&tensors_path, e))?;
        let st = SafeTensors::deserialize(&bytes).map_err(|e| OptimError::Format {
            path: tensors_path.clone(),
            reason: e.to_string(),
        })?;

        let params: BTreeMap<_, _> = trainable_params::<B, M>(module)
            .into_iter()
            .map(|p| (p.path.clone(), p))
            .collect();
        let expected_names = json.steps.len() * 2;
        if st.len() != expected_names {
            let stray = st
                .names()
                .into_iter()
                .find(|n| !json.steps.keys().any(|p| is_moment_of(n, p)))
                .unwrap_or("?")
                .to_string();
            return Err(OptimError::Format {
                path: tensors_path,
                reason: format!(
                    "{} tensors for {} parameters (e.g. `{stray}`)",
                    st.len(),
                    json.steps.len()
                ),
            });
        }

        let mut state = BTreeMap::new();
        for (path, &step) in &json.steps {
            let param = params
                .get(path)
                .ok_or_else(|| OptimError::UnexpectedParam(path.clone()))?;
            let mut moments = Vec::with_capacity(2);
            for kind in [EXP_AVG, EXP_AVG_SQ] {
                let name = format!("{path}.{kind}");
                let view = st.tensor(&name).map_err(|_| OptimError::Format {
                    path: tensors_path.clone(),
                    reason: format!("missing tensor `{name}`"),
                })?;
                if view.shape() != param.shape.as_slice() {
                    return Err(OptimError::ShapeMismatch {
                        name: path.clone(),
                        state: view.shape().to_vec(),
                        param: param.shape.clone(),
                    });
                }
                if view.dtype() != Dtype::F32 {
                    return Err(OptimError::Format {
                        path: tensors_path.clone(),
                        reason: format!("`{name}` is {:?}, expected F32", view.dtype()),
                    });
                }
                moments.push(load_f32::<B::InnerBackend>(
                    view.data(),
                    view.shape(),
                    &param.device,
                ));
            }
            let Ok([exp_avg, exp_avg_sq]) = <[_; 2]>::try_from(moments) else {
                unreachable!("one moment is pushed for each of EXP_AVG and EXP_AVG_SQ");
            };
            state.insert(
                path.clone(),
                ParamState {
                    step,
                    exp_avg,
                    exp_avg_sq,
                },
            );
        }
        // Once any step ran, every trainable parameter that had a gradient has state; a trainable
        // parameter with none means the module's trainable set changed since saving.
        if !state.is_empty()
            && let Some(missing) = params.keys().find(|p| !state.contains_key(*p))
        {
            return Err(OptimError::MissingParam(missing.clone()));
        }
        self.state = state;
        Ok(())
    }
}

impl LrScheduler {
    /// Writes `scheduler.json` into `dir` (created if needed).
    pub fn save(&self, dir: &Path) -> Result<()> {
        fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
        write_json(&dir.join(SCHEDULER_JSON_FILE), self)
    }

    /// Reads the scheduler saved in `dir` (schedule, base LR and step count).
    pub fn load(dir: &Path) -> Result<Self> {
        read_json(&dir.join(SCHEDULER_JSON_FILE))
    }
}

fn is_moment_of(name: &str, path: &str) -> bool {
    name.strip_prefix(path)
        .and_then(|rest| rest.strip_prefix('.'))
        .is_some_and(|kind| kind == EXP_AVG || kind == EXP_AVG_SQ)
}

/// Builds an f32 tensor of `shape` on `device` from little-endian bytes.
fn load_f32<B: Backend>(bytes: &[u8], shape: &[usize], device: &B::Device) -> TensorPrimitive<B> {
    let numel = shape.iter().product::<usize>();
    let flat = TensorData::from_bytes_vec(bytes.to_vec(), [numel], DType::F32);
    reshape_dyn(Tensor::<B, 1>::from_data(flat, (device, DType::F32)), shape)
}

/// Reshapes a rank-1 tensor to `shape` and returns the rank-erased primitive.
fn reshape_dyn<B: Backend>(t: Tensor<B, 1>, shape: &[usize]) -> TensorPrimitive<B> {
    macro_rules! to_rank {
        ($($d:literal),*) => {
            match shape.len() {
                $($d => {
                    #[allow(clippy::expect_used, reason = "this arm is for shapes of this length")]
                    let dims: [usize; $d] = shape.try_into().expect("length checked");
                    t.reshape(dims).into_primitive()
                })*
                n => panic!("parameters of rank {n} are not supported"),
            }
        };
    }
    to_rank!(1, 2, 3, 4, 5, 6)
}

fn io(path: &Path, source: std::io::Error) -> OptimError {
    OptimError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Writes through a temporary file so a crash never leaves a half-written checkpoint.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp: PathBuf = path.with_extension("tmp");
    fs::write(&tmp, bytes).map_err(|e| io(&tmp, e))?;
    fs::rename(&tmp, path).map_err(|e| io(path, e))
}

fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    let text = serde_json::to_string_pretty(value).map_err(|e| OptimError::Format {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    write_atomic(path, text.as_bytes())
}

fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<T> {
    let text = fs::read_to_string(path).map_err(|e| io(path, e))?;
    serde_json::from_str(&text).map_err(|e| OptimError::Format {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })
}
