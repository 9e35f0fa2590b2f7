//! The process's one log writer, in etcd's zap format: one JSON object per
//! line with `level`, `ts`, `caller`, `msg`, then the record's fields.
//! Rust's records come here through [`log_warn!`](crate::log_warn),
//! [`log_info!`](crate::log_info) and [`log_at!`](crate::log_at), with
//! structured fields after a `;` as etcd writes them with zap
//! (`log_info!("finished scheduled compaction"; "compact-revision" => rev)`);
//! Python's `logging` hands its records over too (`ketch._core.log`), so both
//! write to the same outputs in one format.
//!
//! Outputs are etcd's --log-outputs: `stderr` (also `default`), `stdout`,
//! or file paths (appended to). Until [`configure`] runs, lines go to stderr.
//! With --enable-log-rotation the one file output is a [`RotatingFile`]:
//! etcd 3.5's lumberjack (gopkg.in/natefinch/lumberjack.v2 v2.0.0).

use std::fmt::Write as _;
use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

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

/// etcd's --log-rotation-config-json, as lumberjack v2.0.0 reads it.
/// (`compress` is accepted by etcd 3.5's flag but that lumberjack has no
/// such field, so etcd 3.5 never compresses; neither does ketch.)
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rotation {
    /// Megabytes (2^20 bytes) before the file is rotated; 0 means 100.
    pub max_size_mb: u64,
    /// Days a backup is kept, by the time in its name; 0: no limit.
    pub max_age_days: u64,
    /// Backups kept, newest first; 0: no limit.
    pub max_backups: u64,
    /// Backup names in local time rather than UTC.
    pub local_time: bool,
}

impl Default for Rotation {
    fn default() -> Rotation {
        Rotation { max_size_mb: 100, max_age_days: 0, max_backups: 0, local_time: false }
    }
}

enum Output {
    Stderr,
    Stdout,
    File(std::fs::File),
    Rotating(RotatingFile),
}

static OUTPUTS: Mutex<Vec<Output>> = Mutex::new(Vec::new());
static LEVEL: AtomicU8 = AtomicU8::new(Level::Info as u8);

/// Sets the outputs and the least severe level written; with `rotation`,
/// the one file among `outputs` rotates (the caller has checked, as etcd
/// does, that there is exactly one). A file that cannot be opened fails the
/// whole call, outputs unchanged.
pub fn configure(outputs: &[String], level: Level, rotation: Option<Rotation>) -> Result<(), String> {
    let mut opened = Vec::new();
    for o in outputs {
        opened.push(match (o.as_str(), rotation) {
            ("stderr" | "default", _) => Output::Stderr,
            ("stdout", _) => Output::Stdout,
            (path, Some(rotation)) => Output::Rotating(RotatingFile::new(PathBuf::from(path), rotation)),
            (path, None) => Output::File(
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

/// Writes one record. `fields` values are JSON already (see [`Value`]).
pub fn write(level: Level, caller: &str, msg: &str, fields: &[(&str, String)]) {
    if !enabled(level) {
        return;
    }
    let mut line = format!(
        r#"{{"level":"{}","ts":"{}","caller":{},"msg":{}"#,
        level.name(),
        timestamp(SystemTime::now()),
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
            Output::Rotating(f) => f.write_all(line.as_bytes()),
        };
    }
}

/// A field's value as zap encodes it: strings quoted, numbers bare,
/// durations as Go's Duration.String() (etcd's StringDurationEncoder).
pub trait Value {
    fn json(&self) -> String;
}

impl Value for str {
    fn json(&self) -> String {
        json_str(self)
    }
}

impl Value for String {
    fn json(&self) -> String {
        json_str(self)
    }
}

impl<T: Value + ?Sized> Value for &T {
    fn json(&self) -> String {
        (**self).json()
    }
}

macro_rules! number_values {
    ($($t:ty),*) => { $(impl Value for $t { fn json(&self) -> String { self.to_string() } })* };
}
number_values!(u8, u16, u32, u64, usize, i32, i64, bool);

impl Value for Duration {
    fn json(&self) -> String {
        json_str(&go_duration(*self))
    }
}

/// A member ID as etcd logs it (types.ID's String: hex).
pub struct Id(pub u64);

impl Value for Id {
    fn json(&self) -> String {
        format!("\"{:x}\"", self.0)
    }
}

/// go-humanize's Bytes, which etcd logs sizes with: SI units, "1.2 MB", "803 kB", "9 B".
pub fn humanize_bytes(n: u64) -> String {
    const SIZES: [&str; 7] = ["B", "kB", "MB", "GB", "TB", "PB", "EB"];
    if n < 10 {
        return format!("{n} B");
    }
    let v = n as f64;
    let e = (v.ln() / 1000f64.ln()).floor();
    let val = (v / 1000f64.powf(e) * 10.0 + 0.5).floor() / 10.0;
    let suffix = SIZES[(e as usize).min(SIZES.len() - 1)];
    if val < 10.0 {
        format!("{val:.1} {suffix}")
    } else {
        format!("{val:.0} {suffix}")
    }
}

/// Go's time.Duration.String(): "1.5s", "2m3.000000001s", "1.234ms", "0s".
pub fn go_duration(d: Duration) -> String {
    let nanos = d.as_nanos();
    if nanos == 0 {
        return "0s".to_owned();
    }
    // Below a second: the largest unit that leaves a whole part.
    let small = |n: u128, unit: u128, suffix: &str| {
        let whole = n / unit;
        let frac = n % unit;
        let digits = unit.ilog10() as usize;
        let mut s = whole.to_string();
        if frac != 0 {
            let f = format!("{frac:0digits$}");
            s.push('.');
            s.push_str(f.trim_end_matches('0'));
        }
        s.push_str(suffix);
        s
    };
    if nanos < 1_000 {
        return format!("{nanos}ns");
    }
    if nanos < 1_000_000 {
        return small(nanos, 1_000, "\u{b5}s");
    }
    if nanos < 1_000_000_000 {
        return small(nanos, 1_000_000, "ms");
    }
    let total_secs = nanos / 1_000_000_000;
    let (h, m) = (total_secs / 3600, total_secs / 60 % 60);
    let secs = small(nanos % 60_000_000_000, 1_000_000_000, "s");
    match (h, m) {
        (0, 0) => secs,
        (0, m) => format!("{m}m{secs}"),
        (h, m) => format!("{h}h{m}m{secs}"),
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

/// Broken-down time: (year, month, day, hour, minute, second, UTC offset
/// in seconds), in local time (as Go's time.Now() is) or UTC.
fn civil_time(t: SystemTime, local: bool) -> (i64, u32, u32, u64, u64, u64, i64) {
    let since = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = i64::try_from(since.as_secs()).unwrap_or(0);
    let offset = if local { utc_offset(secs) } else { 0 };
    let shifted = secs + offset;
    let (days, rem) = (shifted.div_euclid(86_400), shifted.rem_euclid(86_400).unsigned_abs());
    let (y, m, d) = civil_from_days(days);
    (y, m, d, rem / 3600, rem % 3600 / 60, rem % 60, offset)
}

/// The local zone's offset from UTC at `secs` (TZ and /etc/localtime, as libc reads them).
fn utc_offset(secs: i64) -> i64 {
    let t: libc::time_t = secs;
    // SAFETY: localtime_r only writes the tm we own; a null return leaves it zeroed.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    let ok = unsafe { !libc::localtime_r(&raw const t, &raw mut tm).is_null() };
    if ok {
        tm.tm_gmtoff
    } else {
        0
    }
}

/// etcd 3.5's zap time: Go's "2006-01-02T15:04:05.999999Z0700" in local
/// time: microseconds with trailing zeros dropped, "Z" for UTC, else +hhmm.
fn timestamp(t: SystemTime) -> String {
    let (y, m, d, hh, mm, ss, offset) = civil_time(t, true);
    let micros = t.duration_since(UNIX_EPOCH).unwrap_or_default().subsec_micros();
    let mut out = format!("{y:04}-{m:02}-{d:02}T{hh:02}:{mm:02}:{ss:02}");
    if micros != 0 {
        let frac = format!("{micros:06}");
        out.push('.');
        out.push_str(frac.trim_end_matches('0'));
    }
    if offset == 0 {
        out.push('Z');
    } else {
        let sign = if offset < 0 { '-' } else { '+' };
        let o = offset.unsigned_abs();
        let _ = write!(out, "{sign}{:02}{:02}", o / 3600, o % 3600 / 60);
    }
    out
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

/// lumberjack's rotating file (v2.0.0, which etcd 3.5 links): opened on
/// the first write; a write that would take it past the maximum size first
/// renames it to `<name>-<time>.<ext>` (time as "2006-01-02T15-04-05.000",
/// UTC unless `local_time`) and starts a new file with the old one's mode;
/// then backups beyond `max_backups` (newest kept, by the time in their
/// names) and those older than `max_age_days` are deleted in the background.
pub struct RotatingFile {
    path: PathBuf,
    rotation: Rotation,
    file: Option<std::fs::File>,
    size: u64,
}

/// lumberjack's megabyte.
const MEGABYTE: u64 = 1024 * 1024;

impl RotatingFile {
    pub fn new(path: PathBuf, rotation: Rotation) -> RotatingFile {
        RotatingFile { path, rotation, file: None, size: 0 }
    }

    fn max(&self) -> u64 {
        match self.rotation.max_size_mb {
            0 => 100 * MEGABYTE,
            mb => mb.saturating_mul(MEGABYTE),
        }
    }

    /// One record (a whole line), in lumberjack's Write's steps and words.
    pub fn write_all(&mut self, p: &[u8]) -> std::io::Result<()> {
        let len = p.len() as u64;
        if len > self.max() {
            return Err(std::io::Error::other(format!("write length {len} exceeds maximum file size {}", self.max())));
        }
        if self.file.is_none() {
            self.open_existing_or_new(len)?;
        }
        if self.size + len > self.max() {
            self.rotate()?;
        }
        let file = self.file.as_mut().expect("opened above");
        file.write_all(p)?;
        self.size += len;
        Ok(())
    }

    fn open_existing_or_new(&mut self, len: u64) -> std::io::Result<()> {
        let meta = match std::fs::metadata(&self.path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return self.open_new(),
            Err(e) => return Err(std::io::Error::other(format!("error getting log file info: {e}"))),
            Ok(meta) => meta,
        };
        if meta.len() + len >= self.max() {
            return self.rotate();
        }
        match OpenOptions::new().append(true).open(&self.path) {
            Ok(f) => {
                self.file = Some(f);
                self.size = meta.len();
                Ok(())
            }
            // As lumberjack: a file that cannot be opened is set aside for a new one.
            Err(_) => self.open_new(),
        }
    }

    fn open_new(&mut self) -> std::io::Result<()> {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| std::io::Error::other(format!("can't make directories for new logfile: {e}")))?;
        }
        let mut mode = 0o600;
        if let Ok(meta) = std::fs::metadata(&self.path) {
            mode = meta.permissions().mode() & 0o7777;
            let backup = backup_name(&self.path, SystemTime::now(), self.rotation.local_time);
            std::fs::rename(&self.path, &backup)
                .map_err(|e| std::io::Error::other(format!("can't rename log file: {e}")))?;
        }
        let file = OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .mode(mode)
            .open(&self.path)
            .map_err(|e| std::io::Error::other(format!("can't open new logfile: {e}")))?;
        self.file = Some(file);
        self.size = 0;
        Ok(())
    }

    fn rotate(&mut self) -> std::io::Result<()> {
        self.file = None;
        self.open_new()?;
        let (path, rotation) = (self.path.clone(), self.rotation);
        if rotation.max_backups > 0 || rotation.max_age_days > 0 {
            // lumberjack deletes in a goroutine: the write does not wait for it.
            let _ = std::thread::Builder::new()
                .name("ketch-log-cleanup".into())
                .spawn(move || remove_old_backups(&path, rotation, SystemTime::now()));
        }
        Ok(())
    }
}

/// `dir/<prefix>-2006-01-02T15-04-05.000<ext>` for `dir/<prefix><ext>`.
fn backup_name(path: &Path, now: SystemTime, local: bool) -> PathBuf {
    let (prefix, ext) = split_name(path);
    let (y, m, d, hh, mm, ss, _) = civil_time(now, local);
    let millis = now.duration_since(UNIX_EPOCH).unwrap_or_default().subsec_millis();
    path.with_file_name(format!("{prefix}-{y:04}-{m:02}-{d:02}T{hh:02}-{mm:02}-{ss:02}.{millis:03}{ext}"))
}

/// (name without its extension, extension with its dot), as Go's filepath.Ext splits.
fn split_name(path: &Path) -> (String, String) {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    match name.rfind('.') {
        Some(i) => (name[..i].to_owned(), name[i..].to_owned()),
        None => (name, String::new()),
    }
}

/// The time in a backup's name, read as UTC whatever `local_time` was
/// (lumberjack v2.0.0 parses it so too); None for another file.
fn backup_time(file_name: &str, prefix: &str, ext: &str) -> Option<SystemTime> {
    let ts = file_name.strip_prefix(prefix)?.strip_prefix('-')?.strip_suffix(ext)?;
    let b = ts.as_bytes();
    if b.len() != 23 || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' || b[13] != b'-' || b[16] != b'-' || b[19] != b'.'
    {
        return None;
    }
    let num = |r: std::ops::Range<usize>| ts.get(r)?.parse::<u64>().ok();
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, s, ms) = (num(11..13)?, num(14..16)?, num(17..19)?, num(20..23)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || s > 59 {
        return None;
    }
    let days = days_from_civil(i64::try_from(y).ok()?, u32::try_from(mo).ok()?, u32::try_from(d).ok()?);
    let secs = u64::try_from(days).ok()? * 86_400 + h * 3600 + mi * 60 + s;
    Some(UNIX_EPOCH + Duration::from_secs(secs) + Duration::from_millis(ms))
}

/// lumberjack's cleanup: keep the `max_backups` newest backups, then drop
/// any older than `max_age_days`.
fn remove_old_backups(path: &Path, rotation: Rotation, now: SystemTime) {
    let (prefix, ext) = split_name(path);
    let dir = match path.parent().filter(|d| !d.as_os_str().is_empty()) {
        Some(d) => d.to_path_buf(),
        None => PathBuf::from("."),
    };
    let Ok(entries) = std::fs::read_dir(&dir) else { return };
    let mut backups: Vec<(SystemTime, PathBuf)> = entries
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .filter_map(|e| Some((backup_time(&e.file_name().to_string_lossy(), &prefix, &ext)?, e.path())))
        .collect();
    backups.sort_by_key(|b| std::cmp::Reverse(b.0));
    let mut delete = Vec::new();
    if rotation.max_backups > 0 && (rotation.max_backups as usize) < backups.len() {
        delete = backups.split_off(rotation.max_backups as usize);
    }
    if rotation.max_age_days > 0 {
        let cutoff = now.checked_sub(Duration::from_secs(rotation.max_age_days.saturating_mul(86_400)));
        delete.extend(backups.into_iter().filter(|(t, _)| cutoff.is_some_and(|c| *t < c)));
    }
    for (_, p) in delete {
        let _ = std::fs::remove_file(p);
    }
}

/// Howard Hinnant's days-from-civil: days since 1970-01-01 of a date.
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = i64::from((m + 9) % 12);
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The caller of a Rust record: its file (from `rust/src/`) and line, as zap
/// writes `package/file.go:line`. Fields follow a `;` as `"name" => value`
/// (any [`Value`](crate::logging::Value)).
#[macro_export]
macro_rules! log_at {
    ($level:expr, $fmt:literal $(, $arg:expr)* ; $($key:literal => $value:expr),+ $(,)?) => {
        if $crate::logging::enabled($level) {
            let caller = concat!(file!(), ":", line!());
            let fields: &[(&str, String)] = &[$(($key, $crate::logging::Value::json(&$value))),+];
            $crate::logging::write(
                $level,
                caller.trim_start_matches("rust/").trim_start_matches("src/"),
                &format!($fmt $(, $arg)*),
                fields,
            );
        }
    };
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

#[macro_export]
macro_rules! log_error {
    ($($arg:tt)*) => { $crate::log_at!($crate::logging::Level::Error, $($arg)*) };
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
    fn dates_round_trip_through_days() {
        for z in [0, 11_016, 20_454, -1, 40_000] {
            let (y, m, d) = civil_from_days(z);
            assert_eq!(days_from_civil(y, m, d), z);
        }
    }

    #[test]
    fn durations_print_as_go_prints_them() {
        assert_eq!(go_duration(Duration::ZERO), "0s");
        assert_eq!(go_duration(Duration::from_nanos(999)), "999ns");
        assert_eq!(go_duration(Duration::from_micros(1500)), "1.5ms");
        assert_eq!(go_duration(Duration::from_nanos(1_234)), "1.234\u{b5}s");
        assert_eq!(go_duration(Duration::from_millis(1500)), "1.5s");
        assert_eq!(go_duration(Duration::from_secs(3723)), "1h2m3s");
        assert_eq!(go_duration(Duration::from_mins(1)), "1m0s");
    }

    #[test]
    fn timestamps_have_microseconds_without_trailing_zeros() {
        let t = UNIX_EPOCH + Duration::from_secs(20_454 * 86_400 + 3_723) + Duration::from_millis(120);
        let (_, _, _, _, _, _, offset) = civil_time(t, true);
        if offset == 0 {
            assert_eq!(timestamp(t), "2026-01-01T01:02:03.12Z");
            assert_eq!(timestamp(UNIX_EPOCH), "1970-01-01T00:00:00Z");
        }
    }

    #[test]
    fn sizes_read_as_go_humanize_writes_them() {
        assert_eq!(humanize_bytes(9), "9 B");
        assert_eq!(humanize_bytes(20_480), "20 kB");
        assert_eq!(humanize_bytes(1_234_567), "1.2 MB");
    }

    #[test]
    fn fields_follow_the_message() {
        let d = Duration::from_millis(3);
        let fields = [("revision", Value::json(&5_i64)), ("took", Value::json(&d)), ("id", Value::json(&Id(0xab)))];
        assert_eq!(fields[0].1, "5");
        assert_eq!(fields[1].1, "\"3ms\"");
        assert_eq!(fields[2].1, "\"ab\"");
    }

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("ketch-log-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn a_full_file_is_renamed_with_its_time_and_a_new_one_started() {
        let dir = temp_dir("rotate");
        let path = dir.join("etcd.log");
        std::fs::write(&path, vec![b'x'; (MEGABYTE - 10) as usize]).unwrap();
        let mut f = RotatingFile::new(path.clone(), Rotation { max_size_mb: 1, ..Rotation::default() });
        f.write_all(b"0123456789\n").unwrap(); // 1 MiB - 10 + 11 >= 1 MiB: rotates first
        let mut names: Vec<String> =
            std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        names.sort();
        assert_eq!(names.len(), 2, "{names:?}");
        assert!(backup_time(&names[0], "etcd", ".log").is_some(), "{names:?}");
        assert_eq!(std::fs::metadata(dir.join(&names[0])).unwrap().len(), MEGABYTE - 10);
        assert_eq!(std::fs::read(&path).unwrap(), b"0123456789\n");
        let err = f.write_all(&vec![b'y'; (MEGABYTE + 1) as usize]).unwrap_err();
        assert_eq!(err.to_string(), format!("write length {} exceeds maximum file size {MEGABYTE}", MEGABYTE + 1));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn old_backups_beyond_the_count_or_age_are_removed() {
        let dir = temp_dir("cleanup");
        let path = dir.join("k.log");
        for name in ["k-2026-01-01T00-00-00.000.log", "k-2026-01-03T00-00-00.000.log", "k-2026-01-02T00-00-00.000.log"]
        {
            std::fs::write(dir.join(name), b"").unwrap();
        }
        std::fs::write(dir.join("other-2026-01-01T00-00-00.000.log"), b"").unwrap();
        let now = UNIX_EPOCH + Duration::from_hours((20_454 + 3) * 24); // 2026-01-04
        remove_old_backups(&path, Rotation { max_backups: 2, ..Rotation::default() }, now);
        assert!(!dir.join("k-2026-01-01T00-00-00.000.log").exists());
        assert!(dir.join("k-2026-01-02T00-00-00.000.log").exists());
        assert!(dir.join("other-2026-01-01T00-00-00.000.log").exists());
        remove_old_backups(&path, Rotation { max_age_days: 1, ..Rotation::default() }, now);
        assert!(!dir.join("k-2026-01-02T00-00-00.000.log").exists());
        assert!(dir.join("k-2026-01-03T00-00-00.000.log").exists());
        assert_eq!(backup_time("k-2026-13-01T00-00-00.000.log", "k", ".log"), None);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn strings_are_escaped_as_json() {
        assert_eq!(json_str("a\"b\\c\nd\u{1}"), r#""a\"b\\c\nd\u0001""#);
    }
}
