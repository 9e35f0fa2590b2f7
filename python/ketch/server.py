"""The ketch server process: engine + gRPC on one uvloop event loop.

Start-up follows etcd's order: bind every peer and client listener first (a
port in use fails before the data dir is touched), then open the engine,
start the peer transport (ketch.peer), and serve clients once the member has
a leader. A member joining a running cluster (--initial-cluster-state
existing, new data dir) first asks the other members for the member list,
to learn the IDs the cluster gave it.
SIGTERM or SIGINT stops the listeners, lets in-flight requests finish, and
closes the engine (which fsyncs) before the process exits 0. So does this
member's removal from the cluster.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import signal
import socket
from collections.abc import Callable
from urllib.parse import urlsplit

import grpc
import grpc.aio

from . import ETCD_VERSION, _core
from ._pb import rpc_pb2
from .config import Config
from .engine import EngineBridge
from .errors import EngineError
from .peer import (
    SERVER_OPTIONS,
    PeerError,
    PeerService,
    PeerTransport,
    fetch_members,
)
from .services import Forward, generic_handlers
from .tls import peer_channel_credentials, peer_server_credentials, server_credentials
from .watch_service import WatchService
from .workers import (
    WORKER_BIND_SECONDS,
    WorkerProcess,
    WorkerStartError,
    engine_socket_name,
    start_workers,
    stop_workers,
)

__all__ = [
    "ServeError",
    "bind_listeners",
    "check_client_ports_free",
    "grpc_options",
    "run",
    "serve",
]

log = logging.getLogger("ketch")

GRPC_OVERHEAD_BYTES = 512 * 1024  # etcd's grpcOverheadBytes, on top of max-request-bytes
# gRPC's own receive limit sits this far above etcd's, so that services.py
# sees a request just over etcd's limit and refuses it in grpc-go's words.
# Beyond it grpc-core refuses in its own words, without reading the message.
GRPC_CORE_SLACK_BYTES = 4 * 1024 * 1024
MAX_SEND_BYTES = 2**31 - 1  # etcd's maxSendBytes (math.MaxInt32)
SHUTDOWN_GRACE_SECONDS = 3.0


class ServeError(Exception):
    """The server cannot start: one line for stderr; exit 1."""


def max_receive_bytes(cfg: Config) -> int:
    """etcd's gRPC receive limit: max-request-bytes + 512 KiB."""
    return cfg.max_request_bytes + GRPC_OVERHEAD_BYTES


def grpc_options(cfg: Config, share_port: bool) -> list[tuple[str, int]]:
    """share_port: this member runs gRPC workers, all listening on its client ports."""
    return [
        (
            "grpc.max_receive_message_length",
            min(max_receive_bytes(cfg) + GRPC_CORE_SLACK_BYTES, 2**31 - 1),
        ),
        ("grpc.max_send_message_length", MAX_SEND_BYTES),
        # grpc-core turns SO_REUSEPORT on by default, which would let a second
        # server share a port already in use instead of failing to bind. It is
        # on only for a member's own workers (ketch.workers); bind_listeners
        # has checked that the port was free before the member took it.
        ("grpc.so_reuseport", int(share_port)),
        # etcd's keepalive enforcement: clients may ping every 5 s, but only
        # while they have a call open (GRPCKeepAliveMinTime, PermitWithoutStream=false).
        ("grpc.http2.min_recv_ping_interval_without_data_ms", 5000),
        ("grpc.keepalive_permit_without_calls", 0),
    ]


def _bind_failure(host: str, port: int) -> str | None:
    """Why host:port cannot be bound, in Go's words; None if it can.

    Tried with a plain socket before gRPC tries, because grpc-core reports a
    failed bind only as a multi-line log of its own.
    """
    host = "127.0.0.1" if host == "localhost" else host
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_STREAM) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as gRPC and Go do
            s.bind((host, port))
    except OSError as e:
        return (e.strerror or str(e)).lower()
    return None


def _listen(
    server: grpc.aio.Server,
    url: str,
    credentials: Callable[[], grpc.ServerCredentials],
    check_free: bool = True,
) -> str:
    """Adds one listen URL to a gRPC server (https: with `credentials()`);
    the address. Fails in Go's words, as etcd's listeners do."""
    parts = urlsplit(url)
    address = parts.netloc
    reason = _bind_failure(parts.hostname or "", parts.port or 0) if check_free else None
    if reason is not None:
        raise ServeError(f"listen tcp {address}: bind: {reason}")
    try:
        if parts.scheme == "https":
            port = server.add_secure_port(address, credentials())
        else:
            port = server.add_insecure_port(address)
    except RuntimeError:
        port = 0
    except OSError as e:
        raise ServeError(str(e.strerror)) from None
    if port == 0:
        raise ServeError(
            f"listen tcp {address}: bind: gRPC could not listen there (see its log above)"
        )
    return address


def bind_peer_listeners(server: grpc.aio.Server, cfg: Config) -> None:
    """Every --listen-peer-urls, on the peer gRPC server."""
    credentials = functools.cache(lambda: peer_server_credentials(cfg))
    for url in cfg.listen_peer_urls:
        address = _listen(server, url, credentials)
        if url.startswith("https:"):
            auth = ", peer certs required" if cfg.peer_client_cert_auth else ""
            log.info("listening for peers on %s (TLS%s)", address, auth)
        else:
            log.info("listening for peers on %s", address)


def check_client_ports_free(cfg: Config) -> None:
    """ServeError, in Go's words, if a --listen-client-urls port is taken.

    Checked before anything binds them: with gRPC workers the workers bind
    first and the member last, all with SO_REUSEPORT, which would not notice
    a stranger on the port."""
    for url in cfg.listen_client_urls:
        parts = urlsplit(url)
        reason = _bind_failure(parts.hostname or "", parts.port or 0)
        if reason is not None:
            raise ServeError(f"listen tcp {parts.netloc}: bind: {reason}")


def bind_listeners(
    server: grpc.aio.Server, cfg: Config, check_free: bool = True, announce: bool = True
) -> None:
    """Every --listen-client-urls on `server`; `announce` logs each (the member does)."""
    credentials = functools.cache(lambda: server_credentials(cfg))
    for url in cfg.listen_client_urls:
        address = _listen(server, url, credentials, check_free)
        if not announce:
            continue
        if url.startswith("https:"):
            auth = ", client certs required" if cfg.client_cert_auth else ""
            log.info("serving client requests on %s (TLS%s)", address, auth)
        else:
            log.info(
                "serving insecure client requests on %s, this is strongly discouraged!", address
            )


# etcd turns the backend quota off for a negative --quota-backend-bytes; the
# engine takes a u64 where 0 means its 2 GiB default, so "off" is the largest.
_QUOTA_OFF = 2**64 - 1
LEADER_WAIT_SECONDS = 10.0


MEMBERSHIP_POLL_SECONDS = 0.2
# How long a follower keeps trying to reach a leader for a forwarded call
# (etcd's follower retries the leader until its request deadline).
FORWARD_DEADLINE_SECONDS = 5.0
FORWARD_RETRY_SECONDS = 0.05


def _data_dir_is_new(cfg: Config) -> bool:
    try:
        return not os.listdir(cfg.data_dir)
    except FileNotFoundError:
        return True


def _channel_credentials(cfg: Config) -> grpc.ChannelCredentials | None:
    """Peer TLS for https peer URLs; None when no peer file is given (http, or
    https verified against the system's roots)."""
    if not (cfg.peer_cert_file or cfg.peer_trusted_ca_file):
        return None
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
        )
    except (OSError, ValueError) as e:
        raise ServeError(f"cannot open data dir {cfg.data_dir}: {e}") from None


def _leader_forwarder(
    engine: _core.Engine, bridge: EngineBridge, transport: PeerTransport
) -> Forward:
    """Runs a request on whichever member is the leader, following it while
    leadership moves, until FORWARD_DEADLINE_SECONDS (then etcd's no leader)."""
    local = engine.member_id

    async def to_leader(method: int, request: bytes) -> bytes:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + FORWARD_DEADLINE_SECONDS
        while True:
            leader = engine.stats().get("raft_leader", 0)
            try:
                if leader == local:
                    return await bridge.call(method, request)
                if leader:
                    return await transport.forward(leader, method, request)
            except EngineError as e:
                if e.name != "NotLeader":
                    raise
            if loop.time() >= deadline:
                raise EngineError("NoLeader", "etcdserver: no leader")
            await asyncio.sleep(FORWARD_RETRY_SECONDS)

    return to_leader


async def _watch_membership(
    engine: _core.Engine, transport: PeerTransport, stop: asyncio.Event
) -> None:
    """Follow membership changes (the transport's peer URLs) and stop the
    server once this member has been removed from the cluster."""
    version = None
    while not stop.is_set():
        stats = engine.stats()
        if stats.get("removed"):
            log.warning("the member has been permanently removed from the cluster")
            stop.set()
            return
        if stats.get("membership_version") != version:
            version = stats.get("membership_version")
            transport.refresh_members()
        await asyncio.sleep(MEMBERSHIP_POLL_SECONDS)


async def serve(cfg: Config, stop: asyncio.Event | None = None) -> None:
    """Serve until `stop` is set (by default: until SIGTERM or SIGINT)."""
    loop = asyncio.get_running_loop()
    if stop is None:
        stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)

    share_port = cfg.grpc_workers > 1
    server = grpc.aio.server(options=grpc_options(cfg, share_port))
    peer_server = grpc.aio.server(options=SERVER_OPTIONS)
    try:
        bind_peer_listeners(peer_server, cfg)
        check_client_ports_free(cfg)
        credentials = _channel_credentials(cfg)
        member_id, cluster_id = cfg.member_id, cfg.cluster_id
        initial_members = cfg.initial_members
        known_peers: dict[int, tuple[str, ...]] = {}
        if _data_dir_is_new(cfg) and cfg.initial_cluster_state == "existing":
            member_id, cluster_id, known_peers = await _join_existing(cfg, credentials)
            initial_members = []
            log.info("joining cluster %x as member %x", cluster_id, member_id)
        log.info(
            "name=%s data-dir=%s member-id=%x cluster-id=%x",
            cfg.name,
            cfg.data_dir,
            member_id,
            cluster_id,
        )
        engine = _open_engine(cfg, member_id, cluster_id, initial_members)
    except BaseException:
        await server.stop(None)
        await peer_server.stop(None)
        raise
    if engine.member_id != member_id or engine.cluster_id != cluster_id:
        log.info(
            "data dir keeps its own IDs: member-id=%x cluster-id=%x",
            engine.member_id,
            engine.cluster_id,
        )
    bridge = EngineBridge(engine, loop)
    # etcd keeps its 10 minute default unless the flag is positive.
    if cfg.watch_progress_notify_interval > 0:
        engine.set_watch_progress_interval(cfg.watch_progress_notify_interval)
    watch = WatchService(bridge)
    transport = PeerTransport(engine, loop, credentials, known_peers=known_peers)
    to_leader = _leader_forwarder(engine, bridge, transport)
    membership = loop.create_task(_watch_membership(engine, transport, stop))
    workers: list[WorkerProcess] = []
    try:
        peer_server.add_generic_rpc_handlers(
            [PeerService(engine, bridge.call, _core.CLUSTER_MEMBER_LIST, to_leader).handler()]
        )
        await peer_server.start()
        if share_port:
            # The workers listen before the member does, so that no client
            # connects while the member's listener is the only one (workers.py).
            socket_name = engine_socket_name()
            engine.serve_workers(socket_name)
            workers = start_workers(cfg, socket_name, cfg.grpc_workers - 1, engine.cluster_id)
            for w in workers:
                try:
                    await loop.run_in_executor(None, w.wait_bound, WORKER_BIND_SECONDS)
                except WorkerStartError as e:
                    raise ServeError(str(e)) from None
        bind_listeners(server, cfg, check_free=False)
        server.add_generic_rpc_handlers(generic_handlers(bridge, max_receive_bytes(cfg), to_leader))
        server.add_generic_rpc_handlers([watch.handler()])
        # Like etcd (embed/serve.go waits on ReadyNotify), serve only once the
        # member has a leader: a client that connects earlier waits in the
        # listen backlog instead of getting "no leader" or a timeout.
        await _wait_for_leader(engine, stop)
        await server.start()
        for w in workers:
            w.release()
        if workers:
            log.info("started %d gRPC worker processes", len(workers))
        log.info("ready to serve client requests")
        await stop.wait()
        log.info("stopping; finishing in-flight requests")
    finally:
        # Stop listening and let in-flight calls finish, then close the engine
        # (it fsyncs what it accepted); on any exit path, not just a signal.
        # Watch streams never finish by themselves: end them first.
        membership.cancel()
        watch.shutdown()
        await server.stop(SHUTDOWN_GRACE_SECONDS)
        # Workers finish their in-flight requests through the engine, so the
        # engine closes only after they have exited.
        await loop.run_in_executor(None, stop_workers, workers)
        # Peers last: a worker's forwarded call comes in through the peer
        # server. Other members' Messages streams never end by themselves,
        # so no grace period: they reconnect to whoever serves next.
        await transport.close()
        await peer_server.stop(None)
        await bridge.close()
    log.info("stopped; engine stats: %s", engine.stats())


def _ready(engine: _core.Engine) -> bool:
    """etcd's ReadyNotify: a leader is known and the cluster has applied this
    member's name and client URLs (its publish), so `member list` shows them."""
    stats = engine.stats()
    return bool(stats.get("raft_leader")) and bool(stats.get("published"))


async def _wait_for_leader(engine: _core.Engine, stop: asyncio.Event) -> None:
    deadline = asyncio.get_running_loop().time() + LEADER_WAIT_SECONDS
    while not _ready(engine) and not stop.is_set():
        if asyncio.get_running_loop().time() > deadline:
            log.warning("no leader after %.0fs; serving anyway", LEADER_WAIT_SECONDS)
            return
        await asyncio.sleep(0.01)


_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warn": logging.WARNING,
    "error": logging.ERROR,
    "panic": logging.CRITICAL,
    "fatal": logging.CRITICAL,
}


def configure_logging(level: str) -> None:
    """etcd-like lines on stderr: `2024-01-02 15:04:05,000 I | ketch: message`."""
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname).1s | %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(_LEVELS[level])


def run(cfg: Config) -> int:
    """Run the server on uvloop until a stop signal; the process exit code."""
    import uvloop

    uvloop.run(serve(cfg))
    return 0
