//! The engine's one entry point: a serialized etcd request in, a serialized
//! response (or an etcd error) out, asynchronously.
//!
//! ```text
//!  submit(method, bytes, token)
//!     │ writes (Put, DeleteRange, Txn, Compact)      │ reads (Range, Status, MemberList)
//!     ▼                                              ▼
//!  node thread: Ready loop                        reader threads
//!   propose → WAL append + one fsync per Ready      decode, Range at the store
//!   → apply to MVCC → answer                        linearizable Range: ask the node
//!                                                   for a read index first, run once
//!                                                   the store has applied up to it
//!     └──────────────► CompletionQueue ◄─────────────┘
//!                       (eventfd; the caller drains it)
//! ```
//! Nothing here knows Python; `py.rs` wraps [`Engine`] for `ketch._core`.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use bytes::Bytes;
use crossbeam_channel::{Receiver, Sender};
use parking_lot::Mutex;
use prost::Message;

use crate::auth::worker::AuthJob;
use crate::auth::{AuthInfo, Caller};
use crate::completion::CompletionQueue;
use crate::error::EtcdError;
use crate::mvcc::{self, Store, StoreOptions};
use crate::node::{Node, NodeMsg};
use crate::pb::etcdserverpb::{
    AuthenticateRequest, CompactionResponse, DeleteRangeResponse, HashKvRequest, HashKvResponse, HashResponse,
    MemberAddResponse, MemberListResponse, MemberPromoteResponse, MemberRemoveResponse, MemberUpdateResponse,
    PutResponse, RangeRequest, RangeResponse, ResponseHeader, StatusResponse, TxnResponse,
};
use crate::peer::{OutboundBatch, PeerOutbox};
use crate::watch::WatchHub;

/// Which etcd RPC a request's bytes belong to. The numbers are the binding's
/// contract with Python (`ketch._core.KV_RANGE`, ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum Method {
    KvRange = 1,
    KvPut = 2,
    KvDeleteRange = 3,
    KvTxn = 4,
    KvCompact = 5,
    MaintenanceStatus = 6,
    ClusterMemberList = 7,
    LeaseGrant = 8,
    LeaseRevoke = 9,
    LeaseKeepAlive = 10,
    LeaseTimeToLive = 11,
    LeaseLeases = 12,
    /// Every action goes through Raft, GET too (etcd's EtcdServer.Alarm).
    MaintenanceAlarm = 13,
    MaintenanceHash = 14,
    MaintenanceHashKv = 15,
    /// Copies the backend to a file beside it; answers that file's path
    /// (UTF-8), not a message: the caller streams the file and removes it.
    MaintenanceSnapshot = 16,
    /// Per member, not through Raft (etcd's Defragment).
    MaintenanceDefragment = 17,
    MaintenanceMoveLeader = 18,
    // Watch streams (see `watch`): the token names the stream, and every
    // response of the stream comes back under it. Numbered apart from the
    // unary methods.
    /// Opens a stream (empty request).
    WatchOpen = 20,
    /// One serialized WatchRequest on the stream.
    WatchRequest = 21,
    /// The caller handed n more responses to its client (n: u64 little-endian).
    WatchAck = 22,
    /// Drops the stream and its watchers (empty request).
    WatchClose = 23,
    // The Cluster service's changes, proposed by the node thread.
    ClusterMemberAdd = 24,
    ClusterMemberRemove = 25,
    ClusterMemberUpdate = 26,
    /// Leader only: answers NotLeader elsewhere, for the caller to forward.
    ClusterMemberPromote = 27,
    /// After a ReadIndex (as etcd's) the password is checked on the auth
    /// worker, then the entry that issues the token is proposed.
    AuthAuthenticate = 28,
    // The rest of the Auth service: every call is a Raft entry (etcd's), the
    // reads too; UserAdd and UserChangePassword hash on the auth worker first.
    AuthEnable = 29,
    AuthDisable = 30,
    AuthStatus = 31,
    AuthUserAdd = 32,
    AuthUserGet = 33,
    AuthUserList = 34,
    AuthUserDelete = 35,
    AuthUserChangePassword = 36,
    AuthUserGrantRole = 37,
    AuthUserRevokeRole = 38,
    AuthRoleAdd = 39,
    AuthRoleGet = 40,
    AuthRoleList = 41,
    AuthRoleDelete = 42,
    AuthRoleGrantPermission = 43,
    AuthRoleRevokePermission = 44,
}

impl Method {
    pub const ALL: [Method; 43] = [
        Method::KvRange,
        Method::KvPut,
        Method::KvDeleteRange,
        Method::KvTxn,
        Method::KvCompact,
        Method::MaintenanceStatus,
        Method::ClusterMemberList,
        Method::LeaseGrant,
        Method::LeaseRevoke,
        Method::LeaseKeepAlive,
        Method::LeaseTimeToLive,
        Method::LeaseLeases,
        Method::MaintenanceAlarm,
        Method::MaintenanceHash,
        Method::MaintenanceHashKv,
        Method::MaintenanceSnapshot,
        Method::MaintenanceDefragment,
        Method::MaintenanceMoveLeader,
        Method::WatchOpen,
        Method::WatchRequest,
        Method::WatchAck,
        Method::WatchClose,
        Method::ClusterMemberAdd,
        Method::ClusterMemberRemove,
        Method::ClusterMemberUpdate,
        Method::ClusterMemberPromote,
        Method::AuthAuthenticate,
        Method::AuthEnable,
        Method::AuthDisable,
        Method::AuthStatus,
        Method::AuthUserAdd,
        Method::AuthUserGet,
        Method::AuthUserList,
        Method::AuthUserDelete,
        Method::AuthUserChangePassword,
        Method::AuthUserGrantRole,
        Method::AuthUserRevokeRole,
        Method::AuthRoleAdd,
        Method::AuthRoleGet,
        Method::AuthRoleList,
        Method::AuthRoleDelete,
        Method::AuthRoleGrantPermission,
        Method::AuthRoleRevokePermission,
    ];

    pub fn from_u32(n: u32) -> Option<Method> {
        Method::ALL.into_iter().find(|m| *m as u32 == n)
    }

    /// The binding's constant name for this method.
    pub fn const_name(self) -> &'static str {
        match self {
            Method::KvRange => "KV_RANGE",
            Method::KvPut => "KV_PUT",
            Method::KvDeleteRange => "KV_DELETE_RANGE",
            Method::KvTxn => "KV_TXN",
            Method::KvCompact => "KV_COMPACT",
            Method::MaintenanceStatus => "MAINTENANCE_STATUS",
            Method::ClusterMemberList => "CLUSTER_MEMBER_LIST",
            Method::LeaseGrant => "LEASE_GRANT",
            Method::LeaseRevoke => "LEASE_REVOKE",
            Method::LeaseKeepAlive => "LEASE_KEEP_ALIVE",
            Method::LeaseTimeToLive => "LEASE_TIME_TO_LIVE",
            Method::LeaseLeases => "LEASE_LEASES",
            Method::MaintenanceAlarm => "MAINTENANCE_ALARM",
            Method::MaintenanceHash => "MAINTENANCE_HASH",
            Method::MaintenanceHashKv => "MAINTENANCE_HASH_KV",
            Method::MaintenanceSnapshot => "MAINTENANCE_SNAPSHOT",
            Method::MaintenanceDefragment => "MAINTENANCE_DEFRAGMENT",
            Method::MaintenanceMoveLeader => "MAINTENANCE_MOVE_LEADER",
            Method::WatchOpen => "WATCH_OPEN",
            Method::WatchRequest => "WATCH_REQUEST",
            Method::WatchAck => "WATCH_ACK",
            Method::WatchClose => "WATCH_CLOSE",
            Method::ClusterMemberAdd => "CLUSTER_MEMBER_ADD",
            Method::ClusterMemberRemove => "CLUSTER_MEMBER_REMOVE",
            Method::ClusterMemberUpdate => "CLUSTER_MEMBER_UPDATE",
            Method::ClusterMemberPromote => "CLUSTER_MEMBER_PROMOTE",
            Method::AuthAuthenticate => "AUTH_AUTHENTICATE",
            Method::AuthEnable => "AUTH_ENABLE",
            Method::AuthDisable => "AUTH_DISABLE",
            Method::AuthStatus => "AUTH_STATUS",
            Method::AuthUserAdd => "AUTH_USER_ADD",
            Method::AuthUserGet => "AUTH_USER_GET",
            Method::AuthUserList => "AUTH_USER_LIST",
            Method::AuthUserDelete => "AUTH_USER_DELETE",
            Method::AuthUserChangePassword => "AUTH_USER_CHANGE_PASSWORD",
            Method::AuthUserGrantRole => "AUTH_USER_GRANT_ROLE",
            Method::AuthUserRevokeRole => "AUTH_USER_REVOKE_ROLE",
            Method::AuthRoleAdd => "AUTH_ROLE_ADD",
            Method::AuthRoleGet => "AUTH_ROLE_GET",
            Method::AuthRoleList => "AUTH_ROLE_LIST",
            Method::AuthRoleDelete => "AUTH_ROLE_DELETE",
            Method::AuthRoleGrantPermission => "AUTH_ROLE_GRANT_PERMISSION",
            Method::AuthRoleRevokePermission => "AUTH_ROLE_REVOKE_PERMISSION",
        }
    }

    /// The Auth calls proposed as entries (all but Authenticate, which reads first).
    pub(crate) fn is_auth_entry(self) -> bool {
        (Method::AuthEnable as u32..=Method::AuthRoleRevokePermission as u32).contains(&(self as u32))
    }

    fn is_write(self) -> bool {
        matches!(self, Method::KvPut | Method::KvDeleteRange | Method::KvTxn | Method::KvCompact)
            || matches!(self, Method::LeaseGrant | Method::LeaseRevoke | Method::MaintenanceAlarm)
            || matches!(self, Method::MaintenanceMoveLeader)
            || self.is_auth_entry()
            || matches!(
                self,
                Method::ClusterMemberAdd
                    | Method::ClusterMemberRemove
                    | Method::ClusterMemberUpdate
                    | Method::ClusterMemberPromote
            )
    }
}

/// How to start a member. Identity fields are used only when the data dir is
/// new; an existing member keeps the identity recorded in its WAL.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    pub data_dir: PathBuf,
    pub name: String,
    pub member_id: u64,
    pub cluster_id: u64,
    pub peer_urls: Vec<String>,
    pub client_urls: Vec<String>,
    /// Largest write request accepted, in bytes (etcd's --max-request-bytes).
    pub max_request_bytes: usize,
    /// Writes that grow the store fail with NoSpace past this backend size; 0 = etcd's default 2 GiB.
    pub quota_backend_bytes: u64,
    pub max_txn_ops: usize,
    /// Reported by Maintenance.Status.
    pub version: String,
    /// One Raft tick; etcd's --heartbeat-interval (100 ms).
    pub tick: Duration,
    /// Election timeout in ticks (etcd: 1000 ms / 100 ms = 10).
    pub election_ticks: usize,
    /// Fold the Raft log into the store after this many applied entries (etcd's --snapshot-count).
    pub snapshot_count: u64,
    pub reader_threads: usize,
    /// A new cluster's members (ID, name, peer URLs), this one included; used
    /// only when the data dir is new. Empty: this member joins a running
    /// cluster, which tells it everything through Raft.
    pub initial_members: Vec<(u64, String, Vec<String>)>,
    /// etcd's --wal-dir: the WAL's directory instead of `<data_dir>/member/wal`.
    pub wal_dir: Option<PathBuf>,
    /// Raft's pre-vote phase (etcd's --pre-vote; on by default in etcd 3.5).
    pub pre_vote: bool,
    /// Fast-forward the election ticks at start (--initial-election-tick-advance).
    pub initial_election_tick_advance: bool,
    /// Refuse member changes that would leave too few started voters for a
    /// quorum (--strict-reconfig-check).
    pub strict_reconfig_check: bool,
    /// Most learners at once (--experimental-max-learners).
    pub max_learners: usize,
    /// Entries kept behind a log compaction for followers a little behind
    /// (--experimental-snapshot-catchup-entries).
    pub snapshot_catchup_entries: u64,
    /// Never fsync the WAL (--unsafe-no-fsync): for tests only.
    pub unsafe_no_fsync: bool,
    /// WAL segments kept after the log no longer needs them (--max-wals; 0: all).
    pub max_wals: usize,
    /// --auto-compaction-mode with --auto-compaction-retention.
    pub auto_compaction: crate::compactor::AutoCompaction,
    /// --experimental-compaction-batch-limit / -sleep-interval.
    pub compaction_pacing: crate::compactor::CompactionPacing,
    /// Restart as the only voter of the cluster in the data dir (--force-new-cluster).
    pub force_new_cluster: bool,
    /// The WAL's and backend's storage and the fatal-error policy (tests swap them).
    pub storage: crate::node::StorageSeams,
    /// bcrypt cost of new password hashes (--bcrypt-cost; out of 4..=31: 10).
    pub bcrypt_cost: u32,
    /// Token kind and options (--auth-token: `simple`, or `jwt,...`).
    pub auth_token: String,
    /// How long a simple token lives unused (--auth-token-ttl).
    pub auth_token_ttl: Duration,
}

impl EngineConfig {
    pub fn new(data_dir: impl Into<PathBuf>, member_id: u64, cluster_id: u64) -> EngineConfig {
        EngineConfig {
            data_dir: data_dir.into(),
            name: "default".into(),
            member_id,
            cluster_id,
            peer_urls: vec!["http://localhost:2380".into()],
            client_urls: vec!["http://localhost:2379".into()],
            max_request_bytes: 1536 * 1024,
            quota_backend_bytes: 0,
            max_txn_ops: 128,
            version: ETCD_VERSION.into(),
            tick: Duration::from_millis(100),
            election_ticks: 10,
            snapshot_count: 100_000,
            reader_threads: 2,
            initial_members: vec![(member_id, "default".into(), vec!["http://localhost:2380".into()])],
            wal_dir: None,
            pre_vote: true,
            // etcd's default is true (the server passes it); engines in tests
            // keep their election timing.
            initial_election_tick_advance: false,
            strict_reconfig_check: true,
            max_learners: 1,
            snapshot_catchup_entries: 5000,
            unsafe_no_fsync: false,
            max_wals: crate::wal::DEFAULT_MAX_SEGMENTS,
            auto_compaction: crate::compactor::AutoCompaction::Off,
            compaction_pacing: crate::compactor::CompactionPacing::default(),
            force_new_cluster: false,
            storage: crate::node::StorageSeams::default(),
            bcrypt_cost: 10,
            auth_token: "simple".into(),
            auth_token_ttl: Duration::from_mins(5),
        }
    }

    pub fn wal_dir(&self) -> PathBuf {
        self.wal_dir.clone().unwrap_or_else(|| self.data_dir.join("member").join("wal"))
    }

    pub fn db_path(&self) -> PathBuf {
        self.data_dir.join("member").join("db.redb")
    }
}

/// etcd's default backend quota when --quota-backend-bytes is 0.
/// The etcd server version an engine reports unless told otherwise (Python
/// passes ketch.ETCD_VERSION, the same text; tests/wheel checks they agree).
pub const ETCD_VERSION: &str = "3.5.13";

pub const DEFAULT_QUOTA_BYTES: u64 = 2 * 1024 * 1024 * 1024;

/// The Raft state readers report, published by the node thread after every Ready.
#[derive(Default)]
pub struct RaftStatus {
    pub term: AtomicU64,
    pub leader: AtomicU64,
    pub last_index: AtomicU64,
    pub commit_index: AtomicU64,
    pub applied_index: AtomicU64,
    pub wal_fsyncs: AtomicU64,
    pub wal_fsync_nanos: AtomicU64,
    /// Bumped on every applied change to the member list.
    pub membership_version: AtomicU64,
    pub is_learner: AtomicBool,
    /// This member applied its own removal.
    pub removed: AtomicBool,
    /// The cluster's member list has this member's name and client URLs.
    pub published: AtomicBool,
    /// Snapshots from a leader this member installed since it started.
    pub snapshots_installed: AtomicU64,
}

/// Who this member is, fixed for its life.
#[derive(Debug, Clone)]
pub struct Identity {
    pub member_id: u64,
    pub cluster_id: u64,
    pub name: String,
    pub peer_urls: Vec<String>,
    pub client_urls: Vec<String>,
}

/// State every engine thread reads.
pub struct Shared {
    pub store: Store,
    pub completions: CompletionQueue,
    pub raft: RaftStatus,
    pub identity: Identity,
    pub config: EngineConfig,
    /// Set when the storage underneath failed; every later request is refused.
    pub failed: AtomicBool,
    /// Leases and the keys attached to them (`crate::lease`).
    pub lessor: crate::lease::Lessor,
    /// Every watch stream and watcher (see `watch`).
    pub watch: WatchHub,
    /// Raft messages for other members, waiting for the transport.
    pub peers: PeerOutbox,
    /// This member's auth tokens (`crate::auth::tokens`).
    pub tokens: crate::auth::tokens::Tokens,
}

impl Shared {
    /// Fills the parts of a response header only the server knows, as etcd's
    /// header.fill does: cluster, member, term, and the store revision if the
    /// layer below left it unset.
    pub fn fill_header<R: HasHeader>(&self, resp: &mut R) {
        let h = resp.header_mut().get_or_insert_with(ResponseHeader::default);
        h.cluster_id = self.identity.cluster_id;
        h.member_id = self.identity.member_id;
        h.raft_term = self.raft.term.load(Ordering::Acquire);
        if R::HAS_REVISION && h.revision == 0 {
            h.revision = self.store.current_revision();
        }
    }

    pub fn answer<R: Message + HasHeader>(&self, token: u64, result: Result<R, EtcdError>) {
        let encoded = result.map(|mut resp| {
            self.fill_header(&mut resp);
            resp.encode_to_vec()
        });
        self.completions.push(token, encoded);
    }
}

/// Responses whose header the engine fills.
pub trait HasHeader {
    /// etcd's Cluster service answers with no store revision in its header.
    const HAS_REVISION: bool = true;
    fn header_mut(&mut self) -> &mut Option<ResponseHeader>;
}

macro_rules! has_header {
    ($($t:ty),*) => {$(
        impl HasHeader for $t {
            fn header_mut(&mut self) -> &mut Option<ResponseHeader> { &mut self.header }
        }
    )*};
}
has_header!(
    crate::pb::etcdserverpb::AuthEnableResponse,
    crate::pb::etcdserverpb::AuthDisableResponse,
    crate::pb::etcdserverpb::AuthStatusResponse,
    crate::pb::etcdserverpb::AuthenticateResponse,
    crate::pb::etcdserverpb::AuthUserAddResponse,
    crate::pb::etcdserverpb::AuthUserGetResponse,
    crate::pb::etcdserverpb::AuthUserListResponse,
    crate::pb::etcdserverpb::AuthUserDeleteResponse,
    crate::pb::etcdserverpb::AuthUserChangePasswordResponse,
    crate::pb::etcdserverpb::AuthUserGrantRoleResponse,
    crate::pb::etcdserverpb::AuthUserRevokeRoleResponse,
    crate::pb::etcdserverpb::AuthRoleAddResponse,
    crate::pb::etcdserverpb::AuthRoleGetResponse,
    crate::pb::etcdserverpb::AuthRoleListResponse,
    crate::pb::etcdserverpb::AuthRoleDeleteResponse,
    crate::pb::etcdserverpb::AuthRoleGrantPermissionResponse,
    crate::pb::etcdserverpb::AuthRoleRevokePermissionResponse,
    RangeResponse,
    PutResponse,
    DeleteRangeResponse,
    TxnResponse,
    CompactionResponse,
    StatusResponse,
    HashResponse,
    HashKvResponse
);

macro_rules! has_header_without_revision {
    ($($t:ty),*) => {$(
        impl HasHeader for $t {
            const HAS_REVISION: bool = false;
            fn header_mut(&mut self) -> &mut Option<ResponseHeader> { &mut self.header }
        }
    )*};
}
has_header_without_revision!(
    MemberListResponse,
    MemberAddResponse,
    MemberRemoveResponse,
    MemberUpdateResponse,
    MemberPromoteResponse
);

/// A read that waits for a Raft read index, then runs on a reader.
pub(crate) enum LinearRead {
    Range(RangeRequest),
    /// etcd 3.5 answers MemberList after a ReadIndex, so a member just
    /// added is listed by every member.
    MemberList,
    /// etcd checks the password after a ReadIndex (on the auth worker here).
    Authenticate(AuthenticateRequest),
}

/// Work for the reader threads.
pub(crate) enum ReadTask {
    /// Straight from submit: not yet decoded.
    Raw {
        method: Method,
        request: Bytes,
        token: u64,
        who: Option<AuthInfo>,
    },
    /// A linearizable Range whose read index the store has now applied.
    Linearized {
        request: LinearRead,
        token: u64,
    },
    Stop,
}

/// A running member's engine. Dropping it closes it.
pub struct Engine {
    shared: Arc<Shared>,
    to_node: Sender<NodeMsg>,
    to_readers: Sender<ReadTask>,
    to_auth: Sender<AuthJob>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    /// Tells the ketch-compact thread to stop.
    compactor_stop: Arc<AtomicBool>,
}

/// Why an engine could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Wal(#[from] crate::wal::WalError),
    #[error("{0}")]
    Store(EtcdError),
    #[error("raft: {0}")]
    Raft(#[from] raft::Error),
    #[error("{what}: {source}")]
    Io { what: String, source: std::io::Error },
    #[error("{0}")]
    Config(String),
}

impl Engine {
    // Taken by value as a builder's finish is: the caller has no further use for it.
    #[allow(clippy::needless_pass_by_value)]
    pub fn start(config: EngineConfig) -> Result<Engine, StartError> {
        let member_dir = config.data_dir.join("member");
        std::fs::create_dir_all(&member_dir)
            .map_err(|source| StartError::Io { what: format!("creating data dir {}", member_dir.display()), source })?;
        let store = Store::open(
            &config.db_path(),
            StoreOptions { max_txn_ops: config.max_txn_ops, backend: config.storage.backend.clone() },
        )
        .map_err(StartError::Store)?;
        let completions = CompletionQueue::new()
            .map_err(|source| StartError::Io { what: "creating the completion eventfd".into(), source })?;
        let peers = PeerOutbox::new()
            .map_err(|source| StartError::Io { what: "creating the peer outbox eventfd".into(), source })?;
        if store.compact_revision() > store.finished_compact_revision().max(0) {
            crate::log_info!("resume scheduled compaction"; "meta-bucket-name" => "meta", "meta-bucket-name-key" => "scheduledCompactRev", "scheduled-compact-revision" => store.compact_revision());
        }
        let lessor = crate::lease::open(&store, &config).map_err(StartError::Store)?;
        let tokens = crate::auth::tokens::Tokens::from_flag(&config.auth_token, config.auth_token_ttl)
            .map_err(|e| StartError::Config(format!("--auth-token {}: {e}", config.auth_token)))?;
        let (mut node, identity) = Node::open(&config, &store)?;
        let (to_auth, auth_rx) = crossbeam_channel::unbounded();
        node.set_auth_worker(to_auth.clone());
        let store_rev = store.current_revision();
        let shared = Arc::new(Shared {
            store,
            completions,
            raft: RaftStatus::default(),
            identity,
            config: config.clone(),
            failed: AtomicBool::new(false),
            lessor,
            watch: WatchHub::new(
                store_rev,
                crate::watch::Limits { max_request_bytes: config.max_request_bytes, ..Default::default() },
            ),
            peers,
            tokens,
        });
        let me = shared.store.membership().members.get(&shared.identity.member_id).cloned();
        shared.raft.is_learner.store(me.as_ref().is_some_and(|m| m.is_learner), Ordering::Release);
        let (to_node, node_rx) = crossbeam_channel::unbounded();
        let (to_readers, readers_rx) = crossbeam_channel::unbounded();
        let mut threads = Vec::new();
        {
            let shared = shared.clone();
            let to_readers = to_readers.clone();
            let (settled_tx, settled) = crossbeam_channel::bounded(1);
            threads.push(spawn("ketch-raft", move || node.run(&shared, &node_rx, &to_readers, &settled_tx)));
            // Replaying what was committed before the start takes a moment;
            // a sole member leads once it is done.
            let _ = settled.recv();
        }
        {
            let shared = shared.clone();
            threads.push(spawn("ketch-watch", move || shared.watch.run(&*shared)));
        }
        let compactor_stop = Arc::new(AtomicBool::new(false));
        {
            let shared = shared.clone();
            let stop = compactor_stop.clone();
            let pacing = config.compaction_pacing;
            threads.push(spawn("ketch-compact", move || crate::compactor::run_physical(&shared, pacing, &stop)));
        }
        {
            let shared = shared.clone();
            let to_node = to_node.clone();
            threads.push(spawn("ketch-auth", move || crate::auth::worker::run(&shared, &auth_rx, &to_node)));
        }
        for i in 0..config.reader_threads.max(1) {
            let shared = shared.clone();
            let rx = readers_rx.clone();
            let to_node = to_node.clone();
            let to_auth = to_auth.clone();
            threads.push(spawn(&format!("ketch-read-{i}"), move || {
                reader_loop(&shared, &rx, &to_node, &to_auth);
            }));
        }
        Ok(Engine { shared, to_node, to_readers, to_auth, threads: Mutex::new(threads), compactor_stop })
    }

    pub fn identity(&self) -> &Identity {
        &self.shared.identity
    }

    pub fn completions(&self) -> &CompletionQueue {
        &self.shared.completions
    }

    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// Hands one request to the engine; never blocks. The answer arrives in
    /// [`Engine::completions`] under `token`.
    pub fn submit(&self, method: u32, request: Bytes, token: u64) {
        let Some(method) = Method::from_u32(method) else {
            self.shared.completions.push(token, Err(EtcdError::BadRequest(format!("unknown method number {method}"))));
            return;
        };
        self.submit_method(method, request, token);
    }

    /// [`Engine::submit`] for a caller that already knows the method, with
    /// no token or certificate (refused where auth is enabled and the call needs a user).
    pub fn submit_method(&self, method: Method, request: Bytes, token: u64) {
        self.submit_as(method, request, token, &Caller::default());
    }

    /// Who `caller` is, and whether they may make this call as etcd's API
    /// layer decides before anything is proposed or read (the checks at
    /// apply and on the readers come later). `None`: auth is off, or no user.
    pub fn authorize(&self, method: Method, request: &[u8], caller: &Caller) -> Result<Option<AuthInfo>, EtcdError> {
        let auth = self.shared.store.auth();
        crate::auth::api::authorize(&auth, &self.shared.tokens, &self.shared.lessor, method, request, caller)
    }

    /// [`Engine::submit_method`] on behalf of `caller`.
    pub fn submit_as(&self, method: Method, request: Bytes, token: u64, caller: &Caller) {
        if crate::watch::is_watch_method(method) {
            // In line, not on a thread: a stream's calls keep their order.
            let auth = self.shared.store.auth();
            let who = crate::auth::api::resolve(&auth, &self.shared.tokens, caller);
            // etcd's isWatchPermitted: a token that does not resolve permits nothing.
            let permitted =
                |key: &[u8], end: &[u8]| who.as_ref().is_ok_and(|w| auth.check_read(w.as_ref(), key, end).is_ok());
            crate::watch::submit(&self.shared, method, &request, token, &permitted);
            return;
        }
        if self.shared.failed.load(Ordering::Acquire) {
            self.shared.completions.push(token, Err(failed_error()));
            return;
        }
        let who = match self.authorize(method, &request, caller) {
            Ok(who) => who,
            Err(e) => {
                self.shared.completions.push(token, Err(e));
                return;
            }
        };
        let sent = if matches!(method, Method::AuthUserAdd | Method::AuthUserChangePassword) {
            self.to_auth.send(AuthJob::Hash { method, request, token, who }).is_ok()
        } else if method.is_write() {
            self.to_node.send(NodeMsg::Write { method, request, token, who }).is_ok()
        } else {
            self.to_readers.send(ReadTask::Raw { method, request, token, who }).is_ok()
        };
        if !sent {
            self.shared.completions.push(token, Err(EtcdError::Stopped));
        }
    }

    /// Stops taking requests, lets the node finish and fsync what it
    /// accepted, and joins every thread. Idempotent.
    pub fn close(&self) {
        let threads = std::mem::take(&mut *self.threads.lock());
        if threads.is_empty() {
            return;
        }
        let _ = self.to_node.send(NodeMsg::Stop);
        self.compactor_stop.store(true, Ordering::Release);
        let _ = self.to_auth.send(AuthJob::Stop);
        self.shared.watch.stop();
        for _ in 0..self.shared.config.reader_threads.max(1) {
            let _ = self.to_readers.send(ReadTask::Stop);
        }
        for t in threads {
            let _ = t.join();
        }
    }

    /// Hands a batch of Raft messages from a peer to the node; never blocks.
    pub fn step(&self, batch: &[u8]) -> Result<(), String> {
        let messages = crate::peer::decode_batch(batch)?;
        crate::metrics::peer_batch_received(batch.len(), &messages);
        let _ = self.to_node.send(NodeMsg::Step(messages));
        Ok(())
    }

    /// The transport lost its connection to `member_id`.
    pub fn report_unreachable(&self, member_id: u64) {
        let _ = self.to_node.send(NodeMsg::Unreachable(member_id));
    }

    /// Raises the CORRUPT alarm through Raft for `member_id` (0: the
    /// cluster, as etcd 3.5's periodic check raises it).
    pub fn raise_corrupt_alarm(&self, member_id: u64) {
        let alarm = crate::pb::etcdserverpb::AlarmRequest {
            action: crate::pb::etcdserverpb::alarm_request::AlarmAction::Activate as i32,
            member_id,
            alarm: crate::pb::etcdserverpb::AlarmType::Corrupt as i32,
        };
        let _ = self.to_node.send(NodeMsg::RaiseAlarm(alarm));
    }

    /// The transport delivered (or gave up on) a snapshot to `member_id`.
    pub fn report_snapshot(&self, member_id: u64, delivered: bool) {
        let _ = self.to_node.send(NodeMsg::SnapshotSent(member_id, delivered));
    }

    /// Outbound Raft traffic for the transport.
    pub fn take_peer_batches(&self) -> Vec<OutboundBatch> {
        self.shared.peers.take()
    }

    pub fn peer_fd(&self) -> std::os::fd::RawFd {
        self.shared.peers.fd()
    }

    /// The cluster's members as this member last applied them.
    pub fn members(&self) -> Vec<crate::pb::etcdserverpb::Member> {
        crate::membership::member_list(&self.shared.store.membership())
    }

    /// etcd's --experimental-watch-progress-notify-interval.
    pub fn set_watch_progress_interval(&self, interval: Duration) {
        self.shared.watch.set_progress_interval(interval);
    }

    pub fn stats(&self) -> Vec<(&'static str, u64)> {
        let r = &self.shared.raft;
        vec![
            ("raft_term", r.term.load(Ordering::Acquire)),
            ("raft_leader", r.leader.load(Ordering::Acquire)),
            ("raft_last_index", r.last_index.load(Ordering::Acquire)),
            ("raft_commit_index", r.commit_index.load(Ordering::Acquire)),
            ("raft_applied_index", r.applied_index.load(Ordering::Acquire)),
            ("wal_fsyncs", r.wal_fsyncs.load(Ordering::Acquire)),
            ("wal_fsync_nanos", r.wal_fsync_nanos.load(Ordering::Acquire)),
            ("revision", self.shared.store.current_revision() as u64),
            ("compact_revision", self.shared.store.compact_revision() as u64),
            ("finished_compact_revision", self.shared.store.finished_compact_revision().max(0) as u64),
            ("db_size", self.shared.store.db_size()),
            ("watchers_synced", self.shared.watch.counts().0 as u64),
            ("watchers_unsynced", self.shared.watch.counts().1 as u64),
            ("membership_version", r.membership_version.load(Ordering::Acquire)),
            ("is_learner", u64::from(r.is_learner.load(Ordering::Acquire))),
            ("removed", u64::from(r.removed.load(Ordering::Acquire))),
            ("published", u64::from(r.published.load(Ordering::Acquire))),
            ("snapshots_installed", r.snapshots_installed.load(Ordering::Acquire)),
        ]
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        self.close();
    }
}

pub(crate) fn failed_error() -> EtcdError {
    // etcd's answer once its server is going down (ErrStopped, UNAVAILABLE):
    // clients retry elsewhere; the cause is in this member's log.
    EtcdError::Stopped
}

fn spawn(name: &str, f: impl FnOnce() + Send + 'static) -> JoinHandle<()> {
    std::thread::Builder::new().name(name.to_owned()).spawn(f).expect("spawning an engine thread")
}

fn reader_loop(shared: &Shared, rx: &Receiver<ReadTask>, to_node: &Sender<NodeMsg>, to_auth: &Sender<AuthJob>) {
    while let Ok(task) = rx.recv() {
        match task {
            ReadTask::Stop => return,
            ReadTask::Linearized { request: LinearRead::Range(request), token } => {
                shared.answer(token, shared.store.range(&request));
            }
            ReadTask::Linearized { request: LinearRead::MemberList, token } => {
                shared.answer(token, Ok(member_list(shared)));
            }
            ReadTask::Linearized { request: LinearRead::Authenticate(request), token } => {
                if to_auth.send(AuthJob::CheckPassword { request, token }).is_err() {
                    shared.completions.push(token, Err(EtcdError::Stopped));
                }
            }
            ReadTask::Raw { method, request, token, who } => match method {
                Method::KvRange => match decode::<RangeRequest>(request)
                    .and_then(|r| mvcc::check_range(&r).map(|()| r))
                    .and_then(|r| shared.store.auth().check_read(who.as_ref(), &r.key, &r.range_end).map(|()| r))
                {
                    Err(e) => shared.completions.push(token, Err(e)),
                    Ok(request) if request.serializable => {
                        shared.answer(token, shared.store.range(&request));
                    }
                    // etcd's learners serve serializable reads only.
                    Ok(_) if shared.raft.is_learner.load(Ordering::Acquire) => {
                        shared.completions.push(token, Err(EtcdError::NotSupportedForLearner));
                    }
                    Ok(request) => {
                        // Linearizable: the node confirms leadership (ReadIndex)
                        // and hands it back once applied; batched there.
                        if to_node.send(NodeMsg::Read { request: LinearRead::Range(request), token }).is_err() {
                            shared.completions.push(token, Err(EtcdError::Stopped));
                        }
                    }
                },
                Method::MaintenanceStatus => shared.answer(token, Ok(status(shared))),
                // A learner cannot ask for a read index: it answers from what it has.
                Method::ClusterMemberList if shared.raft.is_learner.load(Ordering::Acquire) => {
                    shared.answer(token, Ok(member_list(shared)));
                }
                Method::ClusterMemberList => {
                    if to_node.send(NodeMsg::Read { request: LinearRead::MemberList, token }).is_err() {
                        shared.completions.push(token, Err(EtcdError::Stopped));
                    }
                }
                Method::AuthAuthenticate => match decode::<AuthenticateRequest>(request) {
                    Err(e) => shared.completions.push(token, Err(e)),
                    Ok(_) if shared.raft.is_learner.load(Ordering::Acquire) => {
                        shared.completions.push(token, Err(EtcdError::NotSupportedForLearner));
                    }
                    Ok(r) => {
                        if to_node.send(NodeMsg::Read { request: LinearRead::Authenticate(r), token }).is_err() {
                            shared.completions.push(token, Err(EtcdError::Stopped));
                        }
                    }
                },
                Method::MaintenanceHash => {
                    shared.answer(token, shared.store.hash_all().map(|hash| HashResponse { header: None, hash }));
                }
                Method::MaintenanceDefragment => {
                    // Reclaim what compactions already applied have freed:
                    // let the compactor finish its queue first (bounded by
                    // what is queued; new compactions may join it).
                    while shared.store.compaction_pending() && !shared.failed.load(Ordering::Acquire) {
                        std::thread::sleep(Duration::from_millis(10));
                    }
                    // etcd answers with an empty DefragmentResponse, no header: no bytes.
                    shared.completions.push(token, shared.store.defragment().map(|()| Vec::new()));
                }
                Method::MaintenanceSnapshot => {
                    let dest = shared.config.data_dir.join("member").join(format!("snapshot-{token}.tmp"));
                    let result = snapshot_in_etcd_format(shared, &dest)
                        .map(|_| dest.to_string_lossy().into_owned().into_bytes());
                    shared.completions.push(token, result);
                }
                Method::MaintenanceHashKv => {
                    let result = decode::<HashKvRequest>(request).and_then(|r| hash_kv(shared, &r));
                    shared.answer(token, result);
                }
                Method::LeaseKeepAlive | Method::LeaseTimeToLive | Method::LeaseLeases => {
                    crate::lease::serve(shared, method, request, token);
                }
                _ => unreachable!("writes go to the node"),
            },
        }
    }
}

/// Maintenance.Snapshot's file: the store as etcd's bbolt backend, from one
/// read view (writers go on meanwhile). Its cluster version is the
/// major.minor this member reports, as etcd's cluster bucket keeps it.
fn snapshot_in_etcd_format(shared: &Shared, dest: &Path) -> Result<u64, EtcdError> {
    let mut version: Vec<&str> = shared.config.version.split('.').take(2).collect();
    version.push("0");
    let view = shared.store.view()?;
    crate::bbolt::write_snapshot(&view, dest, &version.join("."))
        .map_err(|e| EtcdError::Internal(format!("snapshot: {e}")))
}

pub(crate) fn decode<M: Message + Default>(request: Bytes) -> Result<M, EtcdError> {
    M::decode(request).map_err(|e| EtcdError::BadRequest(e.to_string()))
}

fn status(shared: &Shared) -> StatusResponse {
    let r = &shared.raft;
    StatusResponse {
        header: None,
        version: shared.config.version.clone(),
        db_size: shared.store.db_size() as i64,
        leader: r.leader.load(Ordering::Acquire),
        raft_index: r.commit_index.load(Ordering::Acquire),
        raft_term: r.term.load(Ordering::Acquire),
        raft_applied_index: r.applied_index.load(Ordering::Acquire),
        errors: shared.store.alarms().iter().map(|&(alarm, member)| alarm_string(member, alarm)).collect(),
        db_size_in_use: shared.store.db_size_in_use() as i64,
        is_learner: r.is_learner.load(Ordering::Acquire),
    }
}

/// etcd's HashKV: the header's revision is the store's at the time of the hash.
fn hash_kv(shared: &Shared, r: &HashKvRequest) -> Result<HashKvResponse, EtcdError> {
    let (hash, current, compacted) = shared.store.hash_kv(r.revision)?;
    Ok(HashKvResponse {
        header: Some(ResponseHeader { revision: current, ..ResponseHeader::default() }),
        hash,
        compact_revision: compacted,
    })
}

/// An alarm as etcd's Status lists it: gogoproto's compact text form of
/// AlarmMember, trailing space included ("memberID:1 alarm:NOSPACE ").
pub(crate) fn alarm_string(member: u64, alarm: i32) -> String {
    let name = crate::pb::etcdserverpb::AlarmType::try_from(alarm)
        .map_or_else(|_| alarm.to_string(), |a| a.as_str_name().to_owned());
    let mut s = String::new();
    if member != 0 {
        let _ = write!(s, "memberID:{member} ");
    }
    if alarm != 0 {
        let _ = write!(s, "alarm:{name} ");
    }
    s
}

fn member_list(shared: &Shared) -> MemberListResponse {
    MemberListResponse { header: None, members: crate::membership::member_list(&shared.store.membership()) }
}

/// True if `dir` holds a member's data (a WAL).
pub fn member_exists(data_dir: &Path) -> bool {
    crate::raftlog::RaftLog::exists(&data_dir.join("member").join("wal"))
}
