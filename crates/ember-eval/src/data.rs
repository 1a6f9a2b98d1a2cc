//! Benchmark documents from local files, in the forms the sets are distributed, rendered with
//! lm-eval's prompts (`doc_to_text`, `doc_to_choice`, `doc_to_target`).
//!
//! Layout under the data directory (the first existing candidate wins):
//!
//! | task | evaluated split | few-shot split |
//! |---|---|---|
//! | `kobest_*` | `kobest[/v1.0]/<BoolQ,COPA,HellaSwag,SentiNeg,WiC>/test.tsv` | `.../train.tsv` |
//! | `kmmlu_*` | `kmmlu[/data]/<Subject>-test.{csv,json}` | `...-dev.{csv,json}` |
//! | `haerae_*` | `haerae/<subset>.{jsonl,json}` or `haerae/<subset>/test.{jsonl,json}` | the same file |

use std::path::{Path, PathBuf};

use crate::EvalError;
use crate::tasks::{Kobest, Task, TaskKind};
use ember_data::source::line_column;

/// One evaluated or few-shot document, rendered.
#[derive(Debug, Clone, PartialEq)]
pub struct Doc {
    /// `doc_to_text(doc)`: the zero-shot context.
    pub text: String,
    /// `doc_to_choice(doc)`: the answer strings, without the target delimiter.
    pub choices: Vec<String>,
    /// Index of the correct choice.
    pub gold: usize,
    /// 1-based data row in its file, for messages.
    pub row: usize,
    /// The row's raw fields: lm-eval drops a sampled few-shot document that is equal (as a dict)
    /// to the evaluated one, so equality must see every field.
    pub fields: Vec<(String, String)>,
}

/// Which split of a task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Split {
    /// lm-eval's `test_split`.
    Eval,
    /// lm-eval's `fewshot_split`, or `training_split` where there is none (KoBEST).
    FewShot,
}

impl Split {
    fn name(self) -> &'static str {
        match self {
            Split::Eval => "test",
            Split::FewShot => "few-shot",
        }
    }
}

/// The files that may hold `split` of `task`, in the order they are tried.
pub fn candidate_files(task: &Task, data_dir: &Path, split: Split) -> Vec<PathBuf> {
    match task.kind {
        TaskKind::Kobest(k) => {
            let file = match split {
                Split::Eval => "test.tsv",
                Split::FewShot => "train.tsv",
            };
            ["kobest", "kobest/v1.0"]
                .iter()
                .map(|root| data_dir.join(root).join(k.folder()).join(file))
                .collect()
        }
        TaskKind::Kmmlu { subject, .. } => {
            let split = match split {
                Split::Eval => "test",
                Split::FewShot => "dev",
            };
            let mut v = Vec::new();
            for root in ["kmmlu", "kmmlu/data"] {
                for ext in ["csv", "json"] {
                    v.push(data_dir.join(root).join(format!("{subject}-{split}.{ext}")));
                }
            }
            v
        }
        TaskKind::Haerae { subset } => {
            let root = data_dir.join("haerae");
            vec![
                root.join(format!("{subset}.jsonl")),
                root.join(format!("{subset}.json")),
                root.join(subset).join("test.jsonl"),
                root.join(subset).join("test.json"),
            ]
        }
    }
}

/// Loads and renders `split` of `task`; returns the file it came from too.
pub fn load_docs(
    task: &Task,
    data_dir: &Path,
    split: Split,
) -> Result<(PathBuf, Vec<Doc>), EvalError> {
    let tried = candidate_files(task, data_dir, split);
    let Some(path) = tried.iter().find(|p| p.is_file()).cloned() else {
        return Err(EvalError::MissingData {
            task: task.name.clone(),
            split: split.name(),
            tried,
        });
    };
    let bytes = std::fs::read(&path).map_err(|source| EvalError::Io {
        task: task.name.clone(),
        path: path.clone(),
        source,
    })?;
    let docs = parse_docs(task, &path, &bytes)?;
    Ok((path, docs))
}

/// The rendered documents of a file's contents; `path` (by its extension) picks the format and
/// names the file in errors. Split from [`load_docs`] so the fuzz tests can feed bytes directly.
pub fn parse_docs(task: &Task, path: &Path, bytes: &[u8]) -> Result<Vec<Doc>, EvalError> {
    let rows = parse_rows(task, path, bytes)?;
    // The HF KoBEST loader reads with pandas and calls dropna(): a row with an empty (or
    // NA-spelled) field in any column is not part of the dataset lm-eval sees.
    let kobest = matches!(task.kind, TaskKind::Kobest(_));
    rows.into_iter()
        .enumerate()
        .filter(|(_, row)| !(kobest && row.0.iter().any(|(_, v)| is_pandas_na(v))))
        .map(|(i, row)| {
            render(task, &row, i + 1).map_err(|reason| EvalError::Malformed {
                task: task.name.clone(),
                path: path.to_path_buf(),
                row: i + 1,
                reason,
            })
        })
        .collect()
}

/// pandas' default `na_values`: fields `read_csv` turns into NaN.
fn is_pandas_na(v: &str) -> bool {
    const NA: [&str; 19] = [
        "", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND", "1.#QNAN",
        "<NA>", "N/A", "NA", "NULL", "NaN", "None", "n/a", "nan", "null",
    ];
    NA.contains(&v)
}

/// A data row: field name -> text, in file order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row(pub Vec<(String, String)>);

impl Row {
    fn get(&self, key: &str) -> Result<&str, String> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .ok_or_else(|| format!("no `{key}` field"))
    }
}

/// Reads a file's rows by its extension: `.tsv` (KoBEST), `.csv` (KMMLU), `.json` (an array of
/// objects) or `.jsonl` (one object per line).
pub fn read_rows(task: &Task, path: &Path) -> Result<Vec<Row>, EvalError> {
    let bytes = std::fs::read(path).map_err(|source| EvalError::Io {
        task: task.name.clone(),
        path: path.to_path_buf(),
        source,
    })?;
    parse_rows(task, path, &bytes)
}

/// [`read_rows`] on a file's contents.
pub fn parse_rows(task: &Task, path: &Path, bytes: &[u8]) -> Result<Vec<Row>, EvalError> {
    let malformed = |row: usize, reason: String| EvalError::Malformed {
        task: task.name.clone(),
        path: path.to_path_buf(),
        row,
        reason,
    };
    let bad_file = |reason: String| EvalError::BadFile {
        task: task.name.clone(),
        path: path.to_path_buf(),
        reason,
    };
    let text = std::str::from_utf8(bytes).map_err(|e| {
        let (line, column) = line_column(bytes, e.valid_up_to());
        bad_file(format!("line {line}, column {column}: not UTF-8 ({e})"))
    })?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
    match ext {
        "tsv" | "csv" => {
            // A real CSV reader: KoBEST's TSVs quote fields that hold tabs, newlines or quotes
            // (doubled), and end lines with CRLF. Columns are found by header name.
            let mut rdr = csv::ReaderBuilder::new()
                .delimiter(if ext == "tsv" { b'\t' } else { b',' })
                .from_reader(text.as_bytes());
            let header: Vec<String> = rdr
                .headers()
                .map_err(|e| bad_file(format!("header: {e}")))?
                .iter()
                .map(|h| h.trim().to_string())
                .collect();
            let mut rows = Vec::new();
            for (i, rec) in rdr.records().enumerate() {
                let rec = rec.map_err(|e| malformed(i + 1, e.to_string()))?;
                rows.push(Row(header
                    .iter()
                    .cloned()
                    .zip(rec.iter().map(str::to_string))
                    .collect()));
            }
            Ok(rows)
        }
        "json" => {
            // serde_json's message ends with "at line L column C".
            let v: serde_json::Value =
                serde_json::from_str(text).map_err(|e| bad_file(e.to_string()))?;
            let serde_json::Value::Array(items) = v else {
                return Err(bad_file("expected a JSON array of objects".into()));
            };
            items
                .iter()
                .enumerate()
                .map(|(i, item)| json_row(item).map_err(|r| malformed(i + 1, r)))
                .collect()
        }
        "jsonl" => text
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
            .map(|(i, line)| {
                let v: serde_json::Value =
                    serde_json::from_str(line).map_err(|e| malformed(i + 1, e.to_string()))?;
                json_row(&v).map_err(|r| malformed(i + 1, r))
            })
            .collect(),
        other => Err(bad_file(format!("unsupported file type `.{other}`"))),
    }
}

fn json_row(v: &serde_json::Value) -> Result<Row, String> {
    let serde_json::Value::Object(map) = v else {
        return Err("expected a JSON object".into());
    };
    Ok(Row(map
        .iter()
        .map(|(k, v)| {
            let s = match v {
                serde_json::Value::String(s) => s.clone(),
                serde_json::Value::Null => String::new(),
                other => other.to_string(),
            };
            (k.clone(), s)
        })
        .collect()))
}

/// Python's `str.strip()`: Unicode whitespace plus the separators U+001C..U+001F, which Python
/// counts as space and Rust does not.
pub fn py_strip(s: &str) -> &str {
    s.trim_matches(py_space)
}

/// Python's `str.rstrip()`.
pub fn py_rstrip(s: &str) -> &str {
    s.trim_end_matches(py_space)
}

fn py_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// Integer label; KMMLU JSON may carry `1` or `1.0`.
fn int_field(row: &Row, key: &str) -> Result<i64, String> {
    let v = py_strip(row.get(key)?);
    if let Ok(i) = v.parse::<i64>() {
        return Ok(i);
    }
    match v.parse::<f64>() {
        Ok(f) if f.fract() == 0.0 && f.abs() < 1e15 => Ok(f as i64),
        _ => Err(format!("`{key}` is `{v}`, not an integer")),
    }
}

fn index_field(row: &Row, key: &str, offset: i64, n: usize) -> Result<usize, String> {
    let v = int_field(row, key)?;
    // Checked: a label of i64::MIN is user input, and must not overflow.
    let i = v.checked_sub(offset).unwrap_or(-1);
    if i < 0 || i as usize >= n {
        return Err(format!(
            "`{key}` is {v}, expected {offset}..={}",
            n as i64 - 1 + offset
        ));
    }
    Ok(i as usize)
}

/// KoBEST booleans come as True/TRUE/False/FALSE; the HF loader maps False to 0, True to 1.
fn bool_field(row: &Row, key: &str) -> Result<usize, String> {
    let v = py_strip(row.get(key)?);
    match v.to_ascii_lowercase().as_str() {
        "false" => Ok(0),
        "true" => Ok(1),
        _ => Err(format!("`{key}` is `{v}`, expected True or False")),
    }
}

/// The rendered document for one row (lm-eval's YAML templates and `kobest/utils.py`).
fn render(task: &Task, row: &Row, row_no: usize) -> Result<Doc, String> {
    let f = |k: &str| row.get(k).map(str::to_string);
    let (text, choices, gold) = match task.kind {
        TaskKind::Kmmlu { .. } => {
            let (a, b, c, d) = (f("A")?, f("B")?, f("C")?, f("D")?);
            // The colon after 정답 is U+FF1A (full width), as in _default_kmmlu_yaml.
            let text = format!(
                "{}\nA. {a}\nB. {b}\nC. {c}\nD. {d}\n정답：",
                py_strip(row.get("question")?)
            );
            let choices = ["A", "B", "C", "D"].map(String::from).to_vec();
            (text, choices, index_field(row, "answer", 1, 4)?)
        }
        TaskKind::Kobest(Kobest::Boolq) => {
            let text = format!("{} 질문: {} 답변: ", f("Text")?, f("Question")?);
            (
                text,
                vec!["아니오".into(), "예".into()],
                bool_field(row, "Answer")?,
            )
        }
        TaskKind::Kobest(Kobest::Copa) => {
            let question = f("question")?;
            // The connector already starts with a space and the f-string adds another.
            let connector = match py_strip(&question) {
                "원인" => " 왜냐하면",
                "결과" => " 그래서",
                other => return Err(format!("`question` is `{other}`, expected 원인 or 결과")),
            };
            let text = format!("{} {connector}", f("sentence")?);
            let choices = vec![f("1")?, f("2")?];
            let label = index_field(row, "Answer", 1, 2)?;
            // The target is the correct alternative's text; gold is its first position.
            let target = &choices[label];
            let gold = choices.iter().position(|c| c == target).unwrap_or(label);
            (text, choices, gold)
        }
        TaskKind::Kobest(Kobest::Hellaswag) => {
            let text = format!("문장: {}", f("context")?);
            let choices = vec![f("choice1")?, f("choice2")?, f("choice3")?, f("choice4")?];
            (text, choices, index_field(row, "label", 0, 4)?)
        }
        TaskKind::Kobest(Kobest::Sentineg) => {
            let text = format!("문장: {} 긍부정:", f("Text")?);
            (
                text,
                vec!["부정".into(), "긍정".into()],
                index_field(row, "Label", 0, 2)?,
            )
        }
        TaskKind::Kobest(Kobest::Wic) => {
            let text = format!(
                "문장1: {} 문장2: {} 두 문장에서 {}가 같은 뜻으로 쓰였나?",
                f("SENTENCE1")?,
                f("SENTENCE2")?,
                f("Target")?
            );
            (
                text,
                vec!["아니오".into(), "예".into()],
                bool_field(row, "ANSWER")?,
            )
        }
        TaskKind::Haerae { .. } => {
            let choices: Vec<String> = ["(A)", "(B)", "(C)", "(D)", "(E)"]
                .map(String::from)
                .to_vec();
            let answer = f("answer")?;
            let gold = choices
                .iter()
                .position(|c| *c == answer)
                .ok_or_else(|| format!("`answer` is `{answer}`, expected one of (A)..(E)"))?;
            (f("query")?, choices, gold)
        }
    };
    if text.is_empty() {
        return Err("the prompt is empty".into());
    }
    Ok(Doc {
        text,
        choices,
        gold,
        row: row_no,
        fields: row.0.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tasks::select;

    fn task(name: &str) -> Task {
        select(&[name]).expect("known task").tasks.remove(0)
    }

    fn write(dir: &Path, rel: &str, text: &str) {
        let p = dir.join(rel);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(p, text).expect("write");
    }

    #[test]
    fn kmmlu_csv_and_json_give_the_same_documents_by_header_name() {
        let dir = tempfile::tempdir().expect("tempdir");
        // Columns in another order than usual: they are found by name.
        write(
            dir.path(),
            "kmmlu/Math-test.csv",
            "answer,question,A,B,C,D,Human Accuracy,Category\r\n3,\" 1+2는? \",1,2,3,4,0.5,Math\r\n",
        );
        write(
            dir.path(),
            "kmmlu/data/Math-dev.json",
            r#"[{"question": " 1+2는? ", "answer": 3, "A": "1", "B": "2", "C": "3", "D": "4", "Category": "Math", "Human Accuracy": 0.5}]"#,
        );
        let t = task("kmmlu_math");
        let (_, csv) = load_docs(&t, dir.path(), Split::Eval).expect("csv");
        let (_, json) = load_docs(&t, dir.path(), Split::FewShot).expect("json");
        assert_eq!(csv[0].text, "1+2는?\nA. 1\nB. 2\nC. 3\nD. 4\n정답：");
        assert_eq!((csv[0].gold, json[0].gold), (2, 2));
        assert_eq!(csv[0].text, json[0].text);
    }

    #[test]
    fn malformed_rows_name_task_file_and_row() {
        let dir = tempfile::tempdir().expect("tempdir");
        write(
            dir.path(),
            "kobest/BoolQ/test.tsv",
            "ID\tText\tQuestion\tAnswer\r\n1\tp\tq\tTRUE\r\n2\tp\tq\tmaybe\r\n",
        );
        let err = load_docs(&task("kobest_boolq"), dir.path(), Split::Eval).expect_err("bad label");
        let msg = err.to_string();
        assert!(
            msg.contains("kobest_boolq") && msg.contains("test.tsv") && msg.contains("row 2"),
            "{msg}"
        );
        assert!(msg.contains("maybe"), "{msg}");

        let err = load_docs(&task("kobest_copa"), dir.path(), Split::Eval).expect_err("missing");
        assert!(
            matches!(&err, EvalError::MissingData { tried, .. } if tried.len() == 2),
            "{err}"
        );

        write(
            dir.path(),
            "haerae/history.jsonl",
            "{\"query\": \"q\", \"answer\": \"(A)\"}\n{not json\n",
        );
        let msg = load_docs(&task("haerae_history"), dir.path(), Split::Eval)
            .expect_err("bad json")
            .to_string();
        assert!(
            msg.contains("haerae_history")
                && msg.contains("history.jsonl")
                && msg.contains("row 2"),
            "{msg}"
        );
    }

    #[test]
    fn kobest_tsv_quoting_crlf_and_booleans() {
        let dir = tempfile::tempdir().expect("tempdir");
        let tsv = "ID\tText\tQuestion\tAnswer\r\n1\t\"a\tb\r\nc \"\"d\"\"\"\tq\tfalse\r\n2\tp\tq\tTrue\r\n3\tNA\tq\tTRUE\r\n";
        write(dir.path(), "kobest/v1.0/BoolQ/test.tsv", tsv);
        let (_, docs) = load_docs(&task("kobest_boolq"), dir.path(), Split::Eval).expect("parses");
        // Row 3's "NA" is NaN to pandas, so the HF loader's dropna() removes it.
        assert_eq!(docs.len(), 2);
        assert_eq!(docs[0].text, "a\tb\r\nc \"d\" 질문: q 답변: ");
        assert_eq!((docs[0].gold, docs[1].gold), (0, 1));
    }

    #[test]
    fn extreme_labels_are_errors_not_overflows() {
        // Found by tests/fuzz.rs: `answer - 1` overflowed for i64::MIN.
        let dir = tempfile::tempdir().expect("tempdir");
        write(
            dir.path(),
            "kmmlu/Math-test.csv",
            "question,answer,A,B,C,D\nq,-9223372036854775808,1,2,3,4\n",
        );
        let msg = load_docs(&task("kmmlu_math"), dir.path(), Split::Eval)
            .expect_err("bad label")
            .to_string();
        assert!(
            msg.contains("Math-test.csv, row 1: `answer` is -9223372036854775808, expected 1..=4"),
            "{msg}"
        );
    }

    #[test]
    fn file_level_errors_name_the_file_and_line() {
        let dir = tempfile::tempdir().expect("tempdir");
        write(
            dir.path(),
            "haerae/history.json",
            "[\n{\"query\": \"q\",\n oops}]",
        );
        let msg = load_docs(&task("haerae_history"), dir.path(), Split::Eval)
            .expect_err("bad json")
            .to_string();
        assert!(
            msg.contains("task haerae_history: ")
                && msg.contains("history.json: ")
                && msg.contains("line 3 column 2"),
            "{msg}"
        );
        let p = dir.path().join("kobest/BoolQ/test.tsv");
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(&p, b"ID\tText\tQuestion\tAnswer\n1\tp\xff\tq\tTRUE\n").expect("write");
        let msg = load_docs(&task("kobest_boolq"), dir.path(), Split::Eval)
            .expect_err("not utf-8")
            .to_string();
        assert!(
            msg.contains("test.tsv: line 2, column 4: not UTF-8"),
            "{msg}"
        );
    }

    #[test]
    fn python_strip_includes_information_separators() {
        assert_eq!(py_strip("\u{1f}\u{3000} x \u{a0}"), "x");
        assert_eq!(py_rstrip(" x \n"), " x");
    }
}
