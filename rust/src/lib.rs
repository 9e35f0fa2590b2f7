//! ketch's engine: everything hot and everything durable.
//!
//! Layers, bottom up (docs/architecture.md draws them):
//! - [`wal`]: the write-ahead log of Raft entries and hard state (framing, fsync, recovery).
//! - [`raftlog`]: raft-rs's `Storage` over the WAL.
//! - [`mvcc`]: etcd's revisioned key-value store over a redb backend.
//! - [`node`]: the Raft Ready loop (persist, apply, answer).
//! - [`engine`]: one bytes-in, bytes-out call per client request, and the completion queue.
//! - `py` (feature `python`): the only module that knows Python.

pub mod error;
pub mod mvcc;
pub mod pb;
pub mod wal;

pub use error::EtcdError;
