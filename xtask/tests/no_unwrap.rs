//! The rule against panics on user input, kept by a test as well as by clippy (CI runs the tests,
//! not clippy): library code (every crate's `src/` but the test-support crate, outside
//! `#[cfg(test)]` modules) has no `unwrap()`, and an `expect(` only on an invariant the code
//! itself establishes, under `#[allow(clippy::expect_used, reason = "...")]` within the three
//! lines above it. Each crate root denies both lints outside tests, so `cargo clippy` reports a
//! new one where it is written.

use std::path::{Path, PathBuf};

const LINT: &str = "#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]";
const JUSTIFIED: &str = "allow(clippy::expect_used, reason";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).expect("read_dir").flatten() {
        let p = e.path();
        if p.is_dir() {
            sources(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// Library source dirs: `crates/*/src` (not ember-testing) and `xtask/src`.
fn library_dirs() -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(root().join("crates"))
        .expect("crates")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.file_name().is_some_and(|n| n != "ember-testing"))
        .map(|p| p.join("src"))
        .filter(|p| p.is_dir())
        .collect();
    dirs.push(root().join("xtask/src"));
    dirs.sort();
    dirs
}

/// The lines of `text` (a source file called `name`) that break the rule.
fn offences(name: &str, text: &str) -> Vec<String> {
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        // Unit tests sit in a `#[cfg(test)]` module at the end of the file.
        if line.trim_start().starts_with("#[cfg(test)]") {
            break;
        }
        let code = line.split("//").next().unwrap_or("");
        let justified = lines[i.saturating_sub(3)..i]
            .iter()
            .any(|l| l.contains(JUSTIFIED));
        if code.contains(".unwrap()") || (code.contains(".expect(") && !justified) {
            out.push(format!("{name}:{}: {}", i + 1, line.trim()));
        }
    }
    out
}

#[test]
fn library_code_has_no_unwrap_and_only_justified_expects() {
    let mut found = Vec::new();
    let mut files = Vec::new();
    for dir in library_dirs() {
        let crate_root = ["lib.rs", "main.rs"]
            .iter()
            .map(|f| dir.join(f))
            .find(|p| p.is_file())
            .expect("a crate root");
        let text = std::fs::read_to_string(&crate_root).expect("read");
        if !text.contains(LINT) {
            found.push(format!("{}: lacks `{LINT}`", crate_root.display()));
        }
        sources(&dir, &mut files);
    }
    assert!(files.len() > 40, "found only {} source files", files.len());
    for file in &files {
        let text = std::fs::read_to_string(file).expect("read");
        found.extend(offences(&file.display().to_string(), &text));
    }
    assert!(found.is_empty(), "{}", found.join("\n"));
}

/// The scan sees what it is meant to, and lets through what the rule allows.
#[test]
fn the_scan_tells_offences_from_allowed_uses() {
    let bad = "fn f(x: Option<u8>) -> u8 {\n    x.expect(\"user value\")\n}\nfn g(x: Option<u8>) -> u8 { x.unwrap() }\n";
    assert_eq!(
        offences("bad.rs", bad).len(),
        2,
        "{:?}",
        offences("bad.rs", bad)
    );
    let ok = "#[allow(clippy::expect_used, reason = \"a constant\")]\nstatic R: u8 = Some(1).expect(\"const\");\n// x.unwrap() in a comment\n#[cfg(test)]\nmod tests { fn t() { None::<u8>.unwrap(); } }\n";
    assert!(
        offences("ok.rs", ok).is_empty(),
        "{:?}",
        offences("ok.rs", ok)
    );
}
