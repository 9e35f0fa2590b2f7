//! Raft snapshots of the backend: the leader copies its backend for a
//! member that is too far behind for the log; that member swaps the copy in
//! for its own.

use std::path::Path;
use std::sync::atomic::Ordering;

use super::{Membership, Store};
use crate::error::EtcdError;
use crate::mvcc::backend::io;

/// A backend copy and the Raft position it holds.
#[derive(Debug, Clone)]
pub struct SnapshotInfo {
    pub size: u64,
    /// The last Raft entry the copy has applied, and its term.
    pub index: u64,
    pub term: u64,
    /// The member list as of `index` (the snapshot's Raft ConfState).
    pub membership: Membership,
}

impl Store {
    /// Copies the backend to `dest` like [`Store::copy_to`], and says which
    /// Raft entry the copy holds and the membership at that entry.
    pub fn snapshot_to(&self, dest: &Path) -> Result<SnapshotInfo, EtcdError> {
        let _no_writer = self.writer.lock();
        let st = self.state.write();
        let _no_compaction_batch = self.compactions.physical.lock();
        self.make_durable()?;
        let size = crate::metrics::timed(&crate::metrics::BACKEND_SNAPSHOT, || std::fs::copy(&self.path, dest))
            .map_err(|e| {
                EtcdError::Internal(format!("snapshot: copying {} to {}: {e}", self.path.display(), dest.display()))
            })?;
        Ok(SnapshotInfo { size, index: st.consistent.0, term: st.consistent.1, membership: st.membership.clone() })
    }

    /// Replaces the whole backend with the copy at `from` (which is moved,
    /// not copied) and rebuilds everything in memory from it. Readers and
    /// writers wait meanwhile.
    pub fn restore(&self, from: &Path) -> Result<(), EtcdError> {
        let _no_writer = self.writer.lock();
        let mut st = self.state.write();
        let _no_compaction_batch = self.compactions.physical.lock();
        let mut db = self.db.write();
        let fail = |what: &str, e: std::io::Error| EtcdError::Internal(format!("snapshot: {what}: {e}"));
        std::fs::File::open(from).and_then(|f| f.sync_all()).map_err(|e| fail("syncing the received copy", e))?;
        std::fs::rename(from, &self.path).map_err(|e| fail("moving the received copy into place", e))?;
        if let Some(dir) = self.path.parent() {
            std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(|e| fail("syncing the data dir", e))?;
        }
        // The old Database keeps the replaced (unlinked) file until it is dropped here.
        self.generation.fetch_add(1, Ordering::AcqRel);
        *db = std::sync::Arc::new(crate::mvcc::backend::open_database(&self.path, self.opts.backend.as_ref())?);
        let tx = db.begin_write().map_err(io("begin write"))?;
        let (state, durable, resumed) = Self::rebuild(&tx)?;
        tx.commit().map_err(io("commit on restore"))?;
        // The queued jobs were for the replaced file.
        self.compactions.clear();
        let finished = resumed.as_ref().map_or(state.compact_rev, |(_, finished)| *finished);
        self.finished_compact_rev.store(finished, Ordering::Release);
        if let Some((job, _)) = resumed {
            self.compactions.schedule(vec![job]);
        }
        self.current_rev.store(state.current_rev, Ordering::Release);
        self.compact_rev.store(state.compact_rev, Ordering::Release);
        *self.consistent.lock() = state.consistent;
        *self.alarms.lock() = state.alarms.iter().copied().collect();
        *self.membership.lock() = state.membership.clone();
        *self.auth.lock() = state.auth.clone();
        self.durable_index.store(durable, Ordering::Release);
        self.dirty.store(false, Ordering::Release);
        *st = state;
        Ok(())
    }
}
