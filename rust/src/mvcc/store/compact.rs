//! Compaction in two halves, as etcd's: the logical half at apply time, the
//! physical half in bounded batches afterwards, off the write path.
//!
//! ```text
//!  apply (node thread, in the batch's transaction)       compactor thread
//!  ─────────────────────────────────────────────         ─────────────────────────────
//!  check rev; keep = index.compact(rev)
//!  meta.scheduledCompactRev = rev; compact_rev = rev
//!  commit ── queue Job{rev, keep} ────────────────────►  compact_step, repeated:
//!  (readers see compact_rev at once: nothing below            one redb write transaction:
//!   it is readable, so what is left of it in the                scan ≤ batch_limit records from
//!   key table is only garbage)                                  the cursor up to rev; delete the
//!                                                               ones not in keep (and their chunks);
//!                                                               fewer than the limit: the job is done,
//!                                                               meta.finishedCompactRev = rev
//!                                                             commit (fsynced, as etcd's ForceCommit)
//!                                                             pause (etcd: 10 ms), next batch
//! ```
//!
//! **Order with the apply loop.** redb has one writer at a time: a batch
//! that wants to begin while a compaction batch holds the writer waits for
//! it (one bounded batch), and the other way round. Neither side holds the
//! other's lock while it waits: the compactor never takes the state lock,
//! and the apply loop holds the state lock but no compactor lock. A job is
//! queued only after the batch that scheduled it commits, so the compactor
//! never sees a job whose index compaction could still be rolled back.
//!
//! **Copies of the file** (snapshot, copy, restore) take the `physical`
//! lock after the state lock, so no compaction batch commits while the file
//! is copied or replaced. A defragment instead pauses the batches for its
//! whole run (`Compactions::pause`) and takes no lock the compactor waits for.
//!
//! **Crash.** The scheduled mark is in the batch that compacted the index,
//! the finished mark in the job's last batch; a store opened with the
//! scheduled mark above the finished one compacts its rebuilt index at the
//! scheduled revision and queues the physical job again (etcd's restore
//! does the same). Deleting again what an earlier run deleted is a no-op.

use std::collections::{HashSet, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::{Condvar, Mutex};
use redb::{Durability, ReadableTable};

use super::{State, Store};
use crate::error::EtcdError;
use crate::mvcc::backend::{io, is_chunked, KeyTables, CHUNK_TABLE, KEY_TABLE, META_FINISHED_COMPACT, META_TABLE};
use crate::mvcc::revision::Revision;

/// Someone waiting for a physical compaction to finish (a Compact RPC with
/// `physical: true`): a completion token and the answer to give it.
#[derive(Debug)]
pub struct CompactionWaiter {
    pub token: u64,
    pub answer: Vec<u8>,
}

/// What one [`Store::compact_step`] did.
#[derive(Debug, Default)]
pub struct CompactStep {
    /// No job was queued; nothing was done.
    pub idle: bool,
    /// Records deleted by this batch.
    pub deleted: usize,
    /// The job this batch finished (its revision), if it did.
    pub finished: Option<i64>,
    /// Waiters whose compaction is done: answer them.
    pub waiters: Vec<CompactionWaiter>,
}

/// A compaction cut short, found on open: its job and the finished revision.
pub(super) type Resumed = Option<(Job, i64)>;

/// One scheduled physical compaction.
pub(super) struct Job {
    rev: i64,
    /// The compact revision before this one.
    prev: i64,
    /// The revisions `<= rev` that stay (the index's answer at schedule time).
    keep: Arc<HashSet<Revision>>,
    /// The smallest key table key not yet looked at.
    cursor: Vec<u8>,
    /// The compaction hash so far (etcd's kvHasher, fed as the batches walk
    /// the records, as etcd's compaction feeds it); `None` for a job resumed
    /// after a restart, whose first run already removed records the hash
    /// counts, so it records no hash rather than a wrong one.
    hash: Option<crc32fast::Hasher>,
    waiters: Vec<CompactionWaiter>,
}

impl Job {
    /// `hashed`: record the compaction hash when done (not for a resumed job).
    pub(super) fn new(rev: i64, prev: i64, keep: HashSet<Revision>, hashed: bool) -> Job {
        let hash = hashed.then(|| {
            let mut h = crc32fast::Hasher::new();
            h.update(b"key");
            h
        });
        Job { rev, prev, keep: Arc::new(keep), cursor: Vec::new(), hash, waiters: Vec::new() }
    }
}

/// The queue of physical compactions, oldest first, and the worker's wake-up.
#[derive(Default)]
pub(super) struct Compactions {
    queue: Mutex<Queue>,
    work: Condvar,
    /// Held for a whole compaction batch; see the module doc.
    pub(super) physical: Mutex<()>,
    /// Set while a defragment copies the file: no batch runs (the copy
    /// relies on the key tables only growing; see `store/defrag.rs`).
    paused: std::sync::atomic::AtomicBool,
}

#[derive(Default)]
struct Queue {
    jobs: VecDeque<Job>,
    /// Waiters released without their job running (a restore replaced the
    /// store), handed out by the next step.
    released: Vec<CompactionWaiter>,
}

impl Compactions {
    pub(super) fn schedule(&self, jobs: Vec<Job>) {
        if jobs.is_empty() {
            return;
        }
        self.queue.lock().jobs.extend(jobs);
        self.work.notify_all();
    }

    /// Stops (or lets go on) the batches. Once `pause(true)` returns, no
    /// batch is running.
    pub(super) fn pause(&self, paused: bool) {
        let _turn = self.physical.lock();
        self.paused.store(paused, Ordering::Release);
    }

    /// Drops every queued job (the file they were for is gone); their
    /// waiters are answered by the next step. Call with `physical` held.
    pub(super) fn clear(&self) {
        let mut q = self.queue.lock();
        let jobs = std::mem::take(&mut q.jobs);
        for job in jobs {
            q.released.extend(job.waiters);
        }
    }
}

impl Store {
    /// Runs one batch of the oldest queued physical compaction: at most
    /// `batch_limit` key records looked at, the garbage among them deleted,
    /// in one fsynced redb write transaction. Call it again (after a pause)
    /// until it reports `idle`.
    pub fn compact_step(&self, batch_limit: usize) -> Result<CompactStep, EtcdError> {
        let c = &self.compactions;
        let _turn = c.physical.lock();
        if c.paused.load(Ordering::Acquire) {
            // Not idle: the worker comes back after its pause between batches.
            return Ok(CompactStep::default());
        }
        let mut step = CompactStep { waiters: std::mem::take(&mut c.queue.lock().released), ..CompactStep::default() };
        let Some((rev, prev, keep, cursor, mut hash)) =
            c.queue.lock().jobs.front_mut().map(|j| (j.rev, j.prev, j.keep.clone(), j.cursor.clone(), j.hash.take()))
        else {
            step.idle = true;
            return Ok(step);
        };
        // Records at or below `prev` count in the hash only if kept (etcd's kvHasher).
        let hashed_from = Revision::new(prev + 1, 0);
        self.check_failed()?;
        let db = self.db.read();
        let mut tx = db.begin_write().map_err(io("begin compaction batch"))?;
        let end = Revision::new(rev + 1, 0).to_key(false);
        let mut next_cursor = None;
        {
            let mut tables = KeyTables {
                records: tx.open_table(KEY_TABLE).map_err(io("open key table"))?,
                chunks: tx.open_table(CHUNK_TABLE).map_err(io("open chunk table"))?,
            };
            let mut garbage = Vec::new();
            let mut chunked = Vec::new();
            let mut scanned = 0;
            for entry in tables
                .records
                .range::<&[u8]>(cursor.as_slice()..end.as_slice())
                .map_err(io("scan key table"))?
                .take(batch_limit.max(1))
            {
                let (k, v) = entry.map_err(io("scan key table"))?;
                scanned += 1;
                let key = k.value().to_vec();
                let revision = Revision::from_key(&key).map(|(r, _)| r);
                let kept = revision.is_some_and(|r| keep.contains(&r));
                if let Some(h) = hash.as_mut() {
                    if kept || revision.is_some_and(|r| r >= hashed_from) {
                        h.update(&key);
                        h.update(&tables.load(&key, v.value())?);
                    }
                }
                if !kept {
                    if is_chunked(v.value()) {
                        chunked.push(key.clone());
                    }
                    garbage.push(key.clone());
                }
                next_cursor = Some(key);
            }
            for key in &garbage {
                tables.records.remove(key.as_slice()).map_err(io("compact key table"))?;
            }
            tables.remove_chunks(&chunked)?;
            step.deleted = garbage.len();
            crate::metrics::MVCC_COMPACTED_KEYS.add(garbage.len() as u64);
            if scanned < batch_limit.max(1) {
                let mark = Revision::new(rev, 0).to_key(false);
                let mut meta = tx.open_table(META_TABLE).map_err(io("open meta table"))?;
                meta.insert(META_FINISHED_COMPACT, mark.as_slice()).map_err(io("write compact mark"))?;
                step.finished = Some(rev);
            }
        }
        tx.set_durability(Durability::Immediate)
            .map_err(|e| EtcdError::Internal(format!("mvcc: set durability: {e}")))?;
        tx.commit().map_err(io("commit compaction batch")).map_err(|e| self.fail(e))?;
        drop(db);

        let mut q = c.queue.lock();
        if step.finished.is_some() {
            if let Some(job) = q.jobs.pop_front() {
                step.waiters.extend(job.waiters);
            }
            self.finished_compact_rev.store(rev, Ordering::Release);
            drop(q);
            if let Some(h) = hash {
                self.store_compaction_hash(super::CompactionHash {
                    hash: h.finalize(),
                    revision: rev,
                    compact_revision: prev,
                });
            }
        } else if let Some(job) = q.jobs.front_mut() {
            job.hash = hash;
            if let Some(mut key) = next_cursor {
                // The smallest key after the last one looked at.
                key.push(0);
                job.cursor = key;
            }
        }
        Ok(step)
    }

    /// Waits up to `timeout` for a physical compaction to be queued; true
    /// if one is.
    pub fn wait_for_compaction(&self, timeout: Duration) -> bool {
        let c = &self.compactions;
        let mut q = c.queue.lock();
        if q.jobs.is_empty() && q.released.is_empty() {
            c.work.wait_for(&mut q, timeout);
        }
        !q.jobs.is_empty() || !q.released.is_empty()
    }

    /// Has `waiter` answered once the physical compaction at `rev` is done;
    /// hands it back if that is already so.
    pub fn when_compacted(&self, rev: i64, waiter: CompactionWaiter) -> Option<CompactionWaiter> {
        let mut q = self.compactions.queue.lock();
        match q.jobs.iter_mut().find(|j| j.rev >= rev) {
            Some(job) => {
                job.waiters.push(waiter);
                None
            }
            None => Some(waiter),
        }
    }

    /// Takes every waiter of every queued job (the store failed: they get an error).
    pub fn take_compaction_waiters(&self) -> Vec<CompactionWaiter> {
        let mut q = self.compactions.queue.lock();
        let mut out = std::mem::take(&mut q.released);
        for job in &mut q.jobs {
            out.append(&mut job.waiters);
        }
        out
    }

    /// The revision of the last physical compaction completed (-1: none).
    pub fn finished_compact_revision(&self) -> i64 {
        self.finished_compact_rev.load(Ordering::Acquire)
    }

    /// Runs every queued physical compaction to the end, now, without
    /// pauses (tests, and tools that open a store without an engine);
    /// returns the waiters to answer.
    pub fn finish_compactions(&self) -> Result<Vec<CompactionWaiter>, EtcdError> {
        let mut waiters = Vec::new();
        loop {
            let step = self.compact_step(usize::MAX)?;
            waiters.extend(step.waiters);
            if step.idle {
                return Ok(waiters);
            }
        }
    }

    /// True while a physical compaction is queued or running (and can
    /// still run: not after the store failed).
    pub fn compaction_pending(&self) -> bool {
        self.check_failed().is_ok() && !self.compactions.queue.lock().jobs.is_empty()
    }
}

/// The logical half (see the module doc): the index compacted and the
/// scheduled mark written in `meta`; returns the physical job to queue.
/// `hashed`: see [`Job::new`].
pub(super) fn compact_index(
    st: &mut State,
    meta: &mut redb::Table<'_, &'static [u8], &'static [u8]>,
    rev: i64,
    hashed: bool,
) -> Result<Job, EtcdError> {
    let mark = Revision::new(rev, 0).to_key(false);
    meta.insert(crate::mvcc::backend::META_SCHEDULED_COMPACT, mark.as_slice()).map_err(io("write compact mark"))?;
    let prev = st.compact_rev;
    let keep = st.index.compact(rev);
    st.compact_rev = rev;
    Ok(Job::new(rev, prev, keep, hashed))
}
