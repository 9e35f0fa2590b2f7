//! Prometheus metrics under etcd's names, types, labels and help texts, so
//! etcd's alert rules and dashboards read a ketch member unchanged.
//!
//! Counting is a relaxed atomic add on a static: no lock, no allocation, no
//! branch on the hot path. Histograms are fixed arrays of atomic bucket
//! counts with etcd's boundaries. Gauges that the engine already knows (the
//! leader, the indexes, the store's sizes, the watchers) are read from it
//! when `/metrics` is scraped ([`render`]), not kept twice.
//!
//! The statics count for the process. A ketch server runs one engine per
//! process, as etcd runs one member; tests that run several engines in one
//! process see their sum.
//!
//! ```text
//!  hot path                         scrape (/metrics, server/http_endpoints.rs)
//!  WAL_FSYNC.observe(d)  ─┐
//!  MVCC_PUTS.inc()       ─┼─ statics ──► render(engine) ─► text format 0.0.4
//!  grpc::METHODS[i]...   ─┘   engine.shared() gauges ──┘    + process_* (process.rs)
//! ```

pub mod grpc;
mod process;
mod text;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use crate::engine::Engine;
use crate::pb::etcdserverpb::{response_op, TxnResponse};
use text::Text;

/// False only in a build with the `no-counting` feature, made to measure
/// what counting costs (benches/README.md): every counter and histogram is
/// then a no-op.
const COUNTING: bool = !cfg!(feature = "no-counting");

/// A monotonically increasing count.
pub struct Counter(AtomicU64);

impl Counter {
    pub const fn new() -> Counter {
        Counter(AtomicU64::new(0))
    }

    #[inline]
    pub fn inc(&self) {
        self.add(1);
    }

    #[inline]
    pub fn add(&self, n: u64) {
        if COUNTING {
            self.0.fetch_add(n, Relaxed);
        }
    }

    pub fn get(&self) -> u64 {
        self.0.load(Relaxed)
    }
}

impl Default for Counter {
    fn default() -> Counter {
        Counter::new()
    }
}

/// A value set from where it is known.
#[derive(Default)]
pub struct Gauge(AtomicU64);

impl Gauge {
    pub const fn new() -> Gauge {
        Gauge(AtomicU64::new(0))
    }

    #[inline]
    pub fn set(&self, v: u64) {
        self.0.store(v, Relaxed);
    }

    pub fn get(&self) -> u64 {
        self.0.load(Relaxed)
    }
}

/// Prometheus' ExponentialBuckets(start, factor, N): the upper bounds
/// start·factor^k, k = 0..N, computed by repeated multiplication as Go does
/// (so the printed bounds are the same digits).
pub const fn exponential<const N: usize>(start: f64, factor: f64) -> [f64; N] {
    let mut bounds = [0.0; N];
    let mut v = start;
    let mut i = 0;
    while i < N {
        bounds[i] = v;
        v *= factor;
        i += 1;
    }
    bounds
}

/// go-grpc-prometheus's (and Prometheus' DefBuckets) bounds.
pub const DEFAULT_BUCKETS: [f64; 11] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

/// A latency histogram: one atomic count per bucket (not cumulative; the
/// scrape sums them), the overflow bucket, and the sum in nanoseconds.
pub struct Histogram<const N: usize> {
    bounds: [f64; N],
    buckets: [AtomicU64; N],
    overflow: AtomicU64,
    sum_nanos: AtomicU64,
}

impl<const N: usize> Histogram<N> {
    pub const fn new(bounds: [f64; N]) -> Histogram<N> {
        Histogram {
            bounds,
            buckets: [const { AtomicU64::new(0) }; N],
            overflow: AtomicU64::new(0),
            sum_nanos: AtomicU64::new(0),
        }
    }

    #[inline]
    pub fn observe(&self, d: Duration) {
        if !COUNTING {
            return;
        }
        let seconds = d.as_secs_f64();
        match self.bounds.iter().position(|&b| seconds <= b) {
            Some(i) => self.buckets[i].fetch_add(1, Relaxed),
            None => self.overflow.fetch_add(1, Relaxed),
        };
        self.sum_nanos.fetch_add(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX), Relaxed);
    }

    /// Observes the time since `start`.
    #[inline]
    pub fn since(&self, start: Instant) {
        if COUNTING {
            self.observe(start.elapsed());
        }
    }

    /// (cumulative count per bound, count, sum in seconds).
    fn snapshot(&self) -> ([u64; N], u64, f64) {
        let mut cumulative = [0; N];
        let mut total = 0;
        for (i, b) in self.buckets.iter().enumerate() {
            total += b.load(Relaxed);
            cumulative[i] = total;
        }
        total += self.overflow.load(Relaxed);
        let sum = self.sum_nanos.load(Relaxed) as f64 / 1e9;
        (cumulative, total, sum)
    }
}

// etcdserver
pub static LEADER_CHANGES: Counter = Counter::new();
pub static PROPOSALS_FAILED: Counter = Counter::new();
pub static PROPOSALS_PENDING: Gauge = Gauge::new();
pub static HEARTBEAT_SEND_FAILURES: Counter = Counter::new();
pub static SLOW_APPLIES: Counter = Counter::new();
// /health (etcdhttp/health.go): every answer counts as one or the other.
pub static HEALTH_SUCCESS: Counter = Counter::new();
pub static HEALTH_FAILURES: Counter = Counter::new();
// mvcc
pub static MVCC_PUTS: Counter = Counter::new();
pub static MVCC_DELETES: Counter = Counter::new();
pub static MVCC_RANGES: Counter = Counter::new();
pub static MVCC_TXNS: Counter = Counter::new();
// lease
pub static LEASES_GRANTED: Counter = Counter::new();
pub static LEASES_REVOKED: Counter = Counter::new();
/// Keep-alives the leader answered for a live lease (etcd's leaseRenewed).
pub static LEASES_RENEWED: Counter = Counter::new();
/// Revokes of expired leases the leader proposed (etcd's leaseExpired).
pub static LEASES_EXPIRED: Counter = Counter::new();
// mvcc internals (etcd_debugging_mvcc_*)
pub static MVCC_COMPACTED_KEYS: Counter = Counter::new();
pub static WATCH_EVENTS: Counter = Counter::new();
pub static HASH: Histogram<15> = Histogram::new(exponential(0.01, 2.0));
pub static HASH_REV: Histogram<15> = Histogram::new(exponential(0.01, 2.0));
// wal
pub static WAL_WRITE_BYTES: Counter = Counter::new();
// disk: etcd's wal and backend bounds (wal/metrics.go, mvcc/backend/metrics.go)
pub static WAL_FSYNC: Histogram<14> = Histogram::new(exponential(0.001, 2.0));
pub static BACKEND_COMMIT: Histogram<14> = Histogram::new(exponential(0.001, 2.0));
pub static BACKEND_SNAPSHOT: Histogram<17> = Histogram::new(exponential(0.01, 2.0));
pub static BACKEND_DEFRAG: Histogram<13> = Histogram::new(exponential(0.1, 2.0));
/// 1 while a defragment runs (etcd's isDefragActive).
pub static DEFRAG_INFLIGHT: Gauge = Gauge::new();
// client network (etcd counts in its gRPC codec)
pub static GRPC_SENT_BYTES: Counter = Counter::new();
pub static GRPC_RECEIVED_BYTES: Counter = Counter::new();

/// etcd's warnApplyDuration: an apply slower than this is a slow apply.
pub const SLOW_APPLY: Duration = Duration::from_millis(100);

/// Runs `f`, observing how long it took in `h`.
#[inline]
pub fn timed<T, const N: usize>(h: &Histogram<N>, f: impl FnOnce() -> T) -> T {
    let start = Instant::now();
    let out = f();
    h.since(start);
    out
}

/// Counts an apply that took longer than etcd's 100 ms.
#[inline]
pub fn note_apply(started: Instant) {
    if started.elapsed() > SLOW_APPLY {
        SLOW_APPLIES.inc();
    }
}

/// etcd's mvcc counters for one txn: every range, put and delete it ran
/// (nested txns included), and the txn itself when it ran more than one op
/// (metricsTxnWrite.End).
pub fn count_txn(resp: &TxnResponse) {
    fn walk(resp: &TxnResponse, ops: &mut [u64; 3]) {
        for op in &resp.responses {
            match &op.response {
                Some(response_op::Response::ResponseRange(_)) => ops[0] += 1,
                Some(response_op::Response::ResponsePut(_)) => ops[1] += 1,
                Some(response_op::Response::ResponseDeleteRange(_)) => ops[2] += 1,
                Some(response_op::Response::ResponseTxn(t)) => walk(t, ops),
                None => {}
            }
        }
    }
    let mut ops = [0; 3];
    walk(resp, &mut ops);
    MVCC_RANGES.add(ops[0]);
    MVCC_PUTS.add(ops[1]);
    MVCC_DELETES.add(ops[2]);
    if ops.iter().sum::<u64>() > 1 {
        MVCC_TXNS.inc();
    }
}

/// One peer's network counters (label `To` for what is sent, `From` for
/// what is received, as etcd's rafthttp), in a fixed slot claimed on first
/// use: finding it is a scan of atomics, with no lock.
pub struct PeerCounters {
    id: AtomicU64,
    pub sent_bytes: Counter,
    pub received_bytes: Counter,
    /// The prober's smoothed round trip to the peer, observed by every
    /// member for every peer (`server/transport.rs`, etcd's rafthttp prober).
    pub round_trip: Histogram<16>,
    /// rafthttp's peerStatus: 1 while the stream to the peer works
    /// (etcd_network_active_peers), and how often it stopped working.
    active: Gauge,
    disconnected: Counter,
    /// Whether the peer has been active once (etcd's series exist from then).
    was_active: AtomicBool,
}

impl PeerCounters {
    /// The stream to the peer works again (etcd's peerStatus.activate).
    pub fn activated(&self) {
        self.active.set(1);
        self.was_active.store(true, Relaxed);
    }

    /// The stream to the peer failed while it was active (peerStatus.deactivate).
    pub fn deactivated(&self) {
        self.active.set(0);
        self.disconnected.inc();
    }
}

impl PeerCounters {
    const fn new() -> PeerCounters {
        PeerCounters {
            id: AtomicU64::new(0),
            sent_bytes: Counter::new(),
            received_bytes: Counter::new(),
            // rafthttp: 0.1 ms, doubling, 16 buckets.
            round_trip: Histogram::new(exponential(0.0001, 2.0)),
            active: Gauge::new(),
            disconnected: Counter::new(),
            was_active: AtomicBool::new(false),
        }
    }
}

/// More peers than this are counted in no slot (a cluster has 3 to 7).
const PEER_SLOTS: usize = 32;
static PEERS: [PeerCounters; PEER_SLOTS] = [const { PeerCounters::new() }; PEER_SLOTS];

/// The counters of peer `id` (its slot claimed on first use); None for ID 0
/// or when every slot is taken.
pub fn peer(id: u64) -> Option<&'static PeerCounters> {
    if id == 0 {
        return None;
    }
    for p in &PEERS {
        match p.id.compare_exchange(0, id, Relaxed, Relaxed) {
            Ok(_) => return Some(p),
            Err(current) if current == id => return Some(p),
            Err(_) => {}
        }
    }
    None
}

/// A batch from a peer arrived (`bytes` long).
pub fn peer_batch_received(bytes: usize, messages: &[raft::eraftpb::Message]) {
    let Some(first) = messages.first() else { return };
    if let Some(p) = peer(first.from) {
        p.received_bytes.add(bytes as u64);
    }
}

/// One check of `/livez` or `/readyz` (etcd 3.5's recordMetrics): its last
/// result (`etcd_server_healthcheck`) and its runs by outcome
/// (`etcd_server_healthchecks_total`). Printed once it has run, as Go's
/// vectors print only the label sets used.
pub struct HealthCheck {
    kind: &'static str,
    name: &'static str,
    /// 0: never run, 1: last run failed, 2: last run succeeded.
    last: std::sync::atomic::AtomicU8,
    succeeded: Counter,
    failed: Counter,
}

impl HealthCheck {
    const fn new(kind: &'static str, name: &'static str) -> HealthCheck {
        HealthCheck {
            kind,
            name,
            last: std::sync::atomic::AtomicU8::new(0),
            succeeded: Counter::new(),
            failed: Counter::new(),
        }
    }
}

/// Every (type, name) that `server/http_endpoints.rs` runs, sorted as Go
/// sorts the series (by name, then type).
static HEALTH_CHECKS: [HealthCheck; 5] = [
    HealthCheck::new("readyz", "data_corruption"),
    HealthCheck::new("readyz", "linearizable_read"),
    HealthCheck::new("readyz", "non_learner"),
    HealthCheck::new("livez", "serializable_read"),
    HealthCheck::new("readyz", "serializable_read"),
];

/// A `/livez` or `/readyz` check (`kind`) named `name` ran.
pub fn health_check_ran(kind: &str, name: &str, ok: bool) {
    if let Some(c) = HEALTH_CHECKS.iter().find(|c| c.kind == kind && c.name == name) {
        c.last.store(if ok { 2 } else { 1 }, Relaxed);
        if ok { &c.succeeded } else { &c.failed }.inc();
    }
}

fn render_health(t: &mut Text) {
    t.counter("etcd_server_health_failures", "The total number of failed health checks", HEALTH_FAILURES.get());
    t.counter("etcd_server_health_success", "The total number of successful health checks", HEALTH_SUCCESS.get());
    let ran: Vec<&HealthCheck> = HEALTH_CHECKS.iter().filter(|c| c.last.load(Relaxed) != 0).collect();
    t.gauge_family(
        "etcd_server_healthcheck",
        "The result of each kind of healthcheck.",
        &ran.iter()
            .map(|c| (vec![("name", c.name), ("type", c.kind)], u64::from(c.last.load(Relaxed) == 2)))
            .collect::<Vec<_>>(),
    );
    let mut runs = Vec::new();
    for c in &ran {
        // "error" sorts before "success".
        for (status, n) in [("error", c.failed.get()), ("success", c.succeeded.get())] {
            if n > 0 {
                runs.push((vec![("name", c.name), ("status", status), ("type", c.kind)], n));
            }
        }
    }
    if !runs.is_empty() {
        t.counter_family("etcd_server_healthchecks_total", "The total number of each kind of healthcheck.", &runs);
    }
}

static EXTENSIVE: AtomicBool = AtomicBool::new(false);

/// etcd's --metrics=extensive: adds grpc_server_handling_seconds.
pub fn set_extensive(on: bool) {
    EXTENSIVE.store(on, Relaxed);
}

pub fn extensive() -> bool {
    EXTENSIVE.load(Relaxed)
}

/// The whole scrape in Prometheus' text format 0.0.4, families sorted by
/// name as Go's client sorts them. `methods`: the gRPC methods the server
/// routes, in the order of [`grpc::METHODS`]' slots.
pub fn render(engine: &Engine, methods: &[grpc::MethodName]) -> String {
    let shared = engine.shared();
    let raft = &shared.raft;
    let load = |a: &AtomicU64| a.load(std::sync::atomic::Ordering::Acquire);
    let me = shared.identity.member_id;
    let leader = load(&raft.leader);
    let (synced, unsynced) = shared.watch.counts();
    let streams = shared.watch.stream_count();
    let quota = match shared.config.quota_backend_bytes {
        0 => crate::engine::DEFAULT_QUOTA_BYTES,
        q => q,
    };
    let mut t = Text::default();

    // membership/metrics.go: the cluster version as major.minor.
    let cluster_version = shared.config.version.splitn(3, '.').take(2).collect::<Vec<_>>().join(".");
    t.gauge_labelled(
        "etcd_cluster_version",
        "Which version is running. 1 for 'cluster_version' label with current cluster version",
        &[("cluster_version", &cluster_version)],
        1,
    );

    t.gauge_int("etcd_debugging_auth_revision", "The current revision of auth store.", shared.store.auth().revision);
    t.counter("etcd_debugging_lease_granted_total", "The total number of granted leases.", LEASES_GRANTED.get());
    t.counter(
        "etcd_debugging_lease_renewed_total",
        "The number of renewed leases seen by the leader.",
        LEASES_RENEWED.get(),
    );
    t.counter("etcd_debugging_lease_revoked_total", "The total number of revoked leases.", LEASES_REVOKED.get());
    // -1 before the first compaction, as etcd's compactMainRev.
    t.gauge(
        "etcd_debugging_mvcc_compact_revision",
        "The revision of the last compaction in store.",
        shared.store.compact_revision_or_minus_one() as f64,
    );
    t.gauge(
        "etcd_debugging_mvcc_current_revision",
        "The current revision of store.",
        shared.store.current_revision() as f64,
    );
    t.counter(
        "etcd_debugging_mvcc_db_compaction_keys_total",
        "Total number of db keys compacted.",
        MVCC_COMPACTED_KEYS.get(),
    );
    t.gauge(
        "etcd_debugging_mvcc_db_total_size_in_bytes",
        "Total size of the underlying database physically allocated in bytes.",
        shared.store.db_size() as f64,
    );
    t.counter("etcd_debugging_mvcc_delete_total", "Total number of deletes seen by this member.", MVCC_DELETES.get());
    t.counter("etcd_debugging_mvcc_events_total", "Total number of events sent by this member.", WATCH_EVENTS.get());
    t.gauge_int("etcd_debugging_mvcc_keys_total", "Total number of keys.", shared.store.live_key_count() as u64);
    t.counter("etcd_debugging_mvcc_put_total", "Total number of puts seen by this member.", MVCC_PUTS.get());
    t.counter("etcd_debugging_mvcc_range_total", "Total number of ranges seen by this member.", MVCC_RANGES.get());
    t.gauge_int("etcd_debugging_mvcc_slow_watcher_total", "Total number of unsynced slow watchers.", unsynced as u64);
    t.counter("etcd_debugging_mvcc_txn_total", "Total number of txns seen by this member.", MVCC_TXNS.get());
    t.gauge_int("etcd_debugging_mvcc_watch_stream_total", "Total number of watch streams.", streams as u64);
    t.gauge_int("etcd_debugging_mvcc_watcher_total", "Total number of watchers.", (synced + unsynced) as u64);
    t.counter("etcd_debugging_server_lease_expired_total", "The total number of expired leases.", LEASES_EXPIRED.get());
    t.histogram_family(
        "etcd_disk_backend_commit_duration_seconds",
        "The latency distributions of commit called by backend.",
        &[(&[], BACKEND_COMMIT.bounds.as_slice(), snapshot_dyn(&BACKEND_COMMIT))],
    );
    t.histogram_family(
        "etcd_disk_backend_defrag_duration_seconds",
        "The latency distribution of backend defragmentation.",
        &[(&[], BACKEND_DEFRAG.bounds.as_slice(), snapshot_dyn(&BACKEND_DEFRAG))],
    );
    t.histogram_family(
        "etcd_disk_backend_snapshot_duration_seconds",
        "The latency distribution of backend snapshots.",
        &[(&[], BACKEND_SNAPSHOT.bounds.as_slice(), snapshot_dyn(&BACKEND_SNAPSHOT))],
    );
    t.gauge_int(
        "etcd_disk_defrag_inflight",
        "Whether or not defrag is active on the member. 1 means active, 0 means not.",
        DEFRAG_INFLIGHT.get(),
    );
    t.histogram_family(
        "etcd_disk_wal_fsync_duration_seconds",
        "The latency distributions of fsync called by WAL.",
        &[(&[], WAL_FSYNC.bounds.as_slice(), snapshot_dyn(&WAL_FSYNC))],
    );
    // A gauge in etcd, for all its name.
    t.gauge_int("etcd_disk_wal_write_bytes_total", "Total number of bytes written in WAL.", WAL_WRITE_BYTES.get());
    {
        t.gauge(
            "etcd_mvcc_db_total_size_in_bytes",
            "Total size of the underlying database physically allocated in bytes.",
            shared.store.db_size() as f64,
        );
        t.gauge(
            "etcd_mvcc_db_total_size_in_use_in_bytes",
            "Total size of the underlying database logically in use in bytes.",
            shared.store.db_size_in_use() as f64,
        );
    }
    t.counter("etcd_mvcc_delete_total", "Total number of deletes seen by this member.", MVCC_DELETES.get());
    t.histogram_family(
        "etcd_mvcc_hash_duration_seconds",
        "The latency distribution of storage hash operation.",
        &[(&[], HASH.bounds.as_slice(), snapshot_dyn(&HASH))],
    );
    t.histogram_family(
        "etcd_mvcc_hash_rev_duration_seconds",
        "The latency distribution of storage hash by revision operation.",
        &[(&[], HASH_REV.bounds.as_slice(), snapshot_dyn(&HASH_REV))],
    );
    t.counter("etcd_mvcc_put_total", "Total number of puts seen by this member.", MVCC_PUTS.get());
    t.counter("etcd_mvcc_range_total", "Total number of ranges seen by this member.", MVCC_RANGES.get());
    t.counter("etcd_mvcc_txn_total", "Total number of txns seen by this member.", MVCC_TXNS.get());
    let local = format!("{me:x}");
    let mut peers: Vec<&PeerCounters> =
        PEERS.iter().filter(|p| !matches!(p.id.load(Relaxed), 0) && p.id.load(Relaxed) != me).collect();
    peers.sort_by_key(|p| format!("{:x}", p.id.load(Relaxed)));
    let ids: Vec<String> = peers.iter().map(|p| format!("{:x}", p.id.load(Relaxed))).collect();
    let seen: Vec<(&PeerCounters, &String)> =
        peers.iter().copied().zip(&ids).filter(|(p, _)| p.was_active.load(Relaxed)).collect();
    t.gauge_family(
        "etcd_network_active_peers",
        "The current number of active peer connections.",
        &seen
            .iter()
            .map(|(p, id)| (vec![("Local", local.as_str()), ("Remote", id.as_str())], p.active.get()))
            .collect::<Vec<_>>(),
    );
    t.counter(
        "etcd_network_client_grpc_received_bytes_total",
        "The total number of bytes received from grpc clients.",
        GRPC_RECEIVED_BYTES.get(),
    );
    t.counter(
        "etcd_network_client_grpc_sent_bytes_total",
        "The total number of bytes sent to grpc clients.",
        GRPC_SENT_BYTES.get(),
    );
    let disconnected: Vec<_> = seen
        .iter()
        .filter(|(p, _)| p.disconnected.get() > 0)
        .map(|(p, id)| (vec![("Local", local.as_str()), ("Remote", id.as_str())], p.disconnected.get()))
        .collect();
    if !disconnected.is_empty() {
        t.counter_family(
            "etcd_network_disconnected_peers_total",
            "The total number of disconnected peers.",
            &disconnected,
        );
    }
    if !peers.is_empty() {
        t.counter_family(
            "etcd_network_peer_received_bytes_total",
            "The total number of bytes received from peers.",
            &peers
                .iter()
                .zip(&ids)
                .map(|(p, id)| (vec![("From", id.as_str())], p.received_bytes.get()))
                .collect::<Vec<_>>(),
        );
        let rtts: Vec<_> = peers.iter().map(|p| snapshot_dyn(&p.round_trip)).collect();
        let labels: Vec<Vec<(&str, &str)>> = ids.iter().map(|id| vec![("To", id.as_str())]).collect();
        t.histogram_family(
            "etcd_network_peer_round_trip_time_seconds",
            "Round-Trip-Time histogram between peers",
            &labels
                .iter()
                .zip(&peers)
                .zip(rtts)
                .map(|((l, p), s)| (l.as_slice(), p.round_trip.bounds.as_slice(), s))
                .collect::<Vec<_>>(),
        );
        t.counter_family(
            "etcd_network_peer_sent_bytes_total",
            "The total number of bytes sent to peers.",
            &peers.iter().zip(&ids).map(|(p, id)| (vec![("To", id.as_str())], p.sent_bytes.get())).collect::<Vec<_>>(),
        );
    }
    t.gauge_int(
        "etcd_server_has_leader",
        "Whether or not a leader exists. 1 is existence, 0 is not.",
        u64::from(leader != 0),
    );
    render_health(&mut t);
    t.counter(
        "etcd_server_heartbeat_send_failures_total",
        "The total number of leader heartbeat send failures (likely overloaded from slow disk).",
        HEARTBEAT_SEND_FAILURES.get(),
    );
    let id = format!("{me:x}");
    t.gauge_labelled(
        "etcd_server_id",
        "Server or member ID in hexadecimal format. 1 for 'server_id' label with current ID.",
        &[("server_id", &id)],
        1,
    );
    t.gauge_int(
        "etcd_server_is_leader",
        "Whether or not this member is a leader. 1 if is, 0 otherwise.",
        u64::from(leader == me),
    );
    t.gauge_int(
        "etcd_server_is_learner",
        "Whether or not this member is a learner. 1 if is, 0 otherwise.",
        u64::from(raft.is_learner.load(std::sync::atomic::Ordering::Acquire)),
    );
    t.counter("etcd_server_leader_changes_seen_total", "The number of leader changes seen.", LEADER_CHANGES.get());
    t.gauge_int(
        "etcd_server_proposals_applied_total",
        "The total number of consensus proposals applied.",
        load(&raft.applied_index),
    );
    t.gauge_int(
        "etcd_server_proposals_committed_total",
        "The total number of consensus proposals committed.",
        load(&raft.commit_index),
    );
    t.counter(
        "etcd_server_proposals_failed_total",
        "The total number of failed proposals seen.",
        PROPOSALS_FAILED.get(),
    );
    t.gauge_int(
        "etcd_server_proposals_pending",
        "The current number of pending proposals to commit.",
        PROPOSALS_PENDING.get(),
    );
    t.gauge("etcd_server_quota_backend_bytes", "Current backend storage quota size in bytes.", quota as f64);
    t.counter(
        "etcd_server_slow_apply_total",
        "The total number of slow apply requests (likely overloaded from slow disk).",
        SLOW_APPLIES.get(),
    );
    t.gauge_labelled(
        "etcd_server_version",
        "Which version is running. 1 for 'server_version' label with current version.",
        &[("server_version", &shared.config.version)],
        1,
    );
    grpc::render(&mut t, methods);
    process::render_os(&mut t);
    process::render(&mut t);
    t.finish()
}

fn snapshot_dyn<const N: usize>(h: &Histogram<N>) -> (Vec<u64>, u64, f64) {
    let (cumulative, count, sum) = h.snapshot();
    (cumulative.to_vec(), count, sum)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[allow(clippy::float_cmp)] // the first bound is the literal itself, not a computed value
    fn exponential_bounds_are_etcds() {
        let b: [f64; 14] = exponential(0.001, 2.0);
        assert_eq!(b[0], 0.001);
        assert_eq!(text::go_float(b[13]), "8.192");
        let s: [f64; 17] = exponential(0.01, 2.0);
        assert_eq!(text::go_float(s[16]), "655.36");
    }

    #[test]
    fn histogram_buckets_are_cumulative_with_the_sum_in_seconds() {
        let h: Histogram<3> = Histogram::new([0.001, 0.01, 0.1]);
        h.observe(Duration::from_micros(500));
        h.observe(Duration::from_millis(5));
        h.observe(Duration::from_millis(5));
        h.observe(Duration::from_secs(1));
        let (cumulative, count, sum) = h.snapshot();
        assert_eq!(cumulative, [1, 3, 3]);
        assert_eq!(count, 4);
        assert!((sum - 1.0105).abs() < 1e-9);
    }

    #[test]
    fn a_bound_itself_falls_in_its_bucket() {
        let h: Histogram<2> = Histogram::new([0.001, 0.002]);
        h.observe(Duration::from_millis(1));
        assert_eq!(h.snapshot().0, [1, 1]);
    }
}
