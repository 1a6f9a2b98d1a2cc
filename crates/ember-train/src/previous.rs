//! Starting over (`overwrite_output_dir = true`) without losing the previous run before its
//! replacement exists.
//!
//! The previous run's outputs (its `checkpoint-N/` directories and final files) are moved into
//! `output_dir/.previous-run/` when the new run starts. They are deleted only once the new run has
//! written its first checkpoint or its final adapter. A new run that fails before that puts them
//! back; one that is killed before that leaves them set aside, and the next run in that directory
//! puts them back before it does anything else ([`recover`]).

use std::path::{Path, PathBuf};

use crate::TrainError;
use crate::checkpoint::{CHECKPOINT_PREFIX, TMP_CHECKPOINT_PREFIX, io};

/// Where the previous run waits while a new run starts over.
pub const PREVIOUS_RUN_DIR: &str = ".previous-run";

/// The previous run's outputs, set aside while a new run starts over.
#[derive(Debug)]
pub struct SetAside {
    output_dir: PathBuf,
}

/// Whether `name` is one of a run's outputs in `output_dir`.
fn is_run_output(name: &str) -> bool {
    name.starts_with(CHECKPOINT_PREFIX) || crate::OUTPUT_FILES.contains(&name)
}

/// A new run's partial outputs, which go when the previous run is put back.
fn is_partial_output(name: &str) -> bool {
    is_run_output(name) || name.starts_with(TMP_CHECKPOINT_PREFIX)
}

/// Whether the run now in `output_dir` has written something that replaces the previous run: a
/// complete checkpoint or its final adapter.
fn has_replacement(output_dir: &Path) -> bool {
    // The final trainer_state.json is written after the final adapter, so both present means the
    // adapter is whole.
    let finished = output_dir.join(ember_lora::peft::ADAPTER_WEIGHTS).is_file()
        && output_dir.join(crate::state::TRAINER_STATE_FILE).is_file();
    finished || !crate::checkpoint::list(output_dir).is_empty()
}

fn names(dir: &Path) -> Result<Vec<String>, TrainError> {
    let mut v = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io(dir))? {
        v.push(
            entry
                .map_err(io(dir))?
                .file_name()
                .to_string_lossy()
                .into_owned(),
        );
    }
    v.sort();
    Ok(v)
}

/// Moves the previous run's outputs in `output_dir` aside; `None` when there are none.
pub fn set_aside(output_dir: &Path) -> Result<Option<SetAside>, TrainError> {
    if !output_dir.is_dir() {
        return Ok(None);
    }
    let moving: Vec<String> = names(output_dir)?
        .into_iter()
        .filter(|n| is_run_output(n))
        .collect();
    if moving.is_empty() {
        return Ok(None);
    }
    let aside = output_dir.join(PREVIOUS_RUN_DIR);
    std::fs::create_dir_all(&aside).map_err(io(&aside))?;
    for name in moving {
        let to = aside.join(&name);
        std::fs::rename(output_dir.join(&name), &to).map_err(io(&to))?;
    }
    Ok(Some(SetAside {
        output_dir: output_dir.to_path_buf(),
    }))
}

impl SetAside {
    /// Where the previous run is kept meanwhile.
    pub fn dir(&self) -> PathBuf {
        self.output_dir.join(PREVIOUS_RUN_DIR)
    }

    /// The new run has written its replacement: the previous run goes.
    pub fn discard(self) -> Result<(), TrainError> {
        let dir = self.dir();
        std::fs::remove_dir_all(&dir).map_err(io(&dir))
    }

    /// The new run failed before replacing the previous one: its partial outputs go and the
    /// previous run's come back, as they were.
    pub fn restore(self) -> Result<(), TrainError> {
        restore(&self.output_dir)
    }
}

fn restore(output_dir: &Path) -> Result<(), TrainError> {
    let aside = output_dir.join(PREVIOUS_RUN_DIR);
    for name in names(output_dir)? {
        if is_partial_output(&name) {
            let path = output_dir.join(&name);
            if path.is_dir() {
                std::fs::remove_dir_all(&path).map_err(io(&path))?;
            } else {
                std::fs::remove_file(&path).map_err(io(&path))?;
            }
        }
    }
    for name in names(&aside)? {
        let to = output_dir.join(&name);
        std::fs::rename(aside.join(&name), &to).map_err(io(&to))?;
    }
    std::fs::remove_dir(&aside).map_err(io(&aside))
}

/// What [`recover`] found of an earlier, interrupted overwrite.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recovered {
    /// The interrupted run had saved nothing: the previous run is back in place.
    Restored,
    /// The interrupted run had saved a checkpoint or adapter: the set-aside previous run was
    /// already replaced and is now deleted.
    Discarded,
}

/// Finishes an overwrite that a kill interrupted (a `.previous-run/` left in `output_dir`): puts
/// the previous run back if the interrupted run saved nothing, else deletes it. Runs before
/// anything else looks at `output_dir`.
pub fn recover(output_dir: &Path) -> Result<Option<Recovered>, TrainError> {
    let aside = output_dir.join(PREVIOUS_RUN_DIR);
    if !aside.is_dir() {
        return Ok(None);
    }
    if has_replacement(output_dir) {
        std::fs::remove_dir_all(&aside).map_err(io(&aside))?;
        Ok(Some(Recovered::Discarded))
    } else {
        restore(output_dir)?;
        Ok(Some(Recovered::Restored))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(p: &Path, text: &str) {
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(p, text).expect("write");
    }

    fn read(p: &Path) -> String {
        std::fs::read_to_string(p).expect("read")
    }

    /// A previous run: a checkpoint, the final adapter and log, and a file that is not ember's.
    fn previous_run(dir: &Path) {
        write(
            &dir.join("checkpoint-9/adapter_model.safetensors"),
            "old ck",
        );
        write(&dir.join("adapter_model.safetensors"), "old adapter");
        write(&dir.join("trainer_log.jsonl"), "old log");
        write(&dir.join("notes.txt"), "mine");
    }

    #[test]
    fn a_failed_new_run_puts_the_previous_one_back() {
        let tmp = tempfile::tempdir().expect("tmp");
        let dir = tmp.path();
        previous_run(dir);
        let aside = set_aside(dir)
            .expect("set aside")
            .expect("something to set aside");
        assert!(!dir.join("adapter_model.safetensors").exists());
        assert_eq!(
            read(&dir.join("notes.txt")),
            "mine",
            "not ember's: left alone"
        );
        write(&dir.join("trainer_log.jsonl"), "new log");
        write(&dir.join(".tmp-checkpoint-2/x"), "partial");
        aside.restore().expect("restore");
        assert_eq!(read(&dir.join("trainer_log.jsonl")), "old log");
        assert_eq!(read(&dir.join("adapter_model.safetensors")), "old adapter");
        assert_eq!(
            read(&dir.join("checkpoint-9/adapter_model.safetensors")),
            "old ck"
        );
        assert!(!dir.join(".tmp-checkpoint-2").exists());
        assert!(!dir.join(PREVIOUS_RUN_DIR).exists());
    }

    #[test]
    fn a_killed_new_run_is_recovered_by_the_next_start() {
        let tmp = tempfile::tempdir().expect("tmp");
        let dir = tmp.path();
        assert_eq!(recover(dir).expect("nothing to do"), None);
        previous_run(dir);
        // Killed before saving anything: the next start restores.
        let aside = set_aside(dir).expect("set aside").expect("some");
        std::mem::forget(aside);
        write(&dir.join("trainer_log.jsonl"), "new log");
        assert_eq!(recover(dir).expect("recover"), Some(Recovered::Restored));
        assert_eq!(read(&dir.join("adapter_model.safetensors")), "old adapter");
        assert_eq!(read(&dir.join("trainer_log.jsonl")), "old log");
        // Killed after the new run's first checkpoint: the previous run was replaced.
        set_aside(dir).expect("set aside").expect("some");
        write(
            &dir.join("checkpoint-2/adapter_model.safetensors"),
            "new ck",
        );
        for f in crate::checkpoint::REQUIRED_FILES {
            write(&dir.join("checkpoint-2").join(f), "x");
        }
        assert_eq!(recover(dir).expect("recover"), Some(Recovered::Discarded));
        assert!(!dir.join(PREVIOUS_RUN_DIR).exists());
        assert!(!dir.join("checkpoint-9").exists());
        assert!(dir.join("checkpoint-2").exists());
    }

    #[test]
    fn nothing_to_set_aside() {
        let tmp = tempfile::tempdir().expect("tmp");
        assert!(
            set_aside(&tmp.path().join("missing"))
                .expect("ok")
                .is_none()
        );
        write(&tmp.path().join("notes.txt"), "mine");
        assert!(set_aside(tmp.path()).expect("ok").is_none());
    }
}
