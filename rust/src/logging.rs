//! The process's one log writer, in etcd's zap format: one JSON object per
//! line with `level`, `ts`, `caller`, `msg`, then the record's fields.
//! Rust's records come here through [`warn!`](crate::log_warn) and
//! [`info!`](crate::log_info); Python's `logging` hands its records over too
//! (`ketch._core.log`), so both write to the same outputs in one format.
//!
//! Outputs are etcd's --log-outputs: `stderr` (also `default`), `stdout`,
//! or file paths (appended to). Until [`configure`] runs, lines go to stderr.

use std::fmt::Write as _;
use std::fs::OpenOptions;
use std::io::Write;
use std::sync::atomic::{AtomicU8, Ordering};

use parking_lot::Mutex;

/// zap's levels, least severe first.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
pub enum Level {
    Debug = 0,
    Info = 1,
    Warn = 2,
    Error = 3,
    Panic = 4,
    Fatal = 5,
}

impl Level {
    pub fn parse(name: &str) -> Option<Level> {
        Some(match name {
            "debug" => Level::Debug,
            "info" => Level::Info,
            "warn" => Level::Warn,
            "error" => Level::Error,
            "panic" => Level::Panic,
            "fatal" => Level::Fatal,
            _ => return None,
        })
    }

    fn name(self) -> &'static str {
        ["debug", "info", "warn", "error", "panic", "fatal"][self as usize]
    }
}

enum Output {
    Stderr,
    Stdout,
    File(std::fs::File),
}

static OUTPUTS: Mutex<Vec<Output>> = Mutex::new(Vec::new());
static LEVEL: AtomicU8 = AtomicU8::new(Level::Info as u8);

/// Sets the outputs and the least severe level written. A file that cannot
/// be opened fails the whole call, outputs unchanged.
pub fn configure(outputs: &[String], level: Level) -> Result<(), String> {
    let mut opened = Vec::new();
    for o in outputs {
        opened.push(match o.as_str() {
            "stderr" | "default" => Output::Stderr,
            "stdout" => Output::Stdout,
            path => Output::File(
                OpenOptions::new().create(true).append(true).open(path).map_err(|e| format!("open {path}: {e}"))?,
            ),
        });
    }
    *OUTPUTS.lock() = opened;
    LEVEL.store(level as u8, Ordering::Relaxed);
    Ok(())
}

pub fn enabled(level: Level) -> bool {
    level as u8 >= LEVEL.load(Ordering::Relaxed)
}

/// Writes one record. `fields` values are JSON already (see [`json_str`]).
pub fn write(level: Level, caller: &str, msg: &str, fields: &[(&str, String)]) {
    if !enabled(level) {
        return;
    }
    let mut line = format!(
        r#"{{"level":"{}","ts":"{}","caller":{},"msg":{}"#,
        level.name(),
        timestamp(),
        json_str(caller),
        json_str(msg)
    );
    for (k, v) in fields {
        line.push(',');
        line.push_str(&json_str(k));
        line.push(':');
        line.push_str(v);
    }
    line.push_str("}\n");
    let mut outputs = OUTPUTS.lock();
    if outputs.is_empty() {
        let _ = std::io::stderr().write_all(line.as_bytes());
        return;
    }
    for o in outputs.iter_mut() {
        let _ = match o {
            Output::Stderr => std::io::stderr().write_all(line.as_bytes()),
            Output::Stdout => std::io::stdout().write_all(line.as_bytes()),
            Output::File(f) => f.write_all(line.as_bytes()),
        };
    }
}

/// A JSON string literal, escaped as Go's encoding/json escapes it.
pub fn json_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// zap's ISO-8601 time in UTC with milliseconds: 2024-01-02T15:04:05.000Z.
fn timestamp() -> String {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let secs = now.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(i64::try_from(days).unwrap_or(0));
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z", rem / 3600, rem % 3600 / 60, rem % 60, now.subsec_millis())
}

/// Howard Hinnant's days-to-civil: (year, month, day) of a day since 1970-01-01.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = u32::try_from(doy - (153 * mp + 2) / 5 + 1).unwrap_or(1);
    let m = u32::try_from(if mp < 10 { mp + 3 } else { mp - 9 }).unwrap_or(1);
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// The caller of a Rust record: its file (from `rust/src/`) and line, as zap
/// writes `package/file.go:line`.
#[macro_export]
macro_rules! log_at {
    ($level:expr, $($arg:tt)*) => {
        if $crate::logging::enabled($level) {
            let caller = concat!(file!(), ":", line!());
            $crate::logging::write($level, caller.trim_start_matches("rust/").trim_start_matches("src/"), &format!($($arg)*), &[]);
        }
    };
}

/// A warning from the engine, in the one log format.
#[macro_export]
macro_rules! log_warn {
    ($($arg:tt)*) => { $crate::log_at!($crate::logging::Level::Warn, $($arg)*) };
}

#[macro_export]
macro_rules! log_info {
    ($($arg:tt)*) => { $crate::log_at!($crate::logging::Level::Info, $($arg)*) };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_become_dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(20_454), (2026, 1, 1));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
    }

    #[test]
    fn strings_are_escaped_as_json() {
        assert_eq!(json_str("a\"b\\c\nd\u{1}"), r#""a\"b\\c\nd\u0001""#);
    }
}
