"""The ketch server process: the engine, its client port and its peer port.

Both ports are served by the engine itself (`Engine.serve_clients` and
`Engine.serve_peers`: tonic on tokio runtimes, rust/src/server); this module
binds their sockets and hands them over, so no Python runs for any client
request or Raft message. What stays here: configuration, TLS file checks,
joining, signals and the process's lifecycle, on the main thread. It runs no
event loop: the main thread only waits (for a leader, then for a signal or
this member's removal) and everything it waits for is the engine's, so
asyncio and uvloop are not loaded (with them, and grpcio, an idle member
held twice etcd's resident memory; benches/memory.py).

Start-up follows etcd's order: bind every peer and client listener first (a
port in use fails before the data dir is touched), then open the engine,
start the peer transport, and serve clients once the member has a leader
(until then connections wait in the listen backlog). A member joining a
running cluster (--initial-cluster-state existing, new data dir) first asks
the other members for the member list (ketch.peer), to learn the IDs the
cluster gave it. SIGTERM or SIGINT stops the listeners, lets in-flight
requests finish, and closes the engine (which fsyncs) before the process
exits 0. So does this member's removal from the cluster.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import signal
import socket
import time
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from . import ETCD_VERSION, _core
from .config import Config, ConfigError, check_initial_cluster, compaction_retention
from .tls import (
    client_tls_files,
    peer_dial_tls,
    peer_tls_files,
)

# grpcio, protobuf, asyncio and urllib are imported where a member needs them
# (joining a running cluster, discovery), not by every server: grpcio alone
# made up a fifth of an idle member's resident memory (benches/memory.py).
if TYPE_CHECKING:
    import grpc

__all__ = [
    "ServeError",
    "Stop",
    "bind_client_sockets",
    "run",
    "serve",
]

log = logging.getLogger("ketch")

SHUTDOWN_GRACE_SECONDS = 3.0
LISTEN_BACKLOG = 1024


class ServeError(Exception):
    """The server cannot start: one line for stderr; exit 1."""


def _bind_address(url: str) -> tuple[socket.AddressFamily, str, int]:
    """(family, host, port) a listen URL binds, as Go's net.Listen reads it."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    host = "127.0.0.1" if host == "localhost" else host
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    return family, host, parts.port or 0


def _peer_sockets(cfg: Config) -> list[tuple[socket.socket, bool]]:
    """Every --listen-peer-urls, bound and listening: (socket, is https)."""
    return _bind_all(cfg.listen_peer_urls, cfg.socket_reuse_port)


def _listen_socket(url: str, reuse_port: bool = False) -> socket.socket:
    """A listening socket for one listen URL, failing in Go's words as etcd's
    listeners do. `reuse_port` is etcd's --socket-reuse-port (SO_REUSEPORT:
    several processes may listen on the port, as during a rolling restart)."""
    family, host, port = _bind_address(url)
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as Go does
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
        sock.listen(LISTEN_BACKLOG)
    except OSError as e:
        sock.close()
        reason = (e.strerror or str(e)).lower()
        raise ServeError(f"listen tcp {urlsplit(url).netloc}: bind: {reason}") from None
    return sock


def bind_client_sockets(cfg: Config) -> list[tuple[socket.socket, bool]]:
    """Every --listen-client-urls, then every --listen-metrics-urls, bound and
    listening: (socket, is https). The first len(cfg.listen_client_urls) are
    the client sockets."""
    return _bind_all(cfg.listen_client_urls + cfg.listen_metrics_urls, cfg.socket_reuse_port)


def _bind_all(urls: tuple[str, ...], reuse_port: bool) -> list[tuple[socket.socket, bool]]:
    bound: list[tuple[socket.socket, bool]] = []
    try:
        for url in urls:
            bound.append((_listen_socket(url, reuse_port), url.startswith("https:")))
    except BaseException:
        for sock, _ in bound:
            sock.close()
        raise
    return bound


def _with_auto_tls(cfg: Config) -> Config:
    """etcd's --auto-tls: with https client URLs and no --cert-file/--key-file,
    a self-signed certificate for the listen URLs' hosts, made anew in
    <data-dir>/fixtures/client at every start (clients need to skip
    verification, as with etcd's)."""
    if not cfg.auto_tls:
        return cfg
    if cfg.cert_file or cfg.key_file:
        log.warning("ignoring client auto TLS since certs given")
        return cfg
    if not any(u.startswith("https:") for u in cfg.listen_client_urls):
        return cfg
    hosts = sorted({urlsplit(u).hostname or "" for u in cfg.listen_client_urls} - {""})
    cert, key = _write_self_signed(hosts, os.path.join(cfg.data_dir, "fixtures", "client"), "--auto-tls")
    log.info("client TLS with a self-signed certificate for %s (--auto-tls)", ",".join(hosts))
    return dataclasses.replace(cfg, cert_file=cert, key_file=key)


def _with_peer_auto_tls(cfg: Config) -> Config:
    """etcd's --peer-auto-tls (embed.Config.PeerSelfCert): with no
    --peer-cert-file/--peer-key-file, a self-signed certificate for the
    listen peer URLs' hosts, made anew in <data-dir>/fixtures/peer at every
    start. It replaces the peer TLS settings whole, as etcd's does: no
    trusted CA, CRL or peer client cert auth; members dial each other
    without verifying (peer_dial_tls) and the peer port asks for no client
    certificate."""
    if not cfg.peer_auto_tls:
        return cfg
    if cfg.peer_cert_file or cfg.peer_key_file:
        log.warning("ignoring peer auto TLS since certs given")
        # Certificates given are verified as without the flag.
        return dataclasses.replace(cfg, peer_auto_tls=False)
    hosts = sorted({urlsplit(u).hostname or "" for u in cfg.listen_peer_urls} - {""})
    cert, key = _write_self_signed(hosts, os.path.join(cfg.data_dir, "fixtures", "peer"), "--peer-auto-tls")
    log.info("peer TLS with a self-signed certificate for %s (--peer-auto-tls)", ",".join(hosts))
    return dataclasses.replace(
        cfg, peer_cert_file=cert, peer_key_file=key, peer_trusted_ca_file="", peer_crl_file="",
        peer_client_cert_auth=False,
    )  # fmt: skip


def _write_self_signed(hosts: list[str], directory: str, flag: str) -> tuple[str, str]:
    """A new self-signed certificate for `hosts` in directory/cert.pem and
    its key in directory/key.pem (only the owner may read either): their
    paths."""
    try:
        cert, key = _core.self_signed_cert(hosts)
        os.makedirs(directory, mode=0o700, exist_ok=True)
        paths = {}
        for name, pem in (("cert.pem", cert), ("key.pem", key)):
            path = os.path.join(directory, name)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(pem)
            paths[name] = path
    except (OSError, ValueError) as e:
        raise ServeError(f"cannot generate the {flag} certificate: {e}") from None
    return paths["cert.pem"], paths["key.pem"]


def _serve_clients(
    engine: _core.Engine, cfg: Config, sockets: list[tuple[socket.socket, bool]]
) -> _core.ClientServer:
    """Hands the bound client sockets to the engine's front door."""
    tls = client_tls_files(cfg) if any(is_tls for _, is_tls in sockets) else None
    clients, metrics = sockets[: len(cfg.listen_client_urls)], sockets[len(cfg.listen_client_urls) :]
    try:
        # Leader-only calls go to the leader's peer URL, dialled as the peer transport dials.
        forward = peer_dial_tls(cfg)
        server = engine.serve_clients(
            # detach(): the engine owns the fds from here on.
            [(sock.detach(), is_tls) for sock, is_tls in clients],
            metrics_listeners=[(sock.detach(), is_tls) for sock, is_tls in metrics],
            metrics=cfg.metrics,
            max_request_bytes=cfg.max_request_bytes,
            max_concurrent_streams=cfg.max_concurrent_streams,
            keepalive_interval=cfg.grpc_keepalive_interval,
            keepalive_timeout=cfg.grpc_keepalive_timeout,
            keepalive_min_time=cfg.grpc_keepalive_min_time,
            version=ETCD_VERSION,
            tls=tls,
            forward_tls=forward,
            grpc_gateway=cfg.enable_grpc_gateway,
            cors=list(cfg.cors),
            host_whitelist=list(cfg.host_whitelist),
        )
    except (OSError, ValueError) as e:
        raise ServeError(str(e)) from None
    for url in cfg.listen_client_urls:
        address = urlsplit(url).netloc
        if url.startswith("https:"):
            log.info("serving client traffic securely", extra={"fields": {"address": address}})
        else:
            log.info(
                "serving client traffic insecurely; this is strongly discouraged!",
                extra={"fields": {"address": address}},
            )
    for url in cfg.listen_metrics_urls:
        log.info("serving metrics", extra={"fields": {"address": url}})
    return server


# etcd turns the backend quota off for a negative --quota-backend-bytes; the
# engine takes a u64 where 0 means its 2 GiB default, so "off" is the largest.
_QUOTA_OFF = 2**64 - 1
LEADER_WAIT_SECONDS = 10.0


MEMBERSHIP_POLL_SECONDS = 0.2
#: How often the main thread looks at the stop request while it waits.
STOP_POLL_SECONDS = 0.05


class Stop:
    """A request to stop the server, made by a signal handler, by the
    removal watch or by a caller. A plain flag, not a threading.Event: a
    signal handler runs on the main thread between any two bytecodes, also
    inside Event.wait while it holds the Event's lock, which set() would
    then wait for forever."""

    def __init__(self) -> None:
        self.requested = False

    def set(self) -> None:
        self.requested = True

    def is_set(self) -> bool:
        return self.requested

    def wait(self, seconds: float) -> bool:
        """Sleeps up to `seconds` or until requested; True if requested."""
        deadline = time.monotonic() + seconds
        while not self.requested:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            time.sleep(min(left, STOP_POLL_SECONDS))
        return True


def _data_dir_is_new(cfg: Config) -> bool:
    """No member data yet. The --auto-tls/--peer-auto-tls certificates
    (fixtures/) are made before this is asked, at every start."""
    try:
        return not set(os.listdir(cfg.data_dir)) - {"fixtures"}
    except FileNotFoundError:
        return True


def _check_peer_dial_files(cfg: Config) -> None:
    """Fails, before the data dir is touched, if a peer TLS file the member
    dials other members with cannot be read."""
    try:
        peer_dial_tls(cfg)
    except OSError as e:
        raise ServeError(str(e.strerror)) from None


def _channel_credentials(cfg: Config) -> grpc.ChannelCredentials | None:
    """Peer TLS for https peer URLs; None when no peer file is given (http, or
    https verified against the system's roots)."""
    if not (cfg.peer_cert_file or cfg.peer_trusted_ca_file):
        return None
    from .tls import peer_channel_credentials

    try:
        return peer_channel_credentials(cfg)
    except OSError as e:
        raise ServeError(str(e.strerror)) from None


async def _join_existing(
    cfg: Config, credentials: grpc.ChannelCredentials | None
) -> tuple[int, int, dict[int, tuple[str, ...]]]:
    """(member ID, cluster ID, every member's peer URLs by ID) as the running
    cluster knows them, from another member's member list (etcd's
    GetClusterFromRemotePeers and ValidateClusterAndAssignIDs: the list must
    have as many members as --initial-cluster, each matching one of it by
    peer URLs)."""
    from ._pb import rpc_pb2
    from .peer import PeerError, fetch_members

    local = cfg.initial_members
    others = [u for _, name, urls in local if name != cfg.name for u in urls]
    try:
        answer = rpc_pb2.MemberListResponse.FromString(await fetch_members(others, credentials))
    except PeerError as e:
        raise ServeError(str(e)) from None
    cluster_id = answer.header.cluster_id
    listing = " ".join(f"{m.ID:x}={','.join(m.peerURLs)}" for m in answer.members)
    existing = f"{{ClusterID:{cluster_id:x} Members:[{listing}]}}"
    if len(answer.members) != len(local):
        raise ServeError(f"error validating peerURLs {existing}: member count is unequal")
    mine = sorted(next(urls for _, name, urls in local if name == cfg.name))
    member_id = 0
    for m in answer.members:
        urls = sorted(m.peerURLs)
        if not any(sorted(u) == urls for _, _, u in local):
            raise ServeError(
                f"error validating peerURLs {existing}: PeerURLs: no match found for "
                f"existing member ({m.ID:x}, [{' '.join(m.peerURLs)}]), last resolver error (<nil>)"
            )
        if urls == mine:
            member_id = m.ID
    if not member_id:
        raise ServeError(
            f"error validating peerURLs {existing}: no member has this member's "
            f"peer URLs ({','.join(mine)})"
        )
    return member_id, cluster_id, {m.ID: tuple(m.peerURLs) for m in answer.members}


def _open_engine(
    cfg: Config,
    member_id: int,
    cluster_id: int,
    initial_members: list[tuple[int, str, list[str]]],
) -> _core.Engine:
    quota = _QUOTA_OFF if cfg.quota_backend_bytes < 0 else cfg.quota_backend_bytes
    try:
        return _core.Engine(
            cfg.data_dir,
            name=cfg.name,
            member_id=member_id,
            cluster_id=cluster_id,
            peer_urls=list(cfg.initial_advertise_peer_urls),
            client_urls=list(cfg.advertise_client_urls),
            max_request_bytes=cfg.max_request_bytes,
            quota_backend_bytes=quota,
            max_txn_ops=cfg.max_txn_ops,
            version=ETCD_VERSION,
            initial_members=initial_members,
            tick_ms=cfg.heartbeat_interval,
            election_ticks=cfg.election_timeout // cfg.heartbeat_interval,
            snapshot_count=cfg.snapshot_count,
            # etcd's flags the engine honours (ketch.config's table).
            wal_dir=cfg.wal_dir or None,
            pre_vote=cfg.pre_vote,
            initial_election_tick_advance=cfg.initial_election_tick_advance,
            strict_reconfig_check=cfg.strict_reconfig_check,
            max_learners=cfg.max_learners,
            snapshot_catchup_entries=cfg.snapshot_catchup_entries,
            unsafe_no_fsync=cfg.unsafe_no_fsync,
            force_new_cluster=cfg.force_new_cluster,
            max_wals=cfg.max_wals,
            auto_compaction_mode=cfg.auto_compaction_mode,
            auto_compaction_retention=compaction_retention(cfg),
            compaction_batch_limit=cfg.compaction_batch_limit,
            compaction_sleep_interval=cfg.compaction_sleep_interval,
            auth_token=cfg.auth_token,
            bcrypt_cost=cfg.bcrypt_cost,
            auth_token_ttl=cfg.auth_token_ttl,
        )
    except (OSError, ValueError) as e:
        raise ServeError(f"cannot open data dir {cfg.data_dir}: {e}") from None


def _initial_corrupt_check(engine: _core.Engine, cfg: Config) -> None:
    """etcd's InitialCheck, for a member that already has data, before it
    serves peers or clients (a new member has nothing to compare)."""
    try:
        engine.initial_corrupt_check(dial_tls=peer_dial_tls(cfg))
    except ValueError as e:
        log.error("checkInitialHashKV failed", extra={"fields": {"error": str(e)}})
        engine.close()
        raise ServeError(str(e)) from None


def _watch_membership(engine: _core.Engine, stop: Stop) -> None:
    """Waits until `stop` is requested, requesting it once this member has
    been removed from the cluster. (The peer transport follows the member
    list by itself.)"""
    while not stop.is_set():
        if engine.stats().get("removed"):
            log.warning("the member has been permanently removed from the cluster")
            stop.set()
            return
        stop.wait(MEMBERSHIP_POLL_SECONDS)


def _serve_peers(
    engine: _core.Engine,
    cfg: Config,
    sockets: list[tuple[socket.socket, bool]],
    known_peers: dict[int, tuple[str, ...]],
) -> _core.PeerTransport:
    """Hands the bound peer sockets to the engine's peer transport."""
    try:
        tls = peer_tls_files(cfg) if any(is_tls for _, is_tls in sockets) else None
        transport = engine.serve_peers(
            # detach(): the engine owns the fds from here on.
            [(sock.detach(), is_tls) for sock, is_tls in sockets],
            tls=tls,
            dial_tls=peer_dial_tls(cfg),
            known_peers={k: list(v) for k, v in known_peers.items()},
            corrupt_check_time=cfg.corrupt_check_time,
            compact_hash_check_time=cfg.compact_hash_check_time if cfg.compact_hash_check_enabled else 0.0,
        )
    except (OSError, ValueError) as e:
        raise ServeError(str(e)) from None
    for url in cfg.listen_peer_urls:
        log.info("serving peer traffic", extra={"fields": {"address": urlsplit(url).netloc}})
    return transport


def serve(cfg: Config, stop: Stop | None = None) -> None:
    """Serve until `stop` is requested (by default: until SIGTERM or SIGINT)."""
    if stop is None:
        stop = Stop()
        requested = stop

        def on_signal(_signum: int, _frame: object) -> None:
            requested.set()

        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, on_signal)

    cfg = _with_peer_auto_tls(_with_auto_tls(cfg))
    peer_sockets: list[tuple[socket.socket, bool]] = []
    client_sockets: list[tuple[socket.socket, bool]] = []

    def close_unserved() -> None:
        for sock, _ in peer_sockets + client_sockets:
            sock.close()

    try:
        peer_sockets = _peer_sockets(cfg)
        client_sockets = bind_client_sockets(cfg)
        _check_peer_dial_files(cfg)
        if _data_dir_is_new(cfg) and (cfg.discovery or cfg.discovery_srv):
            cfg = _discover(cfg)
        member_id, cluster_id = cfg.member_id, cfg.cluster_id
        initial_members = cfg.initial_members
        known_peers: dict[int, tuple[str, ...]] = {}
        if _data_dir_is_new(cfg) and cfg.initial_cluster_state == "existing":
            import asyncio  # only here: grpcio's client (ketch.peer) is asyncio's

            credentials = _channel_credentials(cfg)
            member_id, cluster_id, known_peers = asyncio.run(_join_existing(cfg, credentials))
            initial_members = []
            log.info("joining cluster %x as member %x", cluster_id, member_id)
        log.info(
            "name=%s data-dir=%s member-id=%x cluster-id=%x",
            cfg.name,
            cfg.data_dir,
            member_id,
            cluster_id,
        )
        member_initialized = not _data_dir_is_new(cfg)
        engine = _open_engine(cfg, member_id, cluster_id, initial_members)
        if member_initialized and cfg.initial_corrupt_check:
            _initial_corrupt_check(engine, cfg)
    except BaseException:
        close_unserved()
        raise
    if engine.member_id != member_id or engine.cluster_id != cluster_id:
        log.info(
            "data dir keeps its own IDs: member-id=%x cluster-id=%x",
            engine.member_id,
            engine.cluster_id,
        )
    # etcd keeps its 10 minute default unless the flag is positive.
    if cfg.watch_progress_notify_interval > 0:
        engine.set_watch_progress_interval(cfg.watch_progress_notify_interval)
    transport: _core.PeerTransport | None = None
    client_server: _core.ClientServer | None = None
    try:
        transport = _serve_peers(engine, cfg, peer_sockets, known_peers)
        peer_sockets = []
        # Like etcd (embed/serve.go waits on ReadyNotify), serve only once the
        # member has a leader: a client that connects earlier waits in the
        # listen backlog instead of getting "no leader" or a timeout.
        _wait_for_leader(engine, stop)
        if _ready(engine):
            log.info(
                "published local member to cluster through raft",
                extra={
                    "fields": {
                        "local-member-id": f"{engine.member_id:x}",
                        "local-member-attributes": (
                            f"{{Name:{cfg.name} ClientURLs:[{' '.join(cfg.advertise_client_urls)}]}}"
                        ),
                        "cluster-id": f"{engine.cluster_id:x}",
                    }
                },
            )
        client_server = _serve_clients(engine, cfg, client_sockets)
        client_sockets = []
        log.info("ready to serve client requests")
        _watch_membership(engine, stop)
        log.info("stopping; finishing in-flight requests")
    finally:
        # Stop serving clients and let in-flight calls finish (watch streams
        # end at once: clients resume elsewhere), then the peers (other
        # members' streams never end by themselves: no grace period, they
        # reconnect to whoever serves next), then close the engine (it
        # fsyncs what it accepted); on any exit path.
        close_unserved()
        if client_server is not None:
            client_server.stop(SHUTDOWN_GRACE_SECONDS)
        if transport is not None:
            transport.stop()
        engine.close()
    log.info("stopped; engine stats: %s", engine.stats())


def _discover(cfg: Config) -> Config:
    """A new member's initial cluster (and, from a discovery service, its
    token) found by --discovery-srv or --discovery, as etcd bootstraps."""
    from . import discovery

    try:
        if cfg.discovery_srv:
            cluster = discovery.srv_cluster(
                cfg.discovery_srv, cfg.discovery_srv_name, cfg.name, cfg.initial_advertise_peer_urls
            )
            cfg = dataclasses.replace(cfg, initial_cluster=cluster)
        else:
            # etcd: the discovery URL is the cluster token, so IDs derive from it.
            cfg = dataclasses.replace(cfg, initial_cluster_token=cfg.discovery)
            cluster = discovery.join_discovery(
                cfg.discovery, cfg.discovery_proxy, cfg.member_id, cfg.initial_cluster
            )
            cfg = dataclasses.replace(cfg, initial_cluster=cluster)
    except discovery.DiscoveryError as e:
        raise ServeError(f"discovery failed: {e}") from None
    try:
        check_initial_cluster(cfg)
    except ConfigError as e:
        raise ServeError(str(e)) from None
    log.info("bootstrapping from discovery: --initial-cluster=%s", cfg.initial_cluster)
    return cfg


def _ready(engine: _core.Engine) -> bool:
    """etcd's ReadyNotify: a leader is known and the cluster has applied this
    member's name and client URLs (its publish), so `member list` shows them."""
    stats = engine.stats()
    return bool(stats.get("raft_leader")) and bool(stats.get("published"))


def _wait_for_leader(engine: _core.Engine, stop: Stop) -> None:
    deadline = time.monotonic() + LEADER_WAIT_SECONDS
    while not _ready(engine) and not stop.is_set():
        if engine.stats().get("removed"):
            return  # _watch_membership says so and stops
        if time.monotonic() > deadline:
            log.warning("no leader after %.0fs; serving anyway", LEADER_WAIT_SECONDS)
            return
        stop.wait(0.01)


_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warn": logging.WARNING,
    "error": logging.ERROR,
    "panic": logging.CRITICAL,
    "fatal": logging.CRITICAL,
}
_ZAP_LEVELS = {
    logging.DEBUG: "debug",
    logging.INFO: "info",
    logging.WARNING: "warn",
    logging.ERROR: "error",
    logging.CRITICAL: "fatal",
}


class _ZapHandler(logging.Handler):
    """Hands each record to the engine's one log writer (ketch._core.log),
    which Rust's records go through too: zap's JSON line, with the record's
    `fields` (logging's `extra={"fields": {...}}`) after `msg`."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            level = _ZAP_LEVELS.get(record.levelno, "info")
            caller = f"ketch/{record.filename}:{record.lineno}"
            fields = getattr(record, "fields", {})
            _core.log(level, caller, record.getMessage(), [(k, json.dumps(v)) for k, v in fields.items()])
        except Exception:  # logging's contract: emit never raises
            self.handleError(record)


def configure_logging(cfg: Config) -> None:
    """etcd's --logger, --log-outputs and --log-level. zap (the default):
    one JSON object per line, Rust's and Python's records through one
    writer; capnslog: etcd 3.4's text lines (`... I | ketch: message`)."""
    root = logging.getLogger()
    root.setLevel(_LEVELS[cfg.log_level])
    _core.configure_logging(list(cfg.log_outputs), cfg.log_level, cfg.log_rotation)
    # Python's own warnings (DeprecationWarning and the like) become log records too.
    logging.captureWarnings(True)
    handler: logging.Handler
    if cfg.logger == "zap":
        handler = _ZapHandler()
    else:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname).1s | %(name)s: %(message)s"))
    root.handlers[:] = [handler]


def run(cfg: Config) -> int:
    """Run the server until a stop signal; the process exit code."""
    serve(cfg)
    return 0
