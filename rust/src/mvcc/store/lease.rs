//! The store's side of leases: the `lease` table, written in the same
//! backend transaction as the keys, and the one-revision delete a revoke
//! needs. The lessor itself (`crate::lease`) knows nothing of redb.
//!
//! - table `lease`: lease ID (i64 as 8 bytes big-endian) → granted TTL in
//!   seconds (i64, 8 bytes big-endian). etcd keeps `leasepb.Lease{ID, TTL,
//!   RemainingTTL}` in its "lease" bucket; ketch has no checkpoints, so the
//!   TTL is all there is to keep. A lease's expiry is never stored: a member
//!   that becomes leader gives every lease its full TTL again (etcd's Promote).
//! - which keys a lease holds is not stored separately: a key carries the
//!   lease of its latest live version (`KeyValue.lease`), read back at open.

use bytes::Bytes;
use redb::{ReadableDatabase, TableDefinition};

use super::{Store, WriteBatch};
use crate::error::EtcdError;
use crate::mvcc::backend::{fetch, io, KeyTables, CHUNK_TABLE, KEY_TABLE};
use crate::mvcc::key_index::KeySpan;
use crate::pb::etcdserverpb::DeleteRangeRequest;

/// Lease ID (i64 big-endian) → granted TTL (i64 big-endian).
pub(crate) const LEASE_TABLE: TableDefinition<&[u8], &[u8]> = TableDefinition::new("lease");

fn corrupt() -> EtcdError {
    EtcdError::Internal("mvcc: corrupt lease record".into())
}

impl Store {
    /// Every lease in the backend as (ID, granted TTL), in ID byte order.
    pub fn leases(&self) -> Result<Vec<(i64, i64)>, EtcdError> {
        let _st = self.state.read();
        let rtx = self.db.read().begin_read().map_err(io("begin read"))?;
        let table = match rtx.open_table(LEASE_TABLE) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
            Err(e) => return Err(io("open lease table")(e)),
        };
        let mut out = Vec::new();
        for entry in table.range::<&[u8]>(..).map_err(io("scan lease table"))? {
            let (k, v) = entry.map_err(io("scan lease table"))?;
            let id = i64::from_be_bytes(k.value().try_into().map_err(|_| corrupt())?);
            let ttl = i64::from_be_bytes(v.value().try_into().map_err(|_| corrupt())?);
            out.push((id, ttl));
        }
        Ok(out)
    }

    /// Every live key whose latest version names a lease, with that lease:
    /// what the lessor re-attaches at open (etcd's restore does the same
    /// from the records it replays).
    pub fn leased_keys(&self) -> Result<Vec<(Bytes, i64)>, EtcdError> {
        let st = self.state.read();
        let rtx = self.db.read().begin_read().map_err(io("begin read"))?;
        let tables = KeyTables {
            records: rtx.open_table(KEY_TABLE).map_err(io("open key table"))?,
            chunks: rtx.open_table(CHUNK_TABLE).map_err(io("open chunk table"))?,
        };
        let mut out = Vec::new();
        for (key, found) in st.index.range(&KeySpan::new(b"", &[0]), st.current_rev) {
            let kv = fetch(&tables, found.modified)?;
            if kv.lease != 0 {
                out.push((key, kv.lease));
            }
        }
        Ok(out)
    }
}

impl WriteBatch<'_> {
    /// The store revision as this batch has it so far (readers still see
    /// the last committed one).
    pub fn revision(&self) -> i64 {
        self.st.current_rev
    }

    /// Records a granted lease in this batch's transaction.
    pub fn put_lease(&mut self, id: i64, ttl: i64) -> Result<(), EtcdError> {
        let tx = self.tx.as_ref().expect("an open batch has a transaction");
        let mut table = tx.open_table(LEASE_TABLE).map_err(io("open lease table"))?;
        table.insert(id.to_be_bytes().as_slice(), ttl.to_be_bytes().as_slice()).map_err(io("write lease record"))?;
        Ok(())
    }

    /// Removes a lease's record in this batch's transaction.
    pub fn remove_lease(&mut self, id: i64) -> Result<(), EtcdError> {
        let tx = self.tx.as_ref().expect("an open batch has a transaction");
        let mut table = tx.open_table(LEASE_TABLE).map_err(io("open lease table"))?;
        table.remove(id.to_be_bytes().as_slice()).map_err(io("remove lease record"))?;
        Ok(())
    }

    /// Deletes `keys` as ONE write request: every delete shares the next main
    /// revision, sub revisions in the order given (a revoke passes them
    /// sorted, as etcd does, so every member writes the same records). Keys
    /// not alive are skipped; deleting nothing leaves the revision alone.
    /// Returns how many keys were deleted.
    pub fn delete_keys(&mut self, keys: &[Bytes]) -> Result<i64, EtcdError> {
        let mut w = self.writer()?;
        let mut deleted = 0;
        for key in keys {
            let req = DeleteRangeRequest { key: key.clone(), ..Default::default() };
            deleted += w.delete_range(&req)?.deleted;
        }
        w.finish();
        Ok(deleted)
    }

    /// (key, lease) for every key this batch wrote since the last call, in
    /// order: the lease of a put (0 for none), 0 for a delete. The lessor
    /// moves keys between leases from this.
    pub fn take_lease_moves(&mut self) -> Vec<(Bytes, i64)> {
        std::mem::take(&mut self.lease_moves)
    }
}
