//! Reading data files (JSON array, JSON Lines, CSV) into rows that remember where they came from.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::error::{DataError, FieldError, Location, Result, RowError};
use crate::json::Json;

/// One record of a data file. A row that cannot be parsed is kept (as `Err`) so that it still takes
/// its place in `max_samples` and the split, and is reported instead of silently dropped.
#[derive(Debug, Clone)]
pub struct Row {
    pub file: Arc<PathBuf>,
    pub location: Location,
    pub value: std::result::Result<Json, FieldError>,
}

impl Row {
    /// Attach this row's file and location to a field error.
    pub fn error(&self, e: FieldError) -> RowError {
        RowError {
            file: (*self.file).clone(),
            location: self.location.clone(),
            field: e.field,
            reason: e.reason,
        }
    }
}

/// Read every row of `path`: a file, or a folder whose files (sorted by name) share one type.
/// `required`: (column, what it is for) that a CSV header must have.
pub fn read_rows(path: &Path, required: &[(&str, &str)]) -> Result<Vec<Row>> {
    let meta = std::fs::metadata(path).map_err(|source| DataError::Io {
        path: path.into(),
        source,
    })?;
    if !meta.is_dir() {
        return read_file(path, required);
    }
    let mut files = Vec::new();
    let dir = std::fs::read_dir(path).map_err(|source| DataError::Io {
        path: path.into(),
        source,
    })?;
    for entry in dir {
        let entry = entry.map_err(|source| DataError::Io {
            path: path.into(),
            source,
        })?;
        if entry.file_type().map(|t| t.is_file()).unwrap_or(false) {
            files.push(entry.path());
        }
    }
    // LLaMA-Factory takes os.listdir order, which is arbitrary; sorting makes ours reproducible.
    files.sort();
    let kinds: Vec<_> = files.iter().map(|f| FileKind::of(f)).collect();
    if kinds.windows(2).any(|w| w[0] != w[1]) {
        return Err(DataError::Config(format!(
            "{}: file types should be identical",
            path.display()
        )));
    }
    let mut rows = Vec::new();
    for f in &files {
        rows.extend(read_file(f, required)?);
    }
    Ok(rows)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FileKind {
    Json,
    Jsonl,
    Csv,
    Other,
}

impl FileKind {
    fn of(path: &Path) -> Self {
        match path
            .extension()
            .and_then(|e| e.to_str())
            .map(|e| e.to_ascii_lowercase())
            .as_deref()
        {
            Some("json") => FileKind::Json,
            Some("jsonl") => FileKind::Jsonl,
            Some("csv") => FileKind::Csv,
            _ => FileKind::Other,
        }
    }
}

fn read_file(path: &Path, required: &[(&str, &str)]) -> Result<Vec<Row>> {
    let kind = FileKind::of(path);
    if kind == FileKind::Other {
        return Err(DataError::UnsupportedFile { path: path.into() });
    }
    let bytes = std::fs::read(path).map_err(|source| DataError::Io {
        path: path.into(),
        source,
    })?;
    let file = Arc::new(path.to_path_buf());
    if kind == FileKind::Csv {
        return read_csv(&bytes, file, required);
    }
    parse_json_rows(&bytes, kind == FileKind::Json, file)
}

/// Rows of a `.json` (`json_ext`) or `.jsonl` file's bytes. Public for the fuzz tests.
pub fn parse_json_rows(bytes: &[u8], json_ext: bool, file: Arc<PathBuf>) -> Result<Vec<Row>> {
    let bytes = bytes.strip_prefix(b"\xef\xbb\xbf").unwrap_or(bytes);
    // HF's json loader accepts JSON Lines in a `.json` file, so decide by content, not extension.
    let is_array = json_ext && bytes.trim_ascii_start().starts_with(b"[");
    if !is_array {
        return Ok(read_jsonl(bytes, file));
    }
    let text = std::str::from_utf8(bytes).map_err(|e| {
        let (line, column) = line_column(bytes, e.valid_up_to());
        DataError::FileJson {
            path: (*file).clone(),
            message: format!("line {line}, column {column}: not UTF-8 ({e})"),
        }
    })?;
    read_json_array(text, file)
}

/// 1-based line and column (in bytes) of byte offset `at` of a file's contents: how every reader of
/// user files reports a position.
pub fn line_column(bytes: &[u8], at: usize) -> (usize, usize) {
    let before = &bytes[..at.min(bytes.len())];
    let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
    let column = before.len()
        - before
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |i| i + 1)
        + 1;
    (line, column)
}

fn read_json_array(text: &str, file: Arc<PathBuf>) -> Result<Vec<Row>> {
    let items: Vec<Json> = serde_json::from_str(text).map_err(|e| DataError::FileJson {
        path: (*file).clone(),
        message: e.to_string(),
    })?;
    Ok(items
        .into_iter()
        .enumerate()
        .map(|(i, v)| Row {
            file: file.clone(),
            location: Location::Index(i),
            value: as_object(v),
        })
        .collect())
}

/// One row per non-blank line. Lines are decoded one by one, so a line that is not UTF-8 is a bad
/// row at its line number (skippable with `skip_invalid`), not a failure of the whole file.
fn read_jsonl(bytes: &[u8], file: Arc<PathBuf>) -> Vec<Row> {
    bytes
        .split(|&b| b == b'\n')
        .enumerate()
        .filter_map(|(i, line)| {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            let value = match std::str::from_utf8(line) {
                Ok(text) if text.trim().is_empty() => return None,
                Ok(text) => Json::parse(text)
                    .map_err(|e| FieldError::new("", format!("not valid JSON: {e}")))
                    .and_then(as_object),
                Err(e) => Err(FieldError::new(
                    "",
                    format!("not UTF-8 at column {} ({e})", e.valid_up_to() + 1),
                )),
            };
            Some(Row {
                file: file.clone(),
                location: Location::Line(i + 1),
                value,
            })
        })
        .collect()
}

fn as_object(v: Json) -> std::result::Result<Json, FieldError> {
    match v {
        Json::Object(_) => Ok(v),
        other => Err(FieldError::new(
            "",
            format!("expected a JSON object, found {}", other.kind()),
        )),
    }
}

/// CSV with a header row. Cells are strings; an empty cell is null (pandas reads it as NaN), so an
/// empty response is reported rather than trained on. `required` columns (with what they are for)
/// must be in the header: without one, every row would fail the same way. Public for the fuzz tests.
pub fn read_csv(bytes: &[u8], file: Arc<PathBuf>, required: &[(&str, &str)]) -> Result<Vec<Row>> {
    let bytes = bytes.strip_prefix(b"\xef\xbb\xbf").unwrap_or(bytes);
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(true)
        .from_reader(bytes);
    let csv_err = |e: csv::Error| DataError::FileCsv {
        path: (*file).clone(),
        message: e.to_string(),
    };
    let headers: Vec<String> = reader
        .headers()
        .map_err(csv_err)?
        .iter()
        .map(str::to_owned)
        .collect();
    if let Some((column, role)) = required
        .iter()
        .find(|(c, _)| !headers.iter().any(|h| h == c))
    {
        return Err(DataError::MissingColumn {
            path: (*file).clone(),
            column: (*column).to_owned(),
            role: (*role).to_owned(),
            columns: headers,
        });
    }
    let lines = LineIndex::new(bytes);
    let mut rows = Vec::new();
    for record in reader.records() {
        let (line, value) = match record {
            Ok(rec) => {
                let line = rec.position().map_or(0, |p| lines.line_of(p.byte()));
                let value = if rec.len() != headers.len() {
                    Err(FieldError::new(
                        "",
                        format!(
                            "{} cells, but the header has {} columns",
                            rec.len(),
                            headers.len()
                        ),
                    ))
                } else {
                    let items = headers
                        .iter()
                        .zip(rec.iter())
                        .map(|(h, c)| {
                            let v = if c.is_empty() {
                                Json::Null
                            } else {
                                Json::String(c.to_owned())
                            };
                            (h.clone(), v)
                        })
                        .collect();
                    Ok(Json::Object(items))
                };
                (line, value)
            }
            Err(e) => {
                let line = e.position().map_or(0, |p| lines.line_of(p.byte()));
                if matches!(e.kind(), csv::ErrorKind::Utf8 { .. }) {
                    (line, Err(FieldError::new("", format!("not UTF-8: {e}"))))
                } else {
                    return Err(csv_err(e));
                }
            }
        };
        rows.push(Row {
            file: file.clone(),
            location: Location::CsvLine(line),
            value,
        });
    }
    Ok(rows)
}

/// Byte offset -> 1-based line of the file. The csv crate's own line count is taken before the
/// previous record's `\n` of a CRLF ending (and before skipped blank lines), so it can be low.
struct LineIndex<'a> {
    bytes: &'a [u8],
    newlines: Vec<usize>,
}

impl<'a> LineIndex<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        let newlines = (0..bytes.len()).filter(|&i| bytes[i] == b'\n').collect();
        Self { bytes, newlines }
    }

    /// Line of the record that starts at `byte`: the line terminators and blank lines before the
    /// record's first cell belong to earlier lines.
    fn line_of(&self, byte: u64) -> usize {
        let mut at = usize::try_from(byte)
            .unwrap_or(usize::MAX)
            .min(self.bytes.len());
        while at < self.bytes.len() && matches!(self.bytes[at], b'\r' | b'\n') {
            at += 1;
        }
        self.newlines.partition_point(|&n| n < at) + 1
    }
}
