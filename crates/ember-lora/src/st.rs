//! Small helpers over the `safetensors` crate: memory-mapped reading and owned tensors for writing.

use std::borrow::Cow;
use std::fs::File;
use std::path::{Path, PathBuf};

use burn::tensor::{DType, TensorData};
use memmap2::Mmap;
use safetensors::{Dtype, SafeTensors, View};

use crate::LoraError;
use crate::error::io_err;

/// A memory-mapped safetensors file.
pub(crate) struct MappedFile {
    pub path: PathBuf,
    mmap: Mmap,
}

impl MappedFile {
    pub fn open(path: &Path) -> Result<Self, LoraError> {
        let file = File::open(path).map_err(io_err(path))?;
        // SAFETY: opened read-only; as every mmap-based loader we rely on the file not being truncated
        // by another process while it is mapped.
        let mmap = unsafe { Mmap::map(&file) }.map_err(io_err(path))?;
        let this = Self {
            path: path.to_path_buf(),
            mmap,
        };
        this.tensors()?;
        Ok(this)
    }

    pub fn tensors(&self) -> Result<SafeTensors<'_>, LoraError> {
        SafeTensors::deserialize(&self.mmap).map_err(|e| LoraError::Safetensors {
            path: self.path.clone(),
            reason: e.to_string(),
        })
    }

    /// The header's `__metadata__`, kept when a file is rewritten.
    pub fn metadata(&self) -> Result<Option<std::collections::HashMap<String, String>>, LoraError> {
        let (_, meta) =
            SafeTensors::read_metadata(&self.mmap).map_err(|e| LoraError::Safetensors {
                path: self.path.clone(),
                reason: e.to_string(),
            })?;
        Ok(meta.metadata().clone())
    }
}

/// Burn's dtype for a floating-point safetensors dtype.
pub(crate) fn float_dtype(d: Dtype) -> Option<DType> {
    match d {
        Dtype::F32 => Some(DType::F32),
        Dtype::BF16 => Some(DType::BF16),
        Dtype::F16 => Some(DType::F16),
        _ => None,
    }
}

pub(crate) fn st_dtype(d: DType) -> Option<Dtype> {
    match d {
        DType::F32 => Some(Dtype::F32),
        DType::BF16 => Some(Dtype::BF16),
        DType::F16 => Some(Dtype::F16),
        _ => None,
    }
}

/// Tensor `key` of `file` as f32 data.
pub(crate) fn read_f32(file: &MappedFile, key: &str) -> Result<TensorData, LoraError> {
    let st = file.tensors()?;
    let view = st.tensor(key).map_err(|e| LoraError::Safetensors {
        path: file.path.clone(),
        reason: e.to_string(),
    })?;
    let dtype = float_dtype(view.dtype()).ok_or_else(|| LoraError::UnsupportedDtype {
        path: file.path.clone(),
        key: key.to_string(),
        dtype: format!("{:?}", view.dtype()),
    })?;
    Ok(
        TensorData::from_bytes_vec(view.data().to_vec(), view.shape().to_vec(), dtype)
            .convert_dtype(DType::F32),
    )
}

/// An owned tensor to write.
pub(crate) struct OwnedTensor {
    pub dtype: Dtype,
    pub shape: Vec<usize>,
    pub data: Vec<u8>,
}

impl OwnedTensor {
    /// From burn data in a float dtype safetensors can hold.
    pub fn from_data(data: TensorData) -> Option<Self> {
        let dtype = st_dtype(data.dtype)?;
        Some(Self {
            dtype,
            shape: data.shape.to_vec(),
            data: data.as_bytes().to_vec(),
        })
    }
}

impl View for &OwnedTensor {
    fn dtype(&self) -> Dtype {
        self.dtype
    }
    fn shape(&self) -> &[usize] {
        &self.shape
    }
    fn data(&self) -> Cow<'_, [u8]> {
        Cow::Borrowed(&self.data)
    }
    fn data_len(&self) -> usize {
        self.data.len()
    }
}

/// A tensor that is either copied from an input file or newly computed.
pub(crate) enum AnyTensor<'a> {
    Borrowed(safetensors::tensor::TensorView<'a>),
    Owned(OwnedTensor),
}

impl View for &AnyTensor<'_> {
    fn dtype(&self) -> Dtype {
        match self {
            AnyTensor::Borrowed(v) => v.dtype(),
            AnyTensor::Owned(o) => o.dtype,
        }
    }
    fn shape(&self) -> &[usize] {
        match self {
            AnyTensor::Borrowed(v) => v.shape(),
            AnyTensor::Owned(o) => &o.shape,
        }
    }
    fn data(&self) -> Cow<'_, [u8]> {
        match self {
            AnyTensor::Borrowed(v) => Cow::Borrowed(v.data()),
            AnyTensor::Owned(o) => Cow::Borrowed(&o.data),
        }
    }
    fn data_len(&self) -> usize {
        match self {
            AnyTensor::Borrowed(v) => v.data().len(),
            AnyTensor::Owned(o) => o.data.len(),
        }
    }
}

/// Writes `tensors` to `path` with `metadata` (HF writes `{"format": "pt"}`).
pub(crate) fn write<'a, V: View + 'a>(
    tensors: impl IntoIterator<Item = (String, V)>,
    metadata: Option<std::collections::HashMap<String, String>>,
    path: &Path,
) -> Result<(), LoraError> {
    safetensors::serialize_to_file(tensors, metadata, path).map_err(|e| LoraError::Safetensors {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })
}

pub(crate) fn pt_metadata() -> Option<std::collections::HashMap<String, String>> {
    Some(
        [("format".to_string(), "pt".to_string())]
            .into_iter()
            .collect(),
    )
}
