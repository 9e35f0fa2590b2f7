//! The store: reads, and write batches that apply Raft entries.
//! Alarms, hashes and the snapshot copy are in `store/`.

use std::cmp::Ordering as CmpOrdering;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use parking_lot::{Mutex, MutexGuard, RwLock, RwLockWriteGuard};
use prost::Message;
use redb::{Database, Durability, ReadableDatabase, ReadableTable, Table, WriteTransaction};

use super::backend::{
    fetch, io, read_rev, read_u64, KeyTables, CHUNK_TABLE, KEY_TABLE, META_CONSISTENT_INDEX, META_CONSISTENT_TERM,
    META_FINISHED_COMPACT, META_SCHEDULED_COMPACT, META_TABLE,
};
use super::key_index::{KeyIndex, KeySpan, KeyTree};
use super::revision::Revision;
use super::validate::{check_delete_range, check_put, check_range, check_txn};
use crate::error::EtcdError;
use crate::pb::etcdserverpb::{
    compare::{CompareResult, CompareTarget, TargetUnion},
    range_request::{SortOrder, SortTarget},
    request_op::Request,
    response_op::Response,
    CompactionRequest, CompactionResponse, Compare, DeleteRangeRequest, DeleteRangeResponse, PutRequest, PutResponse,
    RangeRequest, RangeResponse, ResponseHeader, ResponseOp, TxnRequest, TxnResponse,
};
use crate::pb::mvccpb::{event::EventType, Event, KeyValue};

mod alarm;
mod auth;
mod compact;
mod defrag;
mod export;
mod hash;
mod lease;
mod members;
mod snapshot;

pub use alarm::{ALARM_CORRUPT, ALARM_NOSPACE};
pub use compact::{CompactStep, CompactionWaiter};
pub use export::{import_backend, AuthRecords, BackendImport, StoreView, ViewMeta};
pub use members::Membership;
pub use snapshot::SnapshotInfo;

/// Store settings.
#[derive(Clone, Debug)]
pub struct StoreOptions {
    /// Most operations in one txn (etcd's `--max-txn-ops`, default 128).
    pub max_txn_ops: usize,
    /// The storage under the backend file (None: redb's file backend).
    pub backend: Option<super::backend::BackendFactory>,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions { max_txn_ops: 128, backend: None }
    }
}

/// Hook for leases: a put naming a lease that does not exist is refused.
pub trait LeaseCheck {
    fn lease_exists(&self, id: i64) -> bool;
}

/// What readers see; changed only by a [`WriteBatch`], which holds it
/// write-locked for its whole life, so the index is never ahead of the
/// committed backend for anyone else.
struct State {
    index: KeyTree,
    current_rev: i64,
    compact_rev: i64,
    consistent: (u64, u64),
    alarms: alarm::Alarms,
    membership: Membership,
    auth: std::sync::Arc<crate::auth::AuthData>,
}

/// etcd's MVCC key-value store over a redb file. See the module doc.
pub struct Store {
    /// Replaced only by a restore and at the end of a defragment, with the
    /// state lock held (so no reader is in it). A [`StoreView`], which reads
    /// without the state lock, holds its own reference.
    db: RwLock<Arc<Database>>,
    path: PathBuf,
    opts: StoreOptions,
    state: RwLock<State>,
    /// Held by whatever writes the backend or replaces it (a write batch,
    /// a restore, a copy, the end of a defragment), before the state lock:
    /// a defragment's switch holds writers off with it and lets readers on.
    writer: Mutex<()>,
    /// One defragment at a time.
    defrag: Mutex<()>,
    /// Bumped by every restore (the file is another one then).
    generation: AtomicU64,
    /// Run by a defragment between its bulk copy and its catch-up, on its
    /// thread, with no lock held: tests write and read there.
    #[cfg(test)]
    pub(crate) defrag_hook: Mutex<Option<Box<dyn FnOnce() + Send>>>,
    // Copies of State's numbers, published at commit, so that these
    // accessors never wait for an open batch (the engine asks for them
    // while it holds one).
    current_rev: AtomicI64,
    compact_rev: AtomicI64,
    consistent: Mutex<(u64, u64)>,
    alarms: Mutex<Vec<(i32, u64)>>,
    membership: Mutex<Membership>,
    auth: Mutex<std::sync::Arc<crate::auth::AuthData>>,
    durable_index: AtomicU64,
    in_use: AtomicU64,
    /// A non-durable commit has happened since the last durable one.
    dirty: AtomicBool,
    /// Set by the first failed commit: what reached the file is unknown
    /// (after a failed fsync the kernel may have dropped dirty pages and
    /// report the next fsync clean), so no batch opens and nothing is
    /// committed again until the store is reopened from the file.
    failed: Mutex<Option<String>>,
    quota: Mutex<QuotaCount>,
    /// Physical compactions scheduled and not yet done (see `store/compact.rs`).
    compactions: compact::Compactions,
    finished_compact_rev: AtomicI64,
    /// The hashes recorded by the last compactions, oldest first (etcd's
    /// hashStorage; see [`Store::compaction_hashes`]).
    compaction_hashes: Mutex<std::collections::VecDeque<CompactionHash>>,
}

/// The hash a compaction recorded (etcd's KeyValueHash): the key table's
/// hash at `revision` (the compact revision) over the revisions after
/// `compact_revision` (the one before) and what compacting keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CompactionHash {
    pub hash: u32,
    pub revision: i64,
    pub compact_revision: i64,
}

/// How many compaction hashes are kept (etcd's hashStorageMaxSize).
pub const COMPACTION_HASHES_KEPT: usize = 10;

/// See [`Store::quota_allows`].
#[derive(Debug, Default)]
struct QuotaCount {
    /// Allocated bytes at the last count.
    in_use: u64,
    /// Estimated bytes of the writes admitted since.
    admitted: u64,
    counted_at: Option<std::time::Instant>,
}

/// How stale the allocated-bytes count behind the quota may get.
const QUOTA_RECOUNT: std::time::Duration = std::time::Duration::from_millis(100);

fn header(revision: i64) -> Option<ResponseHeader> {
    Some(ResponseHeader { revision, ..Default::default() })
}

impl Store {
    /// Opens or creates the backend at `path` and rebuilds the key index
    /// from it, finishing a compaction that was cut short.
    pub fn open(path: &Path, opts: StoreOptions) -> Result<Store, EtcdError> {
        let ctx = |e: EtcdError| match e {
            EtcdError::Internal(m) => EtcdError::Internal(format!("{m} (backend {})", path.display())),
            e => e,
        };
        // A defragment cut short leaves its copy; the file itself is whole.
        let _ = std::fs::remove_file(defrag::copy_path(path));
        let db = super::backend::open_database(path, opts.backend.as_ref())?;
        let tx = db.begin_write().map_err(io("begin write")).map_err(ctx)?;
        let (state, durable, resumed) = Self::rebuild(&tx).map_err(ctx)?;
        tx.commit().map_err(io("commit on open")).map_err(ctx)?;
        let finished = resumed.as_ref().map_or(state.compact_rev, |(_, finished)| *finished);
        let store = Store {
            db: RwLock::new(Arc::new(db)),
            writer: Mutex::new(()),
            defrag: Mutex::new(()),
            generation: AtomicU64::new(0),
            #[cfg(test)]
            defrag_hook: Mutex::new(None),
            path: path.to_path_buf(),
            opts,
            current_rev: AtomicI64::new(state.current_rev),
            compact_rev: AtomicI64::new(state.compact_rev),
            consistent: Mutex::new(state.consistent),
            alarms: Mutex::new(state.alarms.iter().copied().collect()),
            membership: Mutex::new(state.membership.clone()),
            auth: Mutex::new(state.auth.clone()),
            durable_index: AtomicU64::new(durable),
            in_use: AtomicU64::new(0),
            dirty: AtomicBool::new(false),
            failed: Mutex::new(None),
            quota: Mutex::new(QuotaCount::default()),
            compactions: compact::Compactions::default(),
            finished_compact_rev: AtomicI64::new(finished),
            compaction_hashes: Mutex::new(std::collections::VecDeque::new()),
            state: RwLock::new(state),
        };
        if let Some((job, _)) = resumed {
            store.compactions.schedule(vec![job]);
        }
        Ok(store)
    }

    /// Replays the "key" table in revision order into a fresh index. A
    /// compaction scheduled but not finished is compacted in the index again
    /// and its physical job returned, with the finished revision, to queue.
    fn rebuild(tx: &WriteTransaction) -> Result<(State, u64, compact::Resumed), EtcdError> {
        let mut meta = tx.open_table(META_TABLE).map_err(io("open meta table"))?;
        let tables = KeyTables {
            records: tx.open_table(KEY_TABLE).map_err(io("open key table"))?,
            chunks: tx.open_table(CHUNK_TABLE).map_err(io("open chunk table"))?,
        };
        let consistent = (read_u64(&meta, META_CONSISTENT_INDEX)?, read_u64(&meta, META_CONSISTENT_TERM)?);
        let finished = read_rev(&meta, META_FINISHED_COMPACT)?;
        let scheduled = read_rev(&meta, META_SCHEDULED_COMPACT)?;

        let mut index = KeyTree::default();
        let mut last = 1;
        for entry in tables.records.range::<&[u8]>(..).map_err(io("scan key table"))? {
            let (k, v) = entry.map_err(io("scan key table"))?;
            let (rev, tombstone) = Revision::from_key(k.value())
                .ok_or_else(|| EtcdError::Internal("mvcc: corrupt revision key".into()))?;
            let kv = tables.decode(k.value(), v.value())?;
            last = rev.main;
            match index.keys.get_mut(&kv.key) {
                Some(ki) if tombstone => {
                    ki.tombstone(rev);
                }
                Some(ki) => ki.put(rev),
                // A tombstone whose puts were all compacted away ends nothing.
                None if tombstone => {}
                None => {
                    let created = Revision::new(kv.create_revision, 0);
                    index.keys.insert(kv.key, KeyIndex::restore(created, rev, kv.version));
                }
            }
        }
        let mut state = State {
            index,
            // Compaction may have removed the newest records (a delete at
            // the compact revision), never a revision above it.
            current_rev: last.max(finished).max(scheduled),
            compact_rev: finished,
            consistent,
            alarms: alarm::load(tx)?,
            membership: members::load(tx)?,
            auth: std::sync::Arc::new(auth::load(tx)?),
        };
        let mut resumed = None;
        if scheduled > finished {
            resumed = Some((compact::compact_index(&mut state, &mut meta, scheduled, false)?, finished));
        }
        Ok((state, consistent.0, resumed))
    }

    pub fn current_revision(&self) -> i64 {
        self.current_rev.load(Ordering::Acquire)
    }

    /// 0 if never compacted.
    pub fn compact_revision(&self) -> i64 {
        self.compact_rev.load(Ordering::Acquire).max(0)
    }

    /// -1 if never compacted (etcd's compactMainRev).
    pub fn compact_revision_or_minus_one(&self) -> i64 {
        self.compact_rev.load(Ordering::Acquire)
    }

    /// (raft index, raft term) of the last applied entry, as last committed.
    pub fn consistent_index(&self) -> (u64, u64) {
        *self.consistent.lock()
    }

    /// The consistent index as of the last durable commit: what a crash keeps.
    pub fn durable_consistent_index(&self) -> u64 {
        self.durable_index.load(Ordering::Acquire)
    }

    /// Keys alive at the current revision (etcd's keysGauge): a walk over
    /// the index, for the metrics scrape only.
    pub fn live_key_count(&self) -> usize {
        let st = self.state.read();
        st.index.keys.values().filter(|ki| ki.get(st.current_rev).is_some()).count()
    }

    /// Size of the backend file in bytes.
    pub fn db_size(&self) -> u64 {
        std::fs::metadata(&self.path).map_or(0, |m| m.len())
    }

    /// Bytes of the file redb has allocated (the rest is free pages),
    /// capped at [`Store::db_size`]: etcd 3.5's dbSizeInUse (its size less
    /// the free pages). redb only reports this from a write transaction, so
    /// while a batch is open the last answer is repeated.
    pub fn db_size_in_use(&self) -> u64 {
        if let Some(_no_batch) = self.state.try_read() {
            self.measure_in_use();
        }
        self.in_use.load(Ordering::Acquire).min(self.db_size())
    }

    /// Counts the allocated pages (a walk over every tree: O(pages)) into
    /// `in_use`. Call with no batch open on this thread.
    fn measure_in_use(&self) -> u64 {
        let stats = self.db.read().begin_write().ok().and_then(|tx| {
            let s = tx.stats().ok();
            let _ = tx.abort();
            s
        });
        if let Some(s) = stats {
            self.in_use.store(s.allocated_pages() * s.page_size() as u64, Ordering::Release);
        }
        self.in_use.load(Ordering::Acquire)
    }

    /// etcd's backendQuota.Available: does a write estimated to add `cost`
    /// bytes fit under `quota`?
    ///
    /// etcd compares bbolt's size, the high-water mark of its pages, which
    /// grows a page at a time. redb's file instead doubles when it fills
    /// (up to 4 GiB), so its length would refuse writes at half the quota;
    /// what compares like bbolt's size is the bytes redb has allocated
    /// (dbSizeInUse). Counting them walks every page, so it is done rarely:
    /// while the file itself is under the quota nothing is counted
    /// (allocated <= file); past it, the last count plus the costs admitted
    /// since decide, and only a refusal recounts (at most every
    /// [`QUOTA_RECOUNT`]). A recount first makes the store durable: pages
    /// freed by non-durable commits stay allocated until a durable one, and
    /// would otherwise count as data. Call on the node thread with no batch
    /// open, before proposing.
    pub fn quota_allows(&self, cost: u64, quota: u64) -> bool {
        if self.db_size().saturating_add(cost) < quota {
            return true;
        }
        let mut q = self.quota.lock();
        let fits = |q: &QuotaCount| q.in_use.saturating_add(q.admitted).saturating_add(cost) < quota;
        let now = std::time::Instant::now();
        let stale = q.counted_at.is_none_or(|t| now.duration_since(t) >= QUOTA_RECOUNT);
        if q.counted_at.is_none() || (!fits(&q) && stale) {
            if self.dirty.load(Ordering::Acquire) {
                let _no_writer = self.writer.lock();
                let _no_batch = self.state.write();
                // A failure here poisons the store; the next batch reports it.
                let _ = self.make_durable();
            }
            q.in_use = self.measure_in_use();
            q.admitted = 0;
            q.counted_at = Some(now);
        }
        let ok = fits(&q);
        if ok {
            q.admitted += cost;
        }
        ok
    }

    /// A serializable read. Waits while a write batch is open (so never call
    /// it on a thread that holds one).
    pub fn range(&self, req: &RangeRequest) -> Result<RangeResponse, EtcdError> {
        check_range(req)?;
        crate::metrics::MVCC_RANGES.inc();
        let st = self.state.read();
        let rtx = self.db.read().begin_read().map_err(io("begin read"))?;
        let tables = KeyTables {
            records: rtx.open_table(KEY_TABLE).map_err(io("open key table"))?,
            chunks: rtx.open_table(CHUNK_TABLE).map_err(io("open chunk table"))?,
        };
        range_at(&st.index, &tables, req, st.current_rev, st.compact_rev)
    }

    /// Opens the write batch for one Raft apply batch: one backend write
    /// transaction, readers held off until it commits or is dropped.
    pub fn write_batch(&self) -> Result<WriteBatch<'_>, EtcdError> {
        let writer = self.writer.lock();
        let st = self.state.write();
        self.check_failed()?;
        let tx = self.db.read().begin_write().map_err(io("begin write"))?;
        let undo = Undo {
            keys: HashMap::new(),
            whole: None,
            current_rev: st.current_rev,
            compact_rev: st.compact_rev,
            consistent: st.consistent,
            alarms: st.alarms.clone(),
            membership: None,
            auth: None,
        };
        Ok(WriteBatch {
            store: self,
            st,
            tx: Some(tx),
            undo,
            committed: false,
            lease_moves: Vec::new(),
            events: Vec::new(),
            scheduled: Vec::new(),
            _writer: writer,
        })
    }
}

impl Store {
    /// Refuses once a commit has failed (see `failed`).
    pub(super) fn check_failed(&self) -> Result<(), EtcdError> {
        match &*self.failed.lock() {
            Some(why) => Err(EtcdError::Internal(format!(
                "mvcc: an earlier commit failed ({why}); the backend takes no more writes"
            ))),
            None => Ok(()),
        }
    }

    /// Passes a commit's error on, remembering the first one.
    pub(super) fn fail(&self, e: EtcdError) -> EtcdError {
        let e = match e {
            EtcdError::Internal(m) => EtcdError::Internal(format!("{m} (backend {})", self.path.display())),
            e => e,
        };
        self.failed.lock().get_or_insert_with(|| e.to_string());
        e
    }
}

impl Drop for Store {
    /// A clean shutdown keeps the non-durable commits too: one empty durable
    /// commit flushes them (not after a failed commit: see `failed`).
    fn drop(&mut self) {
        if self.dirty.load(Ordering::Acquire) && self.failed.get_mut().is_none() {
            if let Ok(mut tx) = self.db.read().begin_write() {
                let _ = tx.set_durability(Durability::Immediate);
                let _ = tx.commit();
            }
        }
    }
}

/// How to put the index back if a batch is dropped uncommitted: each key's
/// index as it was before the batch first touched it (`None`: the key was not
/// indexed), or, once a compaction has rewritten every key, the whole index
/// as it was then (the per-key entries, older, are applied on top).
struct Undo {
    keys: HashMap<Bytes, Option<KeyIndex>>,
    whole: Option<KeyTree>,
    current_rev: i64,
    compact_rev: i64,
    consistent: (u64, u64),
    alarms: alarm::Alarms,
    /// The member list before the batch first changed it.
    membership: Option<Membership>,
    /// The auth store before the batch first changed it.
    auth: Option<std::sync::Arc<crate::auth::AuthData>>,
}

impl Undo {
    fn touch(&mut self, index: &KeyTree, key: &Bytes) {
        if self.whole.is_none() && !self.keys.contains_key(key) {
            self.keys.insert(key.clone(), index.keys.get(key).cloned());
        }
    }
}

/// One Raft apply batch. Commit it, or drop it to undo everything in it.
pub struct WriteBatch<'a> {
    store: &'a Store,
    st: RwLockWriteGuard<'a, State>,
    tx: Option<WriteTransaction>,
    undo: Undo,
    committed: bool,
    /// (key, lease) per key written; see [`WriteBatch::take_lease_moves`].
    lease_moves: Vec<(Bytes, i64)>,
    /// What this batch's writes look like to a watcher, in revision order.
    events: Vec<Event>,
    /// Physical compactions to queue once this batch commits.
    scheduled: Vec<compact::Job>,
    /// Released last, after the state lock and the transaction.
    _writer: MutexGuard<'a, ()>,
}

impl Drop for WriteBatch<'_> {
    fn drop(&mut self) {
        if self.committed {
            return;
        }
        // The backend transaction aborts when dropped; the index is ours to restore.
        let undo = std::mem::replace(
            &mut self.undo,
            Undo {
                keys: HashMap::new(),
                whole: None,
                current_rev: 0,
                compact_rev: 0,
                consistent: (0, 0),
                alarms: alarm::Alarms::new(),
                membership: None,
                auth: None,
            },
        );
        let st = &mut *self.st;
        if let Some(whole) = undo.whole {
            st.index = whole;
        }
        for (k, ki) in undo.keys {
            match ki {
                Some(ki) => st.index.keys.insert(k, ki),
                None => st.index.keys.remove(&k),
            };
        }
        st.current_rev = undo.current_rev;
        st.compact_rev = undo.compact_rev;
        st.consistent = undo.consistent;
        st.alarms = undo.alarms;
        if let Some(membership) = undo.membership {
            st.membership = membership;
        }
        if let Some(auth) = undo.auth {
            st.auth = auth;
        }
    }
}

impl WriteBatch<'_> {
    fn writer(&mut self) -> Result<Writer<'_>, EtcdError> {
        let tx = self.tx.as_ref().expect("an open batch has a transaction");
        let tables = KeyTables {
            records: tx.open_table(KEY_TABLE).map_err(io("open key table"))?,
            chunks: tx.open_table(CHUNK_TABLE).map_err(io("open chunk table"))?,
        };
        let begin_rev = self.st.current_rev;
        Ok(Writer {
            tables,
            st: &mut self.st,
            undo: &mut self.undo,
            begin_rev,
            changes: 0,
            lease_moves: &mut self.lease_moves,
            events: &mut self.events,
        })
    }

    /// Put. Errors (validation, missing lease, ignore_* on a missing key)
    /// leave the store as it was.
    pub fn put(&mut self, req: &PutRequest, leases: &dyn LeaseCheck) -> Result<PutResponse, EtcdError> {
        check_put(req)?;
        if req.lease != 0 && !leases.lease_exists(req.lease) {
            return Err(EtcdError::LeaseNotFound);
        }
        let mut w = self.writer()?;
        let resp = w.put(req)?;
        w.finish();
        crate::metrics::MVCC_PUTS.inc();
        Ok(resp)
    }

    /// Delete the key or range; deleting nothing does not bump the revision.
    pub fn delete_range(&mut self, req: &DeleteRangeRequest) -> Result<DeleteRangeResponse, EtcdError> {
        check_delete_range(req)?;
        let mut w = self.writer()?;
        let resp = w.delete_range(req)?;
        w.finish();
        crate::metrics::MVCC_DELETES.inc();
        Ok(resp)
    }

    /// A txn: compares (all of them, nested ones too) are judged against the
    /// store as it was before the txn, then the chosen ops run as one
    /// revision, each write a sub revision.
    pub fn txn(&mut self, req: &TxnRequest, leases: &dyn LeaseCheck) -> Result<TxnResponse, EtcdError> {
        check_txn(req, self.store.opts.max_txn_ops)?;
        let mut w = self.writer()?;
        let path = w.compare_path(req)?;
        w.check_path(req, &path, leases)?;
        let mut resp = w.apply_txn(req, &path)?;
        resp.header = header(w.finish());
        crate::metrics::count_txn(&resp);
        Ok(resp)
    }

    /// Compacts at `req.revision`: every version at or below it is removed
    /// from the index except the one each live key had then, and becomes
    /// unreadable; the backend's records are removed after the commit, by
    /// [`Store::compact_step`] (see `store/compact.rs`).
    pub fn compact(&mut self, req: &CompactionRequest) -> Result<CompactionResponse, EtcdError> {
        let rev = req.revision;
        if rev <= self.st.compact_rev {
            return Err(EtcdError::Compacted);
        }
        if rev > self.st.current_rev {
            return Err(EtcdError::FutureRev);
        }
        if self.undo.whole.is_none() {
            self.undo.whole = Some(self.st.index.clone());
        }
        let tx = self.tx.as_ref().expect("an open batch has a transaction");
        // The compaction hash is the physical half's: it walks the records anyway.
        let mut meta = tx.open_table(META_TABLE).map_err(io("open meta table"))?;
        let job = compact::compact_index(&mut self.st, &mut meta, rev, true)?;
        self.scheduled.push(job);
        Ok(CompactionResponse { header: header(self.st.current_rev) })
    }

    /// The watch events of every write in this batch so far, in revision
    /// (then sub-revision) order: a put's new KeyValue; a delete's key with
    /// `mod_revision` = the delete's revision (etcd's live event shape).
    pub fn take_events(&mut self) -> Vec<Event> {
        std::mem::take(&mut self.events)
    }

    /// Records the Raft position of this batch, in the same backend
    /// transaction as its data, so the two can never disagree after a crash.
    pub fn set_consistent_index(&mut self, index: u64, term: u64) {
        self.st.consistent = (index, term);
    }

    /// Commits the batch. `durable = false` makes it visible without an
    /// fsync (the WAL holds it already); a crash loses it back to the last
    /// durable commit, which [`Store::durable_consistent_index`] reports.
    pub fn commit(mut self, durable: bool) -> Result<(), EtcdError> {
        let tx = self.tx.take().expect("an open batch has a transaction");
        let (index, term) = self.st.consistent;
        {
            let mut meta = tx.open_table(META_TABLE).map_err(io("open meta table"))?;
            meta.insert(META_CONSISTENT_INDEX, index.to_be_bytes().as_slice()).map_err(io("write consistent index"))?;
            meta.insert(META_CONSISTENT_TERM, term.to_be_bytes().as_slice()).map_err(io("write consistent term"))?;
        }
        let mut tx = tx;
        tx.set_durability(if durable { Durability::Immediate } else { Durability::None })
            .map_err(|e| EtcdError::Internal(format!("mvcc: set durability: {e}")))?;
        crate::metrics::timed(&crate::metrics::BACKEND_COMMIT, || tx.commit())
            .map_err(io("commit"))
            .map_err(|e| self.store.fail(e))?;
        self.committed = true;

        let s = self.store;
        s.current_rev.store(self.st.current_rev, Ordering::Release);
        s.compact_rev.store(self.st.compact_rev, Ordering::Release);
        *s.consistent.lock() = (index, term);
        *s.alarms.lock() = self.st.alarms.iter().copied().collect();
        if self.undo.membership.is_some() {
            *s.membership.lock() = self.st.membership.clone();
        }
        if self.undo.auth.is_some() {
            *s.auth.lock() = self.st.auth.clone();
        }
        if durable {
            s.durable_index.store(index, Ordering::Release);
            s.dirty.store(false, Ordering::Release);
        } else {
            s.dirty.store(true, Ordering::Release);
        }
        s.compactions.schedule(std::mem::take(&mut self.scheduled));
        Ok(())
    }
}

/// The nested-txn tree of compare outcomes: which branch each txn takes.
struct Branches {
    succeeded: bool,
    /// One per nested txn in the chosen branch, in order.
    children: Vec<Branches>,
}

/// One request's writes: everything it writes shares main revision
/// `begin_rev + 1`; `changes` counts them and is the next sub revision.
struct Writer<'b> {
    tables: KeyTables<Table<'b, &'static [u8], &'static [u8]>>,
    st: &'b mut State,
    undo: &'b mut Undo,
    begin_rev: i64,
    changes: i64,
    lease_moves: &'b mut Vec<(Bytes, i64)>,
    events: &'b mut Vec<Event>,
}

impl Writer<'_> {
    /// The revision reads inside this request see: its own writes once it has any.
    fn read_rev(&self) -> i64 {
        self.begin_rev + i64::from(self.changes > 0)
    }

    /// Ends the request; returns the store revision after it.
    fn finish(self) -> i64 {
        if self.changes > 0 {
            self.st.current_rev = self.begin_rev + 1;
        }
        self.st.current_rev
    }

    fn get(&self, key: &[u8]) -> Result<Option<KeyValue>, EtcdError> {
        match self.st.index.get(key, self.read_rev()) {
            Some(f) => fetch(&self.tables, f.modified).map(Some),
            None => Ok(None),
        }
    }

    /// etcd's applierV3backend.Put (the lease was checked by the caller).
    fn put(&mut self, req: &PutRequest) -> Result<PutResponse, EtcdError> {
        let prev = if req.ignore_value || req.ignore_lease || req.prev_kv { self.get(&req.key)? } else { None };
        if (req.ignore_value || req.ignore_lease) && prev.is_none() {
            return Err(EtcdError::KeyNotFound);
        }
        let value = match (&prev, req.ignore_value) {
            (Some(p), true) => p.value.clone(),
            _ => req.value.clone(),
        };
        let lease = match (&prev, req.ignore_lease) {
            (Some(p), true) => p.lease,
            _ => req.lease,
        };
        self.write_put(&req.key, value, lease)?;
        Ok(PutResponse { header: header(self.begin_rev + 1), prev_kv: if req.prev_kv { prev } else { None } })
    }

    fn write_put(&mut self, key: &Bytes, value: Bytes, lease: i64) -> Result<(), EtcdError> {
        let main = self.begin_rev + 1;
        let rev = Revision::new(main, self.changes);
        let (create_revision, version) = match self.st.index.get(key, main) {
            Some(f) => (f.created.main, f.version + 1),
            None => (main, 1),
        };
        let kv = KeyValue { key: key.clone(), create_revision, mod_revision: main, version, value, lease };
        self.tables.insert(rev.to_key(false).as_slice(), kv.encode_to_vec().as_slice())?;
        self.events.push(Event { r#type: EventType::Put as i32, kv: Some(kv), prev_kv: None });
        self.undo.touch(&self.st.index, key);
        self.st.index.keys.entry(key.clone()).or_default().put(rev);
        self.lease_moves.push((key.clone(), lease));
        self.changes += 1;
        Ok(())
    }

    /// etcd's applierV3backend.DeleteRange.
    fn delete_range(&mut self, req: &DeleteRangeRequest) -> Result<DeleteRangeResponse, EtcdError> {
        let span = KeySpan::new(&req.key, &req.range_end);
        let found = self.st.index.range(&span, self.read_rev());
        let mut prev_kvs = Vec::new();
        if req.prev_kv {
            for (_, f) in &found {
                prev_kvs.push(fetch(&self.tables, f.modified)?);
            }
        }
        for (key, _) in &found {
            let rev = Revision::new(self.begin_rev + 1, self.changes);
            let tomb = KeyValue { key: key.clone(), ..Default::default() };
            self.tables
                .records
                .insert(rev.to_key(true).as_slice(), tomb.encode_to_vec().as_slice())
                .map_err(io("write tombstone"))?;
            let deleted = KeyValue { key: key.clone(), mod_revision: rev.main, ..Default::default() };
            self.events.push(Event { r#type: EventType::Delete as i32, kv: Some(deleted), prev_kv: None });
            self.undo.touch(&self.st.index, key);
            let ki = self.st.index.keys.get_mut(key).expect("a found key is indexed");
            let ended = ki.tombstone(rev);
            debug_assert!(ended, "a found key is alive");
            self.lease_moves.push((key.clone(), 0));
            self.changes += 1;
        }
        let deleted = found.len() as i64;
        let revision = if deleted != 0 || self.changes > 0 { self.begin_rev + 1 } else { self.begin_rev };
        Ok(DeleteRangeResponse { header: header(revision), deleted, prev_kvs })
    }

    /// etcd's compareToPath: judges every compare up front, before any write.
    fn compare_path(&self, req: &TxnRequest) -> Result<Branches, EtcdError> {
        let mut succeeded = true;
        for c in &req.compare {
            if !self.compare(c)? {
                succeeded = false;
                break;
            }
        }
        let ops = if succeeded { &req.success } else { &req.failure };
        let mut children = Vec::new();
        for op in ops {
            if let Some(Request::RequestTxn(t)) = &op.request {
                children.push(self.compare_path(t)?);
            }
        }
        Ok(Branches { succeeded, children })
    }

    /// etcd's applyCompare: every key in the compare's range must pass; a
    /// range with no keys compares a zero KeyValue (version, create, mod and
    /// lease all 0), except that a value compare on nothing always fails.
    fn compare(&self, c: &Compare) -> Result<bool, EtcdError> {
        let span = KeySpan::new(&c.key, &c.range_end);
        let found = self.st.index.range(&span, self.begin_rev);
        if found.is_empty() {
            return Ok(c.target != CompareTarget::Value as i32 && compare_kv(c, &KeyValue::default()));
        }
        let needs_record = c.target == CompareTarget::Value as i32 || c.target == CompareTarget::Lease as i32;
        for (key, f) in found {
            let kv = if needs_record {
                fetch(&self.tables, f.modified)?
            } else {
                KeyValue {
                    key,
                    create_revision: f.created.main,
                    mod_revision: f.modified.main,
                    version: f.version,
                    ..Default::default()
                }
            };
            if !compare_kv(c, &kv) {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// etcd's checkRequests over the chosen branches, against the store
    /// before the txn: puts with ignore_* need the key, leases must exist,
    /// read revisions must be readable. Nothing is written yet.
    fn check_path(&self, req: &TxnRequest, path: &Branches, leases: &dyn LeaseCheck) -> Result<(), EtcdError> {
        let ops = if path.succeeded { &req.success } else { &req.failure };
        let mut children = path.children.iter();
        for op in ops {
            match &op.request {
                Some(Request::RequestTxn(t)) => {
                    self.check_path(t, children.next().expect("one path per nested txn"), leases)?;
                }
                Some(Request::RequestPut(p)) => {
                    if (p.ignore_value || p.ignore_lease) && self.st.index.get(&p.key, self.begin_rev).is_none() {
                        return Err(EtcdError::KeyNotFound);
                    }
                    if p.lease != 0 && !leases.lease_exists(p.lease) {
                        return Err(EtcdError::LeaseNotFound);
                    }
                }
                Some(Request::RequestRange(r)) => match r.revision {
                    0 => {}
                    rev if rev > self.begin_rev => return Err(EtcdError::FutureRev),
                    rev if rev < self.st.compact_rev => return Err(EtcdError::Compacted),
                    _ => {}
                },
                _ => {}
            }
        }
        Ok(())
    }

    /// etcd's applyTxn. Nested txn responses carry an empty header (etcd
    /// fills only the outermost); the caller sets the outer one.
    fn apply_txn(&mut self, req: &TxnRequest, path: &Branches) -> Result<TxnResponse, EtcdError> {
        let ops = if path.succeeded { &req.success } else { &req.failure };
        let mut children = path.children.iter();
        let mut responses = Vec::with_capacity(ops.len());
        for op in ops {
            let response = match &op.request {
                Some(Request::RequestRange(r)) => Some(Response::ResponseRange(range_at(
                    &self.st.index,
                    &self.tables,
                    r,
                    self.read_rev(),
                    self.st.compact_rev,
                )?)),
                Some(Request::RequestPut(p)) => Some(Response::ResponsePut(self.put(p)?)),
                Some(Request::RequestDeleteRange(d)) => Some(Response::ResponseDeleteRange(self.delete_range(d)?)),
                Some(Request::RequestTxn(t)) => {
                    let child = children.next().expect("one path per nested txn");
                    let mut r = self.apply_txn(t, child)?;
                    r.header = Some(ResponseHeader::default());
                    Some(Response::ResponseTxn(r))
                }
                None => None,
            };
            responses.push(ResponseOp { response });
        }
        Ok(TxnResponse { header: None, succeeded: path.succeeded, responses })
    }
}

/// etcd's compareKV. A target_union of the wrong kind compares as 0 / empty.
fn compare_kv(c: &Compare, kv: &KeyValue) -> bool {
    let int = |v: i64, want: Option<i64>| v.cmp(&want.unwrap_or(0));
    let result = match CompareTarget::try_from(c.target) {
        Ok(CompareTarget::Value) => {
            let want: &[u8] = match &c.target_union {
                Some(TargetUnion::Value(v)) => v,
                _ => &[],
            };
            kv.value.as_ref().cmp(want)
        }
        Ok(CompareTarget::Create) => int(
            kv.create_revision,
            match c.target_union {
                Some(TargetUnion::CreateRevision(r)) => Some(r),
                _ => None,
            },
        ),
        Ok(CompareTarget::Mod) => int(
            kv.mod_revision,
            match c.target_union {
                Some(TargetUnion::ModRevision(r)) => Some(r),
                _ => None,
            },
        ),
        Ok(CompareTarget::Version) => int(
            kv.version,
            match c.target_union {
                Some(TargetUnion::Version(r)) => Some(r),
                _ => None,
            },
        ),
        Ok(CompareTarget::Lease) => int(
            kv.lease,
            match c.target_union {
                Some(TargetUnion::Lease(r)) => Some(r),
                _ => None,
            },
        ),
        Err(_) => CmpOrdering::Equal,
    };
    match CompareResult::try_from(c.result) {
        Ok(CompareResult::Equal) => result == CmpOrdering::Equal,
        Ok(CompareResult::NotEqual) => result != CmpOrdering::Equal,
        Ok(CompareResult::Greater) => result == CmpOrdering::Greater,
        Ok(CompareResult::Less) => result == CmpOrdering::Less,
        Err(_) => true,
    }
}

/// etcd's applierV3backend.Range over storeTxnRead.rangeKeys, reading the
/// store as of `cur_rev`.
///
/// Order of work, as etcd: index lookup (count = every key alive in the
/// range, before filters), fetch (only limit+1 when nothing needs the whole
/// set), drop by min/max mod/create revision, sort, cut to limit (`more`
/// when something was cut), blank values for keys_only.
fn range_at<T: ReadableTable<&'static [u8], &'static [u8]>>(
    index: &KeyTree,
    table: &KeyTables<T>,
    req: &RangeRequest,
    cur_rev: i64,
    compact_rev: i64,
) -> Result<RangeResponse, EtcdError> {
    let rev = match req.revision {
        r if r > cur_rev => return Err(EtcdError::FutureRev),
        r if r <= 0 => cur_rev,
        r => r,
    };
    if rev < compact_rev {
        return Err(EtcdError::Compacted);
    }
    let found = index.range(&KeySpan::new(&req.key, &req.range_end), rev);
    let count = found.len() as i64;
    if req.count_only || found.is_empty() {
        return Ok(RangeResponse { header: header(cur_rev), kvs: vec![], more: false, count });
    }

    let order = SortOrder::try_from(req.sort_order).unwrap_or(SortOrder::None);
    let target = SortTarget::try_from(req.sort_target).unwrap_or(SortTarget::Key);
    let needs_all = order != SortOrder::None
        || req.min_mod_revision != 0
        || req.max_mod_revision != 0
        || req.min_create_revision != 0
        || req.max_create_revision != 0;
    let fetch_n = if req.limit > 0 && !needs_all { (req.limit as usize).saturating_add(1) } else { usize::MAX };
    let mut kvs = Vec::with_capacity(found.len().min(fetch_n));
    for (_, f) in found.iter().take(fetch_n) {
        kvs.push(fetch(table, f.modified)?);
    }

    kvs.retain(|kv| {
        !(req.max_mod_revision != 0 && kv.mod_revision > req.max_mod_revision
            || req.min_mod_revision != 0 && kv.mod_revision < req.min_mod_revision
            || req.max_create_revision != 0 && kv.create_revision > req.max_create_revision
            || req.min_create_revision != 0 && kv.create_revision < req.min_create_revision)
    });

    // Results come in key order already; etcd sorts ascending by default
    // only when a target other than the key is named.
    let order = if target != SortTarget::Key && order == SortOrder::None { SortOrder::Ascend } else { order };
    if order != SortOrder::None {
        let by = |a: &KeyValue, b: &KeyValue| match target {
            SortTarget::Key => a.key.cmp(&b.key),
            SortTarget::Version => a.version.cmp(&b.version),
            SortTarget::Create => a.create_revision.cmp(&b.create_revision),
            SortTarget::Mod => a.mod_revision.cmp(&b.mod_revision),
            SortTarget::Value => a.value.cmp(&b.value),
        };
        // Stable, so ties stay in key order either way (Go's sort.Sort is
        // not stable; for fewer than 12 items it behaves the same).
        match order {
            SortOrder::Descend => kvs.sort_by(|a, b| by(b, a)),
            _ => kvs.sort_by(by),
        }
    }

    let mut more = false;
    if req.limit > 0 && kvs.len() > req.limit as usize {
        kvs.truncate(req.limit as usize);
        more = true;
    }
    if req.keys_only {
        for kv in &mut kvs {
            kv.value = Bytes::new();
        }
    }
    Ok(RangeResponse { header: header(cur_rev), kvs, more, count })
}

#[cfg(test)]
impl Store {
    /// How many chunks of big records the backend holds, for tests.
    pub(crate) fn chunks_for_test(&self) -> usize {
        use redb::ReadableTableMetadata;
        let rtx = self.db.read().begin_read().unwrap();
        let n = rtx.open_table(CHUNK_TABLE).unwrap().len().unwrap();
        usize::try_from(n).unwrap()
    }

    /// Every record in the backend as (main, sub, tombstone), for tests.
    pub(crate) fn state_for_test(&self) -> Vec<(i64, i64, bool)> {
        let _st = self.state.read();
        let rtx = self.db.read().begin_read().unwrap();
        let table = rtx.open_table(KEY_TABLE).unwrap();
        table
            .range::<&[u8]>(..)
            .unwrap()
            .map(|e| {
                let (k, _) = e.unwrap();
                let (r, t) = Revision::from_key(k.value()).unwrap();
                (r.main, r.sub, t)
            })
            .collect()
    }
}

impl Store {
    /// History for watchers: every change with main revision in
    /// `from..=to`, in revision order, read from the key table (a tombstone
    /// is a DELETE whose kv has only the key and `mod_revision`). Fails with
    /// [`EtcdError::Compacted`] when `from` is below the compact revision,
    /// judged in the same snapshot as the read.
    pub fn events(&self, from: i64, to: i64) -> Result<Vec<Event>, EtcdError> {
        let st = self.state.read();
        if from < st.compact_rev {
            return Err(EtcdError::Compacted);
        }
        let mut out = Vec::new();
        if to < from {
            return Ok(out);
        }
        let rtx = self.db.read().begin_read().map_err(io("begin read"))?;
        let tables = KeyTables {
            records: rtx.open_table(KEY_TABLE).map_err(io("open key table"))?,
            chunks: rtx.open_table(CHUNK_TABLE).map_err(io("open chunk table"))?,
        };
        let (lo, hi) = (Revision::new(from, 0).to_key(false), Revision::new(to + 1, 0).to_key(false));
        for entry in tables.records.range::<&[u8]>(lo.as_slice()..hi.as_slice()).map_err(io("scan key table"))? {
            let (k, v) = entry.map_err(io("scan key table"))?;
            let (rev, tombstone) = Revision::from_key(k.value())
                .ok_or_else(|| EtcdError::Internal("mvcc: corrupt revision key".into()))?;
            let mut kv = tables.decode(k.value(), v.value())?;
            let kind = if tombstone {
                kv = KeyValue { key: kv.key, mod_revision: rev.main, ..Default::default() };
                EventType::Delete
            } else {
                EventType::Put
            };
            out.push(Event { r#type: kind as i32, kv: Some(kv), prev_kv: None });
        }
        Ok(out)
    }
}
