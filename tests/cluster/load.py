"""Concurrent put/get/cas clients against a cluster, recording a history.

Each client thread talks to one member at a time and moves on to the next
running member when a call fails. Every op's call and return times (one
monotonic clock) and result go into a history of checker Ops; an op that
failed or timed out is recorded as never returning (output UNKNOWN): it may
have taken effect at any point after its call, or not at all. A client whose
op is unknown is retired and its thread carries on under a fresh client id,
since the checker's clients are sequential.

Besides the registers (KEYS), clients also write fresh, write-once "marker"
keys; afterwards every acknowledged marker must be present on every member
and no marker that was never written may be: the plain statement of "nothing
acknowledged is lost" next to the checker's.
"""

from __future__ import annotations

import math
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import grpc

from ..linearizability.checker import UNKNOWN, Arg, Op, check
from ..wire import KV

KEYS = [f"reg/{i}".encode() for i in range(4)]
MARKER_PREFIX = b"acked/"
OP_TIMEOUT = 2.0
RETRY_PAUSE = 0.05  # after a failure, before the next op: no hot loop against a dead member
CHECK_TIMEOUT = 60.0


@dataclass
class Load:
    endpoints: Callable[[], list[str]]  # the members to talk to, asked again after each failure
    threads: int = 4
    seed: int = 1
    ops: list[Op] = field(default_factory=list)
    markers_acked: set[bytes] = field(default_factory=set)
    markers_tried: set[bytes] = field(default_factory=set)
    errors: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _workers: list[threading.Thread] = field(default_factory=list)
    _next_client: int = 0

    def _client_id(self) -> int:
        with self._lock:
            self._next_client += 1
            return self._next_client

    def start(self) -> Load:
        for t in range(self.threads):
            th = threading.Thread(target=self._run, args=(t,), daemon=True)
            th.start()
            self._workers.append(th)
        return self

    def stop(self) -> None:
        self._stop.set()
        for th in self._workers:
            th.join(OP_TIMEOUT * 3)
            assert not th.is_alive(), "a load client hung"

    def acknowledged(self) -> int:
        with self._lock:
            return sum(not op.pending for op in self.ops)

    def _run(self, t: int) -> None:
        rng = random.Random(self.seed * 1000 + t)
        client = self._client_id()
        member = t
        last_seen: dict[bytes, bytes] = {}
        kv: KV | None = None
        try:
            for n in range(10**9):
                if self._stop.is_set():
                    return
                if kv is None:
                    eps = self.endpoints()
                    kv = KV(eps[member % len(eps)], own_connection=True)
                try:
                    if rng.random() < 0.1:
                        self._marker(kv, f"{t}.{n}".encode())
                    else:
                        self._register_op(kv, rng, client, f"c{t}.{n}".encode(), last_seen)
                except grpc.RpcError as e:
                    with self._lock:
                        self.errors.append(f"{e.code()}: {e.details()}")
                    client = self._client_id()
                    member += 1
                    kv.close()
                    kv = None
                    time.sleep(RETRY_PAUSE)
        finally:
            if kv is not None:
                kv.close()

    def _marker(self, kv: KV, name: bytes) -> None:
        key = MARKER_PREFIX + name
        with self._lock:
            self.markers_tried.add(key)
        kv.put(key, b"", timeout=OP_TIMEOUT)
        with self._lock:
            self.markers_acked.add(key)

    def _register_op(
        self, kv: KV, rng: random.Random, client: int, value: bytes, last_seen: dict[bytes, bytes]
    ) -> None:
        key = rng.choice(KEYS)
        r = rng.random()
        arg: Arg
        if r < 0.4:
            kind, arg = "put", value
        elif r < 0.75:
            kind, arg = "get", None
        else:
            expected = last_seen.get(key) if rng.random() < 0.8 else None
            kind, arg = "cas", (expected or b"none", value)
        call = time.monotonic()
        try:
            out = do(kv, key, kind, arg)
        except grpc.RpcError:
            with self._lock:
                self.ops.append(Op(client, call, math.inf, key, kind, arg, UNKNOWN))
            raise
        ret = time.monotonic()
        with self._lock:
            self.ops.append(Op(client, call, ret, key, kind, arg, out))
        if isinstance(out, bytes):
            last_seen[key] = out
        elif kind == "put":
            assert isinstance(arg, bytes)
            last_seen[key] = arg
        elif isinstance(arg, tuple) and out:
            last_seen[key] = arg[1]


def do(kv: KV, key: bytes, kind: str, arg: Arg, timeout: float = OP_TIMEOUT) -> object:
    """One register op; its output as the checker's model has it."""
    if kind == "put":
        assert isinstance(arg, bytes)
        kv.put(key, arg, timeout=timeout)
        return None
    if kind == "get":
        return kv.get(key, timeout=timeout)
    assert isinstance(arg, tuple)
    return kv.cas(key, arg[0], arg[1], timeout=timeout)


def final_reads(endpoint: str, client: int) -> list[Op]:
    """A linearizable read of every register, after the load: the history's last word."""
    ops = []
    kv = KV(endpoint, own_connection=True)
    try:
        for key in KEYS:
            call = time.monotonic()
            out = kv.get(key, timeout=10.0)
            ops.append(Op(client, call, time.monotonic(), key, "get", None, out))
    finally:
        kv.close()
    return ops


def assert_linearizable(ops: list[Op], what: str) -> None:
    done = [op for op in ops if not op.pending]
    result = check(ops, timeout=CHECK_TIMEOUT)
    summary = f"{what}: {len(ops)} ops, {len(ops) - len(done)} unknown"
    print(summary)
    assert result.ok, f"{summary}: {result.verdict.value}\n{result.explanation}"


def assert_markers_kept(load: Load, data: dict[bytes, bytes]) -> None:
    """Every acknowledged marker is in `data`; every marker in it was written by a client."""
    present = {k for k in data if k.startswith(MARKER_PREFIX)}
    lost = load.markers_acked - present
    invented = present - load.markers_tried
    assert not lost, f"{len(lost)} acknowledged writes lost, e.g. {sorted(lost)[:5]}"
    assert not invented, f"keys nobody wrote: {sorted(invented)[:5]}"
    assert load.markers_acked, "no marker write was acknowledged: the load did nothing"
