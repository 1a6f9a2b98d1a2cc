//! Splits, nested subsets, batching, resumable order, statistics, preview and export.

use std::collections::HashSet;
use std::path::PathBuf;

use ember_data::{
    Batch, DataArgs, Example, IGNORE_INDEX, Loader, LoaderConfig, Position, SftData, Tokenizer,
    count_label_tokens, count_target_tokens, export_line, load_sft, preview,
};

fn fixtures() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../fixtures/data"))
}

fn tok() -> Tokenizer {
    Tokenizer::from_file(fixtures().join("tokenizer-small.json")).unwrap()
}

fn args(datasets: &str) -> DataArgs {
    DataArgs {
        dataset_dir: fixtures(),
        dataset: datasets.split(',').map(str::to_owned).collect(),
        ..DataArgs::default()
    }
}

fn load(a: &DataArgs) -> SftData {
    load_sft(a, &tok()).unwrap()
}

const ALL: &str = "alpaca_mix,sharegpt_think,toolcall,openai_msgs,ko_qa";

#[test]
fn toml_section_deserializes_into_data_args() {
    #[derive(serde::Deserialize)]
    struct Cfg {
        data: DataArgs,
    }
    let cfg: Cfg = toml::from_str(
        r#"
        [data]
        dataset_dir = "fixtures/data"
        dataset = "alpaca_mix, ko_qa"
        cutoff_len = 512
        val_size = 4
        train_samples = 3
        enable_thinking = false

        [data.dataset_info.extra]
        file_name = "x.csv"
        columns = { prompt = "Q", response = "A" }
        "#,
    )
    .unwrap();
    let d = cfg.data;
    assert_eq!(d.dataset, ["alpaca_mix", "ko_qa"]);
    assert_eq!(
        (d.cutoff_len, d.train_samples, d.enable_thinking),
        (512, Some(3), false)
    );
    assert_eq!(d.val_size(), ember_data::ValSize::Count(4));
    assert_eq!(d.dataset_info["extra"].file_name.as_deref(), Some("x.csv"));
    // Untouched keys keep LLaMA-Factory's defaults.
    assert_eq!(
        (d.template.as_str(), d.seed, d.mask_history),
        ("qwen3", 42, false)
    );
}

#[test]
fn nested_subsets_share_eval_and_prefix() {
    let base = DataArgs {
        val_size: 0.2,
        seed: 11,
        ..args(ALL)
    };
    let full = load(&base);
    let small = load(&DataArgs {
        train_samples: Some(5),
        ..base.clone()
    });
    let mid = load(&DataArgs {
        train_samples: Some(12),
        ..base.clone()
    });
    assert_eq!(
        small.eval, full.eval,
        "the eval set does not depend on train_samples"
    );
    assert_eq!(mid.eval, full.eval);
    assert_eq!((small.train.len(), mid.train.len()), (5, 12));
    assert_eq!(
        small.train[..],
        mid.train[..5],
        "a smaller subset is a prefix of a larger one"
    );
    let all: HashSet<&Vec<u32>> = full.train.iter().map(|e| &e.input_ids).collect();
    assert!(mid.train.iter().all(|e| all.contains(&e.input_ids)));
    // A different seed gives a different subset.
    let other = load(&DataArgs {
        train_samples: Some(12),
        seed: 12,
        ..base
    });
    assert_ne!(other.train, mid.train);
}

#[test]
fn val_split_partitions_the_rows() {
    let whole = load(&args(ALL));
    let split = load(&DataArgs {
        val_size: 0.3,
        ..args(ALL)
    });
    let n = whole.train.len();
    assert_eq!(split.eval.len(), (0.3 * n as f64).ceil() as usize);
    let mut both: Vec<_> = split
        .train
        .iter()
        .chain(&split.eval)
        .map(|e| e.input_ids.clone())
        .collect();
    let mut orig: Vec<_> = whole.train.iter().map(|e| e.input_ids.clone()).collect();
    both.sort();
    orig.sort();
    assert_eq!(both, orig);
}

fn examples(lens: &[usize]) -> Vec<Example> {
    lens.iter()
        .enumerate()
        .map(|(k, &n)| Example {
            input_ids: (0..n as u32).map(|i| 1000 * k as u32 + i + 1).collect(),
            // First half masked, second half trained.
            labels: (0..n)
                .map(|i| {
                    if i < n / 2 {
                        IGNORE_INDEX
                    } else {
                        (1000 * k + i + 1) as i32
                    }
                })
                .collect(),
            full_len: n,
        })
        .collect()
}

fn cfg(batch_size: usize, shuffle: bool) -> LoaderConfig {
    LoaderConfig {
        batch_size,
        shuffle,
        group_by_length: false,
        seed: 5,
        pad_id: 7,
        pad_to_multiple_of: Some(8),
    }
}

#[test]
fn collate_pads_to_multiple_of_eight_with_masks() {
    let data = examples(&[3, 10, 1]);
    let b = ember_data::collate(&data, &[0, 1, 2], 7, Some(8));
    assert_eq!((b.batch_size, b.seq_len), (3, 16));
    for (row, ex) in data.iter().enumerate() {
        let r = row * 16..(row + 1) * 16;
        let n = ex.len();
        assert_eq!(
            &b.input_ids[r.start..r.start + n],
            &ex.input_ids.iter().map(|&x| x as i64).collect::<Vec<_>>()[..]
        );
        assert!(b.input_ids[r.start + n..r.end].iter().all(|&x| x == 7));
        assert!(
            b.attention_mask[r.clone()]
                .iter()
                .enumerate()
                .all(|(i, &m)| m == i64::from(i < n))
        );
        assert_eq!(
            &b.labels[r.start..r.start + n],
            &ex.labels.iter().map(|&x| x as i64).collect::<Vec<_>>()[..]
        );
        assert!(b.labels[r.start + n..r.end].iter().all(|&x| x == -100));
    }
    let supervised: usize = data.iter().map(Example::supervised_tokens).sum();
    assert_eq!(b.label_tokens(), supervised);
    assert_eq!(b.real_tokens(), 14);
    let no_round = ember_data::collate(&data, &[0, 2], 7, None);
    assert_eq!(no_round.seq_len, 3);
}

#[test]
fn target_tokens_skip_the_first_position() {
    let mut data = examples(&[4, 6]);
    data[0].labels = data[0].input_ids.iter().map(|&x| x as i32).collect(); // train_on_prompt-like
    let b = ember_data::collate(&data, &[0, 1], 0, Some(8));
    assert_eq!(b.label_tokens(), 4 + 3);
    assert_eq!(b.target_tokens(), 3 + 3);
    assert_eq!(count_label_tokens(&[b.clone(), b.clone()]), 14);
    assert_eq!(count_target_tokens(&[b.clone(), b]), 12);
}

fn order_of(batches: &[Batch]) -> Vec<usize> {
    batches.iter().flat_map(|b| b.indices.clone()).collect()
}

#[test]
fn loader_epochs_are_seeded_permutations() {
    let data = examples(&[5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15]);
    let mut l = Loader::new(&data, cfg(4, true));
    assert_eq!(l.batches_per_epoch(), 3);
    let e0 = l.epoch(0, 0);
    let e1 = l.epoch(1, 0);
    assert_eq!(
        e0.iter().map(|b| b.batch_size).collect::<Vec<_>>(),
        [4, 4, 3],
        "no drop_last"
    );
    let (o0, o1) = (order_of(&e0), order_of(&e1));
    let mut s = o0.clone();
    s.sort();
    assert_eq!(
        s,
        (0..11).collect::<Vec<_>>(),
        "each example once per epoch"
    );
    assert_ne!(o0, o1, "epochs reshuffle");
    assert_eq!(
        o0,
        ember_data::rng::NumpyRng::from_entropy(&[5, 0]).permutation(11)
    );
    // Same seed, same order; eval loaders keep dataset order.
    assert_eq!(order_of(&Loader::new(&data, cfg(4, true)).epoch(0, 0)), o0);
    assert_eq!(
        order_of(&Loader::new(&data, cfg(4, false)).epoch(3, 0)),
        (0..11).collect::<Vec<_>>()
    );
}

#[test]
fn loader_resumes_from_a_saved_position() {
    let data = examples(&[5, 6, 7, 8, 9, 10, 11]);
    let straight: Vec<(Position, Batch)> = Loader::new(&data, cfg(2, true))
        .iter_from(Position::default())
        .take(10)
        .collect();
    assert_eq!(
        straight[4].0,
        Position { epoch: 1, batch: 0 },
        "4 batches per epoch"
    );
    // Save after 6 batches (as JSON, like a checkpoint), restore in a fresh loader.
    let loader = Loader::new(&data, cfg(2, true));
    let saved = serde_json::to_string(&loader.next_position(straight[5].0)).unwrap();
    let restored: Position = serde_json::from_str(&saved).unwrap();
    let resumed: Vec<(Position, Batch)> = Loader::new(&data, cfg(2, true))
        .iter_from(restored)
        .take(4)
        .collect();
    assert_eq!(resumed, straight[6..10]);
}

#[test]
fn group_by_length_puts_the_longest_first_and_keeps_every_example() {
    let lens: Vec<usize> = (0..40).map(|i| (i * 37) % 23 + 1).collect();
    let data = examples(&lens);
    let grouped = LoaderConfig {
        group_by_length: true,
        ..cfg(2, true)
    };
    let order = order_of(&Loader::new(&data, grouped).epoch(0, 0));
    assert_eq!(data[order[0]].len(), *lens.iter().max().unwrap());
    let mut s = order.clone();
    s.sort();
    assert_eq!(s, (0..40).collect::<Vec<_>>());
    // 40 / (4*2) = 5 batches per megabatch: within each megabatch (after the front swap) lengths descend.
    for mb in order.chunks(10) {
        let l: Vec<usize> = mb[1..].iter().map(|&i| data[i].len()).collect();
        assert!(l.windows(2).all(|w| w[0] >= w[1]), "{l:?}");
    }
}

#[test]
fn stats_describe_the_examples() {
    let data = examples(&[10, 20, 30, 40]);
    let s = ember_data::DataStats::of(&data);
    assert_eq!((s.samples, s.tokens, s.supervised_tokens), (4, 100, 50));
    assert_eq!(
        (s.p50_len, s.p95_len, s.max_len, s.truncated),
        (20, 40, 40, 0)
    );
    assert!(ember_testing::max_abs_diff(&[s.mean_len], &[25.0]) < 1e-9);

    let cut = load(&DataArgs {
        cutoff_len: 40,
        ..args(ALL)
    });
    assert!(cut.stats.train.truncated > 0);
    assert_eq!(
        cut.stats.train.truncated,
        cut.train.iter().filter(|e| e.full_len > 40).count()
    );
    assert!(cut.train.iter().all(|e| e.len() <= 40));
}

#[test]
fn preview_and_export_round_trip() {
    let t = tok();
    let data = load(&args("alpaca_mix"));
    let ex = &data.train[1];
    let text = preview(ex, &t).unwrap();
    let decoded = t.decode(&ex.input_ids).unwrap();
    assert!(text.starts_with("input_ids:\n["));
    assert!(text.contains(&format!("inputs:\n{decoded}\n")));
    assert!(
        decoded.contains("<|im_start|>system\nYou are a translator.<|im_end|>"),
        "{decoded}"
    );
    assert!(text.contains("label_ids:\n[-100"));

    let line: serde_json::Value = serde_json::from_str(&export_line(ex)).unwrap();
    let ids: Vec<u32> = serde_json::from_value(line["input_ids"].clone()).unwrap();
    let labels: Vec<i32> = serde_json::from_value(line["labels"].clone()).unwrap();
    assert_eq!((ids, labels), (ex.input_ids.clone(), ex.labels.clone()));

    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.jsonl");
    ember_data::export_jsonl(&data.train, &out).unwrap();
    assert_eq!(
        std::fs::read_to_string(&out).unwrap().lines().count(),
        data.train.len()
    );
}

#[test]
fn pad_id_is_endoftext() {
    let t = tok();
    let data = load(&args("alpaca_mix"));
    assert_eq!(Some(data.pad_id), t.inner().token_to_id("<|endoftext|>"));
    assert_eq!(Some(data.eos_id), t.inner().token_to_id("<|im_end|>"));
}

#[test]
fn num_samples_eval_dataset_and_folders() {
    // num_samples larger than the file: every row once, then seeded repeats.
    let mut a = args("more");
    a.dataset_info.insert(
        "more".into(),
        serde_json::from_value(serde_json::json!({"file_name": "alpaca.json", "num_samples": 12, "columns": {
            "prompt": "instruction", "query": "input", "response": "output", "system": "system", "history": "history"}}))
        .unwrap(),
    );
    let more = load(&a);
    let rows = load(&args("alpaca_mix"));
    assert_eq!(more.train.len(), 12);
    for ex in &rows.train {
        assert!(more.train.contains(ex), "every row is drawn at least once");
    }
    assert_eq!(load(&a).train, more.train, "seeded");

    // A separate eval dataset, in file order.
    let e = load(&DataArgs {
        eval_dataset: vec!["ko_qa".into()],
        ..args("alpaca_mix")
    });
    assert_eq!(e.eval, load(&args("ko_qa")).train);
    assert_eq!(e.train, rows.train);

    // A folder as file_name: its files in name order.
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("parts")).unwrap();
    let line = |t: &str| format!(r#"{{"instruction": "{t}", "output": "ok"}}"#);
    std::fs::write(dir.path().join("parts/b.jsonl"), line("second")).unwrap();
    std::fs::write(
        dir.path().join("parts/a.jsonl"),
        [line("first"), line("first again")].join("\n"),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("dataset_info.json"),
        r#"{"p": {"file_name": "parts"}}"#,
    )
    .unwrap();
    let d = load(&DataArgs {
        dataset_dir: dir.path().into(),
        dataset: vec!["p".into()],
        ..DataArgs::default()
    });
    let t = tok();
    let texts: Vec<String> = d
        .train
        .iter()
        .map(|e| t.decode(&e.input_ids).unwrap())
        .collect();
    assert!(
        texts[0].contains("first")
            && texts[1].contains("first again")
            && texts[2].contains("second"),
        "{texts:?}"
    );
}
