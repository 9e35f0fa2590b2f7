//! etcd's MVCC key-value store: every write makes a new revision, old
//! revisions stay readable until compacted.
//!
//! # Data model (exactly etcd's)
//!
//! The store revision starts at 1; each write request (put, a delete that
//! deletes something, a txn that writes something) adds 1, and all writes
//! inside one txn share that main revision, told apart by a sub revision
//! (0, 1, 2, ... in txn order). A key's KeyValue carries `create_revision`
//! (the put that began its current life), `mod_revision`, `version` (1 at
//! creation, +1 per put, gone at delete) and `lease`.
//!
//! ```text
//!   rev 2  put a=1           a: create 2, mod 2, ver 1
//!   rev 3  txn{put a=2; put b=1}    (writes 3.0 and 3.1)
//!                            a: create 2, mod 3, ver 2   b: create 3, mod 3, ver 1
//!   rev 4  delete a          a: gone (tombstone 4.0)
//!   rev 5  put a=3           a: create 5, mod 5, ver 1   (a new generation)
//!          range a @3 → a=2 ; range a @4 → nothing
//!   compact 4 → reads at 1..3 fail with Compacted; 4 and 5 still work
//! ```
//!
//! # Storage layout (redb)
//!
//! - table `key`: [`revision`] bytes → encoded `mvccpb.KeyValue`, as etcd's
//!   "key" bucket: 8-byte big-endian main, `_`, 8-byte big-endian sub (17
//!   bytes), plus a `t` byte for a delete, whose value is a KeyValue with
//!   only the key. Byte order = revision order. A record longer than one
//!   page's worth (`CHUNK_BYTES`, 4,065 bytes) keeps its body in table
//!   `key_chunk` as whole-page chunks and only a head (`0xff`, chunk
//!   count, the last partial chunk) here; see `backend::KeyTables`. redb
//!   would otherwise round a big record's leaf up to a power of two of
//!   pages (a 64 KiB value: 128 KiB).
//! - table `meta`: `consistent_index`, `consistent_term` (u64 big-endian,
//!   written in the same transaction as the batch's data) and
//!   `scheduledCompactRev` / `finishedCompactRev` (revision bytes): the
//!   first written when a compaction applies, the second when its last
//!   physical batch commits (`store/compact.rs`); open queues again a
//!   compaction scheduled but not finished.
//! - table `lease`: lease ID → granted TTL (both i64 big-endian), written in
//!   the same transaction as the keys a grant or revoke touches (see
//!   `store/lease.rs`).
//! - table `alarm`: active alarms, (member ID, alarm type) → nothing (see
//!   `store/alarm.rs`).
//! - in memory: the key index ([`key_index`]), key → generations of
//!   revisions, rebuilt on open by replaying `key` in order. The current
//!   revision is the newest record's main revision, or the compact revision
//!   if that is higher (compacting at the top revision can remove its
//!   records, e.g. a delete's tombstone).
//!
//! # Concurrency
//!
//! Readers take the state lock shared; a [`WriteBatch`] holds it exclusive
//! from `write_batch()` to commit/drop, so no reader sees the index ahead of
//! the backend. The numeric accessors (`current_revision`, ...) read copies
//! published at commit and never wait.
//!
//! # Errors
//!
//! Validation errors leave the store untouched. An [`EtcdError::Internal`]
//! from a batch method means the backend failed underneath: drop the batch
//! (which rolls back both backend and index).

mod backend;
mod key_index;
mod revision;
mod store;
mod tamper;
mod validate;

#[cfg(test)]
mod model_tests;
#[cfg(test)]
mod tests;

pub use backend::BackendFactory;
pub use store::{import_backend, AuthRecords, BackendImport, StoreView, ViewMeta};
pub use store::{
    CompactStep, CompactionWaiter, LeaseCheck, Membership, SnapshotInfo, Store, StoreOptions, WriteBatch,
    ALARM_CORRUPT, ALARM_NOSPACE,
};
pub use tamper::tamper_value;
pub use validate::{check_delete_range, check_put, check_range, check_txn};
