//! The Raft Ready loop: the only thread that touches the Raft node, the WAL
//! and the store's write side.
//!
//! raft-rs does no I/O; each turn of the loop takes a Ready and does, in
//! this order (raft-rs's documented loop, and etcd's):
//!  1. send the Ready's messages — a leader may send appends to followers
//!     before it has persisted them itself (Raft thesis §10.2.1);
//!  2. apply a snapshot from the leader, if any;
//!  3. hand out read states (ReadIndex answers) for linearizable reads;
//!  4. apply committed entries (already durable in an earlier turn);
//!  5. persist new entries and hard state, then fsync the WAL — ONE fsync for
//!     every proposal gathered into this Ready (group commit);
//!  6. send the messages that had to wait for persistence (votes, acks);
//!  7. advance, and apply what that newly committed (for a single member,
//!     the entries just persisted): a client is answered only after step 5
//!     made its entry durable and this step applied it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use prost::Message;
use protobuf::Message as _;
use raft::eraftpb::{
    ConfChange, ConfChangeType, ConfChangeV2, ConfState, Entry, EntryType, HardState, Message as RaftMessage, Snapshot,
};
use raft::prelude::{Config as RaftConfig, RawNode};
use raft::{Ready, SnapshotStatus, StateRole, Storage};

use crate::auth::{self, apply::Applied, worker::AuthJob, AuthInfo};
use crate::engine::{
    decode, failed_error, EngineConfig, Identity, LinearRead, Method, ReadTask, Shared, StartError, DEFAULT_QUOTA_BYTES,
};
use crate::error::EtcdError;
use crate::lease;
use crate::membership::{self, ConfOutcome};
use crate::mvcc::{self, LeaseCheck, Store, WriteBatch, ALARM_CORRUPT, ALARM_NOSPACE};
use crate::pb::etcdserverpb::{
    alarm_request::AlarmAction, request_op, AlarmMember, AlarmRequest, AlarmResponse, AlarmType, CompactionRequest,
    DeleteRangeRequest, LeaseGrantRequest, LeaseRevokeRequest, Member, MemberAddRequest, MemberAddResponse,
    MemberPromoteRequest, MemberPromoteResponse, MemberRemoveRequest, MemberRemoveResponse, MemberUpdateRequest,
    MemberUpdateResponse, MoveLeaderRequest, PutRequest, TxnRequest,
};
use crate::pb::ketchpb::{internal_request, AuthHeader, InternalRequest, MemberAttributes, MemberMetadata};
use crate::raftlog::RaftLog;
use crate::wal::{OsFs, WalFs};

/// Where the member's bytes go and what happens when they cannot: the
/// seams fault and crash tests replace. Production uses the defaults.
#[derive(Clone)]
pub struct StorageSeams {
    /// The WAL's filesystem ([`crate::wal::MemFs`] in tests).
    pub wal_fs: Arc<dyn WalFs>,
    /// The backend's storage (None: redb's own file backend).
    pub backend: Option<mvcc::BackendFactory>,
    /// After a fatal storage error the waiting requests are answered and the
    /// process exits with status 1, as etcd's does (`lg.Fatal`). Tests that
    /// run engines inside the test process turn this off; the engine then
    /// stays down, refusing every request, until dropped.
    pub exit_on_fatal: bool,
}

impl Default for StorageSeams {
    fn default() -> Self {
        StorageSeams { wal_fs: Arc::new(OsFs), backend: None, exit_on_fatal: true }
    }
}

impl std::fmt::Debug for StorageSeams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StorageSeams")
            .field("wal_fs", &self.wal_fs)
            .field("backend", &self.backend.as_ref().map(|_| "custom"))
            .field("exit_on_fatal", &self.exit_on_fatal)
            .finish()
    }
}

/// Messages to the node thread.
pub(crate) enum NodeMsg {
    /// `who`: the caller as the engine resolved it (None: auth off or no user).
    Write {
        method: Method,
        request: Bytes,
        token: u64,
        who: Option<crate::auth::AuthInfo>,
    },
    /// A decoded linearizable Range waiting for a read index.
    Read {
        request: LinearRead,
        token: u64,
    },
    /// Raft messages from a peer.
    Step(Vec<RaftMessage>),
    /// The transport could not reach this peer.
    Unreachable(u64),
    /// The transport delivered (true) or gave up on (false) a snapshot to this peer.
    SnapshotSent(u64, bool),
    /// Raise an alarm through Raft on the engine's own behalf (the
    /// corruption check's CORRUPT); nobody waits for the entry.
    RaiseAlarm(AlarmRequest),
    Stop,
}

/// How long a client waits for its write or read to be served before etcd's
/// "request timed out" (etcd: 5 s plus two election timeouts).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(7);
/// Store commits between WAL-covered entries skip fsync; at most this much
/// applied state is replayed from the WAL after a crash.
const DURABLE_COMMIT_INTERVAL: Duration = Duration::from_millis(100);
/// etcd's maxGapBetweenApplyAndCommitIndex; see `prepare_write`.
const MAX_APPLY_GAP: u64 = 5000;
/// How often a member retries publishing its name and client URLs until
/// the cluster has applied them (etcd retries its publish the same way).
const PUBLISH_RETRY: Duration = Duration::from_secs(2);

/// Linearizable reads and the tokens waiting for them.
type Reads = Vec<(LinearRead, u64)>;

struct PendingRead {
    index: u64,
    since: Instant,
    reads: Reads,
}

pub(crate) struct Node {
    raw: RawNode<RaftLog>,
    /// The auth worker, which signs JWTs for Authenticate entries this member proposed.
    to_auth: Option<Sender<AuthJob>>,
    pending_writes: HashMap<u64, (u64, Instant)>,
    next_request_id: u64,
    /// Linearizable reads not yet sent to Raft; one ReadIndex serves them all.
    read_batch: Reads,
    /// When the oldest read in `read_batch` arrived (for the timeout).
    read_batch_since: Option<Instant>,
    /// Read batches sent to Raft, by context id, awaiting their read index.
    /// (sent, Raft term then, reads).
    reads_in_raft: HashMap<u64, (Instant, u64, Reads)>,
    next_read_ctx: u64,
    /// Read batches with a known read index, waiting for apply to reach it.
    reads_waiting_apply: Vec<PendingRead>,
    applied_index: u64,
    store_dirty: bool,
    last_durable_commit: Instant,
    /// A backend copy being made for followers behind the log's start.
    snapshot_job: Option<Receiver<Result<Snapshot, String>>>,
    /// A MoveLeader in progress: (target, token, since).
    moving_leader: Option<(u64, u64, Instant)>,
    last_publish: Option<Instant>,
    member_id: u64,
    /// The Raft term as `expire` last saw it, and when it last changed.
    term_seen: u64,
    term_changed_at: Instant,
    /// Compact calls with `physical: true` applied in the batch being
    /// applied, answered once the store's compactor has finished them.
    physical_compactions: Vec<(i64, mvcc::CompactionWaiter)>,
    /// When the leader proposes compactions on its own (--auto-compaction-*).
    auto_compactor: crate::compactor::AutoCompactor,
}

impl Node {
    /// Opens (or creates) the member's Raft log and builds the Raft node at
    /// the store's applied index, so a restart replays only what the store
    /// does not durably have.
    pub(crate) fn open(config: &EngineConfig, store: &Store) -> Result<(Node, Identity), StartError> {
        let wal_dir = config.wal_dir();
        let fs = config.storage.wal_fs.clone();
        let restarted = RaftLog::exists_with(&*fs, &wal_dir);
        let (mut log, meta) = if restarted {
            let opened = RaftLog::open_with(fs, &wal_dir)?;
            let meta = MemberMetadata::decode(opened.metadata.as_slice()).map_err(|e| {
                StartError::Config(format!("member metadata in {} is unreadable: {e}", wal_dir.display()))
            })?;
            (opened.log, meta)
        } else {
            let meta = MemberMetadata { member_id: config.member_id, cluster_id: config.cluster_id };
            (bootstrap_log(fs, &wal_dir, &meta, &config.initial_members)?, meta)
        };
        restore_interrupted_snapshot(config, store, &log)?;
        let (applied, _) = store.consistent_index();
        // Raft's configuration as of the applied index is the store's member
        // list (conf changes before it are not replayed); a store that has
        // applied nothing yet takes the log's.
        if applied > 0 {
            log.set_conf_state(store.membership().conf_state());
        }
        if applied > log.last_index() {
            return Err(StartError::Config(format!(
                "the store at {} has applied Raft index {applied} but the WAL in {} ends at {}; \
                 the WAL is missing entries (was it replaced?)",
                config.db_path().display(),
                wal_dir.display(),
                log.last_index()
            )));
        }
        // The store may be ahead of the commit index on disk: a commit index
        // reaches the WAL with the next hard state, after apply. Everything
        // applied was committed, so raising it is safe.
        if applied > log.hard_state().commit {
            log.set_commit(applied);
        }
        if config.force_new_cluster && restarted {
            force_new_cluster(&mut log, applied, meta.member_id)?;
        }
        let raft_config = RaftConfig {
            id: meta.member_id,
            election_tick: config.election_ticks,
            heartbeat_tick: 1,
            applied,
            max_size_per_msg: 1024 * 1024,
            max_inflight_msgs: 256,
            pre_vote: config.pre_vote,
            check_quorum: true,
            ..RaftConfig::default()
        };
        raft_config.validate()?;
        if config.unsafe_no_fsync {
            log.set_unsafe_no_fsync();
        }
        log.set_max_wal_segments(config.max_wals);
        let mut raw = RawNode::new(&raft_config, log, &raft_logger())?;
        // etcd's --initial-election-tick-advance: a member that starts among
        // others is one tick away from its election timeout, so a cluster
        // without a leader elects one sooner (a randomized timeout is at least
        // election_ticks, so these ticks never start an election themselves).
        if config.initial_election_tick_advance && raw.raft.prs().conf().voters().ids().len() > 1 {
            for _ in 1..config.election_ticks {
                raw.tick();
            }
        }
        let term_seen = raw.raft.term;
        let identity = Identity {
            member_id: meta.member_id,
            cluster_id: meta.cluster_id,
            name: config.name.clone(),
            peer_urls: config.peer_urls.clone(),
            client_urls: config.client_urls.clone(),
        };
        let node = Node {
            raw,
            to_auth: None,
            pending_writes: HashMap::new(),
            next_request_id: request_id_seed(meta.member_id),
            read_batch: Vec::new(),
            read_batch_since: None,
            reads_in_raft: HashMap::new(),
            next_read_ctx: 1,
            reads_waiting_apply: Vec::new(),
            applied_index: applied,
            store_dirty: false,
            last_durable_commit: Instant::now(),
            snapshot_job: None,
            moving_leader: None,
            last_publish: None,
            member_id: meta.member_id,
            term_seen,
            term_changed_at: Instant::now(),
            physical_compactions: Vec::new(),
            auto_compactor: crate::compactor::AutoCompactor::new(
                config.auto_compaction,
                Instant::now(),
                store.current_revision(),
            ),
        };
        Ok((node, identity))
    }

    pub(crate) fn set_auth_worker(&mut self, to_auth: Sender<AuthJob>) {
        self.to_auth = Some(to_auth);
    }

    /// A sole voter needs no election timeout to know who leads. raft-rs
    /// refuses to campaign while configuration entries wait to be applied,
    /// so this runs once they are.
    fn campaign_if_alone(&mut self, shared: &Shared, to_readers: &Sender<ReadTask>) -> Result<(), String> {
        let raft = &self.raw.raft;
        let alone = raft.prs().conf().voters().ids().iter().eq([self.member_id]);
        if !alone || raft.state == StateRole::Leader || raft.raft_log.applied < raft.raft_log.committed {
            return Ok(());
        }
        self.raw.campaign().map_err(|e| e.to_string())?;
        self.lessor_follows_leadership(shared);
        self.on_ready(shared, to_readers)
    }

    /// Leadership changed (in a tick, a message, or a campaign): the lessor
    /// follows before anything is answered in the new role.
    fn lessor_follows_leadership(&self, shared: &Shared) {
        let leader = self.raw.raft.state == StateRole::Leader;
        if leader != shared.lessor.is_primary() {
            if leader {
                shared.lessor.promote(lease::promote_extend(&shared.config), Instant::now());
            } else {
                shared.lessor.demote();
            }
        }
    }

    pub(crate) fn is_leader(&self) -> bool {
        self.raw.raft.state == StateRole::Leader
    }

    /// `settled` hears once the entries committed at start are applied (and
    /// a sole voter leads), so the engine starts as a working member.
    pub(crate) fn run(
        mut self,
        shared: &Arc<Shared>,
        rx: &Receiver<NodeMsg>,
        to_readers: &Sender<ReadTask>,
        settled: &Sender<()>,
    ) {
        let tick = shared.config.tick;
        let mut next_tick = Instant::now() + tick;
        let mut stopping = false;
        // Apply what is committed but not applied (a new cluster's bootstrap
        // entries) before taking requests, so a sole member leads at once.
        let first = self.on_ready(shared, to_readers).and_then(|()| self.campaign_if_alone(shared, to_readers));
        let _ = settled.send(());
        if let Err(e) = first {
            self.fail(shared, rx, &e);
            return;
        }
        while !stopping {
            // Wait for work or the next tick, then take everything queued so
            // one Ready (and one fsync) covers the whole burst.
            let timeout = next_tick.saturating_duration_since(Instant::now());
            match rx.recv_timeout(timeout) {
                Ok(msg) => stopping |= self.handle(shared, msg),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => stopping = true,
            }
            while let Ok(msg) = rx.try_recv() {
                stopping |= self.handle(shared, msg);
            }
            if !self.read_batch.is_empty() && self.can_read_index() {
                self.read_batch_since = None;
                let ctx = self.next_read_ctx;
                self.next_read_ctx += 1;
                let batch = std::mem::take(&mut self.read_batch);
                self.reads_in_raft.insert(ctx, (Instant::now(), self.raw.raft.term, batch));
                self.raw.read_index(read_context(self.member_id, ctx));
            }
            let now = Instant::now();
            if now >= next_tick {
                self.raw.tick();
                next_tick = now + tick;
                self.expire(shared, now);
                self.revoke_expired_leases(shared, now);
                self.auto_compact(shared, now);
                self.publish_attributes(shared, now);
                self.check_move_leader(shared, now);
            }
            self.lessor_follows_leadership(shared);
            if let Err(e) = self.on_ready(shared, to_readers) {
                self.fail(shared, rx, &e);
                return;
            }
            self.tend_snapshot_job(shared);
            if let Err(e) = self.campaign_if_alone(shared, to_readers) {
                self.fail(shared, rx, &e);
                return;
            }
            if self.store_dirty && now.duration_since(self.last_durable_commit) >= DURABLE_COMMIT_INTERVAL {
                if let Err(e) = self.durable_commit(shared) {
                    self.fail(shared, rx, &e);
                    return;
                }
            }
        }
        // Clean stop: everything acknowledged is already in the fsynced WAL;
        // make the store durable too so the next start replays nothing.
        if let Err(e) = self.durable_commit(shared) {
            self.fail(shared, rx, &e);
            return;
        }
        for (_, (token, _)) in self.pending_writes.drain() {
            shared.completions.push(token, Err(EtcdError::Stopped));
        }
        if let Some((_, token, _)) = self.moving_leader.take() {
            shared.completions.push(token, Err(EtcdError::Stopped));
        }
        let stranded = self.read_batch.drain(..).chain(self.reads_in_raft.drain().flat_map(|(_, (_, _, r))| r));
        for (_, token) in stranded {
            shared.completions.push(token, Err(EtcdError::Stopped));
        }
        for pending in self.reads_waiting_apply.drain(..) {
            for (_, token) in pending.reads {
                shared.completions.push(token, Err(EtcdError::Stopped));
            }
        }
    }

    /// Returns true when asked to stop.
    fn handle(&mut self, shared: &Shared, msg: NodeMsg) -> bool {
        match msg {
            NodeMsg::Stop => return true,
            NodeMsg::Read { request, token } => {
                self.read_batch_since.get_or_insert_with(Instant::now);
                self.read_batch.push((request, token));
            }
            NodeMsg::Step(messages) => {
                for m in messages {
                    // Messages from members this one does not know (removed,
                    // or not yet applied) are dropped, as etcd's raft does.
                    let _ = self.raw.step(m);
                }
            }
            NodeMsg::Unreachable(id) => self.raw.report_unreachable(id),
            NodeMsg::SnapshotSent(id, ok) => {
                self.raw.report_snapshot(id, if ok { SnapshotStatus::Finish } else { SnapshotStatus::Failure });
            }
            NodeMsg::RaiseAlarm(alarm) => {
                let entry = InternalRequest {
                    id: self.next_request_id,
                    request: Some(internal_request::Request::Alarm(alarm)),
                    auth: None,
                };
                self.next_request_id += 1;
                if let Err(e) = self.raw.propose(Vec::new(), entry.encode_to_vec()) {
                    crate::log_warn!("could not propose an alarm: {e}");
                }
            }
            NodeMsg::Write { method: Method::MaintenanceMoveLeader, request, token, .. } => {
                self.move_leader(shared, request, token);
            }
            NodeMsg::Write {
                method: m @ (Method::ClusterMemberAdd | Method::ClusterMemberRemove | Method::ClusterMemberPromote),
                request,
                token,
                ..
            } => {
                if let Err(e) = self.propose_member_change(shared, m, request, token) {
                    shared.completions.push(token, Err(e));
                }
            }
            NodeMsg::Write { method, request, token, who } => match self.prepare_write(shared, method, request) {
                Err(e) => shared.completions.push(token, Err(e)),
                Ok(mut entry) => {
                    entry.auth = who.map(|w| AuthHeader { username: w.username, auth_revision: w.revision });
                    let id = entry.id;
                    match self.raw.propose(Vec::new(), entry.encode_to_vec()) {
                        Ok(()) => {
                            self.pending_writes.insert(id, (token, Instant::now()));
                        }
                        Err(raft::Error::ProposalDropped) => {
                            shared.completions.push(token, Err(EtcdError::NoLeader));
                        }
                        Err(e) => shared.completions.push(token, Err(EtcdError::Internal(format!("raft: {e}")))),
                    }
                }
            },
        }
        false
    }

    /// Decodes and checks a write as etcd's API layer does before proposing:
    /// size, shape, quota. Returns the Raft entry payload.
    fn prepare_write(&mut self, shared: &Shared, method: Method, request: Bytes) -> Result<InternalRequest, EtcdError> {
        if request.len() > shared.config.max_request_bytes {
            return Err(EtcdError::RequestTooLarge);
        }
        if shared.raft.is_learner.load(Ordering::Acquire) {
            return Err(EtcdError::NotSupportedForLearner);
        }
        // etcd's back-pressure: refuse new work while apply lags the commit
        // index by more than maxGapBetweenApplyAndCommitIndex.
        if self.raw.raft.raft_log.committed > self.applied_index + MAX_APPLY_GAP {
            return Err(EtcdError::TooManyRequests);
        }
        use internal_request::Request as R;
        // etcd's quota layer (v3rpc/quota.go) checks Put, Txn and LeaseGrant:
        // (checked, estimated bytes the request adds).
        let (body, quota_cost) = match method {
            Method::KvPut => {
                let r: PutRequest = decode(request)?;
                mvcc::check_put(&r)?;
                let cost = cost_put(&r);
                (R::Put(r), Some(cost))
            }
            Method::KvDeleteRange => {
                let r: DeleteRangeRequest = decode(request)?;
                mvcc::check_delete_range(&r)?;
                (R::DeleteRange(r), None)
            }
            Method::KvTxn => {
                let r: TxnRequest = decode(request)?;
                mvcc::check_txn(&r, shared.config.max_txn_ops)?;
                let cost = cost_txn(&r);
                (R::Txn(r), Some(cost))
            }
            Method::KvCompact => (R::Compaction(decode::<CompactionRequest>(request)?), None),
            Method::LeaseGrant => {
                let mut r: LeaseGrantRequest = decode(request)?;
                // etcd's LeaseGrant: the member that proposes picks a
                // positive ID when the client left it 0.
                if r.id == 0 {
                    r.id = loop {
                        let id = (self.next_request_id & i64::MAX as u64) as i64;
                        self.next_request_id += 1;
                        if id != 0 && !shared.lessor.contains(id) {
                            break id;
                        }
                    };
                }
                (R::LeaseGrant(r), Some(LEASE_OVERHEAD))
            }
            Method::LeaseRevoke => (R::LeaseRevoke(decode::<LeaseRevokeRequest>(request)?), None),
            Method::MaintenanceAlarm => (R::Alarm(decode::<AlarmRequest>(request)?), None),
            Method::ClusterMemberUpdate => {
                let r: MemberUpdateRequest = decode(request)?;
                membership::check_update(&shared.store.membership(), &r)?;
                (R::MemberUpdate(r), None)
            }
            // Its bytes come from the auth worker, which checked the password.
            Method::AuthAuthenticate => (R::Authenticate(decode(request)?), None),
            Method::AuthEnable => (R::AuthEnable(decode(request)?), None),
            Method::AuthDisable => (R::AuthDisable(decode(request)?), None),
            Method::AuthStatus => (R::AuthStatus(decode(request)?), None),
            Method::AuthUserAdd => (R::AuthUserAdd(decode(request)?), None),
            Method::AuthUserGet => (R::AuthUserGet(decode(request)?), None),
            Method::AuthUserList => (R::AuthUserList(decode(request)?), None),
            Method::AuthUserDelete => (R::AuthUserDelete(decode(request)?), None),
            Method::AuthUserChangePassword => (R::AuthUserChangePassword(decode(request)?), None),
            Method::AuthUserGrantRole => (R::AuthUserGrantRole(decode(request)?), None),
            Method::AuthUserRevokeRole => (R::AuthUserRevokeRole(decode(request)?), None),
            Method::AuthRoleAdd => (R::AuthRoleAdd(decode(request)?), None),
            Method::AuthRoleGet => (R::AuthRoleGet(decode(request)?), None),
            Method::AuthRoleList => (R::AuthRoleList(decode(request)?), None),
            Method::AuthRoleDelete => (R::AuthRoleDelete(decode(request)?), None),
            Method::AuthRoleGrantPermission => (R::AuthRoleGrantPermission(decode(request)?), None),
            Method::AuthRoleRevokePermission => (R::AuthRoleRevokePermission(decode(request)?), None),
            _ => unreachable!("reads go to the readers"),
        };
        // A request that adds nothing (a Txn without puts) passes, whatever
        // the size: it can only delete, like DeleteRange, which etcd never
        // checks either. etcd's Available has no such case and refuses a
        // delete-only Txn once the backend is already at the quota, which
        // leaves a full store that only Txn clients (Kubernetes) cannot empty.
        if let Some(cost) = quota_cost.filter(|&c| c > 0) {
            // etcd's backendQuota.Available: size + cost < quota, or refuse
            // and raise NOSPACE through the log (quotaAlarmer.check). Nobody
            // waits for the alarm's entry.
            let quota = match shared.config.quota_backend_bytes {
                0 => DEFAULT_QUOTA_BYTES,
                q => q,
            };
            if !shared.store.quota_allows(cost, quota) {
                let alarm = AlarmRequest {
                    action: AlarmAction::Activate as i32,
                    member_id: shared.identity.member_id,
                    alarm: AlarmType::Nospace as i32,
                };
                let entry = InternalRequest { id: self.next_request_id, request: Some(R::Alarm(alarm)), auth: None };
                self.next_request_id += 1;
                let _ = self.raw.propose(Vec::new(), entry.encode_to_vec());
                return Err(EtcdError::NoSpace);
            }
        }
        let id = self.next_request_id;
        self.next_request_id += 1;
        Ok(InternalRequest { id, request: Some(body), auth: None })
    }

    /// raft-rs drops a ReadIndex that a leader gets before it has committed
    /// an entry of its own term (etcd queues it instead), so reads wait here
    /// until the leader can answer. A follower forwards to its leader.
    fn can_read_index(&self) -> bool {
        let raft = &self.raw.raft;
        match raft.state {
            StateRole::Leader => raft.commit_to_current_term(),
            _ => raft.leader_id != raft::INVALID_ID,
        }
    }

    fn on_ready(&mut self, shared: &Shared, to_readers: &Sender<ReadTask>) -> Result<(), String> {
        if !self.raw.has_ready() {
            return Ok(());
        }
        let mut ready: Ready = self.raw.ready();
        // Answers built while applying carry the current term.
        self.publish(shared);
        // Entries applied below were committed by this Ready's hard state,
        // which is persisted only in step 5; the log learns the commit index
        // now so it never compacts past what it believes committed.
        if let Some(hs) = ready.hs() {
            let commit = hs.commit;
            self.raw.mut_store().set_commit(commit);
            // Published before step 1 tells the followers: a leader-only call
            // that a follower forwards once it applied an entry finds the
            // leader's commit index past it, and waits for the leader's apply
            // (server/calls.rs, etcd's waitAppliedIndex).
            shared.raft.commit_index.fetch_max(commit, Ordering::AcqRel);
        }
        // 1. Messages a leader may send before persisting.
        shared.peers.send(ready.take_messages());
        // 2. A snapshot from the leader replaces the store.
        if !ready.snapshot().is_empty() {
            let snapshot = ready.snapshot().clone();
            self.install_snapshot(shared, &snapshot)?;
        }
        // 3. ReadIndex answers.
        for rs in ready.take_read_states() {
            let Some(ctx) = own_read_context(self.member_id, &rs.request_ctx) else {
                continue;
            };
            if let Some((since, _, reads)) = self.reads_in_raft.remove(&ctx) {
                self.reads_waiting_apply.push(PendingRead { index: rs.index, since, reads });
            }
        }
        // 4. Entries committed in an earlier turn.
        self.apply(shared, &ready.take_committed_entries())?;
        // 5. Persist: entries and hard state, one fsync.
        let log = self.raw.mut_store();
        log.append(ready.entries()).map_err(|e| e.to_string())?;
        if let Some(hs) = ready.hs() {
            log.set_hard_state(hs).map_err(|e| e.to_string())?;
        }
        if ready.must_sync() || !ready.entries().is_empty() {
            log.sync().map_err(|e| e.to_string())?;
        }
        // 6. Messages that had to wait for the fsync (votes, append acks).
        shared.peers.send(ready.take_persisted_messages());
        // 7. Advance; for a one-member group this commits what step 5 persisted.
        let mut light = self.raw.advance(ready);
        if let Some(commit) = light.commit_index() {
            self.raw.mut_store().set_commit(commit);
        }
        shared.peers.send(light.take_messages());
        self.apply(shared, &light.take_committed_entries())?;
        self.raw.advance_apply();
        self.release_reads(to_readers);
        self.publish(shared);
        Ok(())
    }

    /// Applies committed entries to the store in one write batch, then
    /// answers the clients that proposed them. Answers go out after the batch
    /// commits, so a client that saw its write acknowledged reads it back.
    ///
    /// If the batch fails (the backend could not write or fsync), the
    /// writers it had taken off `pending_writes` are answered as `fail`
    /// answers everyone else: their entries are in the WAL, so a restart
    /// applies them, but this member will not.
    fn apply(&mut self, shared: &Shared, entries: &[Entry]) -> Result<(), String> {
        let (mut answers, started) = (Vec::new(), Instant::now());
        let applied = self.apply_batch(shared, entries, &mut answers);
        crate::metrics::note_apply(started);
        let physical = std::mem::take(&mut self.physical_compactions);
        if applied.is_err() {
            for token in answers.into_iter().map(|(t, _)| t).chain(physical.into_iter().map(|(_, w)| w.token)) {
                shared.completions.push(token, Err(failed_error()));
            }
            return applied;
        }
        for (token, result) in answers {
            shared.completions.push(token, result);
        }
        // etcd answers a physical Compact once the backend is compacted too.
        for (rev, waiter) in physical {
            if let Some(w) = shared.store.when_compacted(rev, waiter) {
                shared.completions.push(w.token, Ok(w.answer));
            }
        }
        Ok(())
    }

    /// [`apply`](Self::apply)'s batch; the answers are sent by the caller.
    fn apply_batch(
        &mut self,
        shared: &Shared,
        entries: &[Entry],
        answers: &mut Vec<(u64, Result<Vec<u8>, EtcdError>)>,
    ) -> Result<(), String> {
        let Some(last) = entries.last() else {
            return Ok(());
        };
        let (last_index, last_term) = (last.index, last.term);
        let mut batch = shared.store.write_batch().map_err(|e| e.to_string())?;
        for entry in entries {
            match entry.get_entry_type() {
                EntryType::EntryNormal if entry.data.is_empty() => {} // a new leader's empty entry
                EntryType::EntryNormal => {
                    let req = InternalRequest::decode(&entry.data[..])
                        .map_err(|e| format!("undecodable entry at index {}: {e}", entry.index))?;
                    let leases: &dyn LeaseCheck = &shared.lessor;
                    use internal_request::Request as R;
                    let who =
                        req.auth.as_ref().map(|h| AuthInfo { username: h.username.clone(), revision: h.auth_revision });
                    let refused = refused_by_alarm(&batch, req.request.as_ref()).or_else(|| {
                        req.request
                            .as_ref()
                            .and_then(|r| auth::apply::refused(batch.auth(), who.as_ref(), r, &shared.lessor))
                    });
                    let result: Result<Vec<u8>, EtcdError> = match refused {
                        Some(e) => Err(e),
                        None => match &req.request {
                            Some(R::Put(r)) => batch.put(r, leases).map(|resp| encode_answer(shared, resp)),
                            Some(R::DeleteRange(r)) => batch.delete_range(r).map(|resp| encode_answer(shared, resp)),
                            Some(R::Txn(r)) => batch.txn(r, leases).map(|resp| encode_answer(shared, resp)),
                            Some(R::Compaction(r)) => batch.compact(r).map(|resp| encode_answer(shared, resp)),
                            Some(R::LeaseGrant(r)) => lease::apply_grant(&shared.lessor, &mut batch, r, Instant::now())
                                .map(|resp| encode_answer(shared, resp)),
                            Some(R::LeaseRevoke(r)) => lease::apply_revoke(&shared.lessor, &mut batch, r)
                                .map(|resp| encode_answer(shared, resp)),
                            // etcd answers Alarm with no header at all.
                            Some(R::Alarm(r)) => apply_alarm(&mut batch, r).map(|resp| resp.encode_to_vec()),
                            Some(R::MemberAttributes(a)) => apply_attributes(&mut batch, a).map(|()| Vec::new()),
                            Some(R::MemberUpdate(u)) => apply_member_update(&mut batch, u)
                                .map(|members| encode_answer(shared, MemberUpdateResponse { header: None, members })),
                            None => Ok(Vec::new()),
                            // Every other entry is the Auth service's.
                            Some(r) => {
                                match auth::apply::apply(shared, &mut batch, r, who.as_ref(), entry.index) {
                                    Ok(Applied::Answer(bytes)) => Ok(bytes),
                                    Ok(Applied::Authenticated(outcome)) => {
                                        // The auth worker answers the proposer: it signs a JWT, and
                                        // checks the password again if the auth store moved since.
                                        match (self.pending_writes.remove(&req.id), &self.to_auth) {
                                            (Some((token, _)), Some(to_auth)) => {
                                                if to_auth.send(AuthJob::Applied { outcome, token }).is_err() {
                                                    answers.push((token, Err(EtcdError::Stopped)));
                                                }
                                            }
                                            (Some((token, _)), None) => answers.push((token, Err(EtcdError::Stopped))),
                                            (None, _) => {}
                                        }
                                        Ok(Vec::new())
                                    }
                                    Err(e) => Err(e),
                                }
                            }
                        },
                    };
                    // Keys the entry wrote move between leases (attach, detach).
                    shared.lessor.apply_moves(batch.take_lease_moves());
                    if let Err(EtcdError::Internal(msg)) = &result {
                        return Err(format!("applying entry {}: {msg}", entry.index));
                    }
                    if let Some((token, _)) = self.pending_writes.remove(&req.id) {
                        match (&req.request, result) {
                            (Some(R::Compaction(c)), Ok(answer)) if c.physical => {
                                self.physical_compactions.push((c.revision, mvcc::CompactionWaiter { token, answer }));
                            }
                            (_, result) => answers.push((token, result)),
                        }
                    }
                }
                EntryType::EntryConfChange => {
                    let mut cc = ConfChange::default();
                    cc.merge_from_bytes(&entry.data).map_err(|e| e.to_string())?;
                    let result = self.apply_conf_change(shared, &mut batch, &cc)?;
                    if let Some((token, _)) = self.pending_writes.remove(&membership::request_id_of(&cc)) {
                        answers.push((token, result));
                    }
                }
                EntryType::EntryConfChangeV2 => {
                    let mut cc = ConfChangeV2::default();
                    cc.merge_from_bytes(&entry.data).map_err(|e| e.to_string())?;
                    let cs = self.raw.apply_conf_change(&cc).map_err(|e| e.to_string())?;
                    self.raw.mut_store().set_conf_state(cs);
                }
            }
        }
        batch.set_consistent_index(last_index, last_term);
        let events = batch.take_events();
        let durable = self.last_durable_commit.elapsed() >= DURABLE_COMMIT_INTERVAL;
        batch.commit(durable).map_err(|e| e.to_string())?;
        if durable {
            self.after_durable_commit(shared)?;
        } else {
            self.store_dirty = true;
        }
        // Watchers hear of the writes once readers can see them, before the writers' answers.
        shared.watch.notify(shared, &events);
        self.applied_index = last_index;
        shared.raft.applied_index.store(last_index, Ordering::Release);
        shared.raft.term.store(self.raw.raft.term, Ordering::Release);
        Ok(())
    }

    /// MemberAdd, MemberRemove, MemberPromote: etcd's checks, then a Raft
    /// configuration change; the answer goes out when it is applied.
    fn propose_member_change(
        &mut self,
        shared: &Shared,
        method: Method,
        request: Bytes,
        token: u64,
    ) -> Result<(), EtcdError> {
        if shared.raft.is_learner.load(Ordering::Acquire) {
            return Err(EtcdError::NotSupportedForLearner);
        }
        let ms = shared.store.membership();
        let id = self.next_request_id;
        self.next_request_id += 1;
        let cc = match method {
            Method::ClusterMemberAdd => {
                let r: MemberAddRequest = decode(request)?;
                let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
                let rules = membership::Reconfig {
                    strict: shared.config.strict_reconfig_check,
                    max_learners: shared.config.max_learners,
                };
                let member = membership::check_add(&ms, &r, membership::added_member_id(&r.peer_ur_ls, now), rules)?;
                let kind = if r.is_learner { ConfChangeType::AddLearnerNode } else { ConfChangeType::AddNode };
                membership::conf_change(kind, id, member)
            }
            Method::ClusterMemberRemove => {
                let r: MemberRemoveRequest = decode(request)?;
                let member = membership::check_remove(&ms, r.id, shared.config.strict_reconfig_check)?.clone();
                membership::conf_change(ConfChangeType::RemoveNode, id, member)
            }
            Method::ClusterMemberPromote => {
                let r: MemberPromoteRequest = decode(request)?;
                // Only the leader knows how far the learner has come (etcd
                // forwards promote to the leader; so does ketch's caller).
                if !self.is_leader() {
                    return Err(EtcdError::NotLeader);
                }
                let member = membership::check_promote(&ms, r.id, shared.config.strict_reconfig_check)?.clone();
                let prs = self.raw.raft.prs();
                let leader_match = prs.get(self.member_id).map_or(0, |p| p.matched);
                let learner_match = prs.get(r.id).map_or(0, |p| p.matched);
                if (learner_match as f64) < (leader_match as f64) * membership::LEARNER_READY_PERCENT {
                    return Err(EtcdError::LearnerNotReady);
                }
                membership::conf_change(ConfChangeType::AddNode, id, Member { is_learner: false, ..member })
            }
            _ => unreachable!("not a member change"),
        };
        match self.raw.propose_conf_change(Vec::new(), cc) {
            Ok(()) => {
                self.pending_writes.insert(id, (token, Instant::now()));
                Ok(())
            }
            Err(raft::Error::ProposalDropped) => Err(EtcdError::NoLeader),
            Err(e) => Err(EtcdError::Internal(format!("raft: {e}"))),
        }
    }

    /// Applies a committed configuration change to Raft and the member list
    /// together; the proposer's answer, or the error that refused it.
    fn apply_conf_change(
        &mut self,
        shared: &Shared,
        batch: &mut WriteBatch<'_>,
        cc: &ConfChange,
    ) -> Result<Result<Vec<u8>, EtcdError>, String> {
        let (outcome, member) = match membership::plan_conf_change(batch.membership(), cc) {
            Ok(plan) => plan,
            Err(EtcdError::Internal(m)) => return Err(m),
            Err(e) => return Ok(Err(e)),
        };
        let cs = self.raw.apply_conf_change(cc).map_err(|e| e.to_string())?;
        self.raw.mut_store().set_conf_state(cs);
        let stored = |e: EtcdError| e.to_string();
        match outcome {
            ConfOutcome::Added | ConfOutcome::Promoted => batch.put_member(&member).map_err(stored)?,
            ConfOutcome::Removed => batch.remove_member(member.id).map_err(stored)?,
        }
        shared.raft.membership_version.fetch_add(1, Ordering::AcqRel);
        if member.id == self.member_id {
            shared.raft.is_learner.store(member.is_learner, Ordering::Release);
            if outcome == ConfOutcome::Removed {
                crate::log_warn!("this member ({:x}) was removed from the cluster", self.member_id);
                shared.raft.removed.store(true, Ordering::Release);
            }
        }
        let members = membership::member_list(batch.membership());
        Ok(Ok(match outcome {
            ConfOutcome::Added => {
                encode_answer(shared, MemberAddResponse { header: None, member: Some(member), members })
            }
            ConfOutcome::Promoted => encode_answer(shared, MemberPromoteResponse { header: None, members }),
            ConfOutcome::Removed => encode_answer(shared, MemberRemoveResponse { header: None, members }),
        }))
    }

    /// Installs a snapshot from the leader (step 2 of the Ready loop): the
    /// copy is written beside the store and fsynced, the WAL marks it, and
    /// only then does the copy replace the store. A crash in between finds
    /// the file at start-up ([`restore_interrupted_snapshot`]).
    fn install_snapshot(&mut self, shared: &Shared, snapshot: &Snapshot) -> Result<(), String> {
        let m = snapshot.get_metadata();
        let path = incoming_snapshot_path(&shared.config, m.term, m.index);
        write_synced(&path, &snapshot.data)
            .map_err(|e| format!("saving the snapshot from the leader at {}: {e}", path.display()))?;
        let log = self.raw.mut_store();
        log.apply_snapshot(snapshot).map_err(|e| e.to_string())?;
        log.sync().map_err(|e| e.to_string())?;
        shared.store.restore(&path).map_err(|e| e.to_string())?;
        self.raw.mut_store().release_before(m.index + 1).map_err(|e| e.to_string())?;
        after_restore(shared).map_err(|e| e.to_string())?;
        self.applied_index = m.index;
        shared.raft.applied_index.store(m.index, Ordering::Release);
        shared.raft.membership_version.fetch_add(1, Ordering::AcqRel);
        shared.raft.snapshots_installed.fetch_add(1, Ordering::AcqRel);
        let me = shared.store.membership().members.get(&self.member_id).map(|m| m.is_learner);
        shared.raft.is_learner.store(me.unwrap_or(false), Ordering::Release);
        crate::log_info!("restored the store from the leader's snapshot at index {} (term {})", m.index, m.term);
        Ok(())
    }

    /// Starts a backend copy when raft wanted a snapshot, and hands a
    /// finished one to the log. The copy runs on its own thread so the
    /// leader keeps serving meanwhile.
    fn tend_snapshot_job(&mut self, shared: &Arc<Shared>) {
        if let Some(job) = &self.snapshot_job {
            match job.try_recv() {
                Ok(Ok(snapshot)) => {
                    self.raw.mut_store().set_prepared_snapshot(snapshot);
                    self.snapshot_job = None;
                }
                Ok(Err(e)) => {
                    crate::log_warn!("making a snapshot for a follower failed: {e}");
                    self.snapshot_job = None;
                }
                Err(crossbeam_channel::TryRecvError::Empty) => {}
                Err(crossbeam_channel::TryRecvError::Disconnected) => self.snapshot_job = None,
            }
        }
        if self.snapshot_job.is_none() && self.raw.store().take_snapshot_request() {
            let (tx, rx) = crossbeam_channel::bounded(1);
            let shared = shared.clone();
            let spawned = std::thread::Builder::new().name("ketch-snapshot".into()).spawn(move || {
                let _ = tx.send(make_snapshot(&shared));
            });
            if spawned.is_ok() {
                self.snapshot_job = Some(rx);
            }
        }
    }

    /// etcd's publish: once there is a leader, the member proposes its name
    /// and client URLs until the cluster's member list has them.
    fn publish_attributes(&mut self, shared: &Shared, now: Instant) {
        let ms = shared.store.membership();
        let Some(me) = ms.members.get(&self.member_id) else {
            return; // a joining member learns of itself from the log first
        };
        let id = &shared.identity;
        if me.name == id.name && me.client_ur_ls == id.client_urls {
            shared.raft.published.store(true, Ordering::Release);
            return;
        }
        if self.raw.raft.leader_id == raft::INVALID_ID
            || self.last_publish.is_some_and(|t| now.duration_since(t) < PUBLISH_RETRY)
        {
            return;
        }
        self.last_publish = Some(now);
        let attrs =
            MemberAttributes { member_id: self.member_id, name: id.name.clone(), client_urls: id.client_urls.clone() };
        let entry = InternalRequest {
            id: self.next_request_id,
            request: Some(internal_request::Request::MemberAttributes(attrs)),
            auth: None,
        };
        self.next_request_id += 1;
        let _ = self.raw.propose(Vec::new(), entry.encode_to_vec());
    }

    /// etcd's MoveLeader: on the leader only, to a voting member; answered
    /// once the target leads.
    fn move_leader(&mut self, shared: &Shared, request: Bytes, token: u64) {
        let result = decode::<MoveLeaderRequest>(request).and_then(|r| {
            if !self.is_leader() {
                return Err(EtcdError::NotLeader);
            }
            match shared.store.membership().members.get(&r.target_id) {
                Some(m) if !m.is_learner => Ok(r.target_id),
                _ => Err(EtcdError::BadLeaderTransferee),
            }
        });
        match result {
            Err(e) => shared.completions.push(token, Err(e)),
            Ok(target) if target == self.member_id => shared.completions.push(token, Ok(Vec::new())),
            Ok(target) => {
                if let Some((_, old, _)) = self.moving_leader.replace((target, token, Instant::now())) {
                    shared.completions.push(old, Err(EtcdError::LeaderChanged));
                }
                self.raw.transfer_leader(target);
            }
        }
    }

    fn check_move_leader(&mut self, shared: &Shared, now: Instant) {
        let Some((target, token, since)) = self.moving_leader else {
            return;
        };
        if self.raw.raft.leader_id == target {
            shared.completions.push(token, Ok(Vec::new()));
        } else if now.duration_since(since) > REQUEST_TIMEOUT {
            shared.completions.push(token, Err(EtcdError::LeaderTransferTimeout));
        } else {
            return;
        }
        self.moving_leader = None;
    }

    /// Makes the store's applied state durable, then lets the Raft log drop
    /// what the store now holds (etcd's --snapshot-count).
    fn durable_commit(&mut self, shared: &Shared) -> Result<(), String> {
        let (index, term) = shared.store.consistent_index();
        let mut batch = shared.store.write_batch().map_err(|e| e.to_string())?;
        batch.set_consistent_index(index, term);
        batch.commit(true).map_err(|e| e.to_string())?;
        self.after_durable_commit(shared)
    }

    fn after_durable_commit(&mut self, shared: &Shared) -> Result<(), String> {
        self.store_dirty = false;
        self.last_durable_commit = Instant::now();
        // Entries kept behind the compaction point, so a follower a little
        // behind catches up from the log rather than a whole snapshot
        // (etcd's --experimental-snapshot-catchup-entries, 5000; fewer for a small
        // --snapshot-count, so that tests can reach snapshots).
        let keep = shared.config.snapshot_catchup_entries.min(shared.config.snapshot_count);
        let durable = shared.store.durable_consistent_index();
        let log = self.raw.mut_store();
        let first = log.first_index().unwrap_or(1);
        if durable >= first && durable - first + 1 > shared.config.snapshot_count + keep {
            log.compact_to(durable - keep).map_err(|e| e.to_string())?;
        }
        Ok(())
    }

    fn release_reads(&mut self, to_readers: &Sender<ReadTask>) {
        let applied = self.applied_index;
        self.reads_waiting_apply.retain_mut(|pending| {
            if pending.index > applied {
                return true;
            }
            for (request, token) in pending.reads.drain(..) {
                let _ = to_readers.send(ReadTask::Linearized { request, token });
            }
            false
        });
    }

    /// Answers "request timed out" to whatever has waited too long: writes
    /// and reads stuck without a leader (etcd's words: "possibly due to
    /// previous leader failure" when the leader changed meanwhile). A
    /// ReadIndex sent in an earlier term is lost with that term's leader:
    /// "leader changed" at once, as etcd's linearizable read loop says.
    fn expire(&mut self, shared: &Shared, now: Instant) {
        let timed_out = |since: Instant| now.duration_since(since) > REQUEST_TIMEOUT;
        let term = self.raw.raft.term;
        if term != self.term_seen {
            self.term_seen = term;
            self.term_changed_at = now;
        }
        let changed_at = self.term_changed_at;
        let timeout_error = |since: Instant| {
            if changed_at > since {
                EtcdError::TimeoutDueToLeaderFail
            } else {
                EtcdError::Timeout
            }
        };
        if let Some(since) = self.read_batch_since.filter(|&s| timed_out(s)) {
            self.read_batch_since = None;
            for (_, token) in self.read_batch.drain(..) {
                shared.completions.push(token, Err(timeout_error(since)));
            }
        }
        self.pending_writes.retain(|_, (token, since)| {
            if timed_out(*since) {
                shared.completions.push(*token, Err(timeout_error(*since)));
                crate::metrics::PROPOSALS_FAILED.inc();
                return false;
            }
            true
        });
        self.reads_in_raft.retain(|_, (since, read_term, reads)| {
            let error = if *read_term != term {
                EtcdError::LeaderChanged
            } else if timed_out(*since) {
                EtcdError::Timeout
            } else {
                return true;
            };
            for (_, token) in reads.drain(..) {
                shared.completions.push(token, Err(error.clone()));
            }
            false
        });
        self.reads_waiting_apply.retain_mut(|pending| {
            if timed_out(pending.since) {
                for (_, token) in pending.reads.drain(..) {
                    shared.completions.push(token, Err(EtcdError::Timeout));
                }
                return false;
            }
            true
        });
    }

    /// etcd's auto-compactor: the leader proposes a compaction when
    /// `--auto-compaction-*` says it is due (see `compactor.rs`). Nobody
    /// waits for the entry; a revision already compacted is refused at
    /// apply, which etcd counts as done too.
    fn auto_compact(&mut self, shared: &Shared, now: Instant) {
        use crate::compactor::AutoCompaction;
        let Some(revision) = self.auto_compactor.tick(now, shared.store.current_revision(), self.is_leader()) else {
            return;
        };
        let entry = InternalRequest {
            id: self.next_request_id,
            request: Some(internal_request::Request::Compaction(CompactionRequest { revision, physical: false })),
            auth: None,
        };
        self.next_request_id += 1;
        match self.raw.propose(Vec::new(), entry.encode_to_vec()) {
            // etcd's v3compactor lines; the Compact entry is only proposed here.
            Ok(()) => match self.auto_compactor.mode() {
                AutoCompaction::Revision(retention) => {
                    crate::log_info!("starting auto revision compaction"; "revision" => revision, "revision-compaction-retention" => retention);
                }
                AutoCompaction::Periodic(period) => {
                    crate::log_info!("starting auto periodic compaction"; "revision" => revision, "compact-period" => period);
                }
                AutoCompaction::Off => {}
            },
            Err(e) => crate::log_warn!(
                "failed auto {} compaction", if matches!(self.auto_compactor.mode(), AutoCompaction::Revision(_)) { "revision" } else { "periodic" };
                "revision" => revision, "error" => e.to_string()
            ),
        }
    }

    /// The leader revokes expired leases through the log (etcd's
    /// revokeExpiredLeases), so every member deletes the same keys at the
    /// same revision. Nobody waits for these entries.
    fn revoke_expired_leases(&mut self, shared: &Shared, now: Instant) {
        for id in shared.lessor.take_expired(now, lease::REVOKES_PER_TICK) {
            let entry = InternalRequest {
                id: self.next_request_id,
                request: Some(internal_request::Request::LeaseRevoke(LeaseRevokeRequest { id })),
                auth: None,
            };
            self.next_request_id += 1;
            if self.raw.propose(Vec::new(), entry.encode_to_vec()).is_err() {
                return; // no longer leader; the next leader revokes it
            }
            crate::metrics::LEASES_EXPIRED.inc();
        }
    }

    fn publish(&self, shared: &Shared) {
        let r = &shared.raft;
        let raft = &self.raw.raft;
        r.term.store(raft.term, Ordering::Release);
        let leader = if raft.state == StateRole::Leader { raft.id } else { raft.leader_id };
        if r.leader.swap(leader, Ordering::AcqRel) != leader && leader != 0 {
            crate::metrics::LEADER_CHANGES.inc();
        }
        crate::metrics::PROPOSALS_PENDING.set(self.pending_writes.len() as u64);
        r.last_index.store(raft.raft_log.last_index(), Ordering::Release);
        r.commit_index.store(raft.raft_log.committed, Ordering::Release);
        let wal = self.raw.store().wal_stats();
        r.wal_fsyncs.store(wal.fsyncs, Ordering::Release);
        r.wal_fsync_nanos.store(wal.fsync_nanos, Ordering::Release);
    }

    /// Storage failed under the node: refuse everything from now on, as etcd
    /// would by crashing, but keep the process up so the error is seen.
    fn fail(&mut self, shared: &Shared, rx: &Receiver<NodeMsg>, why: &str) {
        // One line, whatever the cause's text holds.
        let why = why.replace('\n', " ");
        let exiting = shared.config.storage.exit_on_fatal;
        crate::log_at!(
            crate::logging::Level::Error,
            "engine stopped: {why}{}",
            if exiting { "; exiting with status 1" } else { "" }
        );
        // Set first: from here on submit refuses at once, so what is queued
        // below is all that will ever reach this thread.
        shared.failed.store(true, Ordering::Release);
        let waiting = self.pending_writes.drain().map(|(_, (token, _))| token);
        let held_reads = self.read_batch.drain(..).map(|(_, token)| token);
        let raft_reads = self.reads_in_raft.drain().flat_map(|(_, (_, _, reads))| reads).map(|(_, token)| token);
        let applying = self.reads_waiting_apply.drain(..).flat_map(|p| p.reads).map(|(_, token)| token);
        let queued = rx.try_iter().filter_map(|msg| match msg {
            NodeMsg::Write { token, .. } | NodeMsg::Read { token, .. } => Some(token),
            NodeMsg::Stop
            | NodeMsg::Step(_)
            | NodeMsg::Unreachable(_)
            | NodeMsg::SnapshotSent(..)
            | NodeMsg::RaiseAlarm(_) => None,
        });
        let tokens: Vec<u64> = waiting.chain(held_reads).chain(raft_reads).chain(applying).chain(queued).collect();
        for token in tokens {
            shared.completions.push(token, Err(failed_error()));
        }
        if exiting {
            exit_after_answers();
        }
    }
}

/// How long the front end gets to hand the last answers ("server stopped")
/// to its clients before the process exits.
const EXIT_GRACE: Duration = Duration::from_millis(500);

/// etcd's `lg.Fatal` after a failed WAL save or backend commit: the process
/// ends with status 1 and its supervisor restarts it from what is durable;
/// in a cluster the others elect a leader meanwhile. Nothing is flushed or
/// retried on the way out (after a failed fsync the page cache may have
/// dropped the data, so a second fsync could report success for lost
/// writes): no destructor runs, no store commit, no WAL sync.
fn exit_after_answers() -> ! {
    std::thread::sleep(EXIT_GRACE);
    // SAFETY: _exit(2) takes no pointers and never returns; skipping atexit
    // handlers and destructors is the point (see above).
    unsafe { libc::_exit(1) }
}

/// The log of a new member. With initial members (a new cluster) it holds
/// etcd's bootstrap entries, committed; without (joining a running cluster)
/// it is empty at term 0 and waits for the leader.
pub(crate) fn bootstrap_log(
    fs: Arc<dyn WalFs>,
    wal_dir: &Path,
    meta: &MemberMetadata,
    initial: &[(u64, String, Vec<String>)],
) -> Result<RaftLog, StartError> {
    if initial.is_empty() {
        return Ok(RaftLog::create_with(fs, wal_dir, &meta.encode_to_vec(), ConfState::default(), 0)?);
    }
    if !initial.iter().any(|m| m.0 == meta.member_id) {
        return Err(StartError::Config(format!("member {:x} is not one of the initial members", meta.member_id)));
    }
    let mut voters: Vec<u64> = initial.iter().map(|m| m.0).collect();
    voters.sort_unstable();
    let mut log =
        RaftLog::create_with(fs, wal_dir, &meta.encode_to_vec(), ConfState { voters, ..ConfState::default() }, 1)?;
    let entries = membership::bootstrap_entries(initial);
    let commit = entries.len() as u64;
    log.append(&entries)?;
    log.set_hard_state(&HardState { term: 1, vote: 0, commit, ..HardState::default() })?;
    log.sync()?;
    Ok(log)
}

/// etcd's --force-new-cluster (its restartAsStandaloneNode), for a member
/// restarted from its data after the rest of its cluster is lost:
///
/// 1. who is in the cluster at the commit index: the configuration as of the
///    applied index, then the conf changes committed after it (etcd's getIDs);
/// 2. the entries past the commit index are dropped (they may never commit);
/// 3. one RemoveNode per other member is appended and committed, and Raft
///    starts with this member as its only voter.
///
/// Applying those entries removes the others from the member list the way a
/// MemberRemove does; the cluster and member IDs and all data stay.
fn force_new_cluster(log: &mut RaftLog, applied: u64, me: u64) -> Result<(), StartError> {
    let hs = log.hard_state().clone();
    let cs = log.conf_state().clone();
    let mut ids: std::collections::BTreeSet<u64> = cs.voters.iter().chain(cs.learners.iter()).copied().collect();
    if hs.commit > applied {
        let ctx = raft::GetEntriesContext::empty(false);
        for entry in log.entries(applied + 1, hs.commit + 1, None, ctx)? {
            if entry.get_entry_type() != EntryType::EntryConfChange {
                continue;
            }
            let mut cc = ConfChange::default();
            cc.merge_from_bytes(&entry.data).map_err(|e| StartError::Config(format!("entry {}: {e}", entry.index)))?;
            match cc.get_change_type() {
                ConfChangeType::AddNode | ConfChangeType::AddLearnerNode => ids.insert(cc.node_id),
                ConfChangeType::RemoveNode => ids.remove(&cc.node_id),
            };
        }
    }
    let term = log.term(hs.commit)?;
    let removals: Vec<Entry> = ids
        .iter()
        .filter(|&&id| id != me)
        .enumerate()
        .map(|(i, &id)| {
            let cc = membership::conf_change(ConfChangeType::RemoveNode, 0, Member { id, ..Member::default() });
            let mut e = Entry::default();
            e.set_entry_type(EntryType::EntryConfChange);
            e.term = term;
            e.index = hs.commit + 1 + i as u64;
            e.data = cc.write_to_bytes().expect("a ConfChange encodes").into();
            e
        })
        .collect();
    let commit = hs.commit + removals.len() as u64;
    crate::log_warn!(
        "--force-new-cluster: this member ({me:x}) restarts as its cluster's only voter; \
         removing {} other member(s) at index {}..={commit}",
        removals.len(),
        hs.commit + 1
    );
    if log.last_index() > hs.commit && removals.is_empty() {
        // Nothing to append over them: drop the uncommitted tail with an
        // empty entry at the commit index + 1, committed as Raft's no-op.
        let noop = Entry { term, index: hs.commit + 1, ..Entry::default() };
        log.append(&[noop])?;
        log.set_hard_state(&HardState { commit: hs.commit + 1, ..hs })?;
    } else {
        log.append(&removals)?;
        log.set_hard_state(&HardState { commit, ..hs })?;
    }
    log.sync()?;
    log.set_conf_state(ConfState { voters: vec![me], ..ConfState::default() });
    Ok(())
}

fn snapshot_dir(config: &EngineConfig) -> PathBuf {
    config.data_dir.join("member").join("snap")
}

fn incoming_snapshot_path(config: &EngineConfig, term: u64, index: u64) -> PathBuf {
    snapshot_dir(config).join(format!("{term:016x}-{index:016x}.redb"))
}

/// A crash between marking a leader's snapshot in the WAL and swapping it
/// in leaves the store behind the log's start: finish the swap from the
/// file kept beside it.
fn restore_interrupted_snapshot(config: &EngineConfig, store: &Store, log: &RaftLog) -> Result<(), StartError> {
    let (index, term) = log.snapshot_mark();
    if store.consistent_index().0 >= index {
        return Ok(());
    }
    let path = incoming_snapshot_path(config, term, index);
    if !path.exists() {
        return Err(StartError::Config(format!(
            "the WAL starts after index {index} but the store has applied only {} and the snapshot file {} is missing; \
             remove this member's data dir and add it to the cluster again",
            store.consistent_index().0,
            path.display()
        )));
    }
    store.restore(&path).map_err(StartError::Store)
}

/// After the store was replaced: leases as the store has them now.
fn after_restore(shared: &Shared) -> Result<(), EtcdError> {
    shared.lessor.replace_with(lease::open(&shared.store, &shared.config)?);
    shared.watch.restored(shared.store.current_revision());
    Ok(())
}

fn write_synced(path: &Path, data: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut f = std::fs::File::create(path)?;
    f.write_all(data)?;
    f.sync_all()
}

/// A Raft snapshot of the whole backend (runs on its own thread).
fn make_snapshot(shared: &Shared) -> Result<Snapshot, String> {
    let dir = snapshot_dir(&shared.config);
    std::fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    let path = dir.join("outgoing.redb.tmp");
    let info = shared.store.snapshot_to(&path).map_err(|e| e.to_string())?;
    let data = std::fs::read(&path).map_err(|e| format!("reading {}: {e}", path.display()));
    let _ = std::fs::remove_file(&path);
    let mut snapshot = Snapshot { data: data?.into(), ..Snapshot::default() };
    let m = snapshot.mut_metadata();
    m.index = info.index;
    m.term = info.term;
    m.set_conf_state(info.membership.conf_state());
    Ok(snapshot)
}

/// A member publishes its name and client URLs (etcd's MemberAttrSet).
fn apply_attributes(batch: &mut WriteBatch<'_>, a: &MemberAttributes) -> Result<(), EtcdError> {
    let Some(m) = batch.membership().members.get(&a.member_id) else {
        return Ok(()); // removed meanwhile
    };
    let m = Member { name: a.name.clone(), client_ur_ls: a.client_urls.clone(), ..m.clone() };
    batch.put_member(&m)
}

fn apply_member_update(batch: &mut WriteBatch<'_>, u: &MemberUpdateRequest) -> Result<Vec<Member>, EtcdError> {
    let Some(m) = batch.membership().members.get(&u.id) else {
        return Err(EtcdError::MemberNotFound);
    };
    let m = Member { peer_ur_ls: u.peer_ur_ls.clone(), ..m.clone() };
    batch.put_member(&m)?;
    Ok(membership::member_list(batch.membership()))
}

/// etcd's estimate of what a request adds to the backend (etcdserver/quota.go).
const KV_OVERHEAD: u64 = 256;
const LEASE_OVERHEAD: u64 = 64;

fn cost_put(r: &PutRequest) -> u64 {
    KV_OVERHEAD + r.key.len() as u64 + r.value.len() as u64
}

/// The larger branch's puts, nested txns included (etcd's costTxn stops at
/// the first level, so a put inside a nested txn passes etcd's quota and its
/// capped applier; here it counts like any other put). 0 exactly when the
/// txn holds no put anywhere.
fn cost_txn(r: &TxnRequest) -> u64 {
    let branch = |ops: &[crate::pb::etcdserverpb::RequestOp]| -> u64 {
        ops.iter()
            .map(|op| match &op.request {
                Some(request_op::Request::RequestPut(p)) => cost_put(p),
                Some(request_op::Request::RequestTxn(t)) => cost_txn(t),
                _ => 0,
            })
            .sum()
    };
    branch(&r.success).max(branch(&r.failure))
}

/// etcd swaps its applier while an alarm is active: CORRUPT refuses Put,
/// DeleteRange, Txn, Compaction, LeaseGrant and LeaseRevoke (applierV3Corrupt); NOSPACE
/// refuses Put, a Txn with a put in either branch (nested txns included),
/// and LeaseGrant (applierV3Capped). Deletes, Txns without puts,
/// compaction, reads and Alarm itself still apply. When both are active,
/// CORRUPT wins.
fn refused_by_alarm(batch: &WriteBatch<'_>, req: Option<&internal_request::Request>) -> Option<EtcdError> {
    use internal_request::Request as R;
    if batch.has_alarm(ALARM_CORRUPT) {
        return match req {
            Some(
                R::Put(_) | R::DeleteRange(_) | R::Txn(_) | R::Compaction(_) | R::LeaseGrant(_) | R::LeaseRevoke(_),
            ) => Some(EtcdError::Corrupt),
            _ => None,
        };
    }
    if batch.has_alarm(ALARM_NOSPACE) {
        return match req {
            Some(R::Put(_) | R::LeaseGrant(_)) => Some(EtcdError::NoSpace),
            Some(R::Txn(t)) if cost_txn(t) > 0 => Some(EtcdError::NoSpace),
            _ => None,
        };
    }
    None
}

/// etcd's applierV3backend.Alarm over its AlarmStore. GET with alarm NONE
/// lists every alarm; ACTIVATE answers the alarm (new or already active);
/// DEACTIVATE answers it only if it was active.
fn apply_alarm(batch: &mut WriteBatch<'_>, r: &AlarmRequest) -> Result<AlarmResponse, EtcdError> {
    let member = |(alarm, member_id): (i32, u64)| AlarmMember { member_id, alarm };
    let alarms = match AlarmAction::try_from(r.action) {
        Ok(AlarmAction::Get) => batch
            .alarms()
            .into_iter()
            .filter(|(a, _)| r.alarm == AlarmType::None as i32 || *a == r.alarm)
            .map(member)
            .collect(),
        Ok(AlarmAction::Activate) => {
            batch.activate_alarm(r.member_id, r.alarm)?;
            vec![member((r.alarm, r.member_id))]
        }
        Ok(AlarmAction::Deactivate) => {
            if batch.deactivate_alarm(r.member_id, r.alarm)? {
                vec![member((r.alarm, r.member_id))]
            } else {
                Vec::new()
            }
        }
        Err(_) => Vec::new(),
    };
    Ok(AlarmResponse { header: None, alarms })
}

fn encode_answer<R: Message + crate::engine::HasHeader>(shared: &Shared, mut resp: R) -> Vec<u8> {
    shared.fill_header(&mut resp);
    resp.encode_to_vec()
}

/// Request IDs as etcd's idutil makes them: the member ID's low 16 bits on
/// top, so members do not collide, then the wall clock in milliseconds
/// shifted left by 8, so an ID of this run never repeats one that an earlier
/// run left in the log; counting up from there.
fn request_id_seed(member_id: u64) -> u64 {
    let millis = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
    ((member_id & 0xffff) << 48) | ((millis << 8) & ((1 << 48) - 1))
}

/// A ReadIndex context unique in the cluster: the leader keeps pending
/// reads by context and ignores a second one with the same bytes, so a
/// per-member counter alone would let members' reads swallow each other.
fn read_context(member_id: u64, counter: u64) -> Vec<u8> {
    [member_id.to_be_bytes(), counter.to_be_bytes()].concat()
}

/// The counter of a read context this member made; None for another's.
fn own_read_context(member_id: u64, ctx: &[u8]) -> Option<u64> {
    let (member, counter) = ctx.split_at_checked(8)?;
    (member == member_id.to_be_bytes()).then_some(())?;
    Some(u64::from_be_bytes(counter.try_into().ok()?))
}

/// raft-rs logs through slog; ketch passes its warnings and errors to stderr.
fn raft_logger() -> slog::Logger {
    struct StderrDrain;
    impl slog::Drain for StderrDrain {
        type Ok = ();
        type Err = slog::Never;
        fn log(&self, record: &slog::Record<'_>, _: &slog::OwnedKVList) -> Result<(), slog::Never> {
            if record.level().is_at_least(slog::Level::Warning) {
                crate::log_warn!("raft: {}", record.msg());
            }
            Ok(())
        }
    }
    slog::Logger::root(StderrDrain, slog::o!())
}
