//! Snapshots in etcd's own format: a bbolt database laid out as etcd 3.5's
//! backend, followed by the SHA-256 trailer that `etcdctl snapshot save`
//! keeps. ketch writes one from a read view of its store (Maintenance.
//! Snapshot), reads one (its own or a real etcd's) for `snapshot status`,
//! and restores one into a new ketch data dir.
//!
//! # bbolt's file (what the writer makes and the reader checks)
//!
//! The file is an array of pages of one size (the meta's `page_size`; ketch
//! writes 4,096). Every number is little-endian. Every page starts with
//!
//! ```text
//!   id u64 | flags u16 | count u16 | overflow u32        (16 bytes)
//!   flags: 0x01 branch, 0x02 leaf, 0x04 meta, 0x10 freelist
//!   overflow: how many more pages this one runs on over (a big node)
//! ```
//!
//! - **pages 0 and 1: meta**, after the header: `magic u32 (0xED0CDAED) |
//!   version u32 (2) | page_size u32 | flags u32 | root bucket {root pgid
//!   u64, sequence u64} | freelist pgid u64 | pgid u64 (high-water mark:
//!   the database is pages 0..pgid) | txid u64 | checksum u64`, the checksum
//!   being FNV-1a 64 of the 56 bytes before it. bbolt alternates commits
//!   between the two and opens the valid one with the higher txid.
//! - **freelist page**: `count` page IDs (u64 each) that no tree uses; a
//!   count of 0xFFFF means the real count is the first u64. A meta freelist
//!   of u64::MAX means none is kept (bbolt then counts unreachable pages free).
//! - **leaf page**: `count` elements of `flags u32 | pos u32 | ksize u32 |
//!   vsize u32`, then the keys and values; `pos` is from the element's own
//!   first byte to its key, and the value follows the key. Flag 0x01 marks a
//!   value that is a bucket: `{root pgid u64, sequence u64}`, and when the
//!   root is 0 the bucket is *inline*: a whole leaf page (header included)
//!   follows in the value itself.
//! - **branch page**: `count` elements of `pos u32 | ksize u32 | pgid u64`,
//!   then the keys; child i holds the keys from its key up to the next's.
//!
//! ```text
//!  page 0,1 meta ── root ──► [leaf: "alarm"→{root 9} ... "meta"→{root 0, inline leaf}]
//!                                          │
//!                                          ▼
//!                         [branch: k1→p4, k50→p5] ──► [leaf p4: k1..k49] [leaf p5: k50..]
//! ```
//!
//! The writer ([`writer`]) builds each bucket's tree bottom up from its keys
//! in order: leaves filled to the page size (one record bigger than a page
//! gets a leaf of its own with overflow pages), branches above them with at
//! least two children each, never an inline bucket. Pages follow in file
//! order from 3: the buckets' trees by name, then the root bucket; page 2
//! is an empty freelist; both metas (txid 0 and 1) are written last. A fresh
//! file frees nothing, so every page is reachable and `tx.Check` passes.
//!
//! # etcd's buckets (what the pages hold; see [`backend`])
//!
//! - `key`: revision (8-byte big-endian main, `_`, 8-byte sub, and `t` for a
//!   delete) → `mvccpb.KeyValue` (a tombstone's has only the key): ketch's
//!   key table as it is.
//! - `meta`: `consistent_index` and `term` (u64 big-endian), `confState`
//!   (raftpb.ConfState as JSON), `scheduledCompactRev` / `finishedCompactRev`
//!   (revision bytes) when compacted.
//! - `lease`: lease ID (i64 big-endian) → `leasepb.Lease{ID, TTL}`.
//! - `members`: member ID in hex → etcd's member JSON; `members_removed`:
//!   ID in hex → `removed`; `cluster`: `clusterVersion` → "3.5.0".
//! - `alarm`: `etcdserverpb.AlarmMember` → empty.
//! - `auth`: `authEnabled` (1 byte, 1 on / 0 off; absent until auth was
//!   first enabled or disabled), `authRevision` (u64 big-endian);
//!   `authUsers`: name → `authpb.User` (bcrypt hash, roles, no_password);
//!   `authRoles`: name → `authpb.Role` (key permissions): ketch's auth
//!   tables as they are, see [`backend::AuthState`]. A restore brings them
//!   back, so the restored member enforces the same users and roles.
//!
//! After the file, the snapshot stream carries SHA-256 of it (32 bytes): a
//! bbolt file is whole pages, so a length of 32 past a multiple of 512 is
//! how etcdctl tells a trailer is there.
//!
//! Raft snapshots between ketch members are not this: they stay copies of
//! the redb file (`Store::snapshot_to`).

mod backend;
mod crc32c;
mod page;
mod reader;
mod restore;
mod writer;

#[cfg(test)]
mod tests;

pub use backend::{
    read_snapshot, snapshot_status, status_of_bytes, write_snapshot, AuthState, SnapshotContent, SnapshotStatus,
};
pub use reader::BboltFile;
pub use restore::{restore, RestoreSummary, RestoreTarget};
pub use writer::{BboltWriter, TreeWriter};

/// What went wrong with a snapshot, in one line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct SnapshotError(pub String);

impl SnapshotError {
    pub fn new(msg: String) -> SnapshotError {
        SnapshotError(msg)
    }

    pub(crate) fn io(what: &str, e: &std::io::Error) -> SnapshotError {
        SnapshotError(format!("{what}: {e}"))
    }
}

impl From<crate::error::EtcdError> for SnapshotError {
    fn from(e: crate::error::EtcdError) -> SnapshotError {
        SnapshotError(e.to_string())
    }
}
