//! Malformed files and rows: each gives its own error naming file, position and field;
//! `skip_invalid` skips and reports them.

use std::path::{Path, PathBuf};

use ember_data::{DataArgs, DataError, Location, Tokenizer, load_sft};

fn small_tokenizer() -> Tokenizer {
    Tokenizer::from_file(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../fixtures/data/tokenizer-small.json"
    ))
    .unwrap()
}

/// A temp dataset dir holding one file `name` with `content`, registered as dataset `d` by `entry`.
fn dataset(name: &str, content: &str, entry: &str) -> (tempfile::TempDir, DataArgs) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(name), content).unwrap();
    std::fs::write(
        dir.path().join("dataset_info.json"),
        format!(r#"{{"d": {entry}}}"#),
    )
    .unwrap();
    let args = DataArgs {
        dataset_dir: dir.path().into(),
        dataset: vec!["d".into()],
        ..DataArgs::default()
    };
    (dir, args)
}

const SHAREGPT: &str = r#"{"file_name": "x.jsonl", "formatting": "sharegpt"}"#;

/// The single row error a load must fail with.
fn one_row_error(args: &DataArgs) -> ember_data::RowError {
    match load_sft(args, &small_tokenizer()) {
        Err(DataError::InvalidRows { count, first }) => {
            assert_eq!(count, 1, "{first:?}");
            first.into_iter().next().unwrap()
        }
        other => panic!("expected InvalidRows, got {other:?}"),
    }
}

fn good_sharegpt_line(text: &str) -> String {
    format!(
        r#"{{"conversations": [{{"from": "human", "value": "{text}"}}, {{"from": "gpt", "value": "ok"}}]}}"#
    )
}

#[test]
fn jsonl_syntax_error_names_the_line() {
    let content = [
        good_sharegpt_line("a"),
        String::new(),
        r#"{"conversations": [ oops"#.into(),
        good_sharegpt_line("b"),
    ]
    .join("\n");
    let (dir, args) = dataset("x.jsonl", &content, SHAREGPT);
    let e = one_row_error(&args);
    assert_eq!(e.location, Location::Line(3)); // blank line 2 still counts for numbering
    assert_eq!(e.file, dir.path().join("x.jsonl"));
    assert!(e.reason.contains("not valid JSON"), "{e}");
    assert!(e.to_string().contains("x.jsonl, line 3"), "{e}");
}

#[test]
fn json_array_element_not_an_object_names_the_index() {
    let content = r#"[{"instruction": "a", "output": "b"}, ["not", "an", "object"], {"instruction": "c", "output": "d"}]"#;
    let (_dir, args) = dataset("x.json", content, r#"{"file_name": "x.json"}"#);
    let e = one_row_error(&args);
    assert_eq!(e.location, Location::Index(1));
    assert!(e.reason.contains("expected a JSON object"), "{e}");
}

#[test]
fn alpaca_missing_or_non_string_response_names_the_field() {
    let content = r#"[{"instruction": "a", "output": "b"}, {"instruction": "c"}]"#;
    let (_dir, args) = dataset("x.json", content, r#"{"file_name": "x.json"}"#);
    let e = one_row_error(&args);
    assert_eq!(
        (e.location, e.field.as_str()),
        (Location::Index(1), "output")
    );

    let content = r#"[{"instruction": "a", "output": 7}]"#;
    let (_dir, args) = dataset("x.json", content, r#"{"file_name": "x.json"}"#);
    let e = one_row_error(&args);
    assert_eq!(e.field, "output");
    assert!(e.reason.contains("a number"), "{e}");
}

#[test]
fn alpaca_bad_history_names_the_turn() {
    let content = r#"[{"instruction": "a", "output": "b", "history": [["q", "r"], ["only one"]]}]"#;
    let (_dir, args) = dataset(
        "x.json",
        content,
        r#"{"file_name": "x.json", "columns": {"prompt": "instruction", "response": "output", "history": "history"}}"#,
    );
    assert_eq!(one_row_error(&args).field, "history[1]");
    // Not a list at all: LLaMA-Factory drops it silently; here it is the row's error.
    let content = r#"[{"instruction": "a", "output": "b", "history": "q r"}]"#;
    let (_dir, args) = dataset(
        "x.json",
        content,
        r#"{"file_name": "x.json", "columns": {"prompt": "instruction", "response": "output", "history": "history"}}"#,
    );
    let e = one_row_error(&args);
    assert_eq!(e.field, "history");
    assert!(e.reason.contains("found a string"), "{e}");
}

#[test]
fn an_empty_file_or_array_names_the_file() {
    for content in ["", "[]", "\n\n"] {
        let (_dir, args) = dataset("x.json", content, r#"{"file_name": "x.json"}"#);
        let e = load_sft(&args, &small_tokenizer())
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            e.contains("x.json") && e.contains("no rows"),
            "{content:?}: {e}"
        );
    }
}

#[test]
fn sharegpt_wrong_role_order_names_the_message() {
    let bad =
        r#"{"conversations": [{"from": "human", "value": "a"}, {"from": "human", "value": "b"}]}"#;
    let content = [good_sharegpt_line("x"), bad.into()].join("\n");
    let (_dir, args) = dataset("x.jsonl", &content, SHAREGPT);
    let e = one_row_error(&args);
    assert_eq!(e.location, Location::Line(2));
    assert_eq!(e.field, "conversations[1].from");
    assert!(e.reason.contains("invalid role tag `human`"), "{e}");
}

#[test]
fn sharegpt_odd_message_count_and_missing_content() {
    let odd = r#"{"conversations": [{"from": "human", "value": "a"}]}"#;
    let (_dir, args) = dataset("x.jsonl", odd, SHAREGPT);
    let e = one_row_error(&args);
    assert_eq!(e.field, "conversations");
    assert!(e.reason.contains("even"), "{e}");

    let no_content = r#"{"conversations": [{"from": "human"}, {"from": "gpt", "value": "b"}]}"#;
    let (_dir, args) = dataset("x.jsonl", no_content, SHAREGPT);
    assert_eq!(one_row_error(&args).field, "conversations[0].value");

    // LLaMA-Factory v1 rows carry content as a list of parts.
    let parts = r#"{"conversations": [{"from": "human", "value": [{"type": "text", "value": "hi"}]}, {"from": "gpt", "value": "b"}]}"#;
    let (_dir, args) = dataset("x.jsonl", parts, SHAREGPT);
    let e = one_row_error(&args);
    assert!(
        e.reason.contains("expected a string, found an array"),
        "{e}"
    );
}

#[test]
fn bad_function_call_and_tools_json() {
    let entry = r#"{"file_name": "x.jsonl", "formatting": "sharegpt", "columns": {"messages": "conversations", "tools": "tools"}}"#;
    let call = r#"{"conversations": [{"from": "human", "value": "a"}, {"from": "function_call", "value": "{not json"}, {"from": "observation", "value": "r"}, {"from": "gpt", "value": "b"}]}"#;
    let (_dir, args) = dataset("x.jsonl", call, entry);
    let e = one_row_error(&args);
    assert!(e.field.contains("function call"), "{e}");
    assert!(e.reason.contains("invalid JSON"), "{e}");

    let tools = r#"{"conversations": [{"from": "human", "value": "a"}, {"from": "gpt", "value": "b"}], "tools": "[{broken"}"#;
    let (_dir, args) = dataset("x.jsonl", tools, entry);
    assert_eq!(one_row_error(&args).field, "tools");
}

#[test]
fn csv_empty_response_and_ragged_row_name_the_line() {
    let entry = r#"{"file_name": "x.csv", "columns": {"prompt": "Q", "response": "A"}}"#;
    let (_dir, args) = dataset("x.csv", "Q,A\nhi,hello\nno answer,\n", entry);
    let e = one_row_error(&args);
    assert_eq!((e.location, e.field.as_str()), (Location::CsvLine(3), "A"));

    let (_dir, args) = dataset("x.csv", "Q,A\nhi,hello\nthree,cells,here\n", entry);
    let e = one_row_error(&args);
    assert_eq!(e.location, Location::CsvLine(3));
    assert!(e.reason.contains("3 cells"), "{e}");
}

#[test]
fn file_level_errors() {
    let tok = small_tokenizer();
    let (_dir, args) = dataset(
        "x.json",
        r#"[{"instruction": "a", "output": "b"},"#,
        r#"{"file_name": "x.json"}"#,
    );
    assert!(matches!(
        load_sft(&args, &tok),
        Err(DataError::FileJson { .. })
    ));

    let (_dir, args) = dataset("x.json", "[]", r#"{"file_name": "missing.json"}"#);
    assert!(matches!(load_sft(&args, &tok), Err(DataError::Io { .. })));

    let (_dir, args) = dataset("x.parquet", "", r#"{"file_name": "x.parquet"}"#);
    assert!(matches!(
        load_sft(&args, &tok),
        Err(DataError::UnsupportedFile { .. })
    ));

    let (_dir, mut args) = dataset("x.json", "[]", r#"{"file_name": "x.json"}"#);
    args.dataset = vec!["nope".into()];
    let e = load_sft(&args, &tok).unwrap_err();
    assert!(
        matches!(&e, DataError::UnknownDataset { name, .. } if name == "nope"),
        "{e}"
    );

    let (_dir, args) = dataset(
        "x.json",
        "[]",
        r#"{"file_name": "x.json", "formatting": "weird"}"#,
    );
    assert!(matches!(
        load_sft(&args, &tok),
        Err(DataError::DatasetInfo(_))
    ));

    let (_dir, args) = dataset("x.json", "[]", r#"{"file_name": "x.json"}"#);
    assert!(matches!(load_sft(&args, &tok), Err(DataError::Empty(_))));
}

#[test]
fn skip_invalid_skips_and_reports() {
    let lines = [
        good_sharegpt_line("a"),
        "{broken".into(),
        good_sharegpt_line("b"),
        r#"{"conversations": [{"from": "gpt", "value": "x"}, {"from": "human", "value": "y"}]}"#
            .into(),
        good_sharegpt_line("c"),
    ];
    let (_dir, mut args) = dataset("x.jsonl", &lines.join("\n"), SHAREGPT);
    let tok = small_tokenizer();
    match load_sft(&args, &tok) {
        Err(DataError::InvalidRows { count, first }) => {
            assert_eq!(count, 2);
            assert_eq!(
                first.iter().map(|e| e.location.clone()).collect::<Vec<_>>(),
                [Location::Line(2), Location::Line(4)]
            );
        }
        other => panic!("expected InvalidRows, got {other:?}"),
    }
    args.skip_invalid = true;
    let data = load_sft(&args, &tok).unwrap();
    assert_eq!(data.train.len(), 3);
    assert_eq!(data.stats.skipped, 2);
    assert_eq!(data.stats.skipped_examples.len(), 2);
    let table = data.stats.to_string();
    assert!(
        table.contains("skipped 2 invalid row(s)") && table.contains("line 4"),
        "{table}"
    );
}

#[test]
fn missing_template_token_is_a_clear_error() {
    let path = PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../fixtures/data/tokenizer-small.json"
    ));
    let mut json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    json["added_tokens"]
        .as_array_mut()
        .unwrap()
        .retain(|t| t["content"] != "<think>");
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("tok.json");
    std::fs::write(&p, json.to_string()).unwrap();
    let tok = Tokenizer::from_file(&p).unwrap();
    let args = DataArgs {
        dataset_dir: Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../../fixtures/data")).into(),
        dataset: vec!["alpaca_mix".into()],
        ..DataArgs::default()
    };
    let e = load_sft(&args, &tok).unwrap_err();
    assert!(
        matches!(&e, DataError::MissingSpecialToken { token, .. } if token == "<think>"),
        "{e}"
    );
    assert!(e.to_string().contains("qwen3 template"), "{e}");
    // qwen3_nothink does not need the think tokens.
    let args = DataArgs {
        template: "qwen3_nothink".into(),
        ..args
    };
    assert!(load_sft(&args, &tok).is_ok());
}

#[test]
fn config_errors() {
    let toml_text = "[data]\ndataset = \"a\"\ncutof_len = 5\n";
    #[derive(serde::Deserialize, Debug)]
    #[allow(dead_code)]
    struct Cfg {
        data: DataArgs,
    }
    let e = toml::from_str::<Cfg>(toml_text).unwrap_err();
    assert!(e.to_string().contains("cutof_len"), "{e}");

    let tok = small_tokenizer();
    let fx = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../fixtures/data"));
    let base = DataArgs {
        dataset_dir: fx,
        dataset: vec!["alpaca_mix".into()],
        ..DataArgs::default()
    };
    let both = DataArgs {
        mask_history: true,
        train_on_prompt: true,
        ..base.clone()
    };
    assert!(matches!(load_sft(&both, &tok), Err(DataError::Config(_))));
    let too_many = DataArgs {
        train_samples: Some(1000),
        ..base.clone()
    };
    assert!(matches!(
        load_sft(&too_many, &tok),
        Err(DataError::Config(_))
    ));
    let all_eval = DataArgs {
        val_size: 8.0,
        ..base.clone()
    };
    assert!(matches!(
        load_sft(&all_eval, &tok),
        Err(DataError::Config(_))
    ));
    let template = DataArgs {
        template: "llama3".into(),
        ..base
    };
    assert!(matches!(
        load_sft(&template, &tok),
        Err(DataError::UnknownTemplate(_))
    ));
}

#[test]
fn non_utf8_jsonl_line_is_a_row_error_at_its_line_and_skippable() {
    let mut content = Vec::new();
    content.extend_from_slice(good_sharegpt_line("a").as_bytes());
    content.extend_from_slice(b"\r\n\n");
    content.extend_from_slice(b"{\"conversations\": \"\xff\xfe\"}\n");
    content.extend_from_slice(good_sharegpt_line("b").as_bytes());
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("x.jsonl"), &content).unwrap();
    std::fs::write(
        dir.path().join("dataset_info.json"),
        format!(r#"{{"d": {SHAREGPT}}}"#),
    )
    .unwrap();
    let mut args = DataArgs {
        dataset_dir: dir.path().into(),
        dataset: vec!["d".into()],
        ..DataArgs::default()
    };
    let e = one_row_error(&args);
    assert_eq!(e.location, Location::Line(3));
    let msg = e.to_string();
    assert!(
        msg.contains("x.jsonl, line 3: not UTF-8 at column 20"),
        "{msg}"
    );

    args.skip_invalid = true;
    let data = load_sft(&args, &small_tokenizer()).unwrap();
    assert_eq!((data.train.len(), data.stats.skipped), (2, 1));
    assert!(data.stats.to_string().contains("line 3"));
}

#[test]
fn non_utf8_json_array_names_line_and_column() {
    let (dir, args) = dataset("x.json", "", r#"{"file_name": "x.json"}"#);
    std::fs::write(
        dir.path().join("x.json"),
        b"[\n{\"instruction\": \"a\", \"output\": \"b\"},\n{\"instruction\": \"\xc3\x28\"}]",
    )
    .unwrap();
    let e = load_sft(&args, &small_tokenizer()).unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e, DataError::FileJson { .. }), "{msg}");
    assert!(
        msg.contains("x.json: not valid JSON: line 3, column 18: not UTF-8"),
        "{msg}"
    );
}

#[test]
fn csv_without_its_response_column_is_one_file_error() {
    let rows: String = (0..24).map(|i| format!("q{i},x\n")).collect();
    let (_dir, args) = dataset(
        "x.csv",
        &format!("instruction,input\n{rows}"),
        r#"{"file_name": "x.csv"}"#,
    );
    let e = load_sft(&args, &small_tokenizer()).unwrap_err();
    let msg = e.to_string();
    assert!(
        matches!(&e, DataError::MissingColumn { column, .. } if column == "output"),
        "{msg}"
    );
    assert!(
        msg.contains("x.csv: no column `output` (the response column)")
            && msg.contains("columns are: instruction, input"),
        "{msg}"
    );
    assert_eq!(msg.lines().count(), 1, "{msg}");
}

#[test]
fn csv_line_numbers_are_the_files_own() {
    let entry = r#"{"file_name": "x.csv", "columns": {"prompt": "Q", "response": "A"}}"#;
    // CRLF endings, a blank line, and a quoted cell spanning two lines before the bad row.
    let content = "Q,A\r\nhi,hello\r\n\r\n\"two\r\nlines\",ok\r\nno answer,\r\n";
    let (_dir, args) = dataset("x.csv", content, entry);
    let e = one_row_error(&args);
    assert_eq!(
        (e.location.clone(), e.field.as_str()),
        (Location::CsvLine(6), "A")
    );
    assert!(e.to_string().contains("x.csv, line 6, field `A`"), "{e}");

    // The first data row is line 2 (the header is line 1), with LF endings too.
    let (_dir, args) = dataset("x.csv", "Q,A\nno answer,\nhi,hello\n", entry);
    assert_eq!(one_row_error(&args).location, Location::CsvLine(2));

    // A non-UTF-8 cell is a bad row at its line.
    let (dir, args) = dataset("x.csv", "", entry);
    std::fs::write(dir.path().join("x.csv"), b"Q,A\r\nhi,hello\r\nbad,\xff\r\n").unwrap();
    let e = one_row_error(&args);
    assert_eq!(e.location, Location::CsvLine(3));
    assert!(e.reason.contains("not UTF-8"), "{e}");
}

#[test]
fn export_into_a_missing_directory_says_so() {
    let fx = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../fixtures/data"));
    let args = DataArgs {
        dataset_dir: fx.clone(),
        dataset: vec!["alpaca_mix".into()],
        ..DataArgs::default()
    };
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("nope/x.jsonl");
    let e = ember_data::inspect(&args, &fx.join("tokenizer-small.json"), Some(&out)).unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e, DataError::Write { .. }), "{msg}");
    assert_eq!(
        msg,
        format!(
            "cannot write {}: the directory {} does not exist",
            out.display(),
            tmp.path().join("nope").display()
        )
    );

    // The parent is a file.
    let file = tmp.path().join("f");
    std::fs::write(&file, "").unwrap();
    let e = ember_data::export_jsonl(&[], &file.join("x.jsonl")).unwrap_err();
    assert!(
        e.to_string()
            .ends_with(&format!("{} is not a directory", file.display())),
        "{e}"
    );

    // And the export works into an existing one.
    let ok = tmp.path().join("x.jsonl");
    let text = ember_data::inspect(&args, &fx.join("tokenizer-small.json"), Some(&ok)).unwrap();
    assert!(text.contains("wrote"), "{text}");
}
