"""Durability with real processes: SIGKILL under load, restart, check every write.

A write the server acknowledged must survive a crash with its value and its
revision; a write it did not acknowledge may or may not be there, but if it
is, it is whole (its own value). Revisions stay dense: each revision from 2
up to the current one belongs to exactly one write (every write here is a
put of a fresh key, so one write = one revision).

etcd runs the same test as the reference: it shows what the test demands is
what etcd guarantees.
"""

from __future__ import annotations

import signal
import threading
import time
from dataclasses import dataclass, field

import grpc
import pytest

from ..support import Server
from ..wire import KV

THREADS = 8
MIN_ACKED_BEFORE_KILL = 300
MAX_LOAD_SECONDS = 5.0


@dataclass
class Load:
    """THREADS writers putting fresh keys until the server goes away."""

    target: str
    tag: str
    attempted: dict[bytes, bytes] = field(default_factory=dict)
    acked: dict[bytes, tuple[bytes, int]] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _threads: list[threading.Thread] = field(default_factory=list)

    def start(self) -> None:
        for t in range(THREADS):
            th = threading.Thread(target=self._writer, args=(t,), daemon=True)
            th.start()
            self._threads.append(th)

    def _writer(self, t: int) -> None:
        kv = KV(self.target)
        try:
            i = 0
            while not self._stop.is_set():
                key = f"{self.tag}/w{t}/{i:06d}".encode()
                value = f"value of {key.decode()} ".encode() * 4
                with self._lock:
                    self.attempted[key] = value
                try:
                    rev = kv.put(key, value, timeout=5.0)
                except grpc.RpcError as e:
                    with self._lock:
                        self.errors.append(f"{e.code()}: {e.details()}")
                    return  # the server is gone (or going): this writer is done
                with self._lock:
                    self.acked[key] = (value, rev)
                i += 1
        finally:
            kv.close()

    def acked_count(self) -> int:
        with self._lock:
            return len(self.acked)

    def stop(self) -> None:
        self._stop.set()
        for th in self._threads:
            th.join(30)
            assert not th.is_alive(), "a writer hung"


def run_load_until(server: Server, load: Load, stop_server: signal.Signals) -> tuple[int, float]:
    """Start load, wait for enough acknowledged writes, signal the server mid-load.

    Returns the server's exit code and how long it took to exit after the signal.
    """
    load.start()
    deadline = time.monotonic() + MAX_LOAD_SECONDS
    while load.acked_count() < MIN_ACKED_BEFORE_KILL and time.monotonic() < deadline:
        time.sleep(0.01)
    assert load.acked_count() > 0, f"no write was acknowledged: {load.errors[:3]}"
    assert server.proc is not None
    signalled = time.monotonic()
    if stop_server == signal.SIGKILL:
        rc = server.kill()
    else:
        server.proc.send_signal(stop_server)
        server.proc.wait(10)
        rc = server.stop()
    took = time.monotonic() - signalled
    load.stop()
    return rc, took


def check_store(
    server: Server, attempted: dict[bytes, bytes], acked: dict[bytes, tuple[bytes, int]]
) -> None:
    kv = KV(f"127.0.0.1:{server.client_port}")
    try:
        revision, kvs = kv.range_all()
    finally:
        kv.close()
    present = {x.key: x for x in kvs}
    lost = [k for k in acked if k not in present]
    assert not lost, f"{len(lost)} acknowledged writes lost after restart, e.g. {lost[:3]}"
    for key, (value, rev) in acked.items():
        got = present[key]
        assert (got.value, got.mod_revision, got.create_revision, got.version) == (
            value,
            rev,
            rev,
            1,
        ), key
    for key, got in present.items():
        assert key in attempted, f"{key!r} was never written"
        assert got.value == attempted[key], f"{key!r} holds a value that was never written"
    revisions = sorted(x.mod_revision for x in kvs)
    assert revisions == list(range(2, revision + 1)), "revisions are not dense: gaps or duplicates"


@pytest.mark.parametrize("kind", ["ketch", "etcd"])
def test_acknowledged_writes_survive_sigkill(make_server, kind: str) -> None:
    server = make_server(kind)
    attempted: dict[bytes, bytes] = {}
    acked: dict[bytes, tuple[bytes, int]] = {}
    for round_ in range(2):
        load = Load(f"127.0.0.1:{server.client_port}", tag=f"round{round_}")
        rc, _ = run_load_until(server, load, signal.SIGKILL)
        assert rc == -signal.SIGKILL
        attempted.update(load.attempted)
        acked.update(load.acked)
        server.start()  # same data dir
        check_store(server, attempted, acked)


def test_sigterm_mid_load_finishes_in_flight_and_exits_0(make_server) -> None:
    server = make_server("ketch")
    load = Load(f"127.0.0.1:{server.client_port}", tag="term")
    rc, took = run_load_until(server, load, signal.SIGTERM)
    assert rc == 0, server.log_text()
    assert took < 5.0
    server.start()
    check_store(server, load.attempted, load.acked)
