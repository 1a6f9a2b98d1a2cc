//! Tokenization throughput: writes a 100k-sample alpaca JSONL file to a temp dir and times
//! `load_sft` on it (reading, conversion, template, parallel tokenization, split).
//!
//! `cargo bench -p ember-data` (small tokenizer); set `EMBER_BENCH_TOKENIZER=path/to/tokenizer.json`
//! for another one (e.g. ../shared/tokenizers/qwen3/tokenizer.json) and `EMBER_BENCH_SAMPLES=N`.

use std::io::Write as _;
use std::time::Instant;

use ember_data::{DataArgs, Tokenizer, load_sft};

fn main() {
    let n: usize = std::env::var("EMBER_BENCH_SAMPLES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(100_000);
    let tok_path = std::env::var("EMBER_BENCH_TOKENIZER").unwrap_or_else(|_| {
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../fixtures/data/tokenizer-small.json"
        )
        .into()
    });
    let tok = Tokenizer::from_file(&tok_path).expect("tokenizer");

    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("bench.jsonl");
    let mut f = std::io::BufWriter::new(std::fs::File::create(&path).expect("create"));
    let words = [
        "river", "강", "mountain", "산", "the", "바다", "carries", "water", "물을", "sea", "town",
        "도시",
    ];
    for i in 0..n {
        let q: Vec<&str> = (0..(8 + i % 24))
            .map(|j| words[(i * 7 + j * 3) % words.len()])
            .collect();
        let a: Vec<&str> = (0..(20 + i % 80))
            .map(|j| words[(i * 5 + j) % words.len()])
            .collect();
        let row =
            serde_json::json!({"instruction": q.join(" "), "input": "", "output": a.join(" ")});
        writeln!(f, "{row}").expect("write");
    }
    f.flush().expect("flush");
    drop(f);
    std::fs::write(
        dir.path().join("dataset_info.json"),
        r#"{"bench": {"file_name": "bench.jsonl"}}"#,
    )
    .expect("write");

    let args = DataArgs {
        dataset_dir: dir.path().to_path_buf(),
        dataset: vec!["bench".into()],
        val_size: 0.01,
        ..DataArgs::default()
    };
    let t = Instant::now();
    let data = load_sft(&args, &tok).expect("load");
    let secs = t.elapsed().as_secs_f64();
    let total = data.train.len() + data.eval.len();
    println!("{}", data.stats);
    println!(
        "tokenized {total} samples in {secs:.2} s: {:.0} samples/s, {:.0} tokens/s ({} rayon threads, tokenizer {tok_path})",
        total as f64 / secs,
        (data.stats.train.tokens + data.stats.eval.as_ref().map_or(0, |e| e.tokens)) as f64 / secs,
        rayon::current_num_threads()
    );
}
