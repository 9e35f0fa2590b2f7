//! The redb tables and the byte forms of what is kept in them.

use prost::Message;
use redb::{ReadableTable, TableDefinition};

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
