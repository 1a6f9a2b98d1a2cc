//! TensorBoard event files, as HF's `TensorBoardCallback` writes them through torch's
//! `SummaryWriter` (`report_to = "tensorboard"`): every log entry's values as scalars at the global
//! step, named by HF's `rewrite_logs` (`eval_loss` → `eval/loss`, anything else `x` → `train/x`).
//!
//! The file is TFRecord framing (length, masked CRC-32C, payload, masked CRC-32C) around `Event`
//! protocol buffers; the three messages used (Event, Summary, Summary.Value) are encoded here by
//! hand rather than through a protobuf toolchain.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::{LogEntry, TrainError};

/// HF's default `logging_dir` (`transformers.integrations.default_logdir`, as torch's):
/// `runs/<Mon DD_HH-MM-SS>_<host>` under `output_dir` (the time in UTC: ember reads no time zone).
pub fn default_logging_dir(output_dir: &Path) -> PathBuf {
    let now = local_time_label();
    output_dir
        .join("runs")
        .join(format!("{now}_{}", hostname()))
}

fn hostname() -> String {
    gethostname::gethostname().to_string_lossy().into_owned()
}

/// `%b%d_%H-%M-%S` of the current time, UTC.
fn local_time_label() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    // Days to a civil date (Howard Hinnant's algorithm), UTC.
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    format!(
        "{}{day:02}_{:02}-{:02}-{:02}",
        MONTHS[(month - 1) as usize],
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

/// HF's `rewrite_logs` over a log entry: `(tag, value)` for every logged number but the step.
pub fn hf_scalars(entry: &LogEntry) -> Vec<(String, f64)> {
    let Ok(serde_json::Value::Object(map)) = serde_json::to_value(entry) else {
        return Vec::new();
    };
    map.into_iter()
        .filter(|(k, _)| k != "step")
        .filter_map(|(k, v)| {
            let tag = match k.strip_prefix("eval_") {
                Some(rest) => format!("eval/{rest}"),
                None => format!("train/{k}"),
            };
            v.as_f64().map(|v| (tag, v))
        })
        .collect()
}

/// One `events.out.tfevents.*` file, appended to as entries are logged.
pub struct EventWriter {
    path: PathBuf,
    file: File,
}

impl EventWriter {
    /// A new event file in `dir` (created), named as torch names them; starts with the
    /// `brain.Event:2` version record.
    pub fn create(dir: &Path) -> Result<Self, TrainError> {
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| TrainError::Io { path, source }
        };
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let secs = now_secs();
        let path = dir.join(format!(
            "events.out.tfevents.{}.{}.{}.0",
            secs as u64,
            hostname(),
            std::process::id()
        ));
        let file = File::options()
            .create_new(true)
            .write(true)
            .open(&path)
            .map_err(io(&path))?;
        let mut w = EventWriter { path, file };
        let mut event = Vec::new();
        put_f64(&mut event, 1, secs);
        put_bytes(&mut event, 3, b"brain.Event:2");
        w.record(&event)?;
        Ok(w)
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Every scalar of `entry` at its step (HF's names), flushed.
    pub fn log(&mut self, entry: &LogEntry) -> Result<(), TrainError> {
        let mut summary = Vec::new();
        for (tag, value) in hf_scalars(entry) {
            let mut v = Vec::new();
            put_bytes(&mut v, 1, tag.as_bytes());
            // simple_value: torch's add_scalar stores a float32.
            put_key(&mut v, 2, 5);
            v.extend_from_slice(&(value as f32).to_le_bytes());
            put_bytes(&mut summary, 1, &v);
        }
        let mut event = Vec::new();
        put_f64(&mut event, 1, now_secs());
        put_key(&mut event, 2, 0);
        put_varint(&mut event, entry.step);
        put_bytes(&mut event, 5, &summary);
        self.record(&event)?;
        self.file.flush().map_err(|source| TrainError::Io {
            path: self.path.clone(),
            source,
        })
    }

    /// One TFRecord: length, its masked CRC, the payload, its masked CRC.
    fn record(&mut self, payload: &[u8]) -> Result<(), TrainError> {
        let len = (payload.len() as u64).to_le_bytes();
        let mut rec = Vec::with_capacity(payload.len() + 16);
        rec.extend_from_slice(&len);
        rec.extend_from_slice(&masked_crc(&len).to_le_bytes());
        rec.extend_from_slice(payload);
        rec.extend_from_slice(&masked_crc(payload).to_le_bytes());
        self.file.write_all(&rec).map_err(|source| TrainError::Io {
            path: self.path.clone(),
            source,
        })
    }
}

fn now_secs() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// TFRecord's checksum: CRC-32C, rotated right by 15 bits, plus a constant.
pub fn masked_crc(bytes: &[u8]) -> u32 {
    let crc = crc32c::crc32c(bytes);
    crc.rotate_right(15).wrapping_add(0xa282_ead8)
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// A protobuf field key: number and wire type (0 varint, 1 fixed64, 2 length-delimited, 5 fixed32).
fn put_key(out: &mut Vec<u8>, field: u64, wire: u64) {
    put_varint(out, (field << 3) | wire);
}

fn put_bytes(out: &mut Vec<u8>, field: u64, bytes: &[u8]) {
    put_key(out, field, 2);
    put_varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

fn put_f64(out: &mut Vec<u8>, field: u64, v: f64) {
    put_key(out, field, 1);
    out.extend_from_slice(&v.to_le_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_hf_rewrite_logs() {
        let e = LogEntry {
            loss: Some(1.5),
            eval_loss: Some(2.0),
            epoch: 0.5,
            step: 3,
            ..Default::default()
        };
        let mut tags: Vec<String> = hf_scalars(&e).into_iter().map(|(t, _)| t).collect();
        tags.sort();
        assert_eq!(tags, ["eval/loss", "train/epoch", "train/loss"]);
    }
}
