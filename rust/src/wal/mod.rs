//! Write-ahead log of Raft entries, hard state and snapshot marks.
//!
//! This comment is the disk contract: what is on disk, in what order it got
//! there, and what `open` concludes from it after a crash. Change the code
//! and this together.
//!
//! # Files
//!
//! A WAL is a directory of segment files named `{seq:016x}-{first:016x}.wal`:
//! `seq` counts segments from 0 with no holes, `first` is the index the next
//! entry was expected to have when the segment was started (`max(last entry
//! index, snapshot index) + 1`; 1 for a new log). The newest segment is the
//! only one ever written; older ones are read-only until
//! [`Wal::release_before`] deletes them, oldest first.
//!
//! ```text
//! member/wal/
//!   0000000000000000-0000000000000001.wal   entries 1..=812      (released first)
//!   0000000000000001-000000000000032d.wal   entries 813..=1650
//!   0000000000000002-0000000000000673.wal   entries 1651..       <- appended to
//! ```
//!
//! # Records
//!
//! A segment is a sequence of records, each starting at a multiple of 8
//! bytes. All integers are little-endian.
//!
//! ```text
//!  0         4         8     9          12                 12+len      next
//!  +---------+---------+-----+----------+------------------+------------+
//!  | len u32 | crc u32 | typ | 00 00 00 | payload: len B   | 0..7 zeros |
//!  +---------+---------+-----+----------+------------------+------------+
//!
//!  crc = CRC32 (crc32fast, IEEE) over
//!        seq u64 | offset u64 | len u32 | typ u8 00 00 00 | payload
//!  where seq is the segment's sequence number and offset the record's byte
//!  offset in it.
//!
//!  typ 1 Metadata      opaque bytes given to `create` (same in every segment)
//!      2 Entry         eraftpb::Entry, protobuf
//!      3 HardState     eraftpb::HardState, protobuf
//!      4 SnapshotMark  eraftpb::SnapshotMetadata {index, term, conf_state}, protobuf
//!      0 and others    invalid: a zero-filled region never reads as a record
//! ```
//!
//! The checksum is per record, not chained as in etcd: a record checks on
//! its own, so replay can look past a bad record and ask whether anything
//! valid follows it (below). Seeding it with `seq` and `offset` gives what the
//! chain gave etcd: a record is only valid in the exact place it was written,
//! so a stale copy from another segment, from an earlier life of the file, or
//! a frame embedded in an entry's payload fails where it is found.
//!
//! Every segment begins with three records, so it can be read alone:
//! Metadata, the SnapshotMark current when the segment was started, the
//! HardState current then. Then entries, hard states and marks in the order
//! they were saved. Replay applies them in order: the last HardState and the
//! last SnapshotMark win; an Entry with index `i` replaces any entries with
//! index `>= i` (Raft overwriting a conflicting suffix); the result is the
//! entries with index `> snapshot.index`.
//!
//! # Writes and fsyncs
//!
//! `append_entries`, `save_hard_state`, `save_snapshot` only encode into a
//! memory buffer. `sync` writes the buffer with one `write` and then makes
//! one fdatasync of the segment (group commit): when it returns Ok, every
//! record saved before it is durable. If the segment is then at least
//! `segment_bytes` long, `sync` cuts:
//!
//! ```text
//!  1. write the new segment's three header records to `<name>.wal.tmp`
//!  2. fsync <name>.wal.tmp
//!  3. rename <name>.wal.tmp -> <name>.wal
//!  4. fsync the WAL directory          (the rename is durable)
//!  5. append to <name>.wal from now on
//! ```
//!
//! So a segment is either absent or complete with its header, and every
//! segment but the newest was fully synced before the next one appeared.
//! `create` builds the first segment the same way one level up: directory
//! `<dir>.tmp`, segment written and fsynced, directory fsynced, renamed to
//! `<dir>`, parent directory fsynced. `release_before` deletes segments
//! oldest first and fsyncs the directory after each one, so whatever a crash
//! keeps is still a hole-free run of sequence numbers. `open` fsyncs a
//! repaired segment after truncating it. Every fsync, file or directory, goes
//! through one function that times it and counts it in [`WalStats`].
//!
//! If a write or fsync fails, the `Wal` refuses all further writes
//! ([`WalError::Failed`]): after a failed fsync the kernel may have dropped
//! the dirty pages and a retry would report success for data that is gone.
//! The caller reopens the log, which replays what really is on disk.
//!
//! # Torn tail or corruption
//!
//! A crash can only damage bytes that were written but not yet synced, and
//! those are only ever at the end of the newest segment: a record cut short,
//! a length that points past the end of the file, or zeros where the file
//! was extended but the data never landed. `open` reads every segment in
//! order and, at the first record that does not decode:
//!
//! - in the newest segment, if no valid record starts at any later 8-byte
//!   boundary of the file: a torn tail. The segment is truncated to the end
//!   of the last good record and fsynced; appends continue from there.
//! - otherwise (a valid record follows, or the segment is not the newest):
//!   corruption of data that was synced. `open` fails with
//!   [`WalError::Corrupt`] naming the file and offset and writes nothing.
//!
//! Limits of this rule, chosen on purpose: damage to the very last record
//! of the log cannot be told from a torn write and is truncated like one.
//! And if the filesystem lands the pages of one unsynced write out of order
//! (a later page on disk, an earlier one not), the later records are valid
//! behind a bad one and `open` reports corruption rather than guessing; the
//! member is then restored from its peers, which is safe, where truncating
//! could silently drop a record this member had acknowledged.

mod fs;
mod record;
#[cfg(test)]
mod tests;

pub use fs::{CrashTail, FsOp, MemFs, OsFs, SegmentFile, WalFs};

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use protobuf::Message;
use raft::eraftpb::{ConfState, Entry, HardState, SnapshotMetadata};

use record::RecordType;

/// Tuning for a [`Wal`].
#[derive(Debug, Clone)]
pub struct WalOptions {
    /// `sync` cuts a new segment once the current one has reached this many
    /// bytes. A segment can run past it by one sync's worth of records.
    pub segment_bytes: u64,
}

impl Default for WalOptions {
    fn default() -> Self {
        // etcd's SegmentSizeBytes.
        WalOptions { segment_bytes: 64 * 1024 * 1024 }
    }
}

/// Everything that can go wrong in the WAL.
#[derive(Debug, thiserror::Error)]
pub enum WalError {
    /// A filesystem call failed.
    #[error("wal: {op} {}: {source}", path.display())]
    Io { path: PathBuf, op: &'static str, source: io::Error },
    /// Synced data does not decode: a bad record with valid ones after it,
    /// or a bad record in a segment that is not the newest.
    #[error(
        "wal: corrupt record in {} at offset {offset}: {reason}; the member cannot start (restore this member from a peer or a snapshot)",
        path.display()
    )]
    Corrupt { path: PathBuf, offset: u64, reason: String },
    /// `create` on a directory that already holds segments.
    #[error("wal: {} already holds a write-ahead log", dir.display())]
    AlreadyExists { dir: PathBuf },
    /// `open` on a directory with no segments.
    #[error("wal: no write-ahead log segments in {}", dir.display())]
    NotFound { dir: PathBuf },
    /// The segment sequence numbers have a hole.
    #[error(
        "wal: segment with sequence number {expected_seq:016x} is missing from {} (next present is {}); the member cannot start (restore this member from a peer or a snapshot)",
        dir.display(), found.display()
    )]
    MissingSegment { dir: PathBuf, expected_seq: u64, found: PathBuf },
    /// A segment's Metadata record differs from the first segment's.
    #[error(
        "wal: {} carries different metadata from the older segments: segments of two logs are mixed; the member cannot start",
        path.display()
    )]
    MetadataMismatch { path: PathBuf },
    /// The entries after the last snapshot mark do not start right after it.
    #[error(
        "wal: in {}, entries after the snapshot mark at index {snapshot_index} start at index {first_index}: the ones between were released or lost; the member cannot start (restore this member from a peer or a snapshot)",
        dir.display()
    )]
    MissingEntries { dir: PathBuf, snapshot_index: u64, first_index: u64 },
    /// An appended entry would leave a hole in the log.
    #[error("wal: cannot append entry {got}: the log ends at index {last}, so the next entry can be at most {}", last + 1)]
    OutOfOrder { last: u64, got: u64 },
    /// A record payload does not fit the 32-bit length field.
    #[error("wal: a {what} of {len} bytes is over the 4 GiB record limit")]
    TooLarge { what: &'static str, len: usize },
    /// protobuf refused to encode a message.
    #[error("wal: encoding a {what}: {reason}")]
    Encode { what: &'static str, reason: String },
    /// An earlier write or fsync failed; this `Wal` takes no more writes.
    #[error("wal: an earlier write failed ({0}); what reached the disk is unknown, so this log takes no more writes (reopen it)")]
    Failed(String),
}

/// A snapshot as far as the log cares: the entries up to `index` live in the
/// snapshot, so the log no longer needs them.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SnapshotMark {
    pub index: u64,
    pub term: u64,
    pub conf_state: ConfState,
}

/// What `open` read back.
#[derive(Debug, Clone, PartialEq)]
pub struct Recovered {
    /// The opaque bytes given to `create`.
    pub metadata: Vec<u8>,
    /// The last hard state saved (the default if none).
    pub hard_state: HardState,
    /// The last snapshot mark saved (index 0, term 0 and the `create`
    /// conf state if none).
    pub snapshot: SnapshotMark,
    /// Every entry with index `> snapshot.index`, in index order.
    pub entries: Vec<Entry>,
}

/// Counters since this `Wal` was created or opened.
#[derive(Debug, Clone, Copy, Default)]
pub struct WalStats {
    /// fsync/fdatasync calls on files and directories, failed ones included.
    pub fsyncs: u64,
    /// Time spent in them.
    pub fsync_nanos: u64,
    /// Bytes written to segment files (records, headers of cut segments).
    pub bytes_written: u64,
    /// Segment files currently in the directory.
    pub segments: u64,
}

#[derive(Debug)]
struct Segment {
    seq: u64,
    path: PathBuf,
    /// Largest entry index written to this segment, None if it holds none.
    max_index: Option<u64>,
}

/// An open write-ahead log. See the module doc for the disk contract.
#[derive(Debug)]
pub struct Wal {
    fs: Arc<dyn WalFs>,
    dir: PathBuf,
    opts: WalOptions,
    metadata: Vec<u8>,
    /// Latest saved (maybe still buffered) state, written into the header of
    /// every new segment.
    hard_state: HardState,
    snapshot: SnapshotMark,
    /// Index of the last entry saved, 0 if none.
    last_index: u64,
    /// Oldest first; the last one is being written.
    segments: Vec<Segment>,
    file: Box<dyn SegmentFile>,
    /// Bytes in `file` (always a multiple of 8: whole records).
    file_len: u64,
    /// Encoded records not yet written; their offsets start at `file_len`.
    buf: Vec<u8>,
    stats: WalStats,
    /// Set by the first failed write or fsync; see `WalError::Failed`.
    failed: Option<String>,
    /// etcd's --unsafe-no-fsync: `sync` writes records but never fsyncs them.
    unsafe_no_fsync: bool,
    /// Most segments kept once released (etcd's --max-wals); 0 keeps them
    /// all, 1 (a bare log's default) deletes each as soon as it is released.
    max_segments: usize,
}

const SEGMENT_EXT: &str = ".wal";
/// etcd's --max-wals default.
pub const DEFAULT_MAX_SEGMENTS: usize = 5;
const TMP_EXT: &str = ".tmp";

fn segment_name(seq: u64, first_index: u64) -> String {
    format!("{seq:016x}-{first_index:016x}{SEGMENT_EXT}")
}

/// `(seq, first_index)` if `name` is a segment name.
fn parse_segment_name(name: &str) -> Option<(u64, u64)> {
    let stem = name.strip_suffix(SEGMENT_EXT)?;
    let (seq, first) = stem.split_once('-')?;
    let hex16 = |s: &str| s.len() == 16 && s.bytes().all(|b| b.is_ascii_hexdigit());
    if !hex16(seq) || !hex16(first) {
        return None;
    }
    Some((u64::from_str_radix(seq, 16).ok()?, u64::from_str_radix(first, 16).ok()?))
}

fn io_err<'a>(path: &'a Path, op: &'static str) -> impl FnOnce(io::Error) -> WalError + 'a {
    move |source| WalError::Io { path: path.to_path_buf(), op, source }
}

fn parent_of(dir: &Path) -> PathBuf {
    match dir.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// The one place the WAL counts what it wrote (its stats and etcd's
/// wal_write_bytes_total).
fn count_written(stats: &mut WalStats, n: usize) {
    stats.bytes_written += n as u64;
    crate::metrics::WAL_WRITE_BYTES.add(n as u64);
}

/// The one place the WAL fsyncs: times the call and counts it, so the
/// metric covers file and directory syncs alike.
fn timed_fsync(stats: &mut WalStats, sync: impl FnOnce() -> io::Result<()>) -> io::Result<()> {
    let start = Instant::now();
    let r = sync();
    stats.fsyncs += 1;
    stats.fsync_nanos += u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX);
    crate::metrics::WAL_FSYNC.since(start);
    r
}

fn to_proto(mark: &SnapshotMark) -> SnapshotMetadata {
    SnapshotMetadata {
        index: mark.index,
        term: mark.term,
        conf_state: protobuf::SingularPtrField::some(mark.conf_state.clone()),
        ..SnapshotMetadata::default()
    }
}

/// Encodes one protobuf message as a record at the end of `buf`.
fn encode_message(
    buf: &mut Vec<u8>,
    seq: u64,
    offset: u64,
    ty: RecordType,
    what: &'static str,
    msg: &dyn Message,
) -> Result<(), WalError> {
    record::encode(buf, seq, offset, ty, |b| msg.write_to_vec(b))
        .map_err(|e| WalError::Encode { what, reason: e.to_string() })?
        .map_err(|len| WalError::TooLarge { what, len })
}

/// The three records every segment starts with.
fn segment_header(seq: u64, metadata: &[u8], snap: &SnapshotMark, hs: &HardState) -> Result<Vec<u8>, WalError> {
    let mut buf = Vec::new();
    record::encode::<std::convert::Infallible>(&mut buf, seq, 0, RecordType::Metadata, |b| {
        b.extend_from_slice(metadata);
        Ok(())
    })
    .expect("infallible")
    .map_err(|len| WalError::TooLarge { what: "metadata", len })?;
    let off = buf.len() as u64;
    encode_message(&mut buf, seq, off, RecordType::SnapshotMark, "snapshot mark", &to_proto(snap))?;
    let off = buf.len() as u64;
    encode_message(&mut buf, seq, off, RecordType::HardState, "hard state", hs)?;
    Ok(buf)
}

/// Whether an entry with index `i` may come next in a log whose last entry
/// is `last` and whose snapshot mark is at `snap`: anything that does not
/// leave a hole (lower indexes overwrite; after a snapshot the log may jump
/// to `snap + 1`).
fn may_follow(last: u64, snap: u64, i: u64) -> bool {
    i >= 1 && i <= last.max(snap) + 1
}

/// State rebuilt by replay.
struct Replay {
    metadata: Option<Vec<u8>>,
    hard_state: HardState,
    snapshot: SnapshotMark,
    /// In index order, contiguous; may still hold entries <= snapshot.index.
    entries: Vec<Entry>,
}

/// Why a record that passed its checksum cannot be applied.
enum ApplyError {
    /// Its content is impossible (does not decode, leaves a hole).
    Corrupt(String),
    MetadataMismatch,
}

impl Replay {
    /// Applies one record of segment `seg`, in log order.
    fn apply(&mut self, ty: RecordType, payload: &[u8], seg: &mut Segment) -> Result<(), ApplyError> {
        let bad = |what: &str, e: protobuf::ProtobufError| ApplyError::Corrupt(format!("{what} does not decode: {e}"));
        match ty {
            RecordType::Metadata => match &self.metadata {
                None => self.metadata = Some(payload.to_vec()),
                Some(m) if m == payload => {}
                Some(_) => return Err(ApplyError::MetadataMismatch),
            },
            RecordType::HardState => {
                self.hard_state = HardState::parse_from_bytes(payload).map_err(|e| bad("hard state", e))?;
            }
            RecordType::SnapshotMark => {
                let mut m = SnapshotMetadata::parse_from_bytes(payload).map_err(|e| bad("snapshot mark", e))?;
                self.snapshot = SnapshotMark { index: m.index, term: m.term, conf_state: m.take_conf_state() };
            }
            RecordType::Entry => {
                let e = Entry::parse_from_bytes(payload).map_err(|e| bad("entry", e))?;
                let i = e.index;
                let last = self.entries.last().map_or(0, |l| l.index);
                if !self.entries.is_empty() && !may_follow(last, self.snapshot.index, i) {
                    return Err(ApplyError::Corrupt(format!(
                        "entry {i} follows entry {last} with no snapshot mark covering the gap"
                    )));
                }
                let first = self.entries.first().map_or(0, |f| f.index);
                if i < first || i > last + 1 {
                    // Before everything held, or past a gap a snapshot covers.
                    self.entries.clear();
                } else {
                    // Raft overwrote the suffix from i on.
                    self.entries.truncate((i - first) as usize);
                }
                self.entries.push(e);
                seg.max_index = Some(seg.max_index.map_or(i, |m| m.max(i)));
            }
        }
        Ok(())
    }
}

impl Wal {
    /// True if `dir` holds at least one segment.
    pub fn exists(dir: &Path) -> bool {
        Self::exists_with(&OsFs, dir)
    }

    /// [`exists`](Self::exists) through a given filesystem.
    pub fn exists_with(fs: &dyn WalFs, dir: &Path) -> bool {
        fs.list_dir(dir).is_ok_and(|names| names.iter().any(|n| parse_segment_name(n).is_some()))
    }

    /// Creates a new log in `dir` (which must not hold one), durably: when
    /// this returns, `open` finds the metadata, `conf_state` and an empty log.
    pub fn create(dir: &Path, metadata: &[u8], conf_state: &ConfState, opts: WalOptions) -> Result<Wal, WalError> {
        Self::create_with(Arc::new(OsFs), dir, metadata, conf_state, opts)
    }

    /// [`create`](Self::create) through a given filesystem.
    pub fn create_with(
        fs: Arc<dyn WalFs>,
        dir: &Path,
        metadata: &[u8],
        conf_state: &ConfState,
        opts: WalOptions,
    ) -> Result<Wal, WalError> {
        if Self::exists_with(&*fs, dir) {
            return Err(WalError::AlreadyExists { dir: dir.to_path_buf() });
        }
        // Build the log in a side directory and rename it into place, so a
        // crash leaves either no log or a complete one, never a log without
        // its metadata.
        let mut tmp = dir.as_os_str().to_owned();
        tmp.push(TMP_EXT);
        let tmp = PathBuf::from(tmp);
        let parent = parent_of(dir);
        fs.remove_dir_all(&tmp).map_err(io_err(&tmp, "removing leftover temp directory"))?;
        fs.create_dir_all(&tmp).map_err(io_err(&tmp, "creating directory"))?;

        let mut stats = WalStats::default();
        let snapshot = SnapshotMark { index: 0, term: 0, conf_state: conf_state.clone() };
        let hard_state = HardState::default();
        let name = segment_name(0, 1);
        let header = segment_header(0, metadata, &snapshot, &hard_state)?;
        let tmp_file = tmp.join(&name);
        let mut f = fs.create_file(&tmp_file).map_err(io_err(&tmp_file, "creating segment"))?;
        f.append(&header).map_err(io_err(&tmp_file, "writing segment header"))?;
        count_written(&mut stats, header.len());
        timed_fsync(&mut stats, || f.sync()).map_err(io_err(&tmp_file, "fsync"))?;
        drop(f);
        timed_fsync(&mut stats, || fs.sync_dir(&tmp)).map_err(io_err(&tmp, "fsync directory"))?;
        fs.rename(&tmp, dir).map_err(io_err(dir, "renaming temp directory into place"))?;
        timed_fsync(&mut stats, || fs.sync_dir(&parent)).map_err(io_err(&parent, "fsync directory"))?;

        let path = dir.join(&name);
        let file = fs.open_file(&path).map_err(io_err(&path, "opening segment"))?;
        stats.segments = 1;
        Ok(Wal {
            fs,
            dir: dir.to_path_buf(),
            opts,
            metadata: metadata.to_vec(),
            hard_state,
            snapshot,
            last_index: 0,
            segments: vec![Segment { seq: 0, path, max_index: None }],
            file,
            file_len: header.len() as u64,
            buf: Vec::new(),
            stats,
            failed: None,
            unsafe_no_fsync: false,
            max_segments: 1,
        })
    }

    /// Opens the log in `dir`: replays every segment, truncates a torn tail
    /// (the only write it may make), and returns the log ready to append
    /// after the last good record, with what it read.
    pub fn open(dir: &Path, opts: WalOptions) -> Result<(Wal, Recovered), WalError> {
        Self::open_with(Arc::new(OsFs), dir, opts)
    }

    /// [`open`](Self::open) through a given filesystem.
    pub fn open_with(fs: Arc<dyn WalFs>, dir: &Path, opts: WalOptions) -> Result<(Wal, Recovered), WalError> {
        let names = fs.list_dir(dir).map_err(io_err(dir, "listing directory"))?;
        let mut found: Vec<(u64, String)> =
            names.iter().filter_map(|n| parse_segment_name(n).map(|(seq, _)| (seq, n.clone()))).collect();
        if found.is_empty() {
            return Err(WalError::NotFound { dir: dir.to_path_buf() });
        }
        found.sort();
        for pair in found.windows(2) {
            if pair[1].0 != pair[0].0 + 1 {
                return Err(WalError::MissingSegment {
                    dir: dir.to_path_buf(),
                    expected_seq: pair[0].0 + 1,
                    found: dir.join(&pair[1].1),
                });
            }
        }

        let mut stats = WalStats::default();
        let mut replay = Replay {
            metadata: None,
            hard_state: HardState::default(),
            snapshot: SnapshotMark::default(),
            entries: Vec::new(),
        };
        let mut segments = Vec::with_capacity(found.len());
        // The newest segment's handle, its good length and its length on disk.
        let mut tail: Option<(Box<dyn SegmentFile>, usize, usize)> = None;
        let newest = found.len() - 1;
        for (i, (seq, name)) in found.iter().enumerate() {
            let mut seg = Segment { seq: *seq, path: dir.join(name), max_index: None };
            let mut file = fs.open_file(&seg.path).map_err(io_err(&seg.path, "opening segment"))?;
            let data = file.read_all().map_err(io_err(&seg.path, "reading segment"))?;
            let mut off = 0;
            while off < data.len() {
                match record::decode(&data, seg.seq, off) {
                    Ok(frame) => {
                        if off == 0 && frame.ty != RecordType::Metadata {
                            return Err(WalError::Corrupt {
                                path: seg.path.clone(),
                                offset: 0,
                                reason: "segment does not begin with a metadata record".to_owned(),
                            });
                        }
                        replay.apply(frame.ty, frame.payload, &mut seg).map_err(|e| match e {
                            ApplyError::Corrupt(reason) => {
                                WalError::Corrupt { path: seg.path.clone(), offset: off as u64, reason }
                            }
                            ApplyError::MetadataMismatch => WalError::MetadataMismatch { path: seg.path.clone() },
                        })?;
                        off = frame.next;
                    }
                    Err(reason) => {
                        if i == newest && !record::valid_record_after(&data, seg.seq, off) {
                            break; // torn tail: `off` is where the good records end
                        }
                        return Err(WalError::Corrupt { path: seg.path.clone(), offset: off as u64, reason });
                    }
                }
            }
            if off == 0 {
                return Err(WalError::Corrupt {
                    path: seg.path.clone(),
                    offset: 0,
                    reason: "segment holds no complete record".to_owned(),
                });
            }
            if i == newest {
                tail = Some((file, off, data.len()));
            }
            segments.push(seg);
        }

        let Replay { metadata, hard_state, snapshot, mut entries } = replay;
        let metadata = metadata.expect("every segment begins with metadata, checked above");
        let last_index = entries.last().map_or(0, |e| e.index);
        entries.retain(|e| e.index > snapshot.index);
        if let Some(first) = entries.first() {
            if first.index != snapshot.index + 1 {
                return Err(WalError::MissingEntries {
                    dir: dir.to_path_buf(),
                    snapshot_index: snapshot.index,
                    first_index: first.index,
                });
            }
        }

        // Everything checked: only now touch the disk.
        let (mut file, good_len, disk_len) = tail.expect("at least one segment");
        let tail_path = segments.last().expect("at least one segment").path.clone();
        if good_len < disk_len {
            file.truncate(good_len as u64).map_err(io_err(&tail_path, "truncating torn tail"))?;
            timed_fsync(&mut stats, || file.sync()).map_err(io_err(&tail_path, "fsync"))?;
        }
        // A crash during a cut can leave `<segment>.wal.tmp`; it was never
        // renamed, so it holds nothing that was acknowledged.
        let stale: Vec<&String> = names.iter().filter(|n| n.ends_with(".wal.tmp")).collect();
        for n in &stale {
            let p = dir.join(n);
            fs.remove_file(&p).map_err(io_err(&p, "removing unfinished segment"))?;
        }
        if !stale.is_empty() {
            timed_fsync(&mut stats, || fs.sync_dir(dir)).map_err(io_err(dir, "fsync directory"))?;
        }

        stats.segments = segments.len() as u64;
        let recovered = Recovered {
            metadata: metadata.clone(),
            hard_state: hard_state.clone(),
            snapshot: snapshot.clone(),
            entries,
        };
        let wal = Wal {
            fs,
            dir: dir.to_path_buf(),
            opts,
            metadata,
            hard_state,
            snapshot,
            last_index,
            segments,
            file,
            file_len: good_len as u64,
            buf: Vec::new(),
            stats,
            failed: None,
            unsafe_no_fsync: false,
            max_segments: 1,
        };
        Ok((wal, recovered))
    }

    fn check_failed(&self) -> Result<(), WalError> {
        match &self.failed {
            Some(what) => Err(WalError::Failed(what.clone())),
            None => Ok(()),
        }
    }

    /// Remembers the first failure so every later write refuses; passes it on.
    fn fail(&mut self, e: WalError) -> WalError {
        if self.failed.is_none() {
            self.failed = Some(e.to_string());
        }
        e
    }

    fn current(&mut self) -> &mut Segment {
        self.segments.last_mut().expect("a Wal always has a segment")
    }

    fn next_offset(&self) -> u64 {
        self.file_len + self.buf.len() as u64
    }

    /// Buffers entries (not durable until [`sync`](Self::sync)). Each entry
    /// must not leave a hole: its index is at most one past the last entry
    /// or the snapshot mark; a lower index replaces the entries from there on.
    pub fn append_entries(&mut self, entries: &[Entry]) -> Result<(), WalError> {
        self.check_failed()?;
        // Check the whole batch before buffering any of it, so a refused
        // batch leaves the log as it was.
        let mut last = self.last_index;
        for e in entries {
            if !may_follow(last, self.snapshot.index, e.index) {
                return Err(WalError::OutOfOrder { last: last.max(self.snapshot.index), got: e.index });
            }
            last = e.index;
        }
        let undo = self.buf.len();
        let seq = self.current().seq;
        for e in entries {
            let off = self.next_offset();
            if let Err(err) = encode_message(&mut self.buf, seq, off, RecordType::Entry, "entry", e) {
                self.buf.truncate(undo);
                return Err(err);
            }
        }
        if let Some(max) = entries.iter().map(|e| e.index).max() {
            let seg = self.current();
            seg.max_index = Some(seg.max_index.map_or(max, |m| m.max(max)));
        }
        self.last_index = last;
        Ok(())
    }

    /// Buffers a hard state (not durable until [`sync`](Self::sync)).
    pub fn save_hard_state(&mut self, hs: &HardState) -> Result<(), WalError> {
        self.check_failed()?;
        let (seq, off) = (self.current().seq, self.next_offset());
        encode_message(&mut self.buf, seq, off, RecordType::HardState, "hard state", hs)?;
        self.hard_state = hs.clone();
        Ok(())
    }

    /// Buffers a snapshot mark (not durable until [`sync`](Self::sync)):
    /// entries up to `mark.index` are no longer needed once the caller's
    /// state machine holds them durably. Call [`release_before`](Self::release_before)
    /// only with an index covered by a mark that has been synced.
    pub fn save_snapshot(&mut self, mark: &SnapshotMark) -> Result<(), WalError> {
        self.check_failed()?;
        let (seq, off) = (self.current().seq, self.next_offset());
        encode_message(&mut self.buf, seq, off, RecordType::SnapshotMark, "snapshot mark", &to_proto(mark))?;
        self.snapshot = mark.clone();
        Ok(())
    }

    /// Writes everything buffered and fsyncs it, once (group commit). When
    /// this returns Ok, every record saved before it is durable. With nothing
    /// buffered it does nothing: everything written is already synced. Then
    /// cuts a new segment if the current one has reached `segment_bytes`.
    /// etcd's `SetUnsafeNoFsync` (--unsafe-no-fsync, for tests): from now on
    /// [`sync`](Self::sync) writes records without fsyncing them, so a crash
    /// loses what the OS had not written back. Segment cuts still fsync.
    pub fn set_unsafe_no_fsync(&mut self) {
        self.unsafe_no_fsync = true;
    }

    /// etcd's --max-wals: released segments are deleted, oldest first, only
    /// while more than `max` segments exist; 0 keeps every segment. (etcd's
    /// purge loop does the same every 30 s; here it happens at release.)
    pub fn set_max_segments(&mut self, max: usize) {
        self.max_segments = max;
    }

    pub fn sync(&mut self) -> Result<(), WalError> {
        self.check_failed()?;
        if self.buf.is_empty() {
            return Ok(());
        }
        let path = self.current().path.clone();
        if let Err(e) = self.file.append(&self.buf) {
            // Part of the buffer may be in the file: offsets are unknown now.
            return Err(self.fail(io_err(&path, "writing records")(e)));
        }
        self.file_len += self.buf.len() as u64;
        count_written(&mut self.stats, self.buf.len());
        self.buf.clear();
        let file = &mut self.file;
        if !self.unsafe_no_fsync {
            if let Err(e) = timed_fsync(&mut self.stats, || file.sync()) {
                return Err(self.fail(io_err(&path, "fsync")(e)));
            }
        }
        if self.file_len >= self.opts.segment_bytes {
            self.cut().map_err(|e| self.fail(e))?;
        }
        Ok(())
    }

    /// Starts the next segment (steps in the module doc). The current one is
    /// fully synced when this is called.
    fn cut(&mut self) -> Result<(), WalError> {
        let seq = self.current().seq + 1;
        let name = segment_name(seq, self.last_index.max(self.snapshot.index) + 1);
        let path = self.dir.join(&name);
        let tmp = self.dir.join(format!("{name}{TMP_EXT}"));
        let header = segment_header(seq, &self.metadata, &self.snapshot, &self.hard_state)?;
        let mut f = self.fs.create_file(&tmp).map_err(io_err(&tmp, "creating segment"))?;
        f.append(&header).map_err(io_err(&tmp, "writing segment header"))?;
        count_written(&mut self.stats, header.len());
        timed_fsync(&mut self.stats, || f.sync()).map_err(io_err(&tmp, "fsync"))?;
        drop(f);
        self.fs.rename(&tmp, &path).map_err(io_err(&path, "renaming new segment into place"))?;
        let (fs, dir) = (&self.fs, &self.dir);
        timed_fsync(&mut self.stats, || fs.sync_dir(dir)).map_err(io_err(dir, "fsync directory"))?;
        self.file = self.fs.open_file(&path).map_err(io_err(&path, "opening segment"))?;
        self.file_len = header.len() as u64;
        self.segments.push(Segment { seq, path, max_index: None });
        self.stats.segments += 1;
        Ok(())
    }

    /// Deletes, oldest first, the segments whose entries all have index
    /// `< index`, never the one being written (etcd's `ReleaseLockTo`), as
    /// long as more than `max_segments` segments remain (--max-wals).
    /// `index` must be covered by a snapshot mark that is already synced,
    /// or a crash can leave a log with a hole that `open` refuses.
    pub fn release_before(&mut self, index: u64) -> Result<(), WalError> {
        self.check_failed()?;
        while self.segments.len() > 1
            && self.max_segments != 0
            && self.segments.len() > self.max_segments
            && self.segments[0].max_index.is_none_or(|m| m < index)
        {
            let path = self.segments[0].path.clone();
            self.fs.remove_file(&path).map_err(io_err(&path, "removing released segment"))?;
            self.segments.remove(0);
            self.stats.segments -= 1;
            // One directory fsync per removal: if the removals could reach the
            // disk out of order, a crash might keep an older segment and lose
            // a newer one, a hole `open` cannot get past.
            let (fs, dir) = (&self.fs, &self.dir);
            timed_fsync(&mut self.stats, || fs.sync_dir(dir)).map_err(io_err(dir, "fsync directory"))?;
        }
        Ok(())
    }

    /// Counters since create/open.
    pub fn stats(&self) -> WalStats {
        self.stats
    }

    /// The directory this log lives in.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}
