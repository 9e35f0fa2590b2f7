"""The ketch server process: engine + gRPC on one uvloop event loop.

Start-up follows etcd's order: bind every client listener first (a port in
use fails before the data dir is touched), then open the engine, and serve
once the member has a leader.
SIGTERM or SIGINT stops the listeners, lets in-flight requests finish, and
closes the engine (which fsyncs) before the process exits 0.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
from urllib.parse import urlsplit

import grpc
import grpc.aio

from . import ETCD_VERSION, _core
from .config import Config
from .engine import EngineBridge
from .services import generic_handlers
from .tls import server_credentials

__all__ = ["ServeError", "run", "serve"]

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


def _grpc_options(cfg: Config) -> list[tuple[str, int]]:
    return [
        (
            "grpc.max_receive_message_length",
            min(max_receive_bytes(cfg) + GRPC_CORE_SLACK_BYTES, 2**31 - 1),
        ),
        ("grpc.max_send_message_length", MAX_SEND_BYTES),
        # grpc-core turns SO_REUSEPORT on by default, which would let a second
        # server share a port already in use instead of failing to bind.
        ("grpc.so_reuseport", 0),
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


def _bind(server: grpc.aio.Server, cfg: Config) -> None:
    credentials = None
    for url in cfg.listen_client_urls:
        parts = urlsplit(url)
        address = parts.netloc
        reason = _bind_failure(parts.hostname or "", parts.port or 0)
        if reason is not None:
            raise ServeError(f"listen tcp {address}: bind: {reason}")
        try:
            if parts.scheme == "https":
                if credentials is None:
                    credentials = server_credentials(cfg)
                port = server.add_secure_port(address, credentials)
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
        if parts.scheme == "https":
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


def _open_engine(cfg: Config) -> _core.Engine:
    quota = _QUOTA_OFF if cfg.quota_backend_bytes < 0 else cfg.quota_backend_bytes
    try:
        return _core.Engine(
            cfg.data_dir,
            name=cfg.name,
            member_id=cfg.member_id,
            cluster_id=cfg.cluster_id,
            peer_urls=list(cfg.initial_advertise_peer_urls),
            client_urls=list(cfg.advertise_client_urls),
            max_request_bytes=cfg.max_request_bytes,
            quota_backend_bytes=quota,
            max_txn_ops=cfg.max_txn_ops,
            version=ETCD_VERSION,
        )
    except (OSError, ValueError) as e:
        raise ServeError(f"cannot open data dir {cfg.data_dir}: {e}") from None


async def serve(cfg: Config, stop: asyncio.Event | None = None) -> None:
    """Serve until `stop` is set (by default: until SIGTERM or SIGINT)."""
    loop = asyncio.get_running_loop()
    if stop is None:
        stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)

    server = grpc.aio.server(options=_grpc_options(cfg))
    try:
        _bind(server, cfg)
    except BaseException:
        await server.stop(None)
        raise
    log.info(
        "name=%s data-dir=%s member-id=%x cluster-id=%x",
        cfg.name,
        cfg.data_dir,
        cfg.member_id,
        cfg.cluster_id,
    )
    try:
        engine = _open_engine(cfg)
    except BaseException:
        await server.stop(None)
        raise
    if engine.member_id != cfg.member_id or engine.cluster_id != cfg.cluster_id:
        log.info(
            "data dir keeps its own IDs: member-id=%x cluster-id=%x",
            engine.member_id,
            engine.cluster_id,
        )
    bridge = EngineBridge(engine, loop)
    try:
        server.add_generic_rpc_handlers(generic_handlers(bridge, max_receive_bytes(cfg)))
        # Like etcd (embed/serve.go waits on ReadyNotify), serve only once the
        # member has a leader: a client that connects earlier waits in the
        # listen backlog instead of getting "no leader" or a timeout.
        await _wait_for_leader(engine, stop)
        await server.start()
        log.info("ready to serve client requests")
        await stop.wait()
        log.info("received stop signal; finishing in-flight requests")
    finally:
        # Stop listening and let in-flight calls finish, then close the engine
        # (it fsyncs what it accepted); on any exit path, not just a signal.
        await server.stop(SHUTDOWN_GRACE_SECONDS)
        await bridge.close()
    log.info("stopped; engine stats: %s", engine.stats())


async def _wait_for_leader(engine: _core.Engine, stop: asyncio.Event) -> None:
    deadline = asyncio.get_running_loop().time() + LEADER_WAIT_SECONDS
    while not engine.stats().get("raft_leader") and not stop.is_set():
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
