//! `report_to = "tensorboard"` (issue 21, item 3): event files with HF's TensorBoardCallback
//! scalar names at the global step, holding exactly trainer_state.json's values (and the final
//! evaluation's); read back by a decoder here and by TensorBoard's own reader (fixture env); a
//! resumed run appends a new event file, as HF does.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use ember_train::{FinetuneConfig, Run, report::Silent};

type B = ember_backend::FlexBackend;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn config(out: &Path, logging_dir: &Path, extra: &[String]) -> FinetuneConfig {
    let text = format!(
        "[model]\nmodel_name_or_path = {:?}\n\
         [data]\ndataset_dir = {:?}\ndataset = \"interview_ko\"\nval_size = 4\n\
         [train]\nmax_steps = 4\nper_device_train_batch_size = 4\nlearning_rate = 1e-3\nlogging_steps = 1\n\
         [eval]\neval_strategy = \"steps\"\neval_steps = 2\nper_device_eval_batch_size = 2\n\
         [output]\noutput_dir = {:?}\nsave_steps = 2\nreport_to = \"tensorboard\"\nlogging_dir = {:?}\n",
        root().join("fixtures/tiny/qwen3-tiny"),
        root().join("fixtures/demo"),
        out,
        logging_dir,
    );
    FinetuneConfig::from_table(text.parse().expect("toml"), Path::new("tb.toml"), extra)
        .expect("config")
}

fn train(cfg: &FinetuneConfig) {
    Run::<B>::load(cfg, &Default::default())
        .expect("load")
        .train(&mut Silent)
        .expect("train");
}

/// tag -> step -> value.
type Scalars = BTreeMap<String, BTreeMap<u64, f32>>;

/// What TensorBoard must hold: every log_history entry under HF's `rewrite_logs` names, plus the
/// final evaluation (eval_results.json) at the last step.
fn expected(out: &Path) -> Scalars {
    let read = |f: &str| -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(out.join(f)).expect(f)).expect("json")
    };
    let state = read("trainer_state.json");
    let step_of_end = state["global_step"].as_u64().expect("global_step");
    let mut entries: Vec<(u64, serde_json::Value)> = state["log_history"]
        .as_array()
        .expect("log_history")
        .iter()
        .map(|e| (e["step"].as_u64().expect("step"), e.clone()))
        .collect();
    entries.push((step_of_end, read("eval_results.json")));
    let mut want = Scalars::new();
    for (step, e) in entries {
        for (k, v) in e.as_object().expect("entry") {
            if k == "step" {
                continue;
            }
            let tag = match k.strip_prefix("eval_") {
                Some(rest) => format!("eval/{rest}"),
                None => format!("train/{k}"),
            };
            let v = v.as_f64().expect("number") as f32;
            // Two entries at one step (a step's log and its evaluation) both carry the epoch.
            want.entry(tag).or_default().insert(step, v);
        }
    }
    want
}

fn varint(b: &[u8], i: &mut usize) -> u64 {
    let (mut v, mut shift) = (0u64, 0);
    loop {
        let byte = b[*i];
        *i += 1;
        v |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return v;
        }
        shift += 7;
    }
}

/// Protobuf fields of `b`: (number, varint value or the bytes of a length-delimited / fixed field).
fn fields(b: &[u8]) -> Vec<(u64, u64, Vec<u8>)> {
    let (mut i, mut out) = (0, Vec::new());
    while i < b.len() {
        let key = varint(b, &mut i);
        let (field, wire) = (key >> 3, key & 7);
        match wire {
            0 => out.push((field, varint(b, &mut i), Vec::new())),
            1 => {
                out.push((field, 0, b[i..i + 8].to_vec()));
                i += 8;
            }
            2 => {
                let n = varint(b, &mut i) as usize;
                out.push((field, 0, b[i..i + n].to_vec()));
                i += n;
            }
            5 => {
                out.push((field, 0, b[i..i + 4].to_vec()));
                i += 4;
            }
            w => panic!("wire type {w}"),
        }
    }
    out
}

/// Decodes every event file of `dir` (checking each record's CRCs): scalars, and the number of
/// files with the smallest step each holds.
fn decode(dir: &Path) -> (Scalars, Vec<u64>) {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("logging_dir")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.to_string_lossy().contains("events.out.tfevents."))
        .collect();
    files.sort();
    let (mut all, mut first_steps) = (Scalars::new(), Vec::new());
    for f in files {
        let b = std::fs::read(&f).expect("event file");
        let (mut i, mut first, mut version) = (0, u64::MAX, false);
        while i < b.len() {
            let len_bytes = &b[i..i + 8];
            let len = u64::from_le_bytes(len_bytes.try_into().expect("8")) as usize;
            let crc = u32::from_le_bytes(b[i + 8..i + 12].try_into().expect("4"));
            assert_eq!(
                crc,
                ember_train::tensorboard::masked_crc(len_bytes),
                "length CRC"
            );
            let payload = &b[i + 12..i + 12 + len];
            let crc = u32::from_le_bytes(b[i + 12 + len..i + 16 + len].try_into().expect("4"));
            assert_eq!(
                crc,
                ember_train::tensorboard::masked_crc(payload),
                "payload CRC"
            );
            i += 16 + len;
            let ev = fields(payload);
            let step = ev.iter().find(|f| f.0 == 2).map_or(0, |f| f.1);
            if ev.iter().any(|f| f.0 == 3 && f.2 == b"brain.Event:2") {
                version = true;
            }
            for (_, _, summary) in ev.iter().filter(|f| f.0 == 5) {
                first = first.min(step);
                for (_, _, value) in fields(summary) {
                    let vf = fields(&value);
                    let tag =
                        String::from_utf8(vf.iter().find(|f| f.0 == 1).expect("tag").2.clone())
                            .expect("utf8");
                    let v = f32::from_le_bytes(
                        vf.iter().find(|f| f.0 == 2).expect("simple_value").2[..]
                            .try_into()
                            .expect("4"),
                    );
                    all.entry(tag).or_default().insert(step, v);
                }
            }
        }
        assert!(
            version,
            "{}: starts with the file_version record",
            f.display()
        );
        first_steps.push(first);
    }
    (all, first_steps)
}

#[test]
fn event_files_hold_trainer_states_values_under_hfs_names() {
    let tmp = tempfile::tempdir().expect("tmp");
    let (out, tb) = (tmp.path().join("out"), tmp.path().join("tb"));
    train(&config(&out, &tb, &[]));
    let want = expected(&out);
    for tag in [
        "train/loss",
        "train/grad_norm",
        "train/learning_rate",
        "eval/loss",
        "train/train_loss",
    ] {
        assert!(want.contains_key(tag), "{tag} in {:?}", want.keys());
    }
    let (got, files) = decode(&tb);
    assert_eq!(files.len(), 1);
    assert_eq!(got, want);

    // TensorBoard's own reader sees the same.
    let Some(py) = ember_testing::fixture_python() else {
        return;
    };
    let o = Command::new(py)
        .arg(root().join("fixtures/train/read_tensorboard.py"))
        .arg(&tb)
        .output()
        .expect("python");
    let stderr = String::from_utf8_lossy(&o.stderr);
    if !o.status.success() && stderr.contains("No module named 'tensorboard'") {
        ember_testing::skip_or_fail(
            "python",
            "the fixture Python has no tensorboard (source scripts/torch-env.sh to update it)",
        );
        return;
    }
    assert!(o.status.success(), "read_tensorboard.py failed:\n{stderr}");
    let read: BTreeMap<String, Vec<(u64, f32)>> = serde_json::from_slice(&o.stdout).expect("json");
    let read: Scalars = read
        .into_iter()
        .map(|(k, v)| (k, v.into_iter().collect()))
        .collect();
    assert_eq!(read, want);
}

#[test]
fn a_resumed_run_appends_a_new_event_file() {
    let tmp = tempfile::tempdir().expect("tmp");
    let (out, tb) = (tmp.path().join("out"), tmp.path().join("tb"));
    train(&config(&out, &tb, &[]));
    let resume = format!(
        "train.resume_from_checkpoint={:?}",
        out.join("checkpoint-2").display().to_string()
    );
    // torch's file names carry the second; the resumed run's must sort after the first's.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    train(&config(&out, &tb, &[resume]));
    let (got, first_steps) = decode(&tb);
    assert_eq!(
        first_steps,
        [1, 3],
        "the resumed run logs from step 3 into a new file"
    );
    // The resumed steps replay the same values (exact resume).
    assert_eq!(got, expected(&out));
}
