//! Where a model's tensors come from: a Hugging Face checkpoint (single or sharded safetensors,
//! memory-mapped) or a seeded random initialisation.
//!
//! The model asks a [`WeightSource`] for each tensor by its HF name and shape. The checkpoint source
//! records every missing, unexpected or wrongly shaped key and reports them all at once in
//! [`WeightSource::finish`], rather than failing on the first.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs::File;
use std::path::{Path, PathBuf};

use burn::tensor::{DType, Tensor, TensorData, backend::Backend};
use ember_lora::seed::{fnv1a, normal};
use memmap2::Mmap;
use safetensors::SafeTensors;
use serde::Deserialize;

use crate::Qwen3Error;

/// The single-file checkpoint name and the sharded index name HF writes.
pub const SINGLE_FILE: &str = "model.safetensors";
pub const SHARD_INDEX: &str = "model.safetensors.index.json";

/// How a tensor is initialised when there is no checkpoint (HF `_init_weights` for Qwen3).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Init {
    /// `normal(0, initializer_range)`: linear and embedding weights.
    Normal,
    /// Ones: RMSNorm weights.
    Ones,
    /// Zeros: biases.
    Zeros,
}

/// A provider of named tensors for building a model.
pub trait WeightSource<B: Backend> {
    /// The tensor `name` with `shape`, in the compute dtype. A problem is recorded and a zero
    /// placeholder returned so that all problems can be reported together by `finish`.
    fn tensor<const D: usize>(&mut self, name: &str, shape: [usize; D], init: Init)
    -> Tensor<B, D>;
    /// Names the source may hold that the model does not need (e.g. `lm_head.weight` when tied).
    fn ignore(&mut self, name: &str);
    /// Reports every recorded problem.
    fn finish(self) -> Result<(), Qwen3Error>;
}

#[derive(Deserialize)]
struct ShardIndex {
    weight_map: BTreeMap<String, String>,
}

/// A memory-mapped HF checkpoint: `model.safetensors`, or the shards named by
/// `model.safetensors.index.json`.
pub struct SafetensorsSource<B: Backend> {
    dir: PathBuf,
    files: Vec<(PathBuf, Mmap)>,
    /// tensor name -> index into `files`
    index: HashMap<String, usize>,
    used: BTreeSet<String>,
    missing: Vec<String>,
    wrong_shape: Vec<(String, Vec<usize>, Vec<usize>)>,
    first_error: Option<Qwen3Error>,
    dtype: DType,
    device: B::Device,
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> Qwen3Error + '_ {
    move |source| Qwen3Error::Io {
        path: path.to_path_buf(),
        source,
    }
}

impl<B: Backend> SafetensorsSource<B> {
    /// Opens the checkpoint in `dir`; tensors are converted to `dtype` when taken.
    pub fn open(dir: &Path, dtype: DType, device: &B::Device) -> Result<Self, Qwen3Error> {
        let index_path = dir.join(SHARD_INDEX);
        let single_path = dir.join(SINGLE_FILE);
        let file_names: Vec<PathBuf> = if index_path.is_file() {
            let text = std::fs::read_to_string(&index_path).map_err(io_err(&index_path))?;
            let idx: ShardIndex =
                serde_json::from_str(&text).map_err(|e| Qwen3Error::NotAModelDir {
                    dir: dir.to_path_buf(),
                    reason: format!("{SHARD_INDEX} is not valid: {e}"),
                })?;
            let shards: BTreeSet<&String> = idx.weight_map.values().collect();
            shards.into_iter().map(|f| dir.join(f)).collect()
        } else if single_path.is_file() {
            vec![single_path]
        } else {
            return Err(Qwen3Error::NotAModelDir {
                dir: dir.to_path_buf(),
                reason: format!("neither {SINGLE_FILE} nor {SHARD_INDEX} found"),
            });
        };

        let mut files = Vec::new();
        let mut index = HashMap::new();
        for path in file_names {
            let file = File::open(&path).map_err(io_err(&path))?;
            // SAFETY: the file is opened read-only; like every mmap-based loader (HF's included) we
            // rely on the checkpoint not being truncated by another process while it is mapped.
            let mmap = unsafe { Mmap::map(&file) }.map_err(io_err(&path))?;
            let st = SafeTensors::deserialize(&mmap).map_err(|e| Qwen3Error::Safetensors {
                path: path.clone(),
                reason: e.to_string(),
            })?;
            for name in st.names() {
                index.insert(name.to_string(), files.len());
            }
            files.push((path, mmap));
        }
        Ok(Self {
            dir: dir.to_path_buf(),
            files,
            index,
            used: BTreeSet::new(),
            missing: Vec::new(),
            wrong_shape: Vec::new(),
            first_error: None,
            dtype,
            device: device.clone(),
        })
    }

    fn read(&self, name: &str, file: usize) -> Result<(Vec<usize>, TensorData), Qwen3Error> {
        let (path, mmap) = &self.files[file];
        let st = SafeTensors::deserialize(mmap).map_err(|e| Qwen3Error::Safetensors {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        let view = st.tensor(name).map_err(|e| Qwen3Error::Safetensors {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        let shape = view.shape().to_vec();
        let dtype = match view.dtype() {
            safetensors::Dtype::BF16 => DType::BF16,
            safetensors::Dtype::F16 => DType::F16,
            safetensors::Dtype::F32 => DType::F32,
            other => {
                return Err(Qwen3Error::UnsupportedDtype {
                    path: path.clone(),
                    name: name.to_string(),
                    dtype: format!("{other:?}"),
                });
            }
        };
        let data = TensorData::from_bytes_vec(view.data().to_vec(), shape.clone(), dtype);
        Ok((shape, data))
    }
}

impl<B: Backend> WeightSource<B> for SafetensorsSource<B> {
    fn tensor<const D: usize>(
        &mut self,
        name: &str,
        shape: [usize; D],
        _init: Init,
    ) -> Tensor<B, D> {
        let placeholder = || Tensor::<B, D>::zeros(shape, &self.device);
        let Some(&file) = self.index.get(name) else {
            self.missing.push(name.to_string());
            return placeholder();
        };
        self.used.insert(name.to_string());
        match self.read(name, file) {
            Ok((found, data)) => {
                if found != shape {
                    self.wrong_shape
                        .push((name.to_string(), shape.to_vec(), found));
                    return placeholder();
                }
                let data = data.convert_dtype(self.dtype);
                Tensor::<B, D>::from_data(data, &self.device).cast(self.dtype)
            }
            Err(e) => {
                self.first_error.get_or_insert(e);
                placeholder()
            }
        }
    }

    fn ignore(&mut self, name: &str) {
        if self.index.contains_key(name) {
            self.used.insert(name.to_string());
        }
    }

    fn finish(self) -> Result<(), Qwen3Error> {
        if let Some(e) = self.first_error {
            return Err(e);
        }
        let mut unexpected: Vec<String> = self
            .index
            .keys()
            .filter(|k| !self.used.contains(*k))
            .cloned()
            .collect();
        unexpected.sort();
        if self.missing.is_empty() && unexpected.is_empty() && self.wrong_shape.is_empty() {
            Ok(())
        } else {
            Err(Qwen3Error::WeightMismatch {
                dir: self.dir,
                missing: self.missing,
                unexpected,
                wrong_shape: self.wrong_shape,
            })
        }
    }
}

/// Seeded random weights with HF's Qwen3 initialisation (`normal(0, 0.02)`, norms one). Values are
/// drawn on the host from a per-tensor seed, so every backend gets the same model.
pub struct RandomInit<B: Backend> {
    seed: u64,
    std: f64,
    dtype: DType,
    device: B::Device,
}

impl<B: Backend> RandomInit<B> {
    /// HF's `initializer_range` default is 0.02.
    pub fn new(seed: u64, dtype: DType, device: &B::Device) -> Self {
        Self {
            seed,
            std: 0.02,
            dtype,
            device: device.clone(),
        }
    }
}

impl<B: Backend> WeightSource<B> for RandomInit<B> {
    fn tensor<const D: usize>(
        &mut self,
        name: &str,
        shape: [usize; D],
        init: Init,
    ) -> Tensor<B, D> {
        let n: usize = shape.iter().product();
        let values: Vec<f32> = match init {
            Init::Ones => vec![1.0; n],
            Init::Zeros => vec![0.0; n],
            Init::Normal => {
                use rand::SeedableRng;
                let mut rng = rand::rngs::StdRng::seed_from_u64(self.seed ^ fnv1a(name));
                // In f32, as this model's committed fixtures were drawn.
                normal(&mut rng, n, self.std as f32)
            }
        };
        Tensor::<B, D>::from_data(TensorData::new(values, shape), &self.device).cast(self.dtype)
    }

    fn ignore(&mut self, _name: &str) {}

    fn finish(self) -> Result<(), Qwen3Error> {
        Ok(())
    }
}
