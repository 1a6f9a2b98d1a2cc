//! Fuzzing the run config reader (TOML, then every section's keys and values, with a `--set`
//! override): any bytes give a config or an error naming the file, never a panic (proptest reports
//! a panic as a failure). `EMBER_FUZZ_CASES` sets the cases.

use ember_testing::fuzz::{self, Counter};
use ember_train::FinetuneConfig;
use proptest::prelude::*;

const DEMO: &[&[u8]] = &[include_bytes!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../fixtures/demo/finetune.toml"
))
.as_slice()];

#[test]
fn fuzz_finetune_toml() {
    let tmp = tempfile::tempdir().expect("tmp");
    let file = tmp.path().join("fuzz.toml");
    let counter = Counter::new("finetune_toml");
    proptest!(fuzz::config(), |(bytes in fuzz::input(DEMO, false, false))| {
        std::fs::write(&file, &bytes).expect("write");
        let r = FinetuneConfig::from_file(&file, &["train.seed=7".into()]);
        if let Err(e) = &r {
            prop_assert!(e.to_string().contains("fuzz.toml"), "{e}");
        }
        counter.hit(r.is_ok());
    });
}

/// Inputs kept from the fuzzing and the line lookup's edge cases.
#[test]
fn odd_configs_are_errors_naming_the_file() {
    let tmp = tempfile::tempdir().expect("tmp");
    let file = tmp.path().join("odd.toml");
    for text in [
        // A section that is not a table (the line lookup must not assume one).
        "train = 3\n",
        "[train]\nlearning_rate = 1e400\n",
        "[train]\nlearning_rate = \"5e-5\"\n",
        "[[train]]\nseed = 1\n",
    ] {
        std::fs::write(&file, text).expect("write");
        let e = FinetuneConfig::from_file(&file, &[])
            .err()
            .unwrap_or_else(|| panic!("{text:?} was accepted"));
        assert!(e.to_string().contains("odd.toml"), "{text:?}: {e}");
    }
}
