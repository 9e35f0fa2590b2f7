"""What configuration comes to: `Config`, its defaults, and the errors that stop a start."""

from __future__ import annotations

from dataclasses import dataclass

from .. import membership
from ..govalue import UINT32_MAX, parse_urls_map
from .flags import DEFAULT_GRPC_WORKERS

__all__ = ["CIPHER_SUITES", "DEFAULT_QUOTA_BACKEND_BYTES", "Config", "ConfigError", "HelpRequested", "VersionRequested"]

DEFAULT_NAME = "default"
DEFAULT_INITIAL_ADVERTISE_PEER_URLS = "http://localhost:2380"
DEFAULT_INITIAL_CLUSTER = f"{DEFAULT_NAME}={DEFAULT_INITIAL_ADVERTISE_PEER_URLS}"
DEFAULT_MAX_REQUEST_BYTES = 1572864  # 1.5 MiB, etcd's DefaultMaxRequestBytes
DEFAULT_QUOTA_BACKEND_BYTES = 2 * 1024**3  # what quota-backend-bytes 0 means
MAX_ELECTION_MS = 50_000  # etcd's maxElectionMs

# Go's crypto/tls suite names (tls.CipherSuites() and InsecureCipherSuites() of
# Go 1.19) plus the two short names etcd's tlsutil adds.
CIPHER_SUITES = frozenset(
    (
        "TLS_AES_128_GCM_SHA256",
        "TLS_AES_256_GCM_SHA384",
        "TLS_CHACHA20_POLY1305_SHA256",
        "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA",
        "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA",
        "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA",
        "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA",
        "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
        "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
        "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
        "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
        "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
        "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
        "TLS_RSA_WITH_RC4_128_SHA",
        "TLS_RSA_WITH_3DES_EDE_CBC_SHA",
        "TLS_RSA_WITH_AES_128_CBC_SHA",
        "TLS_RSA_WITH_AES_256_CBC_SHA",
        "TLS_RSA_WITH_AES_128_CBC_SHA256",
        "TLS_RSA_WITH_AES_128_GCM_SHA256",
        "TLS_RSA_WITH_AES_256_GCM_SHA384",
        "TLS_ECDHE_ECDSA_WITH_RC4_128_SHA",
        "TLS_ECDHE_RSA_WITH_RC4_128_SHA",
        "TLS_ECDHE_RSA_WITH_3DES_EDE_CBC_SHA",
        "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256",
        "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256",
        "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305",
        "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305",
    )
)


class ConfigError(Exception):
    """A configuration ketch will not start with: one line for stderr, an exit code."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class HelpRequested(Exception):
    """-h/--help was given: print `USAGE` and exit 0."""


class VersionRequested(Exception):
    """--version was given: print the version and exit 0."""


@dataclass(frozen=True)
class Config:
    """Everything the server needs, validated. URL lists keep their flag's order.

    A flag that only draws a warning has no field unless another part of
    ketch is to wire it (the TLS and gRPC transport settings)."""

    name: str = DEFAULT_NAME
    data_dir: str = f"{DEFAULT_NAME}.ketch"
    wal_dir: str = ""  # "" = <data-dir>/member/wal
    listen_client_urls: tuple[str, ...] = ("http://localhost:2379",)
    advertise_client_urls: tuple[str, ...] = ("http://localhost:2379",)
    listen_peer_urls: tuple[str, ...] = ("http://localhost:2380",)
    initial_advertise_peer_urls: tuple[str, ...] = (DEFAULT_INITIAL_ADVERTISE_PEER_URLS,)
    initial_cluster: str = DEFAULT_INITIAL_CLUSTER
    initial_cluster_token: str = "etcd-cluster"
    initial_cluster_state: str = "new"
    discovery: str = ""  # a v2 discovery service URL: bootstrap a new cluster from it
    discovery_proxy: str = ""
    discovery_srv: str = ""  # a DNS domain: bootstrap a new cluster from its SRV records
    discovery_srv_name: str = ""
    cert_file: str = ""
    key_file: str = ""
    trusted_ca_file: str = ""
    client_cert_auth: bool = False
    client_crl_file: str = ""
    auto_tls: bool = False
    peer_cert_file: str = ""
    peer_key_file: str = ""
    peer_trusted_ca_file: str = ""
    peer_client_cert_auth: bool = False
    peer_auto_tls: bool = False
    peer_crl_file: str = ""
    cipher_suites: tuple[str, ...] = ()
    cors: tuple[str, ...] = ("*",)
    host_whitelist: tuple[str, ...] = ("*",)
    tls_min_version: str = "TLS1.2"
    tls_max_version: str = ""
    max_concurrent_streams: int = UINT32_MAX
    grpc_keepalive_min_time: float = 5.0  # seconds
    grpc_keepalive_interval: float = 7200.0
    grpc_keepalive_timeout: float = 20.0
    socket_reuse_port: bool = False
    listen_metrics_urls: tuple[str, ...] = ()
    metrics: str = "basic"
    enable_pprof: bool = False
    max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES
    enable_grpc_gateway: bool = True
    quota_backend_bytes: int = 0
    max_txn_ops: int = 128
    grpc_workers: int = DEFAULT_GRPC_WORKERS
    heartbeat_interval: int = 100  # ms: one Raft tick
    election_timeout: int = 1000  # ms
    initial_election_tick_advance: bool = True
    snapshot_count: int = 100_000
    snapshot_catchup_entries: int = 5000
    max_snapshots: int = 5
    max_wals: int = 5
    strict_reconfig_check: bool = True
    pre_vote: bool = True
    max_learners: int = 1
    force_new_cluster: bool = False
    unsafe_no_fsync: bool = False
    debug: bool = False
    log_level: str = "info"
    logger: str = "zap"
    log_outputs: tuple[str, ...] = ("default",)
    # --enable-log-rotation's (maxsize MB, maxage days, maxbackups, localtime), or None.
    log_rotation: tuple[int, int, int, bool] | None = None
    config_file: str = ""
    watch_progress_notify_interval: float = 600.0  # seconds (etcd: 10m)
    auto_compaction_mode: str = "periodic"
    auto_compaction_retention: str = "0"
    compaction_batch_limit: int = 1000
    compaction_sleep_interval: float = 0.01  # seconds (etcd 3.5: 10ms)
    initial_corrupt_check: bool = False  # compare HashKV with the peers before serving
    corrupt_check_time: float = 0.0  # seconds between the leader's checks; 0: none
    compact_hash_check_enabled: bool = False
    compact_hash_check_time: float = 60.0  # seconds between the leader's compaction hash checks
    auth_token: str = "simple"  # etcd's --auth-token: simple, or jwt,pub-key=..,priv-key=..,sign-method=..
    bcrypt_cost: int = 10
    auth_token_ttl: int = 300  # seconds a simple token lives unused
    warnings: tuple[str, ...] = ()

    @property
    def member_id(self) -> int:
        """This member's ID for a new data dir (etcd's NewMember)."""
        return membership.member_id(
            parse_urls_map(self.initial_cluster)[self.name], self.initial_cluster_token
        )

    @property
    def cluster_id(self) -> int:
        """The cluster's ID for a new data dir (etcd's genID over the initial members)."""
        return membership.cluster_id(m[0] for m in self.initial_members)

    @property
    def initial_members(self) -> list[tuple[int, str, list[str]]]:
        """Every member of --initial-cluster as (member ID, name, peer URLs), self included,
        in the flag's order: what the engine bootstraps a new cluster with."""
        token = self.initial_cluster_token
        return [
            (membership.member_id(urls, token), name, list(urls))
            for name, urls in parse_urls_map(self.initial_cluster).items()
        ]


