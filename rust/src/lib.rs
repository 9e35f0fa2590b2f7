//! ketch's engine: everything hot and everything durable.
//!
//! Layers, bottom up (docs/architecture.md draws them):
//! - [`wal`]: the write-ahead log of Raft entries and hard state (framing, fsync, recovery).
//! - [`raftlog`]: raft-rs's `Storage` over the WAL.
//! - [`mvcc`]: etcd's revisioned key-value store over a redb backend.
//! - [`compactor`]: compaction off the write path (the backend's batches) and auto-compaction.
//! - [`lease`]: leases, their keys, and their expiry (decided by the leader, applied through Raft).
//! - [`node`]: the Raft Ready loop (persist, apply, answer; membership changes).
//! - [`peer`]: Raft messages to and from other members, as the batches the transport carries.
//! - [`watch`]: etcd's Watch; watchers fed from apply (live) or from history (catch-up).
//! - [`bbolt`]: snapshots in etcd's format (a bbolt file as etcd's backend), written, read, restored.
//! - [`engine`]: one bytes-in, bytes-out call per client request; [`completion`] carries answers back.
//! - [`metrics`]: Prometheus counters and histograms under etcd's names, rendered for `/metrics`.
//! - [`server`]: the wire: etcd's gRPC API (tonic) and HTTP beside it on the client port, and
//!   the peer transport, on tokio.
//! - `py` (feature `python`): the only module that knows Python.

pub mod auth;
pub mod bbolt;
pub mod compactor;
pub mod completion;
pub mod corruption;
pub mod engine;
pub mod error;
mod eventfd;
pub mod lease;
pub mod logging;
pub mod membership;
pub mod metrics;
pub mod mvcc;
mod node;
pub mod pb;
pub mod peer;
pub mod raftlog;
pub mod server;
pub mod wal;
pub mod watch;

#[cfg(feature = "python")]
mod py;

pub use engine::{Engine, EngineConfig, Method};
pub use error::EtcdError;
pub use node::StorageSeams;
