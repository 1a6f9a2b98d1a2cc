//! Hugging Face Hub model ids (`Qwen/Qwen3-8B`) resolved to a local directory as transformers
//! resolves them, so that `model_name_or_path`, `adapter_name_or_path`, `eval --model` and
//! `generate --model` take either.
//!
//! - A path that exists is used as it is (local paths win).
//! - Otherwise a repo id is looked up in the HF cache (`HF_HUB_CACHE`, else `HF_HOME/hub`, else
//!   `~/.cache/huggingface/hub`; `models--{org}--{name}/refs/{revision}` names the commit,
//!   `snapshots/{commit}/` holds the files). A revision whose files are all cached is used without
//!   the network.
//! - Else, unless `HF_HUB_OFFLINE=1`, the files [`Files`] names (config, tokenizer, the safetensors
//!   shards the index lists) are downloaded from `HF_ENDPOINT` (default `https://huggingface.co`)
//!   with `HF_TOKEN` (else the `HF_HOME/token` file) by the `hf-hub` crate: into the same cache,
//!   resumably (a partial `.sync.part` is continued with a Range request), with a progress bar
//!   on a terminal.

// No unwrap/expect on anything a user controls: library code returns errors.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

use std::path::{Path, PathBuf};

use hf_hub::api::sync::{ApiBuilder, ApiError};
use hf_hub::{Cache, Repo, RepoType};

/// The Hub transformers uses when `HF_ENDPOINT` is unset.
pub const DEFAULT_ENDPOINT: &str = "https://huggingface.co";
/// The revision when none is given.
pub const DEFAULT_REVISION: &str = "main";
/// Retries of an interrupted download (each continues where the last stopped).
const RETRIES: usize = 3;

const CONFIG: &str = "config.json";
const TOKENIZER: &str = "tokenizer.json";
const SINGLE_WEIGHTS: &str = "model.safetensors";
const SHARD_INDEX: &str = "model.safetensors.index.json";
const ADAPTER_CONFIG: &str = "adapter_config.json";
const ADAPTER_WEIGHTS: &str = "adapter_model.safetensors";
/// Small files a model directory may have and ember reads when present.
const OPTIONAL: [&str; 2] = ["generation_config.json", "tokenizer_config.json"];

/// Which files of a repository a command needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Files {
    /// `config.json` and the tokenizer (planning).
    Config,
    /// A model: config, tokenizer and its safetensors weights (single file or every shard).
    Model,
    /// A PEFT adapter: `adapter_config.json` and `adapter_model.safetensors`.
    Adapter,
}

#[derive(Debug, thiserror::Error)]
pub enum HubError {
    #[error("{path}: no such directory (nor a Hugging Face Hub repo id, `org/name`)")]
    NotFound { path: PathBuf },
    #[error(
        "{id}: no such directory, and HF_HUB_OFFLINE is set while the Hub cache ({cache}) has no complete snapshot of it at revision `{revision}` (missing {missing})"
    )]
    NotCached {
        id: String,
        revision: String,
        cache: PathBuf,
        missing: String,
    },
    #[error("{id}: no such directory, and no model repository `{id}` on {endpoint}{private}")]
    RepoNotFound {
        id: String,
        endpoint: String,
        private: &'static str,
    },
    #[error("{id}: revision `{revision}` not found on {endpoint}")]
    RevisionNotFound {
        id: String,
        revision: String,
        endpoint: String,
    },
    #[error("{id}: {file} is not in revision `{revision}`")]
    EntryNotFound {
        id: String,
        revision: String,
        file: String,
    },
    #[error("{id}: 401 Unauthorized from {endpoint}: {why}")]
    Unauthorized {
        id: String,
        endpoint: String,
        why: &'static str,
    },
    #[error("{id}: revision `{revision}` has no {what}")]
    Incomplete {
        id: String,
        revision: String,
        what: String,
    },
    #[error(
        "{id}: no such directory, and the Hub ({endpoint}) could not be asked for it as a repo id: {message} (HF_HUB_OFFLINE=1 looks in the cache only)"
    )]
    Unreachable {
        id: String,
        endpoint: String,
        message: String,
    },
    #[error("{id}: downloading {file} from {endpoint}: {message}")]
    Download {
        id: String,
        file: String,
        endpoint: String,
        message: String,
    },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Where and how ids are resolved: from the environment as transformers reads it.
#[derive(Debug, Clone, PartialEq)]
pub struct Hub {
    pub cache: PathBuf,
    pub endpoint: String,
    pub token: Option<String>,
    pub offline: bool,
}

/// An environment variable, unset when empty.
fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// huggingface_hub's truthy values.
fn truthy(v: &str) -> bool {
    matches!(v.to_ascii_lowercase().as_str(), "1" | "on" | "yes" | "true")
}

impl Hub {
    /// `HF_HUB_CACHE` / `HF_HOME` / `XDG_CACHE_HOME`, `HF_ENDPOINT`, `HF_TOKEN` (else the token
    /// file), `HF_HUB_OFFLINE` (or transformers' `TRANSFORMERS_OFFLINE`).
    pub fn from_env() -> Self {
        let home = var("HF_HOME").map(PathBuf::from).unwrap_or_else(|| {
            var("XDG_CACHE_HOME")
                .map(PathBuf::from)
                .or_else(|| var("HOME").map(|h| Path::new(&h).join(".cache")))
                .unwrap_or_else(|| PathBuf::from(".cache"))
                .join("huggingface")
        });
        let cache = var("HF_HUB_CACHE")
            .map(PathBuf::from)
            .unwrap_or_else(|| home.join("hub"));
        let token = var("HF_TOKEN").or_else(|| {
            std::fs::read_to_string(home.join("token"))
                .ok()
                .map(|t| t.trim().to_string())
                .filter(|t| !t.is_empty())
        });
        Hub {
            cache,
            endpoint: var("HF_ENDPOINT")
                .map(|e| e.trim_end_matches('/').to_string())
                .unwrap_or_else(|| DEFAULT_ENDPOINT.into()),
            token,
            offline: ["HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"]
                .iter()
                .any(|v| var(v).is_some_and(|v| truthy(&v))),
        }
    }

    /// The local directory for `name_or_path`: the path itself when it exists, else the cached
    /// (or downloaded) snapshot of the repo id at `revision` (default `main`).
    pub fn resolve(
        &self,
        name_or_path: &Path,
        revision: Option<&str>,
        files: Files,
    ) -> Result<PathBuf, HubError> {
        if name_or_path.exists() {
            return Ok(name_or_path.to_path_buf());
        }
        let id = name_or_path
            .to_str()
            .filter(|s| is_repo_id(s))
            .ok_or_else(|| HubError::NotFound {
                path: name_or_path.to_path_buf(),
            })?;
        let revision = revision.unwrap_or(DEFAULT_REVISION);
        let missing = match self.cached(id, revision, files) {
            Ok(dir) => return Ok(dir),
            Err(missing) => missing,
        };
        if self.offline {
            return Err(HubError::NotCached {
                id: id.into(),
                revision: revision.into(),
                cache: self.cache.clone(),
                missing,
            });
        }
        self.download(id, revision, files)
    }

    fn repo_dir(&self, id: &str) -> PathBuf {
        self.cache
            .join(Repo::new(id.into(), RepoType::Model).folder_name())
    }

    /// The cached snapshot of `revision` when it holds every file `files` needs; else what is
    /// missing.
    fn cached(&self, id: &str, revision: &str, files: Files) -> Result<PathBuf, String> {
        let repo = self.repo_dir(id);
        let reference = repo.join("refs").join(revision);
        // A revision is a ref name, or a commit with a snapshot of its own.
        let commit = std::fs::read_to_string(&reference)
            .map(|c| c.trim().to_string())
            .unwrap_or_else(|_| revision.to_string());
        let snapshot = repo.join("snapshots").join(&commit);
        if !snapshot.is_dir() {
            return Err(if reference.is_file() {
                snapshot.display().to_string()
            } else {
                reference.display().to_string()
            });
        }
        let need = |f: &str| {
            if snapshot.join(f).is_file() {
                Ok(())
            } else {
                Err(f.to_string())
            }
        };
        match files {
            Files::Config => need(CONFIG)?,
            Files::Adapter => {
                need(ADAPTER_CONFIG)?;
                need(ADAPTER_WEIGHTS)?;
            }
            Files::Model => {
                need(CONFIG)?;
                need(TOKENIZER)?;
                if snapshot.join(SHARD_INDEX).is_file() {
                    for shard in shards(&snapshot.join(SHARD_INDEX)).map_err(|e| e.to_string())? {
                        need(&shard)?;
                    }
                } else {
                    need(SINGLE_WEIGHTS)?;
                }
            }
        }
        Ok(snapshot)
    }

    /// Downloads what `files` needs of `id` at `revision` into the cache; the snapshot directory.
    fn download(&self, id: &str, revision: &str, files: Files) -> Result<PathBuf, HubError> {
        use std::io::IsTerminal;
        let api = ApiBuilder::from_cache(Cache::new(self.cache.clone()))
            .with_endpoint(self.endpoint.clone())
            .with_token(self.token.clone())
            .with_retries(RETRIES)
            .with_progress(std::io::stderr().is_terminal())
            .build()
            .map_err(|e| self.error(id, revision, "", e))?;
        let repo = api.repo(Repo::with_revision(
            id.into(),
            RepoType::Model,
            revision.into(),
        ));
        let info = repo.info().map_err(|e| self.error(id, revision, "", e))?;
        let listed: Vec<&str> = info.siblings.iter().map(|s| s.rfilename.as_str()).collect();
        let has = |f: &str| listed.contains(&f);
        let incomplete = |what: &str| HubError::Incomplete {
            id: id.into(),
            revision: revision.into(),
            what: what.into(),
        };
        let mut wanted: Vec<String> = Vec::new();
        match files {
            Files::Adapter => {
                for f in [ADAPTER_CONFIG, ADAPTER_WEIGHTS] {
                    if !has(f) {
                        return Err(incomplete(f));
                    }
                    wanted.push(f.into());
                }
            }
            Files::Config | Files::Model => {
                if !has(CONFIG) {
                    return Err(incomplete(CONFIG));
                }
                wanted.push(CONFIG.into());
                if has(TOKENIZER) {
                    wanted.push(TOKENIZER.into());
                } else if files == Files::Model {
                    return Err(incomplete(TOKENIZER));
                }
                wanted.extend(OPTIONAL.iter().filter(|f| has(f)).map(|f| f.to_string()));
            }
        }
        let snapshot = self.repo_dir(id).join("snapshots").join(&info.sha);
        let get = |file: &str| -> Result<PathBuf, HubError> {
            let local = snapshot.join(file);
            if local.is_file() {
                return Ok(local);
            }
            repo.download(file)
                .map_err(|e| self.error(id, revision, file, e))
        };
        for f in &wanted {
            get(f)?;
        }
        if files == Files::Model {
            if has(SHARD_INDEX) {
                let index = get(SHARD_INDEX)?;
                for shard in shards(&index)? {
                    get(&shard)?;
                }
            } else if has(SINGLE_WEIGHTS) {
                get(SINGLE_WEIGHTS)?;
            } else {
                return Err(incomplete(
                    "safetensors weights (model.safetensors or model.safetensors.index.json; ember reads safetensors only)",
                ));
            }
        }
        // The commit the revision named, as huggingface_hub records it (hf-hub writes the ref of a
        // downloaded file; a revision served entirely from blobs already cached still gets one).
        let refs = self.repo_dir(id).join("refs");
        std::fs::create_dir_all(&refs)
            .and_then(|_| std::fs::write(refs.join(revision), &info.sha))
            .map_err(|source| HubError::Io {
                path: refs.join(revision),
                source,
            })?;
        Ok(snapshot)
    }

    /// An hf-hub error, said in terms of the repo: the Hub's `X-Error-Code` and 401 named.
    fn error(&self, id: &str, revision: &str, file: &str, e: ApiError) -> HubError {
        if let ApiError::RequestError(req) = &e
            && let ureq::Error::Status(status, response) = req.as_ref()
        {
            let code = response.header("x-error-code").unwrap_or_default();
            match (status, code) {
                // The Hub answers an anonymous caller 401 for a repo that does not exist too.
                (_, "RepoNotFound") | (404, "") => {
                    return HubError::RepoNotFound {
                        id: id.into(),
                        endpoint: self.endpoint.clone(),
                        private: if self.token.is_some() {
                            ""
                        } else {
                            " (if it is private or gated, set HF_TOKEN)"
                        },
                    };
                }
                (_, "RevisionNotFound") => {
                    return HubError::RevisionNotFound {
                        id: id.into(),
                        revision: revision.into(),
                        endpoint: self.endpoint.clone(),
                    };
                }
                (_, "EntryNotFound") => {
                    return HubError::EntryNotFound {
                        id: id.into(),
                        revision: revision.into(),
                        file: file.into(),
                    };
                }
                (401, _) => {
                    return HubError::Unauthorized {
                        id: id.into(),
                        endpoint: self.endpoint.clone(),
                        why: if self.token.is_some() {
                            "the token (HF_TOKEN or the HF token file) was refused for this repository"
                        } else {
                            "the repository needs a token: set HF_TOKEN (or log in with `hf auth login`)"
                        },
                    };
                }
                _ => {}
            }
        }
        if file.is_empty() {
            return HubError::Unreachable {
                id: id.into(),
                endpoint: self.endpoint.clone(),
                message: e.to_string(),
            };
        }
        HubError::Download {
            id: id.into(),
            file: file.into(),
            endpoint: self.endpoint.clone(),
            message: e.to_string(),
        }
    }
}

/// [`Hub::resolve`] with the environment's settings.
pub fn resolve(
    name_or_path: &Path,
    revision: Option<&str>,
    files: Files,
) -> Result<PathBuf, HubError> {
    Hub::from_env().resolve(name_or_path, revision, files)
}

/// `name` or `org/name` (the Hub's characters), as opposed to a longer path.
pub fn is_repo_id(s: &str) -> bool {
    let part = |p: &str| {
        !p.is_empty()
            && !p.starts_with(['.', '-'])
            && !p.ends_with('.')
            && p.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    };
    let parts: Vec<&str> = s.split('/').collect();
    (1..=2).contains(&parts.len()) && parts.iter().all(|p| part(p))
}

/// The shard file names an index's `weight_map` lists, each once, in order.
fn shards(index: &Path) -> Result<Vec<String>, HubError> {
    let io = |source| HubError::Io {
        path: index.to_path_buf(),
        source,
    };
    let text = std::fs::read_to_string(index).map_err(io)?;
    let v: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| io(std::io::Error::new(std::io::ErrorKind::InvalidData, e)))?;
    let mut out: Vec<String> = Vec::new();
    if let Some(map) = v["weight_map"].as_object() {
        for f in map.values().filter_map(|f| f.as_str()) {
            if !out.iter().any(|o| o == f) {
                out.push(f.to_string());
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::is_repo_id;

    #[test]
    fn repo_ids_are_told_from_paths() {
        for id in ["Qwen/Qwen3-8B", "gpt2", "org/name.v1_x"] {
            assert!(is_repo_id(id), "{id}");
        }
        for p in ["./model", "/abs/m", "a/b/c", "../m", "org/", "", "a b/c"] {
            assert!(!is_repo_id(p), "{p}");
        }
    }
}
