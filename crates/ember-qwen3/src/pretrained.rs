//! Loading an HF model directory (`config.json` + safetensors), or a random model from a config.

use std::path::Path;

use burn::tensor::{DType, backend::Backend};

use crate::weights::{RandomInit, SafetensorsSource, WeightSource};
use crate::{Qwen3Config, Qwen3Error, Qwen3ForCausalLM};

/// The config file name in an HF model directory.
pub const CONFIG_FILE: &str = "config.json";
/// The tokenizer file name in an HF model directory.
pub const TOKENIZER_FILE: &str = "tokenizer.json";

/// Checks that `dir` is a directory, so that a wrong model path is reported as such rather than as
/// a missing file inside it.
pub fn check_model_dir(dir: &Path) -> Result<(), Qwen3Error> {
    let reason = match std::fs::metadata(dir) {
        Ok(m) if m.is_dir() => return Ok(()),
        Ok(_) => "a file, not a directory (give the directory holding config.json)".to_string(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => "no such directory".to_string(),
        Err(e) => e.to_string(),
    };
    Err(Qwen3Error::NotAModelDir {
        dir: dir.to_path_buf(),
        reason,
    })
}

/// The model directory's `tokenizer.json`, after [`check_model_dir`].
pub fn tokenizer_file(dir: impl AsRef<Path>) -> Result<std::path::PathBuf, Qwen3Error> {
    let dir = dir.as_ref();
    check_model_dir(dir)?;
    let path = dir.join(TOKENIZER_FILE);
    if !path.is_file() {
        return Err(Qwen3Error::NotAModelDir {
            dir: dir.to_path_buf(),
            reason: format!("{TOKENIZER_FILE} not found"),
        });
    }
    Ok(path)
}

/// Loads `dir/config.json` and the checkpoint, converting weights to `dtype`.
pub fn load_pretrained<B: Backend>(
    dir: impl AsRef<Path>,
    dtype: DType,
    device: &B::Device,
) -> Result<(Qwen3Config, Qwen3ForCausalLM<B>), Qwen3Error> {
    let dir = dir.as_ref();
    check_model_dir(dir)?;
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
