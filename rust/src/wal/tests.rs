//! Tests for the WAL: round trips on the real filesystem, damage done by
//! hand to segment files, and crashes through [`MemFs`], including a property
//! test against a plain in-memory model of the log.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use proptest::prelude::*;
use raft::eraftpb::{ConfState, Entry, HardState};

use super::record::{self, RecordType};
use super::*;

fn entry(index: u64, term: u64) -> Entry {
    Entry { index, term, data: format!("put k{index} v{index}@{term}").into_bytes().into(), ..Entry::default() }
}

fn entries(range: std::ops::RangeInclusive<u64>, term: u64) -> Vec<Entry> {
    range.map(|i| entry(i, term)).collect()
}

fn hs(term: u64, vote: u64, commit: u64) -> HardState {
    HardState { term, vote, commit, ..HardState::default() }
}

fn conf(voters: &[u64]) -> ConfState {
    ConfState { voters: voters.to_vec(), ..ConfState::default() }
}

fn mark(index: u64, term: u64, voters: &[u64]) -> SnapshotMark {
    SnapshotMark { index, term, conf_state: conf(voters) }
}

fn small(segment_bytes: u64) -> WalOptions {
    WalOptions { segment_bytes }
}

/// Segment files in `dir`, oldest first.
fn segment_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().and_then(|n| n.to_str()).and_then(parse_segment_name).is_some())
        .collect();
    v.sort();
    v
}

/// Start offsets and types of the records in a segment's bytes; panics if
/// the bytes are not whole valid records.
fn record_offsets(data: &[u8], seq: u64) -> Vec<(usize, RecordType)> {
    let mut out = Vec::new();
    let mut off = 0;
    while off < data.len() {
        let f = record::decode(data, seq, off).unwrap_or_else(|e| panic!("record at {off}: {e}"));
        out.push((off, f.ty));
        off = f.next;
    }
    out
}

fn seq_of(path: &Path) -> u64 {
    parse_segment_name(path.file_name().unwrap().to_str().unwrap()).unwrap().0
}

const META: &[u8] = b"member=1 cluster=7";

#[test]
fn round_trip_and_append_after_reopen() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("member").join("wal");
    assert!(!Wal::exists(&dir));
    let mut w = Wal::create(&dir, META, &conf(&[1, 2, 3]), WalOptions::default()).unwrap();
    assert!(Wal::exists(&dir));
    w.append_entries(&entries(1..=10, 1)).unwrap();
    w.save_hard_state(&hs(1, 1, 4)).unwrap();
    w.save_snapshot(&mark(3, 1, &[1, 2, 3, 4])).unwrap();
    w.append_entries(&entries(11..=20, 2)).unwrap();
    w.save_hard_state(&hs(2, 2, 15)).unwrap();
    w.sync().unwrap();
    drop(w);

    let (mut w, rec) = Wal::open(&dir, WalOptions::default()).unwrap();
    let mut want = Recovered {
        metadata: META.to_vec(),
        hard_state: hs(2, 2, 15),
        snapshot: mark(3, 1, &[1, 2, 3, 4]),
        entries: [entries(4..=10, 1), entries(11..=20, 2)].concat(),
    };
    assert_eq!(rec, want);

    w.append_entries(&entries(21..=25, 3)).unwrap();
    w.save_hard_state(&hs(3, 3, 22)).unwrap();
    w.sync().unwrap();
    drop(w);
    let (_, rec) = Wal::open(&dir, WalOptions::default()).unwrap();
    want.entries.extend(entries(21..=25, 3));
    want.hard_state = hs(3, 3, 22);
    assert_eq!(rec, want);
}

#[test]
fn new_log_recovers_empty_and_create_refuses_existing() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("wal");
    let w = Wal::create(&dir, META, &conf(&[1]), WalOptions::default()).unwrap();
    assert_eq!(w.stats().segments, 1);
    let names = segment_files(&dir);
    assert_eq!(names.len(), 1);
    assert!(names[0].ends_with("0000000000000000-0000000000000001.wal"));
    assert!(!tmp.path().join("wal.tmp").exists());
    drop(w);

    let (_, rec) = Wal::open(&dir, WalOptions::default()).unwrap();
    assert_eq!(
        rec,
        Recovered {
            metadata: META.to_vec(),
            hard_state: HardState::default(),
            snapshot: mark(0, 0, &[1]),
            entries: vec![]
        }
    );
    assert!(matches!(Wal::create(&dir, META, &conf(&[1]), WalOptions::default()), Err(WalError::AlreadyExists { .. })));

    let empty = tmp.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    assert!(matches!(Wal::open(&empty, WalOptions::default()), Err(WalError::NotFound { .. })));
}

#[test]
fn overwrite_replaces_conflicting_suffix() {
    for segment_bytes in [64 * 1024 * 1024, 200] {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("wal");
        let mut w = Wal::create(&dir, META, &conf(&[1]), small(segment_bytes)).unwrap();
        for e in entries(1..=10, 1) {
            w.append_entries(&[e]).unwrap();
            w.sync().unwrap();
        }
        w.append_entries(&entries(6..=8, 2)).unwrap();
        w.sync().unwrap();
        drop(w);
        let (mut w, rec) = Wal::open(&dir, small(segment_bytes)).unwrap();
        assert_eq!(rec.entries, [entries(1..=5, 1), entries(6..=8, 2)].concat(), "segment_bytes {segment_bytes}");
        // The log now ends at 8: 9 follows it, 10 would leave a hole.
        assert!(matches!(w.append_entries(&[entry(10, 2)]), Err(WalError::OutOfOrder { last: 8, got: 10 })));
        w.append_entries(&[entry(9, 2)]).unwrap();
        w.sync().unwrap();
    }
}

#[test]
fn append_rejects_holes_but_jumps_past_a_snapshot() {
    let fs = MemFs::new();
    let dir = Path::new("/m/wal");
    let mut w = Wal::create_with(Arc::new(fs.clone()), dir, META, &conf(&[1]), WalOptions::default()).unwrap();
    assert!(matches!(w.append_entries(&[entry(2, 1)]), Err(WalError::OutOfOrder { last: 0, got: 2 })));
    assert!(matches!(w.append_entries(&[entry(0, 1)]), Err(WalError::OutOfOrder { .. })));
    // A refused batch buffers nothing, not even its valid prefix.
    assert!(w.append_entries(&[entry(1, 1), entry(3, 1)]).is_err());
    w.append_entries(&entries(1..=3, 1)).unwrap();
    // Snapshot installed from the leader: the log continues after it.
    w.save_snapshot(&mark(50, 4, &[1, 2])).unwrap();
    w.append_entries(&entries(51..=52, 4)).unwrap();
    w.sync().unwrap();
    drop(w);
    let (_, rec) = Wal::open_with(Arc::new(fs), dir, WalOptions::default()).unwrap();
    assert_eq!(rec.snapshot, mark(50, 4, &[1, 2]));
    assert_eq!(rec.entries, entries(51..=52, 4));
}

#[test]
fn segments_are_cut_and_released() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("wal");
    let opts = small(1024);
    let mut w = Wal::create(&dir, META, &conf(&[1, 2, 3]), opts.clone()).unwrap();
    for batch in 0..40u64 {
        w.append_entries(&entries(batch * 5 + 1..=batch * 5 + 5, 1)).unwrap();
        w.save_hard_state(&hs(1, 1, batch * 5)).unwrap();
        w.sync().unwrap();
    }
    let files = segment_files(&dir);
    assert!(files.len() >= 5, "expected several segments, got {files:?}");
    assert_eq!(w.stats().segments, files.len() as u64);
    for (i, f) in files.iter().enumerate() {
        assert_eq!(seq_of(f), i as u64);
        // Every segment is self-describing: metadata, mark, hard state first.
        let data = std::fs::read(f).unwrap();
        let types: Vec<RecordType> = record_offsets(&data, i as u64).into_iter().map(|(_, t)| t).take(3).collect();
        assert_eq!(types, [RecordType::Metadata, RecordType::SnapshotMark, RecordType::HardState]);
    }
    drop(w);

    let (mut w, rec) = Wal::open(&dir, opts.clone()).unwrap();
    assert_eq!(rec.entries, entries(1..=200, 1));
    assert_eq!(rec.hard_state, hs(1, 1, 195));

    w.save_snapshot(&mark(120, 1, &[1, 2, 3])).unwrap();
    w.sync().unwrap();
    let before = segment_files(&dir).len();
    w.release_before(121).unwrap();
    let after = segment_files(&dir);
    assert!(after.len() < before, "nothing released");
    // The oldest kept segment still reaches back to 120 or before.
    let first_kept = parse_segment_name(after[0].file_name().unwrap().to_str().unwrap()).unwrap().1;
    assert!(first_kept <= 121, "released too much: {after:?}");
    assert_eq!(w.stats().segments, after.len() as u64);
    drop(w);

    let (mut w, rec) = Wal::open(&dir, opts.clone()).unwrap();
    assert_eq!(rec.snapshot, mark(120, 1, &[1, 2, 3]));
    assert_eq!(rec.entries, entries(121..=200, 1));
    assert_eq!(rec.metadata, META);

    // Releasing past everything keeps the segment being written.
    w.append_entries(&entries(201..=210, 2)).unwrap();
    w.save_snapshot(&mark(210, 2, &[1, 2, 3])).unwrap();
    w.sync().unwrap();
    w.release_before(u64::MAX).unwrap();
    assert_eq!(segment_files(&dir).len(), 1);
    assert_eq!(w.stats().segments, 1);
    w.append_entries(&entries(211..=212, 2)).unwrap();
    w.sync().unwrap();
    drop(w);
    let (_, rec) = Wal::open(&dir, opts).unwrap();
    assert_eq!(rec.snapshot, mark(210, 2, &[1, 2, 3]));
    assert_eq!(rec.entries, entries(211..=212, 2));
}

#[test]
fn max_segments_keeps_released_segments_as_etcds_max_wals() {
    // 0 keeps every segment; N deletes released ones only while more than N exist.
    for (max, expect) in [(0usize, None), (3, Some(3)), (1, Some(1))] {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("wal");
        let mut w = Wal::create(&dir, META, &conf(&[1]), small(1024)).unwrap();
        w.set_max_segments(max);
        for batch in 0..40u64 {
            w.append_entries(&entries(batch * 5 + 1..=batch * 5 + 5, 1)).unwrap();
            w.sync().unwrap();
        }
        let before = segment_files(&dir).len();
        assert!(before > 3, "expected several segments, got {before}");
        w.save_snapshot(&mark(200, 1, &[1])).unwrap();
        w.sync().unwrap();
        w.release_before(201).unwrap();
        let kept = segment_files(&dir).len();
        assert_eq!(kept, expect.unwrap_or(before), "max {max}");
        assert_eq!(w.stats().segments, kept as u64);
        drop(w);
        let (_, rec) = Wal::open(&dir, small(1024)).unwrap();
        assert_eq!(rec.snapshot, mark(200, 1, &[1]));
    }
}

#[test]
fn missing_middle_segment_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("wal");
    let mut w = Wal::create(&dir, META, &conf(&[1]), small(512)).unwrap();
    for i in 1..=60 {
        w.append_entries(&[entry(i, 1)]).unwrap();
        w.sync().unwrap();
    }
    drop(w);
    let files = segment_files(&dir);
    assert!(files.len() >= 3);
    std::fs::remove_file(&files[1]).unwrap();
    let err = Wal::open(&dir, small(512)).unwrap_err();
    assert!(matches!(err, WalError::MissingSegment { expected_seq: 1, .. }), "{err}");
}

/// Creates a log of entries 1..=10 (one sync each) on the real filesystem;
/// returns the directory guard, the WAL dir and the last segment's path.
fn ten_entries() -> (tempfile::TempDir, PathBuf, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("wal");
    let mut w = Wal::create(&dir, META, &conf(&[1]), WalOptions::default()).unwrap();
    for i in 1..=10 {
        w.append_entries(&[entry(i, 1)]).unwrap();
        w.save_hard_state(&hs(1, 1, i)).unwrap();
        w.sync().unwrap();
    }
    let last = segment_files(&dir).pop().unwrap();
    (tmp, dir, last)
}

/// Opens, checks the recovered log is entries 1..=n, then appends and
/// reopens to show the repaired log keeps working.
fn assert_recovers_prefix(dir: &Path, n: u64) {
    let (mut w, rec) = Wal::open(dir, WalOptions::default()).unwrap();
    assert_eq!(rec.entries, entries(1..=n, 1));
    w.append_entries(&[entry(n + 1, 2)]).unwrap();
    w.sync().unwrap();
    drop(w);
    let (_, rec) = Wal::open(dir, WalOptions::default()).unwrap();
    assert_eq!(rec.entries, [entries(1..=n, 1), vec![entry(n + 1, 2)]].concat());
}

#[test]
fn torn_tail_cut_mid_record_is_truncated() {
    let (_tmp, dir, last) = ten_entries();
    let data = std::fs::read(&last).unwrap();
    let offs = record_offsets(&data, 0);
    // The last two records are entry 10 and its hard state; cut into entry 10.
    let (entry10, ty) = offs[offs.len() - 2];
    assert_eq!(ty, RecordType::Entry);
    std::fs::write(&last, &data[..entry10 + 5]).unwrap();
    let (w, _) = Wal::open(&dir, WalOptions::default()).unwrap();
    assert_eq!(w.stats().fsyncs, 1, "the truncation is fsynced");
    drop(w);
    assert_eq!(std::fs::read(&last).unwrap(), &data[..entry10]);
    assert_recovers_prefix(&dir, 9);
}

#[test]
fn torn_tail_zero_filled_is_truncated() {
    let (_tmp, dir, last) = ten_entries();
    let data = std::fs::read(&last).unwrap();
    let mut zeroed = data.clone();
    zeroed.extend(std::iter::repeat_n(0u8, 4096 + 3));
    std::fs::write(&last, &zeroed).unwrap();
    let (w, rec) = Wal::open(&dir, WalOptions::default()).unwrap();
    assert_eq!(rec.hard_state, hs(1, 1, 10));
    drop(w);
    assert_eq!(std::fs::read(&last).unwrap(), data);
    assert_recovers_prefix(&dir, 10);
}

#[test]
fn torn_tail_length_past_eof_is_truncated() {
    let (_tmp, dir, last) = ten_entries();
    let data = std::fs::read(&last).unwrap();
    // The header of a big next record landed, most of its payload did not.
    let mut big = entry(11, 1);
    big.data = vec![7u8; 10_000].into();
    let mut frame = Vec::new();
    encode_message(&mut frame, 0, data.len() as u64, RecordType::Entry, "entry", &big).unwrap();
    let mut torn = data.clone();
    torn.extend_from_slice(&frame[..600]);
    std::fs::write(&last, &torn).unwrap();
    drop(Wal::open(&dir, WalOptions::default()).unwrap());
    assert_eq!(std::fs::read(&last).unwrap(), data);
    assert_recovers_prefix(&dir, 10);
}

#[test]
fn corrupt_middle_record_is_refused_and_left_alone() {
    let (_tmp, dir, last) = ten_entries();
    let data = std::fs::read(&last).unwrap();
    let offs = record_offsets(&data, 0);
    let (off, _) = *offs.iter().filter(|(_, t)| *t == RecordType::Entry).nth(2).unwrap(); // entry 3
    let mut bad = data.clone();
    bad[off + record::HEADER_LEN + 2] ^= 0x40;
    std::fs::write(&last, &bad).unwrap();

    let err = Wal::open(&dir, WalOptions::default()).unwrap_err();
    let WalError::Corrupt { path, offset, .. } = &err else { panic!("want Corrupt, got {err}") };
    assert_eq!((path, *offset), (&last, off as u64));
    let msg = err.to_string();
    assert!(msg.contains(&last.display().to_string()), "{msg}");
    assert!(msg.contains(&format!("at offset {off}:")), "{msg}");
    assert!(msg.contains("checksum mismatch"), "{msg}");
    assert_eq!(std::fs::read(&last).unwrap(), bad, "open must not touch a corrupt log");

    // A damaged length field is corruption too while good records follow.
    let mut bad_len = data.clone();
    bad_len[off..off + 4].copy_from_slice(&u32::MAX.to_le_bytes());
    std::fs::write(&last, &bad_len).unwrap();
    let err = Wal::open(&dir, WalOptions::default()).unwrap_err();
    assert!(matches!(err, WalError::Corrupt { offset, .. } if offset == off as u64), "{err}");
}

#[test]
fn damage_in_an_older_segment_is_corruption_even_at_its_end() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("wal");
    let mut w = Wal::create(&dir, META, &conf(&[1]), small(512)).unwrap();
    for i in 1..=40 {
        w.append_entries(&[entry(i, 1)]).unwrap();
        w.sync().unwrap();
    }
    drop(w);
    let files = segment_files(&dir);
    assert!(files.len() >= 2);
    let data = std::fs::read(&files[0]).unwrap();
    let (last_off, _) = *record_offsets(&data, 0).last().unwrap();
    std::fs::write(&files[0], &data[..data.len() - 3]).unwrap();
    let err = Wal::open(&dir, small(512)).unwrap_err();
    assert!(
        matches!(&err, WalError::Corrupt { path, offset, .. } if *path == files[0] && *offset == last_off as u64),
        "{err}"
    );
}

#[test]
fn group_commit_is_one_fsync() {
    let tmp = tempfile::tempdir().unwrap();
    let mut w = Wal::create(&tmp.path().join("wal"), META, &conf(&[1]), WalOptions::default()).unwrap();
    let s0 = w.stats();
    assert_eq!(s0.fsyncs, 3, "create: segment, temp dir, parent dir");
    for i in 1..=200 {
        w.append_entries(&[entry(i, 1)]).unwrap();
    }
    w.save_hard_state(&hs(1, 1, 200)).unwrap();
    assert_eq!(w.stats().fsyncs, s0.fsyncs, "appends alone do not sync");
    assert_eq!(w.stats().bytes_written, s0.bytes_written, "appends alone do not write");
    w.sync().unwrap();
    let s1 = w.stats();
    assert_eq!(s1.fsyncs, s0.fsyncs + 1);
    assert!(s1.fsync_nanos > s0.fsync_nanos);
    assert!(s1.bytes_written > s0.bytes_written + 200 * 16);
    w.sync().unwrap();
    assert_eq!(w.stats().fsyncs, s1.fsyncs, "nothing buffered, nothing to sync");
}

#[test]
fn unsafe_no_fsync_writes_without_fsync() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("wal");
    let mut w = Wal::create(&dir, META, &conf(&[1]), WalOptions::default()).unwrap();
    w.set_unsafe_no_fsync();
    let s0 = w.stats();
    w.append_entries(&[entry(1, 1)]).unwrap();
    w.save_hard_state(&hs(1, 1, 1)).unwrap();
    w.sync().unwrap();
    let s1 = w.stats();
    assert_eq!(s1.fsyncs, s0.fsyncs, "--unsafe-no-fsync: no fsync");
    assert!(s1.bytes_written > s0.bytes_written, "the records are still written");
    drop(w);
    let (_, rec) = Wal::open(&dir, WalOptions::default()).unwrap();
    assert_eq!(rec.entries.len(), 1, "and read back (the OS has them)");
}

#[test]
fn failed_fsync_stops_writes_until_reopen() {
    let fs = MemFs::new();
    let dir = Path::new("/m/wal");
    let mut w = Wal::create_with(Arc::new(fs.clone()), dir, META, &conf(&[1]), WalOptions::default()).unwrap();
    w.append_entries(&entries(1..=3, 1)).unwrap();
    w.sync().unwrap();
    w.append_entries(&entries(4..=5, 1)).unwrap();
    fs.fail_sync_in(0);
    assert!(matches!(w.sync(), Err(WalError::Io { op: "fsync", .. })));
    let err = w.append_entries(&[entry(6, 1)]).unwrap_err();
    assert!(matches!(err, WalError::Failed(_)), "{err}");
    assert!(matches!(w.sync(), Err(WalError::Failed(_))));
    drop(w);
    fs.crash(|_, _| CrashTail::Drop);
    let (_, rec) = Wal::open_with(Arc::new(fs), dir, WalOptions::default()).unwrap();
    assert_eq!(rec.entries, entries(1..=3, 1));
}

#[test]
fn crash_keeps_synced_records_and_any_prefix_of_unsynced_ones() {
    // Build the same history on a fresh MemFs for every way a crash can
    // tear the unsynced write, and check each one recovers cleanly.
    let dir = Path::new("/m/wal");
    let setup = || {
        let fs = MemFs::new();
        let mut w = Wal::create_with(Arc::new(fs.clone()), dir, META, &conf(&[1]), WalOptions::default()).unwrap();
        w.append_entries(&entries(1..=5, 1)).unwrap();
        w.save_hard_state(&hs(1, 1, 3)).unwrap();
        w.sync().unwrap();
        // Written, never synced: entries 6..=8 and a hard state.
        w.append_entries(&entries(6..=8, 1)).unwrap();
        w.save_hard_state(&hs(1, 1, 8)).unwrap();
        fs.fail_sync_in(0);
        assert!(w.sync().is_err());
        (fs, w)
    };
    let (fs, w) = setup();
    drop(w);
    let seg = dir.join(segment_name(0, 1));
    let unsynced = {
        let mut n = 0;
        fs.crash(|_, u| {
            n = n.max(u);
            CrashTail::Keep(usize::MAX)
        });
        n
    };
    assert!(unsynced > 0);

    let mut tails = vec![CrashTail::Drop];
    tails.extend((0..=unsynced).map(CrashTail::Keep));
    tails.extend((0..=unsynced).step_by(7).map(|keep| CrashTail::KeepThenZeros { keep, zeros: 4096 }));
    for tail in tails {
        let (fs, w) = setup();
        drop(w);
        fs.crash(|_, _| tail);
        let (mut w, rec) = Wal::open_with(Arc::new(fs.clone()), dir, WalOptions::default())
            .unwrap_or_else(|e| panic!("{tail:?}: {e}"));
        // Records land in order, so what survives is a prefix of them.
        let n = rec.entries.len() as u64;
        assert!((5..=8).contains(&n), "{tail:?}");
        assert_eq!(rec.entries, entries(1..=n, 1), "{tail:?}");
        let want_hs = if rec.hard_state == hs(1, 1, 8) { 8 } else { 3 };
        assert!(want_hs == 3 || n == 8, "{tail:?}: hard state came back without its entries");
        assert_eq!(rec.hard_state, hs(1, 1, want_hs), "{tail:?}");
        // The file was cut back to whole records.
        let data = fs.read(&seg).unwrap();
        record_offsets(&data, 0);
        // And the log goes on.
        w.append_entries(&[entry(n + 1, 2)]).unwrap();
        w.sync().unwrap();
        drop(w);
        fs.crash(|_, _| CrashTail::Drop);
        let (_, rec) = Wal::open_with(Arc::new(fs), dir, WalOptions::default()).unwrap();
        assert_eq!(rec.entries.last(), Some(&entry(n + 1, 2)), "{tail:?}");
    }
}

#[test]
fn crash_loses_only_what_was_never_synced() {
    let fs = MemFs::new();
    let dir = Path::new("/m/wal");
    let mut w = Wal::create_with(Arc::new(fs.clone()), dir, META, &conf(&[1]), WalOptions::default()).unwrap();
    w.append_entries(&entries(1..=4, 1)).unwrap();
    w.sync().unwrap();
    w.append_entries(&entries(5..=6, 1)).unwrap(); // buffered only
    drop(w);
    fs.crash(|_, _| CrashTail::Drop);
    let (_, rec) = Wal::open_with(Arc::new(fs), dir, WalOptions::default()).unwrap();
    assert_eq!(rec.entries, entries(1..=4, 1));
}

#[test]
fn crash_during_cut_leaves_a_temp_file_that_open_removes() {
    let fs = MemFs::new();
    let dir = Path::new("/m/wal");
    let opts = small(256);
    let mut w = Wal::create_with(Arc::new(fs.clone()), dir, META, &conf(&[1]), opts.clone()).unwrap();
    // Data fsync succeeds (sync 0), the new segment's fsync fails (sync 1).
    fs.fail_sync_in(1);
    w.append_entries(&entries(1..=20, 1)).unwrap();
    assert!(w.sync().is_err());
    drop(w);
    fs.crash(|_, _| CrashTail::Keep(10));
    let tmp_name = dir.join(format!("{}.tmp", segment_name(1, 21)));
    assert!(fs.read(&tmp_name).is_some());
    let (w, rec) = Wal::open_with(Arc::new(fs.clone()), dir, opts).unwrap();
    assert_eq!(rec.entries, entries(1..=20, 1), "the data fsync came before the cut");
    assert!(fs.read(&tmp_name).is_none(), "unfinished segment removed");
    assert_eq!(w.stats().segments, 1);
}

#[test]
fn every_rename_and_remove_is_followed_by_a_directory_fsync() {
    let fs = MemFs::new();
    let dir = Path::new("/m/wal");
    let mut w = Wal::create_with(Arc::new(fs.clone()), dir, META, &conf(&[1]), small(300)).unwrap();
    for i in 1..=50 {
        w.append_entries(&[entry(i, 1)]).unwrap();
        w.sync().unwrap();
    }
    w.save_snapshot(&mark(40, 1, &[1])).unwrap();
    w.sync().unwrap();
    w.release_before(41).unwrap();
    let ops = fs.ops();
    let mut checked = 0;
    for (i, op) in ops.iter().enumerate() {
        let parent = match op {
            FsOp::Rename(_, to) => parent_of(to),
            FsOp::RemoveFile(p) => parent_of(p),
            _ => continue,
        };
        // The directory fsync must come before the WAL writes anything else.
        let next_sync_dir = ops[i + 1..].iter().find(|o| !matches!(o, FsOp::SyncFile(_)));
        assert_eq!(next_sync_dir, Some(&FsOp::SyncDir(parent)), "after {op:?}");
        checked += 1;
    }
    assert!(checked >= 4, "expected renames and removes, saw {ops:?}");
    // The create: segment synced, then its directory, before the rename.
    let rename = ops.iter().position(|o| matches!(o, FsOp::Rename(..))).unwrap();
    assert!(matches!(ops[rename - 1], FsOp::SyncDir(_)));
    assert!(matches!(ops[rename - 2], FsOp::SyncFile(_)));
}

// ---------------------------------------------------------------------------
// Property test: random appends, overwrites, hard states, snapshot marks,
// syncs, releases and crashes against a model that is just the list of
// records saved, folded the way the module doc says replay works.

#[derive(Debug, Clone)]
enum Op {
    /// Entries starting `back` before the next index (0 = plain append).
    Append {
        back: u64,
        count: u64,
    },
    HardState {
        commit: u64,
    },
    /// A mark somewhere between the current mark and the last entry.
    Snapshot {
        pick: u64,
    },
    Sync,
    /// release_before the durable snapshot mark, as the caller must.
    Release,
    /// Lose the buffer.
    Crash,
    /// Crash inside `sync`: the `fail_at`th fsync of it fails, then a crash
    /// keeps `keep` unsynced bytes and maybe a run of zeros.
    CrashInSync {
        fail_at: u64,
        keep: usize,
        zeros: usize,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0..4u64, 1..6u64).prop_map(|(b, count)| Op::Append { back: if b == 3 { 2 } else { 0 }, count }),
        2 => (0..100u64).prop_map(|commit| Op::HardState { commit }),
        1 => (0..100u64).prop_map(|pick| Op::Snapshot { pick }),
        4 => Just(Op::Sync),
        1 => Just(Op::Release),
        1 => Just(Op::Crash),
        2 => (0..3u64, 0..400usize, prop_oneof![Just(0usize), Just(512)])
            .prop_map(|(fail_at, keep, zeros)| Op::CrashInSync { fail_at, keep, zeros }),
    ]
}

#[derive(Debug, Clone, PartialEq)]
enum Rec {
    Entry(Entry),
    Hard(HardState),
    Snap(SnapshotMark),
}

struct Model {
    recs: Vec<Rec>,
    /// recs[..durable] are synced.
    durable: usize,
    conf: ConfState,
    term: u64,
}

impl Model {
    fn fold(&self, k: usize) -> Recovered {
        let mut log = BTreeMap::new();
        let mut hard_state = HardState::default();
        let mut snapshot = SnapshotMark { index: 0, term: 0, conf_state: self.conf.clone() };
        for r in &self.recs[..k] {
            match r {
                Rec::Entry(e) => {
                    log.split_off(&e.index);
                    log.insert(e.index, e.clone());
                }
                Rec::Hard(h) => hard_state = h.clone(),
                Rec::Snap(s) => snapshot = s.clone(),
            }
        }
        let entries = log.range(snapshot.index + 1..).map(|(_, e)| e.clone()).collect();
        Recovered { metadata: META.to_vec(), hard_state, snapshot, entries }
    }

    /// (last entry index, snapshot index) of everything saved.
    fn ends(&self) -> (u64, u64) {
        let mut last = 0;
        let mut snap = 0;
        for r in &self.recs {
            match r {
                Rec::Entry(e) => last = e.index,
                Rec::Snap(s) => snap = s.index,
                Rec::Hard(_) => {}
            }
        }
        (last, snap)
    }

    /// Reopens after a crash: what came back must be the fold of some
    /// prefix of the records between the durable ones and all of them.
    fn reopen(&mut self, fs: &MemFs, dir: &Path, opts: &WalOptions, most: usize) -> Result<Wal, TestCaseError> {
        let (w, rec) = Wal::open_with(Arc::new(fs.clone()), dir, opts.clone())
            .map_err(|e| TestCaseError::fail(format!("open after crash: {e}")))?;
        let k = (self.durable..=most).rev().find(|&k| self.fold(k) == rec);
        let Some(k) = k else {
            return Err(TestCaseError::fail(format!(
                "recovered {rec:?} is no prefix between {} and {most} of {:?}",
                self.durable, self.recs
            )));
        };
        self.recs.truncate(k);
        self.durable = k;
        Ok(w)
    }
}

fn run_ops(ops: Vec<Op>) -> Result<(), TestCaseError> {
    let fs = MemFs::new();
    let dir = Path::new("/d/member/wal");
    let opts = small(400);
    let conf = conf(&[1, 2, 3]);
    let mut w = Wal::create_with(Arc::new(fs.clone()), dir, META, &conf, opts.clone()).unwrap();
    let mut m = Model { recs: Vec::new(), durable: 0, conf, term: 1 };
    for op in ops {
        match op {
            Op::Append { back, count } => {
                let (last, snap) = m.ends();
                let first = (last.max(snap) + 1).saturating_sub(back).max(1);
                if back > 0 {
                    m.term += 1;
                }
                let es: Vec<Entry> = (first..first + count).map(|i| entry(i, m.term)).collect();
                w.append_entries(&es).unwrap();
                m.recs.extend(es.into_iter().map(Rec::Entry));
            }
            Op::HardState { commit } => {
                let h = hs(m.term, 1, commit);
                w.save_hard_state(&h).unwrap();
                m.recs.push(Rec::Hard(h));
            }
            Op::Snapshot { pick } => {
                let (last, snap) = m.ends();
                let index = snap + pick % (last.max(snap) - snap + 1);
                let s = mark(index, m.term, &[1, 2, 3, pick % 3 + 4]);
                w.save_snapshot(&s).unwrap();
                m.recs.push(Rec::Snap(s));
            }
            Op::Sync => {
                w.sync().unwrap();
                m.durable = m.recs.len();
            }
            Op::Release => {
                let durable_snap = m.fold(m.durable).snapshot.index;
                w.release_before(durable_snap + 1).unwrap();
            }
            Op::Crash => {
                drop(w);
                fs.crash(|_, _| CrashTail::Drop);
                let most = m.durable;
                w = m.reopen(&fs, dir, &opts, most)?;
            }
            Op::CrashInSync { fail_at, keep, zeros } => {
                fs.fail_sync_in(fail_at);
                let r = w.sync();
                // Disarm a failure the sync did not reach (no cut happened).
                fs.clear_failures();
                if r.is_ok() || fail_at > 0 {
                    // The data fsync came first and succeeded.
                    m.durable = m.recs.len();
                }
                drop(w);
                fs.crash(|_, _| CrashTail::KeepThenZeros { keep, zeros });
                let most = m.recs.len();
                w = m.reopen(&fs, dir, &opts, most)?;
            }
        }
    }
    // Whatever the ops were, a final sync and reopen sees all of it.
    w.sync().unwrap();
    m.durable = m.recs.len();
    drop(w);
    fs.crash(|_, _| CrashTail::Drop);
    let most = m.durable;
    m.reopen(&fs, dir, &opts, most)?;
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]
    #[test]
    fn random_histories_recover_what_was_synced(ops in proptest::collection::vec(op(), 1..60)) {
        run_ops(ops)?;
    }
}

#[test]
fn wal_can_move_to_the_persist_thread() {
    fn send<T: Send>() {}
    send::<Wal>();
    send::<WalError>();
}
