//! Hashes for comparing members (Maintenance.Hash, Maintenance.HashKV).
//!
//! CRC-32 (IEEE) over table names, then each record's key bytes and value
//! bytes in key order. Every member applies the same entries to the same
//! tables, so members agree; etcd's own numbers differ (Castagnoli over
//! bbolt's buckets, whose content differs from ketch's tables).

use std::path::Path;
use std::sync::atomic::Ordering;

use std::collections::HashSet;

use redb::{Durability, ReadableDatabase, ReadableTable, TableDefinition};

use super::alarm::ALARM_TABLE;
use super::lease::LEASE_TABLE;
use super::{CompactionHash, Store, COMPACTION_HASHES_KEPT};
use crate::error::EtcdError;
use crate::mvcc::backend::{
    io, KeyTables, CHUNK_TABLE, KEY_TABLE, META_CONSISTENT_INDEX, META_CONSISTENT_TERM, META_TABLE,
};
use crate::mvcc::revision::Revision;

type Table = TableDefinition<'static, &'static [u8], &'static [u8]>;

impl Store {
    /// A consistent copy of the backend at `dest` (etcd's backend
    /// Snapshot): holds writers off, makes every commit durable so the file
    /// holds it, and copies the file. Returns the copy's size.
    pub fn copy_to(&self, dest: &Path) -> Result<u64, EtcdError> {
        let _no_writer = self.writer.lock();
        let _no_batch = self.state.write();
        let _no_compaction_batch = self.compactions.physical.lock();
        self.make_durable()?;
        std::fs::copy(&self.path, dest).map_err(|e| {
            EtcdError::Internal(format!("snapshot: copying {} to {}: {e}", self.path.display(), dest.display()))
        })
    }

    /// Commits nothing, durably: every earlier commit reaches the file.
    /// Call with the writer and state locks held (no batch open).
    pub(super) fn make_durable(&self) -> Result<(), EtcdError> {
        self.check_failed()?;
        let mut tx = self.db.read().begin_write().map_err(io("begin write"))?;
        tx.set_durability(Durability::Immediate)
            .map_err(|e| EtcdError::Internal(format!("mvcc: set durability: {e}")))?;
        tx.commit().map_err(io("durable commit")).map_err(|e| self.fail(e))?;
        self.durable_index.store(self.consistent.lock().0, Ordering::Release);
        self.dirty.store(false, Ordering::Release);
        Ok(())
    }

    /// etcd's HashByRev: the key table up to main revision `rev` (0: the
    /// current one). Returns (hash, current revision, compact revision);
    /// the compact revision is -1 when never compacted, as etcd's.
    pub fn hash_kv(&self, rev: i64) -> Result<(u32, i64, i64), EtcdError> {
        let started = std::time::Instant::now();
        let st = self.state.read();
        let (current, compacted) = (st.current_rev, st.compact_rev);
        if rev > 0 && rev <= compacted {
            return Err(EtcdError::Compacted);
        }
        if rev > 0 && rev > current {
            return Err(EtcdError::FutureRev);
        }
        let rev = if rev == 0 { current } else { rev };
        // Below the compact revision the key table may still hold garbage
        // that a compaction batch has not reached yet (members get there at
        // their own pace): count only what compacting at `rev` would keep,
        // as etcd's HashByRev does.
        let keep = st.index.keep(rev);
        let rtx = self.db.read().begin_read().map_err(io("begin read"))?;
        let tables = KeyTables {
            records: rtx.open_table(KEY_TABLE).map_err(io("open key table"))?,
            chunks: rtx.open_table(CHUNK_TABLE).map_err(io("open chunk table"))?,
        };
        let hash = hash_key_table(&tables, &keep, compacted, rev)?;
        crate::metrics::HASH_REV.since(started);
        Ok((hash, current, compacted))
    }

    /// [`Store::hash_kv`] as a peer asks it: a revision a recent
    /// compaction hashed answers with that hash and the compact revision
    /// before it, even once compacted, so the leader's compaction hash check
    /// can compare it (etcd's hashStorage). A client's Maintenance.HashKV
    /// keeps the plain rules (a compacted revision is refused, as etcd 3.4's).
    pub fn peer_hash_kv(&self, rev: i64) -> Result<(u32, i64, i64), EtcdError> {
        let stored = self.compaction_hashes.lock().iter().find(|h| h.revision == rev).copied();
        if let Some(h) = stored {
            let current = self.state.read().current_rev;
            return Ok((h.hash, current, h.compact_revision));
        }
        self.hash_kv(rev)
    }

    /// The hashes the last compactions recorded (up to
    /// [`COMPACTION_HASHES_KEPT`], oldest first; etcd's hashStorage.Hashes).
    /// Kept in memory only, as etcd's.
    pub fn compaction_hashes(&self) -> Vec<CompactionHash> {
        self.compaction_hashes.lock().iter().copied().collect()
    }

    /// etcd's hashStorage.Store.
    pub(super) fn store_compaction_hash(&self, h: CompactionHash) {
        crate::log_info!(
            "storing new hash";
            "hash" => h.hash,
            "revision" => h.revision,
            "compact-revision" => h.compact_revision,
        );
        let mut hashes = self.compaction_hashes.lock();
        hashes.push_back(h);
        hashes.make_contiguous().sort_by_key(|h| h.revision);
        while hashes.len() > COMPACTION_HASHES_KEPT {
            hashes.pop_front();
        }
    }

    /// etcd's backend Hash: every table, leaving out the Raft position
    /// (members apply at their own pace; etcd ignores it too).
    pub fn hash_all(&self) -> Result<u32, EtcdError> {
        let started = std::time::Instant::now();
        let _st = self.state.read();
        let rtx = self.db.read().begin_read().map_err(io("begin read"))?;
        let mut h = crc32fast::Hasher::new();
        let tables: [(&str, Table); 5] = [
            ("alarm", ALARM_TABLE),
            ("key", KEY_TABLE),
            ("key_chunk", CHUNK_TABLE),
            ("lease", LEASE_TABLE),
            ("meta", META_TABLE),
        ];
        for (name, def) in tables {
            let table = match rtx.open_table(def) {
                Ok(t) => t,
                Err(redb::TableError::TableDoesNotExist(_)) => continue,
                Err(e) => return Err(io("open table")(e)),
            };
            h.update(name.as_bytes());
            for entry in table.range::<&[u8]>(..).map_err(io("scan table"))? {
                let (k, v) = entry.map_err(io("scan table"))?;
                if name == "meta" && (k.value() == META_CONSISTENT_INDEX || k.value() == META_CONSISTENT_TERM) {
                    continue;
                }
                h.update(k.value());
                h.update(v.value());
            }
        }
        crate::metrics::HASH.since(started);
        Ok(h.finalize())
    }
}

/// etcd's kvHasher: the key table's records up to main revision `rev`,
/// those at or below `compacted` only when `keep` holds them.
pub(super) fn hash_key_table<T: ReadableTable<&'static [u8], &'static [u8]>>(
    tables: &KeyTables<T>,
    keep: &HashSet<Revision>,
    compacted: i64,
    rev: i64,
) -> Result<u32, EtcdError> {
    let lower = Revision::new(compacted + 1, 0);
    let mut h = crc32fast::Hasher::new();
    h.update(b"key");
    // Chunked records are hashed whole, as written.
    let end = Revision::new(rev + 1, 0).to_key(false);
    for entry in tables.records.range::<&[u8]>(..end.as_slice()).map_err(io("scan key table"))? {
        let (k, v) = entry.map_err(io("scan key table"))?;
        let r =
            Revision::from_key(k.value()).ok_or_else(|| EtcdError::Internal("mvcc: corrupt revision key".into()))?.0;
        if r < lower && !keep.contains(&r) {
            continue;
        }
        h.update(k.value());
        h.update(&tables.load(k.value(), v.value())?);
    }
    Ok(h.finalize())
}
