//! The whole pipeline behind [`load_sft`], plus the preview and export used by `xtask data`.
//!
//! Order of operations (docs/data.md has the rationale):
//! 1. each dataset's rows in file order (`num_samples` sampling, then `max_samples` first rows);
//! 2. datasets concatenated in the order named;
//! 3. `val_size`: HF `train_test_split(test_size, seed)` — eval = `perm[:n_test]`,
//!    train = `perm[n_test:]` with `perm = np.random.default_rng(seed).permutation(n)`;
//! 4. conversion and tokenization (parallel); invalid rows fail the load or are skipped;
//! 5. `train_samples = N`: the first N of `default_rng(seed).permutation(len(train))`.

use std::path::Path;

use rayon::prelude::*;

use crate::args::{DataArgs, ValSize};
use crate::convert::convert;
use crate::encode::{EncodeOptions, Example, IGNORE_INDEX, encode_example};
use crate::error::{DataError, Result, RowError};
use crate::info::{DatasetAttr, Formatting, resolve_datasets};
use crate::rng::{NumpyRng, permutation};
use crate::source::{Row, read_rows};
use crate::stats::{DataStats, SftStats};
use crate::template::{Template, TemplateOptions};
use crate::tokenizer::Tokenizer;

/// Rows tagged with the index of their dataset in the resolved list.
type TaggedRows = Vec<(usize, Row)>;

/// How many invalid rows an error or report lists.
const SHOW_ERRORS: usize = 5;

/// Tokenized train and eval data, ready for a [`crate::Loader`].
#[derive(Debug, Clone)]
pub struct SftData {
    pub train: Vec<Example>,
    pub eval: Vec<Example>,
    pub stats: SftStats,
    /// Padding id for [`crate::LoaderConfig`].
    pub pad_id: u32,
    /// `<|im_end|>`, the EOS/stop token of the template.
    pub eos_id: u32,
}

/// Load, split and tokenize the datasets of `args`, as LLaMA-Factory's SFT stage does.
pub fn load_sft(args: &DataArgs, tok: &Tokenizer) -> Result<SftData> {
    args.validate()?;
    let template = build_template(args, tok)?;
    let pad_id = tok.pad_id(args.pad_token.as_deref())?;

    let (attrs, rows) = read_datasets(args, &args.dataset)?;
    let (train_rows, eval_rows, eval_attrs) = if !args.eval_dataset.is_empty() {
        let (eval_attrs, eval_rows) = read_datasets(args, &args.eval_dataset)?;
        (rows, eval_rows, eval_attrs)
    } else {
        let (tr, ev) = split_rows(rows, args.val_size(), args.seed).map_err(|e| match e {
            // The count in the message is the files' rows: name the files.
            DataError::Config(m) => DataError::Config(format!("{m} (read from {})", files(&attrs))),
            other => other,
        })?;
        (tr, ev, attrs.clone())
    };

    let opts = EncodeOptions {
        cutoff_len: args.cutoff_len,
        train_on_prompt: args.train_on_prompt,
        mask_history: args.mask_history,
    };
    let train = encode_rows(&train_rows, &attrs, &template, tok, &opts);
    let eval = encode_rows(&eval_rows, &eval_attrs, &template, tok, &opts);

    let mut errors: Vec<RowError> = Vec::new();
    let mut keep = |results: Vec<std::result::Result<Example, RowError>>| -> Vec<Example> {
        results
            .into_iter()
            .filter_map(|r| r.map_err(|e| errors.push(e)).ok())
            .collect()
    };
    let mut train = keep(train);
    let eval = keep(eval);
    if !errors.is_empty() && !args.skip_invalid {
        let count = errors.len();
        errors.truncate(SHOW_ERRORS);
        return Err(DataError::InvalidRows {
            count,
            first: errors,
        });
    }

    if let Some(n) = args.train_samples {
        if n > train.len() {
            return Err(DataError::Config(format!(
                "train_samples = {n}, but the train split has only {} samples",
                train.len()
            )));
        }
        train = take_nested(train, n, args.seed);
    }
    if train.is_empty() {
        return Err(DataError::Empty(format!(
            "the train split is empty (read from {})",
            files(&attrs)
        )));
    }

    let skipped = errors.len();
    errors.truncate(SHOW_ERRORS);
    let stats = SftStats {
        train: DataStats::of(&train),
        eval: (!eval.is_empty()).then(|| DataStats::of(&eval)),
        skipped,
        skipped_examples: errors,
    };
    Ok(SftData {
        train,
        eval,
        stats,
        pad_id,
        eos_id: template.eos_id,
    })
}

/// The datasets' files, for a message about all of their rows.
fn files(attrs: &[DatasetAttr]) -> String {
    let files: Vec<String> = attrs.iter().map(|a| a.path.display().to_string()).collect();
    files.join(", ")
}

/// The template `args` asks for, checked against the tokenizer.
pub fn build_template(args: &DataArgs, tok: &Tokenizer) -> Result<Template> {
    let opts = TemplateOptions {
        enable_thinking: args.enable_thinking,
        preserve_thinking: args.preserve_thinking,
        default_system: args.default_system.clone(),
    };
    Template::new(&args.template, &opts, tok)
}

/// Rows of the named datasets, each tagged with the index of its dataset.
fn read_datasets(args: &DataArgs, names: &[String]) -> Result<(Vec<DatasetAttr>, TaggedRows)> {
    let attrs = resolve_datasets(names, &args.dataset_dir, &args.dataset_info)?;
    let mut all = Vec::new();
    for (ai, attr) in attrs.iter().enumerate() {
        let mut rows = read_rows(&attr.path, &required_columns(attr))?;
        if rows.is_empty() {
            return Err(DataError::Empty(format!(
                "{}: no rows (an empty file, or an empty JSON array)",
                attr.path.display()
            )));
        }
        if let Some(k) = attr.num_samples {
            rows = sample_rows(rows, k, args.seed);
        }
        if let Some(m) = args.max_samples {
            rows.truncate(m);
        }
        all.extend(rows.into_iter().map(|r| (ai, r)));
    }
    Ok((attrs, all))
}

/// The columns without which no row of `attr` converts, with what each is for.
fn required_columns(attr: &DatasetAttr) -> Vec<(&str, &str)> {
    let (column, role) = match attr.formatting {
        Formatting::Alpaca => (&attr.response, "the response column"),
        Formatting::Sharegpt | Formatting::Openai => (&attr.messages, "the messages column"),
    };
    column.as_deref().map(|c| (c, role)).into_iter().collect()
}

/// `num_samples`: every row once in a random order, then random repeats to reach `k`. LLaMA-Factory
/// draws this from numpy's unseeded global state; here it is seeded so runs repeat.
fn sample_rows(rows: Vec<Row>, k: usize, seed: u64) -> Vec<Row> {
    if rows.is_empty() {
        return rows;
    }
    let mut rng = NumpyRng::new(seed);
    let mut idx = rng.permutation(rows.len());
    idx.truncate(k);
    while idx.len() < k {
        idx.push(rng.interval(rows.len() as u64 - 1) as usize);
    }
    idx.into_iter().map(|i| rows[i].clone()).collect()
}

/// HF `Dataset.train_test_split(test_size, seed=seed)`, with LLaMA-Factory's reading of `val_size`.
pub fn split_indices(n: usize, val: ValSize, seed: u64) -> Result<(Vec<usize>, Vec<usize>)> {
    let n_test = match val {
        ValSize::None => return Ok(((0..n).collect(), Vec::new())),
        ValSize::Fraction(f) => {
            if f >= 1.0 {
                return Err(DataError::Config(format!(
                    "val_size = {f}: a fraction must be below 1"
                )));
            }
            (f * n as f64).ceil() as usize
        }
        ValSize::Count(c) => {
            if c >= n {
                return Err(DataError::Config(format!(
                    "val_size = {c} is not smaller than the {n} samples"
                )));
            }
            c
        }
    };
    if n_test >= n {
        return Err(DataError::Config(format!(
            "val_size leaves no training samples out of {n}"
        )));
    }
    let mut perm = permutation(seed, n);
    let train = perm.split_off(n_test);
    Ok((train, perm))
}

fn split_rows(rows: TaggedRows, val: ValSize, seed: u64) -> Result<(TaggedRows, TaggedRows)> {
    if val == ValSize::None {
        return Ok((rows, Vec::new()));
    }
    let (train_idx, eval_idx) = split_indices(rows.len(), val, seed)?;
    let pick = |idx: &[usize]| idx.iter().map(|&i| rows[i].clone()).collect::<Vec<_>>();
    Ok((pick(&train_idx), pick(&eval_idx)))
}

/// The first `n` of one seeded permutation: a smaller `n` always gives a subset of a larger one.
pub fn take_nested<T: Clone>(items: Vec<T>, n: usize, seed: u64) -> Vec<T> {
    permutation(seed, items.len())
        .into_iter()
        .take(n)
        .map(|i| items[i].clone())
        .collect()
}

fn encode_rows(
    rows: &[(usize, Row)],
    attrs: &[DatasetAttr],
    template: &Template,
    tok: &Tokenizer,
    opts: &EncodeOptions,
) -> Vec<std::result::Result<Example, RowError>> {
    rows.par_iter()
        .map(|(ai, row)| {
            let value = row.value.as_ref().map_err(|e| row.error(e.clone()))?;
            let conv = convert(&attrs[*ai], value).map_err(|e| row.error(e))?;
            encode_example(template, tok, &conv, opts).map_err(|e| row.error(e))
        })
        .collect()
}

/// LLaMA-Factory's `print_data_example`: ids, decoded inputs, label ids and decoded labels.
pub fn preview(ex: &Example, tok: &Tokenizer) -> Result<String> {
    let valid: Vec<u32> = ex
        .labels
        .iter()
        .filter(|&&l| l != IGNORE_INDEX)
        .map(|&l| l as u32)
        .collect();
    Ok(format!(
        "input_ids:\n{:?}\ninputs:\n{}\nlabel_ids:\n{:?}\nlabels:\n{}\n",
        ex.input_ids,
        tok.decode(&ex.input_ids)?,
        ex.labels,
        tok.decode(&valid)?
    ))
}

/// What `xtask data` prints: the statistics table and a preview of the first training example.
pub fn report(data: &SftData, tok: &Tokenizer) -> Result<String> {
    let mut s = data.stats.to_string();
    if let Some(ex) = data.train.first() {
        s.push_str("\ntraining example:\n");
        s.push_str(&preview(ex, tok)?);
    }
    Ok(s)
}

/// `xtask data` as one call: loads and tokenizes the data as training would (tokenizer from
/// `tokenizer_json`), writes the training samples as JSON lines to `export` if given, and returns
/// what to print: [`report`], and where the samples went.
pub fn inspect(args: &DataArgs, tokenizer_json: &Path, export: Option<&Path>) -> Result<String> {
    // Checked first, so that a typo in the path does not cost a full tokenization.
    if let Some(path) = export
        && let Err(reason) = check_parent(path)
    {
        return Err(DataError::Write {
            path: path.into(),
            reason,
        });
    }
    let tok = Tokenizer::from_file(tokenizer_json)?;
    let data = load_sft(args, &tok)?;
    let mut s = report(&data, &tok)?;
    if let Some(path) = export {
        export_jsonl(&data.train, path)?;
        s.push_str(&format!(
            "\nwrote {} samples to {}",
            data.train.len(),
            path.display()
        ));
    }
    Ok(s)
}

/// One export line: `{"input_ids": [...], "labels": [...]}`.
pub fn export_line(ex: &Example) -> String {
    let mut s = String::with_capacity(ex.len() * 14 + 32);
    s.push_str("{\"input_ids\": [");
    push_list(&mut s, ex.input_ids.iter().map(|&x| x as i64));
    s.push_str("], \"labels\": [");
    push_list(&mut s, ex.labels.iter().map(|&x| x as i64));
    s.push_str("]}");
    s
}

fn push_list(s: &mut String, it: impl Iterator<Item = i64>) {
    use std::fmt::Write as _;
    for (i, x) in it.enumerate() {
        if i > 0 {
            s.push_str(", ");
        }
        let _ = write!(s, "{x}");
    }
}

/// Write every example of `data` as JSON lines to `path`.
pub fn export_jsonl(examples: &[Example], path: &Path) -> Result<()> {
    use std::io::Write as _;
    let write_err = |source: std::io::Error| write_error(path, source);
    let f = std::fs::File::create(path).map_err(write_err)?;
    let mut w = std::io::BufWriter::new(f);
    for ex in examples {
        writeln!(w, "{}", export_line(ex)).map_err(write_err)?;
    }
    w.flush().map_err(write_err)
}

/// Why `path` cannot be written: a missing folder shows as NotFound, which alone reads like a
/// missing input, so the folder is named.
fn write_error(path: &Path, source: std::io::Error) -> DataError {
    let reason = match check_parent(path) {
        Err(reason) => reason,
        Ok(()) => source.to_string(),
    };
    DataError::Write {
        path: path.into(),
        reason,
    }
}

/// Whether the folder `path` would be written into exists.
fn check_parent(path: &Path) -> std::result::Result<(), String> {
    match path.parent().filter(|p| !p.as_os_str().is_empty()) {
        Some(dir) if !dir.exists() => {
            Err(format!("the directory {} does not exist", dir.display()))
        }
        Some(dir) if !dir.is_dir() => Err(format!("{} is not a directory", dir.display())),
        _ => Ok(()),
    }
}
