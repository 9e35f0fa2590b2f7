"""Type stub for ketch's private native module (built from rust/ by maturin).

Nothing outside python/ketch imports this module; ketch.engine wraps it.
`python -m mypy.stubtest ketch._core` (in `.ci/dev test`) checks this stub
against the built module.
"""

from typing import final

__all__ = [
    "AUTH_AUTHENTICATE",
    "AUTH_DISABLE",
    "AUTH_ENABLE",
    "AUTH_ROLE_ADD",
    "AUTH_ROLE_DELETE",
    "AUTH_ROLE_GET",
    "AUTH_ROLE_GRANT_PERMISSION",
    "AUTH_ROLE_LIST",
    "AUTH_ROLE_REVOKE_PERMISSION",
    "AUTH_STATUS",
    "AUTH_USER_ADD",
    "AUTH_USER_CHANGE_PASSWORD",
    "AUTH_USER_DELETE",
    "AUTH_USER_GET",
    "AUTH_USER_GRANT_ROLE",
    "AUTH_USER_LIST",
    "AUTH_USER_REVOKE_ROLE",
    "CLUSTER_MEMBER_ADD",
    "CLUSTER_MEMBER_LIST",
    "CLUSTER_MEMBER_PROMOTE",
    "CLUSTER_MEMBER_REMOVE",
    "CLUSTER_MEMBER_UPDATE",
    "ETCD_VERSION",
    "GIT_SHA",
    "KV_COMPACT",
    "KV_DELETE_RANGE",
    "KV_PUT",
    "KV_RANGE",
    "KV_TXN",
    "LEASE_GRANT",
    "LEASE_KEEP_ALIVE",
    "LEASE_LEASES",
    "LEASE_REVOKE",
    "LEASE_TIME_TO_LIVE",
    "MAINTENANCE_ALARM",
    "MAINTENANCE_DEFRAGMENT",
    "MAINTENANCE_HASH",
    "MAINTENANCE_HASH_KV",
    "MAINTENANCE_MOVE_LEADER",
    "MAINTENANCE_SNAPSHOT",
    "MAINTENANCE_STATUS",
    "VERSION",
    "WATCH_ACK",
    "WATCH_CLOSE",
    "WATCH_OPEN",
    "WATCH_REQUEST",
    "ClientServer",
    "Engine",
    "PeerTransport",
    "configure_logging",
    "log",
    "self_signed_cert",
    "snapshot_restore",
    "snapshot_status",
    "tamper_backend",
]

# Method numbers: which etcd RPC a request's bytes are. Names follow
# "<service>_<method>" of etcd's proto, upper-cased.
KV_RANGE: int
AUTH_ENABLE: int
AUTH_DISABLE: int
AUTH_STATUS: int
AUTH_USER_ADD: int
AUTH_USER_GET: int
AUTH_USER_LIST: int
AUTH_USER_DELETE: int
AUTH_USER_CHANGE_PASSWORD: int
AUTH_USER_GRANT_ROLE: int
AUTH_USER_REVOKE_ROLE: int
AUTH_ROLE_ADD: int
AUTH_ROLE_GET: int
AUTH_ROLE_LIST: int
AUTH_ROLE_DELETE: int
AUTH_ROLE_GRANT_PERMISSION: int
AUTH_ROLE_REVOKE_PERMISSION: int
KV_PUT: int
KV_DELETE_RANGE: int
KV_TXN: int
KV_COMPACT: int
MAINTENANCE_STATUS: int
CLUSTER_MEMBER_LIST: int
# Raw etcdserverpb Member* requests in, responses out, through Raft like etcd's.
# MemberPromote is answered NotLeader on a follower (services.py forwards it).
CLUSTER_MEMBER_ADD: int
CLUSTER_MEMBER_REMOVE: int
CLUSTER_MEMBER_UPDATE: int
CLUSTER_MEMBER_PROMOTE: int
# Answered after a ReadIndex with AuthNotEnabled: ketch has no users yet.
AUTH_AUTHENTICATE: int
LEASE_GRANT: int
LEASE_REVOKE: int
LEASE_KEEP_ALIVE: int  # one request of the LeaseKeepAlive stream
LEASE_TIME_TO_LIVE: int
LEASE_LEASES: int
MAINTENANCE_ALARM: int  # every action goes through Raft, GET too (as etcd)
MAINTENANCE_HASH: int
MAINTENANCE_HASH_KV: int
# Writes the store as etcd's bbolt backend to a file under the data dir and
# answers its path (UTF-8 bytes, not a message); the caller streams the
# file and removes it.
MAINTENANCE_SNAPSHOT: int
MAINTENANCE_MOVE_LEADER: int  # one member: only the member itself is a valid target
MAINTENANCE_DEFRAGMENT: int  # per member, not through Raft; writers wait meanwhile
# Watch streams: the token names the stream; every response of the stream
# comes out of drain() under it, in order. WATCH_OPEN and WATCH_CLOSE take
# empty bytes, WATCH_REQUEST a serialized WatchRequest (an undecodable one
# is answered with an error under the token), WATCH_ACK the number of
# responses handed to the client as a u64 little-endian (flow control).
WATCH_OPEN: int
WATCH_REQUEST: int
WATCH_ACK: int
WATCH_CLOSE: int

# What this build is; `ketch --version` prints them.
VERSION: str  # ketch's version (rust/Cargo.toml's, the same as pyproject.toml's)
ETCD_VERSION: str  # the etcd server version an engine reports unless given another
GIT_SHA: str  # the commit built from (rust/build.rs), or a text saying it is unknown

@final
class Engine:
    """One member's engine: WAL, Raft node, MVCC store, on Rust threads.

    Requests go in as a serialized etcd request message with a caller-chosen
    token; answers come out of drain() as serialized response messages.
    """

    def __new__(
        cls,
        data_dir: str,
        *,
        name: str,
        member_id: int,
        cluster_id: int,
        peer_urls: list[str],
        client_urls: list[str],
        max_request_bytes: int,
        quota_backend_bytes: int,
        max_txn_ops: int,
        version: str,
        initial_members: list[tuple[int, str, list[str]]] | None = None,
        tick_ms: int = 100,
        election_ticks: int = 10,
        snapshot_count: int = 100000,
        wal_dir: str | None = None,  # etcd's --wal-dir; None: <data_dir>/member/wal
        pre_vote: bool = True,
        initial_election_tick_advance: bool = False,
        strict_reconfig_check: bool = True,
        max_learners: int = 1,
        snapshot_catchup_entries: int = 5000,
        unsafe_no_fsync: bool = False,  # tests only: the WAL is never fsynced
        force_new_cluster: bool = False,  # a restart becomes its cluster's only voter
        max_wals: int = 5,  # WAL segments kept once released (--max-wals; 0: all)
        auto_compaction_mode: str = "periodic",  # or "revision"
        auto_compaction_retention: float = 0.0,  # seconds (periodic) or revisions; 0: off
        compaction_batch_limit: int = 1000,  # key records per physical compaction batch
        compaction_sleep_interval: float = 0.01,  # seconds between two batches
        auth_token: str = ...,  # etcd's --auth-token
        bcrypt_cost: int = 10,
        auth_token_ttl: int = 300,  # seconds
    ) -> Engine:
        """Open (or create) the member's data dir and start its threads.

        member_id and cluster_id are used only when the data dir is new; an
        existing one keeps the IDs it was created with (see the properties).
        initial_members (new data dir only): every member of a new cluster as
        (member ID, name, peer URLs), this one included; empty: this member
        joins a running cluster, with the IDs the cluster gave it, and waits
        for the leader to send it the log.
        Raises OSError or ValueError naming the file when the data dir cannot
        be opened or is corrupt.
        """

    @property
    def member_id(self) -> int: ...
    @property
    def cluster_id(self) -> int: ...
    def completion_fd(self) -> int:
        """A non-blocking eventfd that becomes readable when drain() has work."""

    def submit(self, method: int, request: bytes, token: int) -> None:
        """Hand one request to the engine. Never blocks; the answer comes via drain()."""

    def drain(self) -> list[tuple[int, str | None, bytes]]:
        """Take every finished request: (token, None, response bytes) on success,
        (token, error name, UTF-8 message) on failure (the error's name as the
        engine gives it: EtcdError::name in rust/src/error.rs)."""

    def set_watch_progress_interval(self, seconds: float) -> None:
        """etcd's --experimental-watch-progress-notify-interval."""

    def stats(self) -> dict[str, int]:
        """Counters: wal_fsyncs, wal_fsync_nanos, applied_index, revision,
        raft_leader, membership_version (bumps on every applied membership
        change), removed (1 once this member applied its own removal),
        is_learner, ..."""

    def members(self) -> list[tuple[int, str, list[str], list[str], bool]]:
        """(ID, name, peer URLs, client URLs, is_learner) as this member last applied them."""

    def serve_clients(
        self,
        listeners: list[tuple[int, bool]],
        *,
        max_request_bytes: int,
        max_concurrent_streams: int,
        keepalive_interval: float,
        keepalive_timeout: float,
        version: str,
        keepalive_min_time: float = 5.0,
        tls: tuple[str, str, str, bool, str, str, str, list[str]] | None = None,
        forward_tls: tuple[bytes | None, bytes, bytes, bool] | None = None,
        threads: int = 0,
        grpc_gateway: bool = True,
        metrics_listeners: list[tuple[int, bool]] = ...,
        metrics: str = "basic",
        cors: list[str] = ...,
        host_whitelist: list[str] = ...,
    ) -> ClientServer:
        """Serve etcd's gRPC API (and /health, /livez, /readyz, /version, /metrics
        over HTTP) on listening
        sockets: listeners is [(fd, is_https)], each fd detached from its
        Python socket (the server owns it). tls: (cert file, key file,
        trusted CA file, client cert auth, CRL file, TLS min version, TLS max
        version, TLS 1.2 cipher suites by IANA name), empty for what is not
        given; the files are read again when they change. forward_tls: (CA PEM, cert PEM, key PEM, skip
        verification: --peer-auto-tls) for forwarding leader-only calls to an https leader peer URL (the peer
        transport's dial material). keepalive_min_time: etcd's --grpc-keepalive-min-time. threads: tokio
        workers, 0 for one per CPU. metrics_listeners: --listen-metrics-urls sockets as listeners
        (only /metrics and the health checks there); metrics: "basic" or
        "extensive" (adds grpc_server_handling_seconds). ValueError names a
        bad TLS file."""

    def serve_peers(
        self,
        listeners: list[tuple[int, bool]],
        *,
        tls: tuple[str, str, str, bool, str, str, str, list[str]] | None = None,
        dial_tls: tuple[bytes | None, bytes, bytes, bool] | None = None,
        known_peers: dict[int, list[str]] | None = None,
        corrupt_check_time: float = 0.0,
        compact_hash_check_time: float = 0.0,
    ) -> PeerTransport:
        """Serve and send Raft traffic (ketchpeer.Raft) on listening peer
        sockets ([(fd, is_https)], owned by the transport from here on).
        tls: as serve_clients', for the https listeners; dial_tls: (CA PEM,
        cert PEM, key PEM, skip verification: --peer-auto-tls) for https peers; known_peers: a joining member's
        peers by ID until its log names them; corrupt_check_time: seconds
        between the leader's corruption checks (0: none);
        compact_hash_check_time: seconds between the leader's compaction
        hash checks (0: none). ValueError names a bad file."""

    def initial_corrupt_check(self, *, dial_tls: tuple[bytes | None, bytes, bytes, bool] | None = None) -> None:
        """etcd's initial corruption check: this member's HashKV against
        every peer's at its revision. ValueError with the line to stop with
        ("<id> found data inconsistency with peers")."""

    def close(self) -> None:
        """Stop taking requests, finish what was accepted, fsync, join threads.

        Stop the ClientServer and the PeerTransport first."""

def snapshot_status(path: str) -> tuple[int, int, int, int]:
    """etcdctl's snapshot status of an etcd-format snapshot file: (hash, revision,
    total keys, total size). ValueError (one line) for a file that is not one."""

def snapshot_restore(
    path: str,
    data_dir: str,
    wal_dir: str | None,
    member_id: int,
    cluster_id: int,
    members: list[tuple[int, str, list[str]]],
    skip_hash_check: bool,
) -> tuple[int, int, int]:
    """A new ketch data dir from an etcd-format snapshot (ketch's or etcd's), as
    member_id of the new cluster `members` (ID, name, peer URLs). Returns
    (records, leases, revision). ValueError (one line, nothing left behind)
    for a bad file or an existing data or WAL dir."""

def self_signed_cert(hosts: list[str]) -> tuple[str, str]:
    """(certificate PEM, key PEM) self-signed for these DNS names and IP
    addresses (etcd's --auto-tls). ValueError if one cannot be named."""

@final
class PeerTransport:
    """The member's Raft transport (Engine.serve_peers)."""

    def stop(self) -> None:
        """Stop serving and sending at once (Raft retransmits). Idempotent."""

@final
class ClientServer:
    """The client front door (Engine.serve_clients); no Python runs on its requests."""

    def stop(self, grace: float) -> None:
        """Stop listening, end watch streams (UNAVAILABLE), let other calls
        finish for up to grace seconds. Idempotent."""

def configure_logging(
    outputs: list[str], level: str, rotation: tuple[int, int, int, bool] | None = None
) -> None:
    """The process's one log writer (Rust's records and Python's): etcd's
    --log-outputs (stderr, stdout or file paths) and --log-level; with
    `rotation` (maxsize MB, maxage days, maxbackups, localtime), the one
    file output rotates as etcd 3.5's lumberjack. OSError names a file that
    cannot be opened."""

def log(level: str, caller: str, msg: str, fields: list[tuple[str, str]]) -> None:
    """Writes one record as a zap JSON line; fields are (name, JSON value)."""

def tamper_backend(path: str, key: bytes, value: bytes) -> int:
    """For corruption tests: rewrites key's newest value in a stopped
    member's backend file, out of band; returns that record's revision."""
