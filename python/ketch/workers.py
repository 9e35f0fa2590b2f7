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

Lifecycle, start: the kernel picks a listener for a connection when it
arrives, and a gRPC connection lives long, so every listener must be there
before the first client connects: otherwise clients that connect early (all
of them, after a restart) stay on the member process and the workers idle.
So the member checks its client ports are free, opens the engine, starts the
workers, and waits until each has bound every client URL (one byte on a
pipe); only then does it bind its own listeners. The workers start serving
when the member does (a line on their stdin), once a leader is known, as
etcd serves only when ready.

Lifecycle, stop: on SIGTERM the member stops its own listeners, sends
SIGTERM to the workers and waits for them (each finishes its in-flight
requests), and only then closes the engine. If the member dies, its end of
every worker socket closes and each worker exits at once, so no worker keeps
a port open for a member that is gone.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import os
import secrets
import select
import signal
import subprocess
import sys
from typing import Any

import grpc.aio

from . import _core
from .config import Config
from .engine import EngineBridge
from .peer import forward_via, open_channel
from .services import generic_handlers
from .watch_service import WatchService

__all__ = [
    "WorkerProcess",
    "WorkerStartError",
    "engine_socket_name",
    "start_workers",
    "stop_workers",
]

log = logging.getLogger("ketch")

_CONFIG_ENV = "KETCH_WORKER_CONFIG"
_SOCKET_ENV = "KETCH_WORKER_ENGINE"
_CLUSTER_ID_ENV = "KETCH_WORKER_CLUSTER_ID"
_BOUND_FD_ENV = "KETCH_WORKER_BOUND_FD"
WORKER_STOP_SECONDS = 10.0
# A worker imports grpc and binds in about a second; past this it is stuck.
WORKER_BIND_SECONDS = 30.0


def engine_socket_name() -> str:
    """A fresh abstract socket name for this member's workers."""
    return f"ketch-{os.getpid()}-{secrets.token_hex(6)}"


class WorkerProcess:
    """One worker as its member sees it: the process, the pipe on which it
    says it listens, and its stdin, on which it is told to serve."""

    def __init__(self, proc: subprocess.Popen[bytes], bound_fd: int) -> None:
        self.proc = proc
        self._bound_fd = bound_fd

    def wait_bound(self, timeout: float) -> None:
        """Until the worker listens on every client URL; WorkerStartError if it
        exits first or takes longer than `timeout` (then it is killed)."""
        ready, _, _ = select.select([self._bound_fd], [], [], timeout)
        said = os.read(self._bound_fd, 1) if ready else b""
        os.close(self._bound_fd)
        if said:
            return
        if not ready:
            self.proc.kill()
            self.proc.wait()
            raise WorkerStartError(
                f"gRPC worker {self.proc.pid} did not listen within {timeout:.0f}s"
            )
        code = self.proc.wait()
        raise WorkerStartError(
            f"gRPC worker {self.proc.pid} exited with status {code} before it listened "
            "(its error is above)"
        )

    def release(self) -> None:
        """Tell the worker to serve (the member serves now)."""
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write(b"serve\n")
            self.proc.stdin.close()
        except BrokenPipeError:
            pass  # it died meanwhile; the member notices when it stops it


class WorkerStartError(Exception):
    """A worker process did not come up; the message says how."""


def start_workers(
    cfg: Config, socket_name: str, count: int, cluster_id: int
) -> list[WorkerProcess]:
    """Start `count` worker processes for cfg's client URLs, reaching the
    engine at socket_name; cluster_id is the member's (for its peer service).
    Each binds at once and serves after `release()`."""
    env = dict(os.environ)
    env[_CONFIG_ENV] = json.dumps(dataclasses.asdict(cfg))
    env[_SOCKET_ENV] = socket_name
    env[_CLUSTER_ID_ENV] = str(cluster_id)
    workers = []
    for _ in range(count):
        bound_r, bound_w = os.pipe()
        env[_BOUND_FD_ENV] = str(bound_w)
        proc = subprocess.Popen(
            [sys.executable, "-m", "ketch.workers"],
            env=env,
            stdin=subprocess.PIPE,
            pass_fds=(bound_w,),
        )
        os.close(bound_w)
        workers.append(WorkerProcess(proc, bound_r))
    return workers


def stop_workers(workers: list[WorkerProcess]) -> None:
    """SIGTERM every worker, then wait; a worker still running after the grace period is killed."""
    for w in workers:
        if w.proc.poll() is None:
            w.proc.send_signal(signal.SIGTERM)
    for w in workers:
        try:
            w.proc.wait(WORKER_STOP_SECONDS)
        except subprocess.TimeoutExpired:
            log.warning(
                "worker %d did not stop in %.0fs; killing it", w.proc.pid, WORKER_STOP_SECONDS
            )
            w.proc.kill()
            w.proc.wait()


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
    # The member checked that these ports were free; the workers bind them
    # first (SO_REUSEPORT), then the member (see the module doc), which logs them.
    bind_listeners(server, cfg, check_free=False, announce=False)
    bound = int(os.environ[_BOUND_FD_ENV])
    os.write(bound, b"1")
    os.close(bound)
    # The member's peer service, at the URL its peers reach it by.
    member = open_channel(cfg.initial_advertise_peer_urls[0], _channel_credentials(cfg))

    async def through_member(method: int, request: bytes) -> bytes:
        return await forward_via(member, cluster_id, method, request, hops=1)

    server.add_generic_rpc_handlers(
        generic_handlers(bridge, max_receive_bytes(cfg), through_member)
    )
    watch = WatchService(bridge)
    server.add_generic_rpc_handlers([watch.handler()])
    # Serve when the member does: "serve" on stdin. Its stdin closing first,
    # or a SIGTERM, means the member is not going to serve.
    if not await _told_to_serve(loop, stop):
        log.debug("worker %d: the member stopped before serving", os.getpid())
        await server.stop(None)
        await member.close()
        await bridge.close()
        return
    await server.start()
    log.debug("worker %d serving", os.getpid())
    try:
        await stop.wait()
    finally:
        watch.shutdown()
        await server.stop(SHUTDOWN_GRACE_SECONDS)
        await member.close()
        await bridge.close()


async def _told_to_serve(loop: asyncio.AbstractEventLoop, stop: asyncio.Event) -> bool:
    told: asyncio.Future[bytes] = loop.create_future()

    def on_stdin() -> None:
        loop.remove_reader(0)
        if not told.done():
            told.set_result(os.read(0, 64))

    loop.add_reader(0, on_stdin)
    stopped = asyncio.ensure_future(stop.wait())
    either: list[asyncio.Future[Any]] = [told, stopped]
    try:
        await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopped.cancel()
        loop.remove_reader(0)
    return told.done() and told.result() == b"serve\n"


def main() -> None:
    """Entry point of one worker process (started by the member, never by hand)."""
    import uvloop

    from .server import configure_logging

    cfg = _config_from_env()
    configure_logging(cfg.log_level)
    uvloop.run(_serve_worker(cfg, os.environ[_SOCKET_ENV], int(os.environ[_CLUSTER_ID_ENV])))


if __name__ == "__main__":
    main()
