//! Bounded fuzzing of the parsers of user files (each crate's `tests/fuzz.rs`), on proptest: the
//! case count, and inputs built from valid fixtures by byte-level and structure-aware mutations.
//!
//! A failing case is shrunk and saved by proptest beside its test
//! (`tests/fuzz.proptest-regressions`), which is committed: every later run replays those inputs
//! first.

use std::sync::atomic::{AtomicUsize, Ordering};

use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::{Config, FileFailurePersistence};

/// Cases per target: `EMBER_FUZZ_CASES` (CI sets it higher), else a number that keeps a plain
/// `cargo test` quick.
pub fn config() -> Config {
    let cases = std::env::var("EMBER_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256);
    Config {
        cases,
        failure_persistence: Some(Box::new(FileFailurePersistence::SourceParallel(
            "proptest-regressions",
        ))),
        ..Config::default()
    }
}

/// Counts the executions of one target and how many were accepted; printed when it is dropped at
/// the end of the target (`--nocapture` shows it). A crash fails the target before that.
pub struct Counter {
    name: &'static str,
    runs: AtomicUsize,
    ok: AtomicUsize,
}

impl Counter {
    pub fn new(name: &'static str) -> Self {
        Self {
            name,
            runs: AtomicUsize::new(0),
            ok: AtomicUsize::new(0),
        }
    }
    pub fn hit(&self, ok: bool) {
        self.runs.fetch_add(1, Ordering::Relaxed);
        if ok {
            self.ok.fetch_add(1, Ordering::Relaxed);
        }
    }
}

impl Drop for Counter {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            eprintln!(
                "fuzz {}: {} executions, {} accepted, 0 crashes",
                self.name,
                self.runs.load(Ordering::Relaxed),
                self.ok.load(Ordering::Relaxed)
            );
        }
    }
}

/// Text that breaks parsers: wrong types, huge and non-finite numbers, bad escapes, invalid UTF-8,
/// structure characters, line ends and BOMs.
const TOKENS: &[&[u8]] = &[
    b"null",
    b"true",
    b"0",
    b"-1",
    b"-0",
    b"1e999",
    b"-1e999",
    b"9223372036854775808",
    b"-9223372036854775809",
    b"-9223372036854775808",
    b"18446744073709551616",
    b"123456789012345678901234567890123456789",
    b"1.5",
    b"NaN",
    b"\"\"",
    b"[]",
    b"{}",
    b"[{}]",
    b"\"\\ud800\"",
    b"\"\\u0000\"",
    b"\\",
    b"\xff",
    b"\xc3",
    b"\xed\xa0\x80",
    b"\xef\xbb\xbf",
    b"\0",
    b"\"",
    b",",
    b":",
    b"\t",
    b"\n",
    b"\r\n",
    b"\r",
    b"{\"a\":",
    b"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[",
    "\u{3000}".as_bytes(),
    "(A)".as_bytes(),
    "True".as_bytes(),
    "원인".as_bytes(),
    // TOML's own troublemakers.
    b"=",
    b"inf",
    b"-inf",
    b"nan",
    b"'''",
    b"[train]",
    b"[[x]]",
    b"{a = 1}",
    b"a.b = 1",
    b"1979-05-27",
];

/// One byte-level edit; positions scale to the input's current length.
#[derive(Debug, Clone)]
pub enum Mutation {
    Truncate(Index),
    Flip(Index, u8),
    Insert(Index, Vec<u8>),
    Token(Index, Index),
    Delete(Index, usize),
    Duplicate(Index, usize),
    /// `depth` opening brackets then as many closing ones: deep nesting.
    Nest(Index, usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        any::<Index>().prop_map(Mutation::Truncate),
        (any::<Index>(), 1..=255u8).prop_map(|(i, x)| Mutation::Flip(i, x)),
        (any::<Index>(), prop::collection::vec(any::<u8>(), 1..16))
            .prop_map(|(i, b)| Mutation::Insert(i, b)),
        (any::<Index>(), any::<Index>()).prop_map(|(i, t)| Mutation::Token(i, t)),
        (any::<Index>(), 1..64usize).prop_map(|(i, n)| Mutation::Delete(i, n)),
        (any::<Index>(), 1..64usize).prop_map(|(i, n)| Mutation::Duplicate(i, n)),
        (any::<Index>(), 1..2000usize).prop_map(|(i, n)| Mutation::Nest(i, n)),
    ]
}

fn at(i: &Index, len: usize) -> usize {
    // Index::index panics on 0; position 0 is the only one then.
    if len == 0 { 0 } else { i.index(len + 1) }
}

pub fn apply(mut bytes: Vec<u8>, m: &Mutation) -> Vec<u8> {
    let len = bytes.len();
    match m {
        Mutation::Truncate(i) => bytes.truncate(at(i, len)),
        Mutation::Flip(i, x) => {
            if len > 0 {
                bytes[i.index(len)] ^= x;
            }
        }
        Mutation::Insert(i, b) => {
            let p = at(i, len);
            bytes.splice(p..p, b.iter().copied());
        }
        Mutation::Token(i, t) => {
            let p = at(i, len);
            let tok = TOKENS[t.index(TOKENS.len())];
            bytes.splice(p..p, tok.iter().copied());
        }
        Mutation::Delete(i, n) => {
            let p = at(i, len);
            bytes.drain(p..(p + n).min(len));
        }
        Mutation::Duplicate(i, n) => {
            let p = at(i, len);
            let piece = bytes[p..(p + n).min(len)].to_vec();
            bytes.splice(p..p, piece);
        }
        Mutation::Nest(i, n) => {
            let p = at(i, len);
            let nest: Vec<u8> = std::iter::repeat_n(b'[', *n)
                .chain(std::iter::repeat_n(b']', *n))
                .collect();
            bytes.splice(p..p, nest);
        }
    }
    bytes
}

/// A value that replaces one node of a valid document: each of JSON's types, in shapes the parsers
/// expect elsewhere, with huge numbers and deep nesting.
fn raw_value() -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        Just("null".to_string()),
        any::<bool>().prop_map(|b| b.to_string()),
        any::<i64>().prop_map(|i| i.to_string()),
        any::<u64>().prop_map(|i| i.to_string()),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| format!("{f:e}")),
        Just("123456789012345678901234567890e10".to_string()),
        Just("1e400".to_string()),
        Just(i64::MIN.to_string()),
        ".{0,12}".prop_map(|s| serde_json::Value::String(s).to_string()),
        Just("\"\\ud83d\"".to_string()),
        Just("\"(A)\"".to_string()),
        Just("\"human\"".to_string()),
        Just("\"function_call\"".to_string()),
        (1..300usize).prop_map(|n| format!("{}{}", "[".repeat(n), "]".repeat(n))),
        (1..300usize).prop_map(|n| format!("{}1{}", "{\"a\":".repeat(n), "}".repeat(n))),
    ];
    leaf.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(|v| format!("[{}]", v.join(","))),
            prop::collection::vec(
                (
                    prop_oneof![
                        Just("from".to_string()),
                        Just("value".to_string()),
                        Just("role".to_string()),
                        Just("content".to_string()),
                        Just("output".to_string()),
                        Just("name".to_string()),
                        Just("arguments".to_string()),
                        "[a-z]{1,6}"
                    ],
                    inner
                ),
                0..4
            )
            .prop_map(|v| {
                let items: Vec<String> = v
                    .into_iter()
                    .map(|(k, x)| format!("{}:{x}", serde_json::Value::String(k)))
                    .collect();
                format!("{{{}}}", items.join(","))
            }),
        ]
    })
}

/// A structural edit of a JSON document: the `node`-th value (pre-order) replaced, removed or
/// duplicated.
#[derive(Debug, Clone)]
pub enum Edit {
    Replace(Index, String),
    Remove(Index),
    Duplicate(Index),
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        3 => (any::<Index>(), raw_value()).prop_map(|(i, v)| Edit::Replace(i, v)),
        1 => any::<Index>().prop_map(Edit::Remove),
        1 => any::<Index>().prop_map(Edit::Duplicate),
    ]
}

const MARK: &str = "\u{1}EMBER-FUZZ\u{1}";

fn count(v: &serde_json::Value) -> usize {
    1 + match v {
        serde_json::Value::Array(a) => a.iter().map(count).sum(),
        serde_json::Value::Object(o) => o.values().map(count).sum(),
        _ => 0,
    }
}

/// Visits the values under `v` in pre-order; at number `target`, applies `e` there.
fn edit_nth(v: &mut serde_json::Value, target: &mut usize, e: &Edit) -> bool {
    use serde_json::Value;
    let n = match v {
        Value::Array(a) => a.len(),
        Value::Object(o) => o.len(),
        _ => 0,
    };
    for k in 0..n {
        let child_count = match v {
            Value::Array(a) => count(&a[k]),
            Value::Object(o) => o.values().nth(k).map_or(0, count),
            _ => 0,
        };
        if *target == 0 {
            match (e, &mut *v) {
                (Edit::Replace(_, _), Value::Array(a)) => a[k] = Value::String(MARK.into()),
                (Edit::Replace(_, _), Value::Object(o)) => {
                    if let Some(x) = o.values_mut().nth(k) {
                        *x = Value::String(MARK.into());
                    }
                }
                (Edit::Remove(_), Value::Array(a)) => {
                    a.remove(k);
                }
                (Edit::Remove(_), Value::Object(o)) => {
                    if let Some(key) = o.keys().nth(k).cloned() {
                        o.remove(&key);
                    }
                }
                (Edit::Duplicate(_), Value::Array(a)) => {
                    let x = a[k].clone();
                    a.insert(k, x);
                }
                (Edit::Duplicate(_), Value::Object(o)) => {
                    if let Some((key, x)) = o.iter().nth(k).map(|(a, b)| (a.clone(), b.clone())) {
                        o.insert(format!("{key}_"), x);
                    }
                }
                _ => {}
            }
            return true;
        }
        if *target < child_count {
            *target -= 1;
            let child = match v {
                Value::Array(a) => &mut a[k],
                Value::Object(o) => match o.values_mut().nth(k) {
                    Some(x) => x,
                    None => return false,
                },
                _ => return false,
            };
            return edit_nth(child, target, e);
        }
        *target -= child_count;
    }
    false
}

/// `doc` (one JSON document) with `e` applied; the root itself can be replaced too.
pub fn edit_json(doc: &[u8], e: &Edit) -> Vec<u8> {
    let Ok(mut v) = serde_json::from_slice::<serde_json::Value>(doc) else {
        return doc.to_vec();
    };
    let i = match e {
        Edit::Replace(i, _) | Edit::Remove(i) | Edit::Duplicate(i) => i,
    };
    let mut target = i.index(count(&v));
    if target == 0 {
        if let Edit::Replace(_, raw) = e {
            return raw.clone().into_bytes();
        }
        target = 1;
    }
    target -= 1;
    edit_nth(&mut v, &mut target, e);
    let text = v.to_string();
    let mark = serde_json::Value::String(MARK.into()).to_string();
    match e {
        Edit::Replace(_, raw) => text.replace(&mark, raw).into_bytes(),
        _ => text.into_bytes(),
    }
}

/// JSON Lines: `e` applied to line `line` (the others kept).
pub fn edit_jsonl(doc: &[u8], line: &Index, e: &Edit) -> Vec<u8> {
    let lines: Vec<&[u8]> = doc.split(|&b| b == b'\n').collect();
    let k = line.index(lines.len());
    let mut out = Vec::new();
    for (i, l) in lines.iter().enumerate() {
        if i > 0 {
            out.push(b'\n');
        }
        if i == k {
            out.extend(edit_json(l, e));
        } else {
            out.extend_from_slice(l);
        }
    }
    out
}

/// Arbitrary bytes, or one of `seeds` after 1-4 byte-level mutations, or (`json`: a JSON document;
/// `jsonl`: JSON Lines) after a structural edit and maybe a byte-level one.
pub fn input(seeds: &'static [&'static [u8]], json: bool, jsonl: bool) -> BoxedStrategy<Vec<u8>> {
    let raw = prop::collection::vec(any::<u8>(), 0..512);
    let bytes =
        (any::<Index>(), prop::collection::vec(mutation(), 1..=4)).prop_map(move |(s, ms)| {
            let seed = seeds[s.index(seeds.len())].to_vec();
            ms.iter().fold(seed, apply)
        });
    if !(json || jsonl) {
        return prop_oneof![1 => raw, 4 => bytes].boxed();
    }
    let structural = (
        any::<Index>(),
        any::<Index>(),
        prop::collection::vec(edit(), 1..=3),
        prop::option::of(mutation()),
    )
        .prop_map(move |(s, line, es, m)| {
            let seed = seeds[s.index(seeds.len())];
            let mut doc = seed.to_vec();
            for e in &es {
                doc = if jsonl {
                    edit_jsonl(&doc, &line, e)
                } else {
                    edit_json(&doc, e)
                };
            }
            match m {
                Some(m) => apply(doc, &m),
                None => doc,
            }
        });
    prop_oneof![1 => raw, 3 => bytes, 4 => structural].boxed()
}
