//! Times one forward per choice against prefix sharing on the same requests, and checks they agree.
//!
//! `cargo run --release -p ember-eval --example speed -- MODEL_DIR DATA_DIR TASKS [LIMIT]`
//! e.g. `... fixtures/tiny/qwen3-tiny ../shared/data kobest,kmmlu_criminal_law 20`

use std::path::PathBuf;
use std::time::Instant;

use burn::backend::Flex;
use burn::backend::flex::FlexDevice;
use ember_eval::sources::ModelSpec;
use ember_eval::{
    Encoder, EvalOptions, NoAdapterLoader, Strategy, evaluate, load_scorer, prepare, select,
};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [model, data, tasks, rest @ ..] = args.as_slice() else {
        return Err("usage: speed MODEL_DIR DATA_DIR TASKS [LIMIT]".into());
    };
    let limit = rest.first().map(|s| s.parse()).transpose()?.unwrap_or(20);
    let model = PathBuf::from(model);
    let names: Vec<&str> = tasks.split(',').collect();
    let opts = EvalOptions {
        limit: Some(limit),
        ..Default::default()
    };
    let enc = Encoder::from_file(model.join("tokenizer.json"))?;
    let prepared = prepare(&select(&names)?, &PathBuf::from(data), &enc, &opts)?;
    let device = FlexDevice;
    let mut base = None;
    for strategy in [
        Strategy::PerRequest,
        Strategy::Packed { max_tokens: 1 },
        Strategy::Packed { max_tokens: 256 },
        Strategy::Packed { max_tokens: 2048 },
    ] {
        let mut scorer = load_scorer::<Flex>(&ModelSpec::base(&model), &NoAdapterLoader, &device)?
            .with_strategy(strategy);
        let t = Instant::now();
        let report = evaluate(&mut scorer, &prepared, "base", &opts)?;
        let secs = t.elapsed().as_secs_f64();
        let lls: Vec<f64> = report
            .tasks
            .iter()
            .flat_map(|t| &t.docs)
            .flat_map(|d| d.lls.clone())
            .collect();
        let (base_secs, base_lls) = base.get_or_insert_with(|| (secs, lls.clone()));
        let diff = lls
            .iter()
            .zip(base_lls.iter())
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f64::max);
        println!(
            "{strategy:?}: {} requests in {secs:.2}s ({:.2}x vs one forward per choice), max |ll diff| {diff:.1e}",
            prepared.num_requests(),
            *base_secs / secs
        );
    }
    Ok(())
}
