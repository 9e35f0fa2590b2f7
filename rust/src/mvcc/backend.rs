//! The redb tables and the byte forms of what is kept in them.

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use prost::Message;
use redb::{BackendError, Database, ReadableTable, StorageBackend, TableDefinition};

use super::revision::Revision;
use crate::error::EtcdError;
use crate::pb::mvccpb::KeyValue;

/// Revision bytes (see [`Revision::to_key`]) → encoded `mvccpb.KeyValue`.
/// A tombstone's value is a KeyValue holding only the key.
pub(crate) const KEY_TABLE: TableDefinition<&[u8], &[u8]> = TableDefinition::new("key");
/// Fixed names → big-endian numbers (see the `META_*` names).
pub(crate) const META_TABLE: TableDefinition<&[u8], &[u8]> = TableDefinition::new("meta");

/// Raft index of the last entry applied (u64, 8 bytes).
pub(crate) const META_CONSISTENT_INDEX: &[u8] = b"consistent_index";
/// Raft term of that entry (u64, 8 bytes).
pub(crate) const META_CONSISTENT_TERM: &[u8] = b"consistent_term";
/// Revision bytes of the compaction last asked for; written before the
/// removal starts.
pub(crate) const META_SCHEDULED_COMPACT: &[u8] = b"scheduledCompactRev";
/// Revision bytes of the compaction last completed. Scheduled > finished on
/// open means a compaction was cut short: open finishes it.
pub(crate) const META_FINISHED_COMPACT: &[u8] = b"finishedCompactRev";

/// Makes the storage a backend file lives on, given the file's path: the
/// seam for fault and crash tests (redb's `StorageBackend`). Without one the
/// store uses redb's own file backend.
#[derive(Clone)]
pub struct BackendFactory(pub Arc<MakeBackend>);

/// See [`BackendFactory`].
pub type MakeBackend = dyn Fn(&Path) -> std::io::Result<Box<dyn StorageBackend>> + Send + Sync;

impl fmt::Debug for BackendFactory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("BackendFactory")
    }
}

/// Opens (or creates) the backend file at `path`, through `factory` if given.
pub(crate) fn open_database(path: &Path, factory: Option<&BackendFactory>) -> Result<Database, EtcdError> {
    let fail = |e: &dyn fmt::Display| EtcdError::Internal(format!("mvcc: open backend {}: {e}", path.display()));
    match factory {
        None => Database::create(path).map_err(|e| fail(&e)),
        Some(f) => {
            let backend = (f.0)(path).map_err(|e| fail(&e))?;
            Database::builder().create_with_backend(Boxed(backend)).map_err(|e| fail(&e))
        }
    }
}

/// A boxed backend is a backend: every call, locks included, goes to it.
#[derive(Debug)]
struct Boxed(Box<dyn StorageBackend>);

type Span = std::ops::Bound<u64>;
/// redb's I/O error type for backends (with std: `std::io::Error`).
type BackendIoError = std::io::Error;

impl StorageBackend for Boxed {
    fn len(&self) -> Result<u64, BackendIoError> {
        self.0.len()
    }
    fn read(&self, offset: u64, out: &mut [u8]) -> Result<(), BackendIoError> {
        self.0.read(offset, out)
    }
    fn set_len(&self, len: u64) -> Result<(), BackendIoError> {
        self.0.set_len(len)
    }
    fn sync_data(&self) -> Result<(), BackendIoError> {
        self.0.sync_data()
    }
    fn write(&self, offset: u64, data: &[u8]) -> Result<(), BackendIoError> {
        self.0.write(offset, data)
    }
    fn close(&self) -> Result<(), BackendIoError> {
        self.0.close()
    }
    fn try_lock_range(&self, start: Span, end: Span) -> Result<bool, BackendError> {
        self.0.try_lock_range(start, end)
    }
    fn try_lock_shared_range(&self, start: Span, end: Span) -> Result<bool, BackendError> {
        self.0.try_lock_shared_range(start, end)
    }
    fn lock_range(&self, start: Span, end: Span) -> Result<(), BackendError> {
        self.0.lock_range(start, end)
    }
    fn lock_shared_range(&self, start: Span, end: Span) -> Result<(), BackendError> {
        self.0.lock_shared_range(start, end)
    }
    fn unlock_range(&self, start: Span, end: Span) -> Result<(), BackendError> {
        self.0.unlock_range(start, end)
    }
    fn query_lock_range(&self, start: Span, end: Span) -> Result<bool, BackendError> {
        self.0.query_lock_range(start, end)
    }
}

pub(crate) fn internal(what: &str) -> impl Fn(redb::Error) -> EtcdError + '_ {
    move |e| EtcdError::Internal(format!("mvcc: {what}: {e}"))
}

/// Turns any redb error type into [`EtcdError::Internal`] naming the step.
pub(crate) fn io<E: Into<redb::Error>>(what: &str) -> impl Fn(E) -> EtcdError + '_ {
    move |e| internal(what)(e.into())
}

pub(crate) fn decode_kv(bytes: &[u8]) -> Result<KeyValue, EtcdError> {
    KeyValue::decode(bytes).map_err(|e| EtcdError::Internal(format!("mvcc: corrupt key record: {e}")))
}

/// The live (non-tombstone) record at `rev`.
pub(crate) fn fetch<T: ReadableTable<&'static [u8], &'static [u8]>>(
    table: &T,
    rev: Revision,
) -> Result<KeyValue, EtcdError> {
    let key = rev.to_key(false);
    let Some(v) = table.get(key.as_slice()).map_err(io("read key record"))? else {
        return Err(EtcdError::Internal(format!(
            "mvcc: revision {}.{} is in the index but not in the backend",
            rev.main, rev.sub
        )));
    };
    decode_kv(v.value())
}

pub(crate) fn read_u64<T: ReadableTable<&'static [u8], &'static [u8]>>(
    meta: &T,
    name: &[u8],
) -> Result<u64, EtcdError> {
    Ok(match meta.get(name).map_err(io("read meta"))? {
        Some(v) => u64::from_be_bytes(
            v.value().try_into().map_err(|_| EtcdError::Internal("mvcc: corrupt meta value".into()))?,
        ),
        None => 0,
    })
}

/// The compacted revision of a store never compacted: etcd's floor is -1, so
/// compacting at 0 once succeeds.
pub(crate) const NEVER_COMPACTED: i64 = -1;

pub(crate) fn read_rev<T: ReadableTable<&'static [u8], &'static [u8]>>(
    meta: &T,
    name: &[u8],
) -> Result<i64, EtcdError> {
    Ok(match meta.get(name).map_err(io("read meta"))? {
        Some(v) => Revision::from_key(v.value())
            .ok_or_else(|| EtcdError::Internal("mvcc: corrupt compact revision".into()))?
            .0
            .main,
        None => NEVER_COMPACTED,
    })
}
