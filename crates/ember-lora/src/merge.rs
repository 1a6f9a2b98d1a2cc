//! Merging adapters into the base weights (`W + scaling · B A` for plain LoRA, DoRA's rescaled rows;
//! math in f32; each variant's merge in [`crate::adapter`]), unmerging, and writing
//! a merged Hugging Face model directory that any HF loader reads as a plain model.

use std::collections::BTreeMap;
use std::path::Path;

use burn::tensor::{DType, Tensor, backend::Backend};

use crate::error::io_err;
use crate::model::LoraModel;
use crate::st::{self, AnyTensor, MappedFile, OwnedTensor};
use crate::{LoraAdapter, LoraError};

/// Adds every adapter into its base weight; forwards then use the merged weights only.
pub fn merge<B: Backend, M: LoraModel<B>>(model: &mut M) {
    for (_, layer) in model.lora_linears_mut() {
        layer.merge();
    }
}

/// Takes merged adapters out of the base weights again.
pub fn unmerge<B: Backend, M: LoraModel<B>>(model: &mut M) {
    for (_, layer) in model.lora_linears_mut() {
        layer.unmerge();
    }
}

/// Merges and drops the adapters, leaving a plain model (PEFT `merge_and_unload`).
pub fn merge_and_unload<B: Backend, M: LoraModel<B>>(model: &mut M) {
    for (_, layer) in model.lora_linears_mut() {
        layer.merge_and_unload();
    }
}

/// Files of an HF model directory that are weights in some format: not copied into an export.
fn is_weight_file(name: &str) -> bool {
    [
        ".safetensors",
        ".bin",
        ".pt",
        ".pth",
        ".gguf",
        ".msgpack",
        ".h5",
        ".ckpt",
    ]
    .iter()
    .any(|ext| name.ends_with(ext))
}

/// Writes `base_dir` with the model's adapters merged into `out_dir`: every safetensors file is
/// rewritten under its own name with the same keys, dtypes and metadata, the weights of adapted
/// layers replaced by their merged weight (`W + scaling · B A` for plain LoRA; computed in f32 from
/// the checkpoint's own values, then stored in the checkpoint's dtype); every other file (config.json, tokenizer files, the shard index)
/// is copied. `out_dir` must not exist or be empty.
pub fn export_merged<B: Backend, M: LoraModel<B>>(
    model: &M,
    base_dir: &Path,
    out_dir: &Path,
) -> Result<(), LoraError> {
    let export_err = |dir: &Path, reason: String| LoraError::Export {
        dir: dir.to_path_buf(),
        reason,
    };
    let mut deltas: BTreeMap<String, &LoraAdapter<B>> = BTreeMap::new();
    for (path, layer) in model.lora_linears() {
        if let Some(adapter) = layer.adapter() {
            deltas.insert(format!("{path}.weight"), adapter);
        }
    }
    if deltas.is_empty() {
        return Err(LoraError::NoAdapters);
    }
    if !base_dir.is_dir() {
        return Err(export_err(base_dir, "no such base model directory".into()));
    }
    let mut weight_files = Vec::new();
    let mut other_files = Vec::new();
    for entry in std::fs::read_dir(base_dir).map_err(io_err(base_dir))? {
        let entry = entry.map_err(io_err(base_dir))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if !entry.path().is_file() {
            continue;
        }
        if name.ends_with(".safetensors") {
            weight_files.push(name);
        } else if !is_weight_file(&name) {
            other_files.push(name);
        }
    }
    weight_files.sort();
    if weight_files.is_empty() {
        return Err(export_err(
            base_dir,
            "no safetensors checkpoint in the base model directory".into(),
        ));
    }
    if out_dir.exists() {
        let mut entries = std::fs::read_dir(out_dir).map_err(io_err(out_dir))?;
        if entries.next().is_some() {
            return Err(export_err(out_dir, "exists and is not empty".into()));
        }
    }
    std::fs::create_dir_all(out_dir).map_err(io_err(out_dir))?;

    let mut done: BTreeMap<String, ()> = BTreeMap::new();
    for name in &weight_files {
        let src = MappedFile::open(&base_dir.join(name))?;
        let tensors = src.tensors()?;
        let mut names: Vec<String> = tensors.names().into_iter().map(str::to_string).collect();
        names.sort();
        let mut out: Vec<(String, AnyTensor<'_>)> = Vec::with_capacity(names.len());
        for key in names {
            let view = tensors.tensor(&key).map_err(|e| LoraError::Safetensors {
                path: src.path.clone(),
                reason: e.to_string(),
            })?;
            let Some(delta) = deltas.get(&key) else {
                out.push((key, AnyTensor::Borrowed(view)));
                continue;
            };
            let (out_f, in_f) = (delta.lora_b.dims()[0], delta.lora_a.dims()[1]);
            if view.shape() != [out_f, in_f] {
                return Err(LoraError::ShapeMismatch {
                    path: src.path.clone(),
                    key,
                    expected: vec![out_f, in_f],
                    found: view.shape().to_vec(),
                });
            }
            let dtype =
                st::float_dtype(view.dtype()).ok_or_else(|| LoraError::UnsupportedDtype {
                    path: src.path.clone(),
                    key: key.clone(),
                    dtype: format!("{:?}", view.dtype()),
                })?;
            let w = st::read_f32(&src, &key)?;
            let w = Tensor::<B, 2>::from_data(w, &delta.lora_a.device()).cast(DType::F32);
            let merged = delta.merged_weight(w);
            let data = merged.into_data().convert_dtype(dtype);
            let owned =
                OwnedTensor::from_data(data).ok_or_else(|| LoraError::UnsupportedDtype {
                    path: src.path.clone(),
                    key: key.clone(),
                    dtype: format!("{dtype:?}"),
                })?;
            done.insert(key.clone(), ());
            out.push((key, AnyTensor::Owned(owned)));
        }
        st::write(
            out.iter().map(|(k, t)| (k.clone(), t)),
            src.metadata()?,
            &out_dir.join(name),
        )?;
    }
    if let Some(missing) = deltas.keys().find(|k| !done.contains_key(*k)) {
        return Err(LoraError::MissingKey {
            path: base_dir.to_path_buf(),
            key: missing.clone(),
            reason:
                "the model has an adapter on this layer but the base checkpoint has no such weight"
                    .into(),
        });
    }
    for name in other_files {
        let (from, to) = (base_dir.join(&name), out_dir.join(&name));
        std::fs::copy(&from, &to).map_err(io_err(&from))?;
    }
    Ok(())
}
