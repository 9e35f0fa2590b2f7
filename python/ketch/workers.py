"""gRPC worker processes: more cores for the Python gRPC front end.

One grpc.aio process serves a few thousand requests per second on one core;
the engine behind it can do far more. With `--grpc-workers N` the member
process (which owns the engine) starts N-1 more processes that listen on the
same client URLs (SO_REUSEPORT: the kernel spreads connections across them)
and hand each request's bytes to the engine over an abstract Unix socket
that Rust owns on both ends (rust/src/ipc.rs). A worker runs exactly the same
handlers as the member process; only its EngineBridge talks to
`_core.EngineClient` instead of `_core.Engine`. A call only the leader can
answer (services.FORWARDED_METHODS) goes from a worker to its own member's
peer service (ketch.peer's Forward, allowed one more hop), which passes it
on to the leader: only the member process knows who leads.

Lifecycle: the member starts workers once it serves; on SIGTERM it stops its
own listeners, sends SIGTERM to the workers and waits for them (each
finishes its in-flight requests), and only then closes the engine. If the
member dies, its end of every worker socket closes and each worker exits at
once, so no worker keeps a port open for a member that is gone.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import os
import secrets
import signal
import subprocess
import sys

import grpc.aio

from . import _core
from .config import Config
from .engine import EngineBridge
from .peer import forward_via, open_channel
from .services import generic_handlers
from .watch_service import WatchService

__all__ = ["engine_socket_name", "start_workers", "stop_workers"]

log = logging.getLogger("ketch")

_CONFIG_ENV = "KETCH_WORKER_CONFIG"
_SOCKET_ENV = "KETCH_WORKER_ENGINE"
_CLUSTER_ID_ENV = "KETCH_WORKER_CLUSTER_ID"
WORKER_STOP_SECONDS = 10.0


def engine_socket_name() -> str:
    """A fresh abstract socket name for this member's workers."""
    return f"ketch-{os.getpid()}-{secrets.token_hex(6)}"


def start_workers(
    cfg: Config, socket_name: str, count: int, cluster_id: int
) -> list[subprocess.Popen[bytes]]:
    """Start `count` worker processes serving cfg's client URLs through the
    engine at socket_name; cluster_id is the member's (for its peer service)."""
    env = dict(os.environ)
    env[_CONFIG_ENV] = json.dumps(dataclasses.asdict(cfg))
    env[_SOCKET_ENV] = socket_name
    env[_CLUSTER_ID_ENV] = str(cluster_id)
    return [
        subprocess.Popen([sys.executable, "-m", "ketch.workers"], env=env, stdin=subprocess.DEVNULL)
        for _ in range(count)
    ]


def stop_workers(workers: list[subprocess.Popen[bytes]]) -> None:
    """SIGTERM every worker, then wait; a worker still running after the grace period is killed."""
    for w in workers:
        if w.poll() is None:
            w.send_signal(signal.SIGTERM)
    for w in workers:
        try:
            w.wait(WORKER_STOP_SECONDS)
        except subprocess.TimeoutExpired:
            log.warning("worker %d did not stop in %.0fs; killing it", w.pid, WORKER_STOP_SECONDS)
            w.kill()
            w.wait()


def _config_from_env() -> Config:
    fields = json.loads(os.environ[_CONFIG_ENV])
    for f in dataclasses.fields(Config):
        if isinstance(fields.get(f.name), list):
            fields[f.name] = tuple(fields[f.name])
    return Config(**fields)


async def _serve_worker(cfg: Config, socket_name: str, cluster_id: int) -> None:
    from .server import (
        SHUTDOWN_GRACE_SECONDS,
        _channel_credentials,
        bind_listeners,
        grpc_options,
        max_receive_bytes,
    )

    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    client = _core.EngineClient(socket_name)
    bridge = EngineBridge(client, loop)
    server = grpc.aio.server(options=grpc_options(cfg, share_port=True))
    # The member process checked and bound these ports already; a worker
    # joins them (SO_REUSEPORT) rather than testing them again.
    bind_listeners(server, cfg, check_free=False)
    # The member's peer service, at the URL its peers reach it by.
    member = open_channel(cfg.initial_advertise_peer_urls[0], _channel_credentials(cfg))

    async def through_member(method: int, request: bytes) -> bytes:
        return await forward_via(member, cluster_id, method, request, hops=1)

    server.add_generic_rpc_handlers(
        generic_handlers(bridge, max_receive_bytes(cfg), through_member)
    )
    watch = WatchService(bridge)
    server.add_generic_rpc_handlers([watch.handler()])
    await server.start()
    log.debug("worker %d serving", os.getpid())
    try:
        await stop.wait()
    finally:
        watch.shutdown()
        await server.stop(SHUTDOWN_GRACE_SECONDS)
        await member.close()
        await bridge.close()


def main() -> None:
    """Entry point of one worker process (started by the member, never by hand)."""
    import uvloop

    from .server import configure_logging

    cfg = _config_from_env()
    configure_logging(cfg.log_level)
    uvloop.run(_serve_worker(cfg, os.environ[_SOCKET_ENV], int(os.environ[_CLUSTER_ID_ENV])))


if __name__ == "__main__":
    main()
