//! Loading an HF model directory (`config.json` + safetensors), or a random model from a config.

use std::path::Path;

use burn::tensor::{DType, backend::Backend};

use crate::weights::{RandomInit, SafetensorsSource, WeightSource};
use crate::{Qwen3Config, Qwen3Error, Qwen3ForCausalLM};

/// The config file name in an HF model directory.
pub const CONFIG_FILE: &str = "config.json";

/// Loads `dir/config.json` and the checkpoint, converting weights to `dtype`.
pub fn load_pretrained<B: Backend>(
    dir: impl AsRef<Path>,
    dtype: DType,
    device: &B::Device,
) -> Result<(Qwen3Config, Qwen3ForCausalLM<B>), Qwen3Error> {
    let dir = dir.as_ref();
    if !dir.is_dir() {
        return Err(Qwen3Error::NotAModelDir {
            dir: dir.to_path_buf(),
            reason: "no such directory".into(),
        });
    }
    let config_path = dir.join(CONFIG_FILE);
    if !config_path.is_file() {
        return Err(Qwen3Error::NotAModelDir {
            dir: dir.to_path_buf(),
            reason: format!("{CONFIG_FILE} not found"),
        });
    }
    let cfg = Qwen3Config::from_file(&config_path)?;
    let mut src = SafetensorsSource::<B>::open(dir, dtype, device)?;
    let model = Qwen3ForCausalLM::load(&cfg, &mut src);
    src.finish()?;
    Ok((cfg, model))
}

/// A model with HF's random initialisation, the same on every backend for a given seed.
pub fn random_model<B: Backend>(
    cfg: &Qwen3Config,
    seed: u64,
    dtype: DType,
    device: &B::Device,
) -> Qwen3ForCausalLM<B> {
    let mut src = RandomInit::<B>::new(seed, dtype, device);
    Qwen3ForCausalLM::load(cfg, &mut src)
}
