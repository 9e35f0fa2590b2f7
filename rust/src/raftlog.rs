//! raft-rs's [`Storage`] over ketch's WAL.
//!
//! The Raft log lives twice, as in etcd: in memory (the entries since the last
//! snapshot mark, which is what raft-rs reads) and in the WAL (which is what
//! survives a crash). Every mutation goes to both; nothing is durable until
//! [`RaftLog::sync`], which the Ready loop calls once per Ready — that single
//! fsync covers every proposal batched into that Ready (group commit).
//!
//! ```text
//!   snapshot mark (index s, term t)    entries in memory and in the WAL
//!   ──────────────┬──────────────────────────────────────────────
//!   compacted ... │ s+1 │ s+2 │ ... │ last_index
//!                 first_index = s+1
//! ```

use std::cell::Cell;
use std::path::Path;
use std::sync::Arc;

use protobuf::Message as _;
use raft::eraftpb::{ConfState, Entry, HardState, Snapshot};
use raft::{GetEntriesContext, RaftState, StorageError};

use crate::wal::{OsFs, SnapshotMark, Wal, WalError, WalFs, WalOptions, WalStats};

/// The Raft log of one member: raft-rs reads it through [`raft::Storage`];
/// the Ready loop writes it through the methods below.
pub struct RaftLog {
    wal: Wal,
    hard_state: HardState,
    conf_state: ConfState,
    /// Index and term of the last entry folded into the state machine's
    /// durable state and dropped from the log (0, 0 for a new log).
    snapshot_index: u64,
    snapshot_term: u64,
    /// Entries snapshot_index+1 ..= last_index, in order.
    entries: Vec<Entry>,
    /// A copy of the state machine made for followers that are behind the
    /// log's start; see [`raft::Storage::snapshot`] below.
    prepared: Option<Snapshot>,
    /// raft asked for a snapshot that `prepared` could not serve.
    snapshot_wanted: Cell<bool>,
}

/// What a reopened log hands back besides itself.
pub struct Opened {
    pub log: RaftLog,
    pub metadata: Vec<u8>,
}

impl RaftLog {
    /// Creates the log of a new member whose group is `conf_state`, at Raft
    /// term `initial_term`. etcd bootstraps at term 1 and its first election
    /// makes term 2; starting ketch at 1 as well keeps `raft_term` in response
    /// headers identical to etcd's for the same history.
    pub fn create(dir: &Path, metadata: &[u8], conf_state: ConfState, initial_term: u64) -> Result<RaftLog, WalError> {
        Self::create_with(Arc::new(OsFs), dir, metadata, conf_state, initial_term)
    }

    /// [`create`](Self::create) through a given filesystem (crash and fault tests).
    pub fn create_with(
        fs: Arc<dyn WalFs>,
        dir: &Path,
        metadata: &[u8],
        conf_state: ConfState,
        initial_term: u64,
    ) -> Result<RaftLog, WalError> {
        let mut wal = Wal::create_with(fs, dir, metadata, &conf_state, WalOptions::default())?;
        let hard_state = HardState { term: initial_term, ..HardState::default() };
        wal.save_hard_state(&hard_state)?;
        wal.sync()?;
        Ok(RaftLog {
            wal,
            hard_state,
            conf_state,
            snapshot_index: 0,
            snapshot_term: 0,
            entries: Vec::new(),
            prepared: None,
            snapshot_wanted: Cell::new(false),
        })
    }

    /// Reopens a member's log: replays the WAL (repairing a torn tail, refusing
    /// a corrupt middle) into memory.
    pub fn open(dir: &Path) -> Result<Opened, WalError> {
        Self::open_with(Arc::new(OsFs), dir)
    }

    /// [`open`](Self::open) through a given filesystem (crash and fault tests).
    pub fn open_with(fs: Arc<dyn WalFs>, dir: &Path) -> Result<Opened, WalError> {
        let (wal, recovered) = Wal::open_with(fs, dir, WalOptions::default())?;
        let log = RaftLog {
            wal,
            hard_state: recovered.hard_state,
            conf_state: recovered.snapshot.conf_state,
            snapshot_index: recovered.snapshot.index,
            snapshot_term: recovered.snapshot.term,
            entries: recovered.entries,
            prepared: None,
            snapshot_wanted: Cell::new(false),
        };
        Ok(Opened { log, metadata: recovered.metadata })
    }

    /// --max-wals (see `Wal::set_max_segments`).
    pub fn set_max_wal_segments(&mut self, max: usize) {
        self.wal.set_max_segments(max);
    }

    /// --unsafe-no-fsync: the WAL stops fsyncing (see `Wal::set_unsafe_no_fsync`).
    pub fn set_unsafe_no_fsync(&mut self) {
        self.wal.set_unsafe_no_fsync();
    }

    pub fn exists(dir: &Path) -> bool {
        Wal::exists(dir)
    }

    /// [`exists`](Self::exists) through a given filesystem.
    pub fn exists_with(fs: &dyn WalFs, dir: &Path) -> bool {
        Wal::exists_with(fs, dir)
    }

    /// Appends entries from a Ready, replacing any conflicting suffix (a new
    /// leader may overwrite entries this member had but were never committed).
    /// Buffered: durable only after [`RaftLog::sync`].
    pub fn append(&mut self, entries: &[Entry]) -> Result<(), WalError> {
        let Some(first) = entries.first() else {
            return Ok(());
        };
        assert!(
            first.index > self.snapshot_index,
            "raft asked to overwrite compacted entry {} (log starts after {})",
            first.index,
            self.snapshot_index
        );
        assert!(
            first.index <= self.last_index() + 1,
            "raft log gap: last index {}, appending from {}",
            self.last_index(),
            first.index
        );
        let keep = (first.index - self.snapshot_index - 1) as usize;
        self.entries.truncate(keep);
        self.entries.extend_from_slice(entries);
        self.wal.append_entries(entries)
    }

    /// Buffered like [`RaftLog::append`].
    pub fn set_hard_state(&mut self, hard_state: &HardState) -> Result<(), WalError> {
        self.hard_state = hard_state.clone();
        self.wal.save_hard_state(hard_state)
    }

    /// Records a commit index learnt from a LightReady. Kept in memory only:
    /// it reaches the disk with the next hard state, and a commit index that
    /// is behind after a crash is safe (Raft commits those entries again).
    pub fn set_commit(&mut self, commit: u64) {
        self.hard_state.commit = commit;
    }

    pub fn set_conf_state(&mut self, conf_state: ConfState) {
        self.conf_state = conf_state;
    }

    /// Writes out and fsyncs everything buffered: one fsync for the whole Ready.
    pub fn sync(&mut self) -> Result<(), WalError> {
        self.wal.sync()
    }

    /// Drops entries up to and including `index` once the state machine holds
    /// them durably, and lets the WAL delete segments that only held those.
    pub fn compact_to(&mut self, index: u64) -> Result<(), WalError> {
        if index <= self.snapshot_index {
            return Ok(());
        }
        assert!(index <= self.hard_state.commit, "compacting past the commit index");
        let term = self.term_of(index).expect("entry to compact is in the log");
        let drop = (index - self.snapshot_index) as usize;
        self.entries.drain(..drop);
        self.snapshot_index = index;
        self.snapshot_term = term;
        self.wal.save_snapshot(&SnapshotMark { index, term, conf_state: self.conf_state.clone() })?;
        self.wal.sync()?;
        self.wal.release_before(index + 1)
    }

    /// Installs a snapshot from the leader: the log now starts after it and
    /// holds nothing else (raft-rs does the same to its view). The WAL's
    /// mark is buffered: durable at the next [`RaftLog::sync`], which must
    /// come before the state machine is replaced (then a crash finds either
    /// the old store and log, or the mark and the snapshot file beside it).
    pub fn apply_snapshot(&mut self, snapshot: &Snapshot) -> Result<(), WalError> {
        let m = snapshot.get_metadata();
        self.entries.clear();
        self.snapshot_index = m.index;
        self.snapshot_term = m.term;
        self.conf_state = m.get_conf_state().clone();
        if self.hard_state.commit < m.index {
            self.hard_state.commit = m.index;
        }
        if self.prepared.as_ref().is_some_and(|p| p.get_metadata().index < m.index) {
            self.prepared = None;
        }
        self.wal.save_snapshot(&SnapshotMark { index: m.index, term: m.term, conf_state: self.conf_state.clone() })
    }

    /// Lets the WAL drop segments that only hold entries before `index`.
    pub fn release_before(&mut self, index: u64) -> Result<(), WalError> {
        self.wal.release_before(index)
    }

    /// True once after raft asked for a snapshot the log could not give.
    pub fn take_snapshot_request(&self) -> bool {
        self.snapshot_wanted.replace(false)
    }

    /// A state machine copy for followers, served from the next request on.
    pub fn set_prepared_snapshot(&mut self, snapshot: Snapshot) {
        self.prepared = Some(snapshot);
    }

    /// (index, term) of the last entry folded into a snapshot.
    pub fn snapshot_mark(&self) -> (u64, u64) {
        (self.snapshot_index, self.snapshot_term)
    }

    pub fn hard_state(&self) -> &HardState {
        &self.hard_state
    }

    pub fn conf_state(&self) -> &ConfState {
        &self.conf_state
    }

    pub fn wal_stats(&self) -> WalStats {
        self.wal.stats()
    }

    pub fn last_index(&self) -> u64 {
        self.snapshot_index + self.entries.len() as u64
    }

    fn term_of(&self, index: u64) -> Option<u64> {
        if index == self.snapshot_index {
            return Some(self.snapshot_term);
        }
        if index < self.snapshot_index || index > self.last_index() {
            return None;
        }
        Some(self.entries[(index - self.snapshot_index - 1) as usize].term)
    }
}

impl raft::Storage for RaftLog {
    fn initial_state(&self) -> raft::Result<RaftState> {
        Ok(RaftState::new(self.hard_state.clone(), self.conf_state.clone()))
    }

    fn entries(
        &self,
        low: u64,
        high: u64,
        max_size: impl Into<Option<u64>>,
        _context: GetEntriesContext,
    ) -> raft::Result<Vec<Entry>> {
        if low <= self.snapshot_index {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        assert!(
            high <= self.last_index() + 1,
            "raft asked for entries up to {high}, last index is {}",
            self.last_index()
        );
        let lo = (low - self.snapshot_index - 1) as usize;
        let hi = (high - self.snapshot_index - 1) as usize;
        let max_size = max_size.into().unwrap_or(u64::MAX);
        // Like raft's limit_size: always at least one entry, then stop before
        // the running size passes max_size.
        let mut size = 0u64;
        let mut out = Vec::with_capacity(hi - lo);
        for entry in &self.entries[lo..hi] {
            size += u64::from(entry.compute_size());
            if !out.is_empty() && size > max_size {
                break;
            }
            out.push(entry.clone());
        }
        Ok(out)
    }

    fn term(&self, idx: u64) -> raft::Result<u64> {
        if idx < self.snapshot_index {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        self.term_of(idx).ok_or(raft::Error::Store(StorageError::Unavailable))
    }

    fn first_index(&self) -> raft::Result<u64> {
        Ok(self.snapshot_index + 1)
    }

    fn last_index(&self) -> raft::Result<u64> {
        Ok(RaftLog::last_index(self))
    }

    /// A follower needs entries the log no longer has. Copying the backend
    /// takes a while, so the first ask only records the wish (raft retries
    /// on the follower's next heartbeat answer); the node thread has the copy
    /// made off-thread and hands it over with `set_prepared_snapshot`.
    fn snapshot(&self, request_index: u64, _to: u64) -> raft::Result<Snapshot> {
        if let Some(s) = &self.prepared {
            let index = s.get_metadata().index;
            if index >= request_index && index >= self.snapshot_index {
                return Ok(s.clone());
            }
        }
        self.snapshot_wanted.set(true);
        Err(raft::Error::Store(StorageError::SnapshotTemporarilyUnavailable))
    }
}
