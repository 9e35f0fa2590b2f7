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
/// The bodies of records too big for one page: revision bytes + chunk number
/// (u16 big-endian) → [`CHUNK_BYTES`] of the record. See [`KeyTables`].
pub(crate) const CHUNK_TABLE: TableDefinition<&[u8], &[u8]> = TableDefinition::new("key_chunk");
/// One chunk fills a 4 KiB leaf exactly: redb's leaf header (4 bytes), the
/// key's and value's end offsets (4 + 4), the 19-byte key, then this.
pub(crate) const CHUNK_BYTES: usize = 4096 - 4 - 4 - 4 - 19;
/// First byte of a chunked record's head. An encoded KeyValue never starts
/// with it (0xff would be field 31 with wire type 7, which does not exist).
const CHUNKED: u8 = 0xff;

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

/// etcd's auth bucket: "authEnabled" → one byte (1: on), "authRevision" →
/// u64 big-endian. See `store/auth.rs`.
pub(crate) const AUTH_TABLE: TableDefinition<&[u8], &[u8]> = TableDefinition::new("auth");
/// User name → encoded `authpb.User` (password: the bcrypt hash).
pub(crate) const AUTH_USERS_TABLE: TableDefinition<&[u8], &[u8]> = TableDefinition::new("auth_users");
/// Role name → encoded `authpb.Role`.
pub(crate) const AUTH_ROLES_TABLE: TableDefinition<&[u8], &[u8]> = TableDefinition::new("auth_roles");

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

/// redb's page cache. redb's default (1 GiB) made a member hold twice
/// etcd's memory after a million writes (benches/memory.py); pages beyond
/// this come from the kernel's page cache, as bbolt's mmap reads them.
const PAGE_CACHE_BYTES: usize = 64 * 1024 * 1024;

/// Opens (or creates) the backend file at `path`, through `factory` if given.
pub(crate) fn open_database(path: &Path, factory: Option<&BackendFactory>) -> Result<Database, EtcdError> {
    let fail = |e: &dyn fmt::Display| EtcdError::Internal(format!("mvcc: open backend {}: {e}", path.display()));
    let mut builder = Database::builder();
    builder.set_cache_size(PAGE_CACHE_BYTES);
    match factory {
        None => builder.create(path).map_err(|e| fail(&e)),
        Some(f) => {
            let backend = (f.0)(path).map_err(|e| fail(&e))?;
            builder.create_with_backend(Boxed(backend)).map_err(|e| fail(&e))
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

/// The key table and the chunks of its big records, read or written together.
///
/// redb gives a leaf holding one pair too big for a page a run of pages
/// rounded up to a power of two, so a 64 KiB value would take 128 KiB. A
/// record longer than [`CHUNK_BYTES`] is therefore kept as whole-page
/// chunks plus a head in the key table holding the rest:
///
/// ```text
///   key       rev ─► [0xff][n: u16 BE][tail]          (tail < CHUNK_BYTES)
///   key_chunk rev‖0 ─► CHUNK_BYTES ... rev‖n-1 ─► CHUNK_BYTES
///   record = chunk 0 ‖ ... ‖ chunk n-1 ‖ tail
/// ```
///
/// Records come in revision order, so every chunk lands in a leaf of its own
/// that is exactly one page. Compaction removes a record's chunks with it.
pub(crate) struct KeyTables<T> {
    pub records: T,
    pub chunks: T,
}

impl<T: ReadableTable<&'static [u8], &'static [u8]>> KeyTables<T> {
    /// The record whose head (the key table's value at `rev_key`) is `head`.
    pub fn decode(&self, rev_key: &[u8], head: &[u8]) -> Result<KeyValue, EtcdError> {
        decode_kv(&self.load(rev_key, head)?)
    }

    /// The record's bytes, whole, whose head is `head`.
    pub fn load<'h>(&self, rev_key: &[u8], head: &'h [u8]) -> Result<std::borrow::Cow<'h, [u8]>, EtcdError> {
        if !is_chunked(head) {
            return Ok(std::borrow::Cow::Borrowed(head));
        }
        let corrupt = || EtcdError::Internal("mvcc: corrupt chunked record".into());
        let n = u16::from_be_bytes(head.get(1..3).ok_or_else(corrupt)?.try_into().map_err(|_| corrupt())?);
        let mut whole = Vec::with_capacity(usize::from(n) * CHUNK_BYTES + head.len() - 3);
        for i in 0..n {
            let chunk = self.chunks.get(chunk_key(rev_key, i).as_slice()).map_err(io("read record chunk"))?;
            whole.extend_from_slice(chunk.ok_or_else(corrupt)?.value());
        }
        whole.extend_from_slice(&head[3..]);
        Ok(std::borrow::Cow::Owned(whole))
    }
}

impl KeyTables<redb::Table<'_, &'static [u8], &'static [u8]>> {
    /// Writes `record` at `rev_key`, chunked if it is longer than a chunk.
    pub fn insert(&mut self, rev_key: &[u8], record: &[u8]) -> Result<(), EtcdError> {
        if record.len() <= CHUNK_BYTES {
            self.records.insert(rev_key, record).map_err(io("write key record"))?;
            return Ok(());
        }
        let n = record.len() / CHUNK_BYTES;
        let n16 = u16::try_from(n).map_err(|_| EtcdError::Internal("mvcc: record too large to chunk".into()))?;
        for (i, chunk) in (0..n16).zip(record.chunks_exact(CHUNK_BYTES)) {
            self.chunks.insert(chunk_key(rev_key, i).as_slice(), chunk).map_err(io("write record chunk"))?;
        }
        let mut head = Vec::with_capacity(3 + record.len() - n * CHUNK_BYTES);
        head.push(CHUNKED);
        head.extend_from_slice(&n16.to_be_bytes());
        head.extend_from_slice(&record[n * CHUNK_BYTES..]);
        self.records.insert(rev_key, head.as_slice()).map_err(io("write key record"))?;
        Ok(())
    }

    /// Removes the chunks of the records whose keys are given (their heads
    /// already removed from the key table).
    pub fn remove_chunks(&mut self, rev_keys: &[Vec<u8>]) -> Result<(), EtcdError> {
        for rev_key in rev_keys {
            let (lo, hi) = (chunk_key(rev_key, 0), chunk_key(rev_key, u16::MAX));
            self.chunks.retain_in(lo.as_slice()..=hi.as_slice(), |_, _| false).map_err(io("remove record chunks"))?;
        }
        Ok(())
    }
}

/// True if a key table value is the head of a chunked record.
pub(crate) fn is_chunked(head: &[u8]) -> bool {
    head.first() == Some(&CHUNKED)
}

fn chunk_key(rev_key: &[u8], i: u16) -> Vec<u8> {
    let mut k = Vec::with_capacity(rev_key.len() + 2);
    k.extend_from_slice(rev_key);
    k.extend_from_slice(&i.to_be_bytes());
    k
}

/// The live (non-tombstone) record at `rev`.
pub(crate) fn fetch<T: ReadableTable<&'static [u8], &'static [u8]>>(
    tables: &KeyTables<T>,
    rev: Revision,
) -> Result<KeyValue, EtcdError> {
    let key = rev.to_key(false);
    let Some(v) = tables.records.get(key.as_slice()).map_err(io("read key record"))? else {
        return Err(EtcdError::Internal(format!(
            "mvcc: revision {}.{} is in the index but not in the backend",
            rev.main, rev.sub
        )));
    };
    tables.decode(&key, v.value())
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
        Some(v) => {
            Revision::from_key(v.value())
                .ok_or_else(|| EtcdError::Internal("mvcc: corrupt compact revision".into()))?
                .0
                .main
        }
        None => NEVER_COMPACTED,
    })
}
