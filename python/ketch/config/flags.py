"""Every flag of etcd 3.5's server, in one table, grouped as `etcd --help` groups them.

Each entry names the flag, its Go kind (how its text parses), its default
(etcd 3.5's), the Config field it sets, and, when ketch does not do what etcd
does with it, the reason. That one reason string is the warning ketch logs at
start when the flag is set, and the reason README's flag table gives
(`markdown_table`, which a test compares with README). A flag whose value is in
`inert` behaves as in etcd even though ketch lacks the feature (`--enable-v2=false`
on a server with no v2 API), so it draws no warning.

The help text is ketch's own wording; the names, kinds and defaults are
etcd's wire contract (etcdmain/config.go and help.go of etcd 3.4, plus the
3.5 additions marked `since="3.5"`).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from .. import govalue
from ..govalue import (
    INT,
    INT64,
    UINT,
    UINT64,
    Bool,
    Choice,
    Duration,
    Ignored,
    Kind,
    Str,
    Strings,
    Uint32,
    URLs,
)


@dataclass(frozen=True)
class Flag:
    name: str
    kind: Kind
    default: Any
    help: str
    field: str = ""  # the Config field it sets; "" when ketch only checks the value
    reason: str = ""  # why it has no effect in ketch; "" when it does what etcd's does
    inert: tuple[Any, ...] = ()  # values with which ketch already behaves as etcd
    yaml: str | None = ""  # its --config-file key: "" = the flag's name, None = none
    since: str = "3.4"  # "3.5": added in etcd 3.5; "ketch": ketch's own
    hidden: bool = False  # accepted but left out of --help, as etcd leaves it out
    shown_default: str = ""  # --help's default when the value does not say it
    notice: str = ""  # a flag ketch honours but cautions about when it is on (logged)

    @property
    def yaml_key(self) -> str | None:
        return self.name if self.yaml == "" else self.yaml

    def shown(self) -> str:
        return self.shown_default or self.kind.show(self.default)

    def warns(self, value: Any) -> bool:
        """Whether setting this flag to `value` draws the no-effect warning."""
        return bool(self.reason) and value not in self.inert

    def notices(self, value: Any) -> bool:
        return bool(self.notice) and value != self.default

    def warning(self) -> str:
        return f"flag --{self.name} has no effect in ketch: {self.reason}"


# Reasons shared by several flags. Each says why; README repeats it.
V2 = "ketch has no v2 API"
PROXY = "ketch has no v2 proxy mode"
BBOLT = "ketch's backend is redb, not bbolt"
PACKAGE_LEVELS = (
    "etcd 3.4 applies per-package levels to capnslog only and etcd 3.5 has none; "
    "ketch logs every package at --log-level"
)
FALLBACK = (
    "ketch has no v2 proxy mode: when the discovery service's cluster is full, ketch exits "
    "(as etcd does with --discovery-fallback=exit)"
)
TRACING = "ketch exports no OpenTelemetry traces"
LEASE_CHECKPOINT = "ketch has no lease checkpoints; a new leader restarts every lease's TTL"
ALLOWED_NAMES = "ketch checks certificates against the trusted CA only, not their CN or host names"
CLIENT_CERT = "ketch dials peers with --peer-cert-file/--peer-key-file"
RETENTION = (
    "ketch writes no snapshot files, so there are none to keep or delete (a snapshot is "
    "streamed from the backend)"
)
BATCH = "ketch's backend commits every apply batch and makes it durable every 100 ms"
LOCKING = "ketch does not lock its memory"
TIMING = "ketch does not time requests or applies for warnings"


def _ignored(name: str) -> Flag:
    # etcd 0.4's flags, which etcd still accepts and ignores (etcdmain's `ignored`).
    return Flag(name, Ignored(), "", "", reason="an etcd 0.4 flag that etcd ignores too",
                yaml=None, hidden=True)  # fmt: skip


CPUS = os.cpu_count() or 1
DEFAULT_GRPC_WORKERS = max(1, min(4, CPUS))
MAX_GRPC_WORKERS = 64
LOG_LEVELS = ("debug", "info", "warn", "error", "panic", "fatal")


class _Workers(Kind):
    go_type = "uint"

    def parse(self, s: str) -> int:
        n = UINT.parse(s)
        if not 1 <= n <= MAX_GRPC_WORKERS:
            raise ValueError(f"must be between 1 and {MAX_GRPC_WORKERS}")
        return n

    def from_yaml(self, v: Any) -> int:
        return self.parse(str(UINT.from_yaml(v)))


_LOG_ROTATION = (
    '{"maxsize": 100, "maxage": 0, "maxbackups": 0, "localtime": false, "compress": false}'
)

GROUPS: tuple[tuple[str, tuple[Flag, ...]], ...] = (
    ("Member", (
        Flag("name", Str(), "default", "Human-readable name of this member.", "name"),
        Flag("data-dir", Str(), "", "Directory of the member's data (WAL and backend).", "data_dir",
             shown_default="${name}.ketch"),
        Flag("wal-dir", Str(), "", "Put the WAL in this directory instead of the data dir's member/wal.",
             "wal_dir"),
        Flag("snapshot-count", UINT64, 100_000,
             "Applied entries kept in the Raft log before it is compacted.", "snapshot_count"),
        Flag("heartbeat-interval", UINT, 100, "Raft heartbeat (one tick), in milliseconds.",
             "heartbeat_interval"),
        Flag("election-timeout", UINT, 1000, "Raft election timeout, in milliseconds.",
             "election_timeout"),
        Flag("initial-election-tick-advance", Bool(), True,
             "Fast-forward the election ticks at start, for a quicker first election.",
             "initial_election_tick_advance"),
        Flag("listen-peer-urls", URLs(), ("http://localhost:2380",),
             "URLs to listen on for other members.", "listen_peer_urls"),
        Flag("listen-client-urls", URLs(), ("http://localhost:2379",),
             "URLs to listen on for clients.", "listen_client_urls"),
        Flag("listen-client-http-urls", URLs(), (),
             "URLs to serve etcd's HTTP endpoints on, apart from gRPC.", since="3.5",
             reason="ketch serves /health and /version on the client URLs, beside gRPC",
             inert=((),)),
        Flag("max-snapshots", UINT, 5, "Old snapshot files to keep (0: all).", "max_snapshots",
             reason=RETENTION),
        Flag("max-wals", UINT, 5, "Old WAL files to keep (0: all).", "max_wals"),
        Flag("quota-backend-bytes", INT64, 0,
             "Backend size that raises the NOSPACE alarm (0: 2 GiB; negative: no quota).",
             "quota_backend_bytes"),
        Flag("backend-batch-interval", Duration(), 0.0,
             "Longest time before the backend transaction commits.", reason=BATCH),
        Flag("backend-batch-limit", INT, 0,
             "Most operations before the backend transaction commits.", reason=BATCH),
        Flag("max-txn-ops", UINT, 128, "Most operations in one transaction.", "max_txn_ops"),
        Flag("max-request-bytes", UINT, 1572864, "Largest client request accepted, in bytes.",
             "max_request_bytes"),
        Flag("max-concurrent-streams", Uint32(), govalue.UINT32_MAX,
             "Most concurrent streams a client connection may open.", "max_concurrent_streams"),
        Flag("grpc-keepalive-min-time", Duration(), 5.0,
             "Shortest interval a client may ping the server at.", "grpc_keepalive_min_time"),
        Flag("grpc-keepalive-interval", Duration(), 7200.0,
             "How often the server pings an idle client (0: never).", "grpc_keepalive_interval"),
        Flag("grpc-keepalive-timeout", Duration(), 20.0,
             "How long a ping may go unanswered before the connection closes (0: forever).",
             "grpc_keepalive_timeout"),
        Flag("socket-reuse-port", Bool(), False, "Set SO_REUSEPORT on the listeners.",
             "socket_reuse_port", since="3.5", yaml="socket-options.reuse-port"),
        Flag("socket-reuse-address", Bool(), False,
             "Set SO_REUSEADDR on the listeners (ketch's gRPC listeners always have it).",
             since="3.5", yaml="socket-options.reuse-address"),
        Flag("grpc-workers", _Workers(), DEFAULT_GRPC_WORKERS,
             "gRPC processes sharing the client port, all reaching this member's one engine.",
             "grpc_workers", since="ketch", shown_default="number of CPUs, at most 4",
             reason="one ketch process serves clients on every core (the client port is the "
             "engine's own)"),
    )),
    ("Clustering", (
        Flag("initial-advertise-peer-urls", URLs(), ("http://localhost:2380",),
             "This member's peer URLs, as the other members reach it.",
             "initial_advertise_peer_urls"),
        Flag("initial-cluster", Str(), "default=http://localhost:2380",
             "The members of a new cluster, name=peer-URL, comma-separated.", "initial_cluster"),
        Flag("initial-cluster-state", Choice("new", "existing"), "new",
             "'new' to start a cluster, 'existing' to join one after member add.",
             "initial_cluster_state"),
        Flag("initial-cluster-token", Str(), "etcd-cluster",
             "Token of a new cluster; its IDs derive from it.", "initial_cluster_token"),
        Flag("advertise-client-urls", URLs(), ("http://localhost:2379",),
             "This member's client URLs, as member list reports them.", "advertise_client_urls"),
        Flag("discovery", Str(), "", "Discovery service URL to bootstrap from.", "discovery"),
        Flag("discovery-fallback", Choice("proxy", "exit"), "proxy",
             "What to do when discovery fails ('exit' or 'proxy').", reason=FALLBACK,
             inert=("exit",)),
        Flag("discovery-proxy", Str(), "", "HTTP proxy for the discovery service.",
             "discovery_proxy"),
        Flag("discovery-srv", Str(), "", "DNS domain whose SRV records list the members.",
             "discovery_srv"),
        Flag("discovery-srv-name", Str(), "", "Suffix of the SRV names queried.",
             "discovery_srv_name"),
        Flag("strict-reconfig-check", Bool(), True,
             "Refuse member changes that would leave too few started members for a quorum.",
             "strict_reconfig_check"),
        Flag("pre-vote", Bool(), True, "Run Raft's pre-vote phase before an election.",
             "pre_vote"),
        Flag("auto-compaction-retention", Str(), "0",
             "History auto compaction keeps (0: none is compacted).",
             "auto_compaction_retention"),
        Flag("auto-compaction-mode", Str(), "periodic",
             "How to read the retention: 'periodic' (a duration; hours when a bare number) "
             "or 'revision' (a revision count).", "auto_compaction_mode"),
        Flag("enable-v2", Bool(), False, "Serve etcd's v2 API.", reason=V2, inert=(False,)),
        Flag("v2-deprecation", Choice("not-yet", "write-only", "write-only-drop-data", "gone"),
             "not-yet", "Phase of the v2 store's deprecation.", since="3.5",
             reason="ketch has no v2 store, so there is nothing to deprecate"),
    )),
    ("Security", (
        Flag("cert-file", Str(), "", "TLS certificate of the client server.", "cert_file",
             yaml="client-transport-security.cert-file"),
        Flag("key-file", Str(), "", "TLS key of the client server.", "key_file",
             yaml="client-transport-security.key-file"),
        Flag("client-cert-file", Str(), "", "Certificate the member presents when it is a client.",
             since="3.5", reason=CLIENT_CERT, yaml="client-transport-security.client-cert-file"),
        Flag("client-key-file", Str(), "", "Key the member uses when it is a client.",
             since="3.5", reason=CLIENT_CERT, yaml="client-transport-security.client-key-file"),
        Flag("client-cert-auth", Bool(), False, "Require client certificates.",
             "client_cert_auth", yaml="client-transport-security.client-cert-auth"),
        Flag("client-crl-file", Str(), "", "Revocation list for client certificates.",
             "client_crl_file", yaml=None),
        Flag("client-cert-allowed-hostname", Str(), "",
             "Host name a client certificate must carry.", reason=ALLOWED_NAMES, yaml=None),
        Flag("trusted-ca-file", Str(), "", "CA that client certificates are verified against.",
             "trusted_ca_file", yaml="client-transport-security.trusted-ca-file"),
        Flag("auto-tls", Bool(), False, "Client TLS with a generated certificate.", "auto_tls",
             yaml="client-transport-security.auto-tls"),
        Flag("peer-cert-file", Str(), "", "TLS certificate of the peer server.", "peer_cert_file",
             yaml="peer-transport-security.cert-file"),
        Flag("peer-key-file", Str(), "", "TLS key of the peer server.", "peer_key_file",
             yaml="peer-transport-security.key-file"),
        Flag("peer-client-cert-file", Str(), "", "Certificate the member presents to its peers.",
             since="3.5", reason=CLIENT_CERT, yaml="peer-transport-security.client-cert-file"),
        Flag("peer-client-key-file", Str(), "", "Key the member uses towards its peers.",
             since="3.5", reason=CLIENT_CERT, yaml="peer-transport-security.client-key-file"),
        Flag("peer-client-cert-auth", Bool(), False, "Require peer certificates.",
             "peer_client_cert_auth", yaml="peer-transport-security.client-cert-auth"),
        Flag("peer-trusted-ca-file", Str(), "", "CA that peer certificates are verified against.",
             "peer_trusted_ca_file", yaml="peer-transport-security.trusted-ca-file"),
        Flag("peer-cert-allowed-cn", Str(), "", "CN a peer's certificate must carry.",
             reason=ALLOWED_NAMES, yaml=None),
        Flag("peer-cert-allowed-hostname", Str(), "", "Host name a peer's certificate must carry.",
             reason=ALLOWED_NAMES, yaml=None),
        Flag("peer-auto-tls", Bool(), False,
             "Peer TLS with a certificate made at start in the data dir's fixtures/peer; peers go unverified.",
             "peer_auto_tls",
             yaml="peer-transport-security.auto-tls"),
        Flag("self-signed-cert-validity", UINT, 1,
             "Years a generated certificate is valid for.", since="3.5",
             reason="--auto-tls makes a new certificate at every start, valid far beyond a year",
             inert=(1,)),
        Flag("peer-crl-file", Str(), "", "Revocation list for peer certificates.",
             "peer_crl_file", yaml=None),
        Flag("cipher-suites", Strings(), (), "TLS cipher suites, comma-separated (empty: the defaults).",
             "cipher_suites"),
        Flag("cors", URLs("*"), ("*",), "Origins allowed by CORS (* or empty: all).", "cors"),
        Flag("host-whitelist", Strings(unique=True), ("*",),
             "Host names accepted from HTTP clients on an insecure server (* or empty: all).",
             "host_whitelist"),
        Flag("tls-min-version", Choice("", "TLS1.2", "TLS1.3"), "TLS1.2",
             "Lowest TLS version accepted.", "tls_min_version", since="3.5"),
        Flag("tls-max-version", Choice("", "TLS1.2", "TLS1.3"), "",
             "Highest TLS version accepted (empty: the newest).", "tls_max_version", since="3.5"),
        Flag("experimental-peer-skip-client-san-verification", Bool(), False,
             "Do not check the SAN of peers' client certificates.", reason=ALLOWED_NAMES,
             inert=(False,)),
    )),
    ("Auth", (
        Flag("auth-token", Str(), "simple", "Auth token type and options ('simple' or 'jwt,...').",
             "auth_token"),
        Flag("bcrypt-cost", UINT, 10, "bcrypt cost for password hashes (4 to 31).", "bcrypt_cost"),
        Flag("auth-token-ttl", UINT, 300, "Lifetime of a simple token, in seconds.", "auth_token_ttl"),
    )),
    ("Profiling and Monitoring", (
        Flag("enable-pprof", Bool(), False, "Serve Go's profiler under /debug/pprof/.",
             "enable_pprof", reason="ketch is not a Go program and has no pprof endpoint",
             inert=(False,)),
        Flag("metrics", Str(), "basic", "Metrics detail ('basic' or 'extensive').", "metrics"),
        Flag("listen-metrics-urls", URLs(), (), "URLs serving /metrics and /health.",
             "listen_metrics_urls"),
    )),
    ("Logging", (
        Flag("logger", Choice("zap", "capnslog"), "zap",
             "Logger: 'zap' (JSON lines, as etcd's); 3.4's 'capnslog' (text lines).", "logger"),
        Flag("log-outputs", Strings(unique=True), ("default",),
             "Where logs go: 'default', 'stderr', 'stdout' or file paths, comma-separated.",
             "log_outputs"),
        Flag("log-output", Strings(unique=True), ("default",), "etcd 3.4's name of --log-outputs.",
             "log_outputs", hidden=True),
        Flag("log-level", Choice(*LOG_LEVELS), "info",
             "Least severe level logged: debug, info, warn, error, panic or fatal.", "log_level"),
        Flag("enable-log-rotation", Bool(), False, "Rotate the one file among --log-outputs.",
             since="3.5"),
        Flag("log-rotation-config-json", Str(), _LOG_ROTATION,
             "Rotation settings, as JSON: maxsize (MB), maxage (days), maxbackups, localtime "
             "(compress is accepted and, as in etcd 3.5, ignored).", since="3.5"),
    )),
    ("Experimental distributed tracing", (
        Flag("experimental-enable-distributed-tracing", Bool(), False,
             "Export OpenTelemetry traces.", since="3.5", reason=TRACING, inert=(False,)),
        Flag("experimental-distributed-tracing-address", Str(), "localhost:4317",
             "Collector address.", since="3.5", reason=TRACING, inert=("localhost:4317",)),
        Flag("experimental-distributed-tracing-service-name", Str(), "etcd",
             "Service name in the traces.", since="3.5", reason=TRACING, inert=("etcd",)),
        Flag("experimental-distributed-tracing-instance-id", Str(), "",
             "Instance ID in the traces.", since="3.5", reason=TRACING, inert=("",)),
        Flag("experimental-distributed-tracing-sampling-rate", INT, 0,
             "Sampled spans per million.", since="3.5", reason=TRACING, inert=(0,)),
    )),
    ("v2 Proxy (to be deprecated in v3.6)", (
        Flag("proxy", Choice("off", "readonly", "on"), "off", "Proxy mode ('off', 'readonly' or 'on').",
             reason=PROXY, inert=("off",)),
        Flag("proxy-failure-wait", UINT, 5000, "Milliseconds a failed endpoint is set aside.",
             reason=PROXY, inert=(5000,)),
        Flag("proxy-refresh-interval", UINT, 30000, "Milliseconds between endpoint refreshes.",
             reason=PROXY, inert=(30000,)),
        Flag("proxy-dial-timeout", UINT, 1000, "Milliseconds before a dial times out.",
             reason=PROXY, inert=(1000,)),
        Flag("proxy-write-timeout", UINT, 5000, "Milliseconds before a write times out.",
             reason=PROXY, inert=(5000,)),
        Flag("proxy-read-timeout", UINT, 0, "Milliseconds before a read times out.",
             reason=PROXY, inert=(0,)),
    )),
    ("Experimental feature", (
        Flag("experimental-initial-corrupt-check", Bool(), False,
             "Check the data for corruption before serving.", "initial_corrupt_check"),
        Flag("experimental-corrupt-check-time", Duration(), 0.0,
             "Interval between cluster corruption checks.", "corrupt_check_time"),
        Flag("experimental-compact-hash-check-enabled", Bool(), False,
             "Compare members' hashes after compactions.", "compact_hash_check_enabled", since="3.5"),
        Flag("experimental-compact-hash-check-time", Duration(), 60.0,
             "Interval between compaction hash checks.", "compact_hash_check_time", since="3.5"),
        Flag("experimental-enable-v2v3", Str(), "", "Serve v2 through the v3 store under a prefix.",
             reason=V2, inert=("",)),
        Flag("experimental-backend-bbolt-freelist-type", Str(), "map",
             "bbolt freelist type ('array' or 'map').", reason=BBOLT),
        Flag("experimental-enable-lease-checkpoint", Bool(), False,
             "Leader checkpoints leases' remaining TTL to the followers.",
             reason=LEASE_CHECKPOINT, inert=(False,)),
        Flag("experimental-enable-lease-checkpoint-persist", Bool(), False,
             "Persist lease checkpoints (needs --experimental-enable-lease-checkpoint).",
             since="3.5", reason=LEASE_CHECKPOINT, inert=(False,)),
        Flag("experimental-compaction-batch-limit", INT, 1000,
             "Most revisions deleted in one compaction batch.", "compaction_batch_limit"),
        Flag("experimental-compaction-sleep-interval", Duration(), 0.01,
             "Pause between compaction batches.", "compaction_sleep_interval", since="3.5"),
        Flag("experimental-watch-progress-notify-interval", Duration(), 600.0,
             "Interval of watch progress notifications.", "watch_progress_notify_interval"),
        Flag("experimental-warning-apply-duration", Duration(), 0.1,
             "Applies slower than this log a warning.", reason=TIMING),
        Flag("experimental-warning-unary-request-duration", Duration(), 0.3,
             "Unary requests slower than this log a warning.", since="3.5", reason=TIMING),
        Flag("experimental-bootstrap-defrag-threshold-megabytes", UINT, 0,
             "Defragment at start when this much space is free (0: never).", since="3.5",
             reason="ketch does not defragment at start", inert=(0,)),
        Flag("experimental-txn-mode-write-with-shared-buffer", Bool(), True,
             "Let write transactions read through bbolt's shared buffer.", since="3.5",
             reason=BBOLT, inert=(True,)),
        Flag("experimental-memory-mlock", Bool(), False, "Lock etcd's memory in RAM.",
             since="3.5", reason=LOCKING, inert=(False,)),
        Flag("experimental-downgrade-check-time", Duration(), 5.0,
             "Interval between downgrade checks.", since="3.5",
             reason="ketch has no cluster downgrades", inert=(5.0,)),
        Flag("experimental-wait-cluster-ready-timeout", Duration(), 5.0,
             "How long to wait for the cluster to be ready before serving.", since="3.5",
             reason="ketch serves once a leader is known and its publish entry applied"),
        Flag("experimental-stop-grpc-service-on-defrag", Bool(), False,
             "Report NOT_SERVING on the health service during defragmentation.", since="3.5",
             reason="ketch has no gRPC health service yet", inert=(False,)),
        Flag("experimental-max-learners", INT, 1, "Most learners in the cluster.",
             "max_learners", since="3.5"),
        Flag("experimental-snapshot-catchup-entries", UINT64, 5000,
             "Entries kept after a log compaction for followers a little behind.",
             "snapshot_catchup_entries", since="3.5"),
    )),
    ("Unsafe feature", (
        Flag("force-new-cluster", Bool(), False,
             "Restart as a one-member cluster from this member's data.", "force_new_cluster",
             notice="--force-new-cluster is set: a restarted member becomes the only member of "
             "its cluster; restart it without the flag once it runs"),
        Flag("unsafe-no-fsync", Bool(), False, "Never fsync: loses data on a crash; tests only.",
             "unsafe_no_fsync", since="3.5",
             notice="--unsafe-no-fsync is set: fsync is disabled, which is unsafe and will "
             "cause data loss on a crash or power failure (for tests only)"),
    )),
    ("Deprecated (etcd 3.4)", (
        Flag("debug", Bool(), False, "Log at debug level (as --log-level=debug).", "debug"),
        Flag("log-package-levels", Str(), "", "Log levels per package.", reason=PACKAGE_LEVELS,
             inert=("",)),
        Flag("enable-grpc-gateway", Bool(), True, "Serve the gRPC gateway (JSON over HTTP).",
             "enable_grpc_gateway", hidden=True),
    )),
    ("Configuration", (
        Flag("config-file", Str(), "", "etcd's YAML configuration file; when given, the other "
             "flags and ETCD_* variables are ignored.", "config_file", yaml=None),
        Flag("version", Bool(), False, "Print the version and exit.", yaml=None, hidden=True),
    )),
    ("Ignored", tuple(_ignored(n) for n in (
        "cluster-active-size", "cluster-remove-delay", "cluster-sync-interval", "config", "force",
        "max-result-buffer", "max-retry-attempts", "peer-heartbeat-interval",
        "peer-election-timeout", "retry-interval", "snapshot", "v", "vv",
    ))),
)  # fmt: skip


def all_flags() -> Iterator[Flag]:
    for _, flags in GROUPS:
        yield from flags


FLAGS: dict[str, Flag] = {f.name: f for f in all_flags()}
YAML_KEYS: dict[str, Flag] = {f.yaml_key: f for f in all_flags() if f.yaml_key}
# The config file's nested mappings (etcd's securityConfig twice, and 3.5's
# socket options); their keys are "section.key" above.
YAML_SECTIONS = frozenset(k.partition(".")[0] for k in YAML_KEYS if "." in k)
