//! What a test needs from its machine, and how it skips when that is absent.
//!
//! A skip is a line on stderr with its reason. Where the run says it has the thing, the skip is a
//! failure instead: under `CI=true` for everything, and elsewhere for what `EMBER_REQUIRE` lists
//! (comma-separated: `python`, `shared`, `wgpu` (a Vulkan adapter and a build with the `wgpu`
//! feature; `scripts/ci-wgpu.sh` sets it); `.ci/run` sets it for what it installs or finds).

use std::fmt::Display;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Writes `msg` as one line straight to the process's stderr. libtest captures `print!` and
/// `eprint!` of a passing test, so a skip or a cross-check's result would vanish from the log;
/// a direct write to the stream is not captured.
pub fn note(msg: impl Display) {
    let _ = writeln!(std::io::stderr().lock(), "{msg}");
}

/// Whether this run must have `what` (`python`, `shared`, `wgpu`): see the module docs.
pub fn required(what: &str) -> bool {
    let ci = std::env::var("CI").is_ok_and(|v| v == "true" || v == "1");
    ci || std::env::var("EMBER_REQUIRE").is_ok_and(|list| list.split(',').any(|w| w.trim() == what))
}

/// Skips the calling test (a line on stderr), or fails it when this run requires `what`.
#[track_caller]
pub fn skip_or_fail(what: &str, reason: &str) {
    let test = std::thread::current()
        .name()
        .unwrap_or("this test")
        .to_string();
    if required(what) {
        panic!("{test}: {reason}, and this run requires `{what}` (CI=true or EMBER_REQUIRE)");
    }
    note(format!("skipped {test}: {reason}"));
}

/// The repository's root directory.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The shared data directory, `$EMBER_SHARED` or `../shared` beside the repository, when it holds
/// every path in `needs`; otherwise skips (or fails, see [`skip_or_fail`]) and returns `None`.
#[track_caller]
pub fn shared_dir(needs: &[&str]) -> Option<PathBuf> {
    let dir = std::env::var_os("EMBER_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("../shared"));
    let missing: Vec<_> = needs.iter().filter(|p| !dir.join(p).exists()).collect();
    if missing.is_empty() {
        Some(dir)
    } else {
        skip_or_fail(
            "shared",
            &format!("{} lacks {missing:?} (set EMBER_SHARED)", dir.display()),
        );
        None
    }
}

/// The Python of the fixture environment (`scripts/torch-env.sh` installs it from
/// `fixtures/requirements.txt`): `$EMBER_PYTHON`, else `$EMBER_VENV/bin/python`, else
/// `~/.cache/ember/venv/bin/python`. Absent: skips (or fails, see [`skip_or_fail`]).
#[track_caller]
pub fn fixture_python() -> Option<PathBuf> {
    let candidate = if let Some(p) = std::env::var_os("EMBER_PYTHON") {
        PathBuf::from(p)
    } else if let Some(v) = std::env::var_os("EMBER_VENV") {
        PathBuf::from(v).join("bin/python")
    } else if let Some(home) = std::env::var_os("HOME") {
        PathBuf::from(home).join(".cache/ember/venv/bin/python")
    } else {
        PathBuf::from("(no HOME)")
    };
    if candidate.is_file() {
        Some(candidate)
    } else {
        skip_or_fail(
            "python",
            &format!(
                "no fixture Python at {} (source scripts/torch-env.sh, or set EMBER_PYTHON)",
                candidate.display()
            ),
        );
        None
    }
}
