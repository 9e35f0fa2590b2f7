"""Real histories against real servers, checked for linearizability.

THREADS clients do random put / get (linearizable Range) / CAS (a Txn
comparing the value) on a few keys for about DURATION seconds; in the middle
the server is SIGKILLed and restarted. An op in flight at the kill (or failing
for any reason) has an unknown outcome: it may have taken effect at any time
after its call, or never. The checker must find the history linearizable.

etcd runs the same test as the reference.
"""

from __future__ import annotations

import math
import random
import threading
import time
from dataclasses import dataclass, field

import grpc
import pytest

from ..conftest import ServerFactory
from ..support import Server
from ..wire import KV
from .checker import UNKNOWN, Arg, Op, Verdict, check

THREADS = 6
KEYS = [f"linz/k{i}".encode() for i in range(5)]
DURATION = 3.0
OP_TIMEOUT = 2.0
THINK = 0.0005  # up to this long between a client's ops: a little slack in the timing
CHECK_TIMEOUT = 60.0


@dataclass
class Workload:
    server: Server
    seed: int
    ops: list[Op] = field(default_factory=list)
    up: threading.Event = field(default_factory=threading.Event)
    stop: threading.Event = field(default_factory=threading.Event)
    generation: int = 0  # bumped at each restart: clients reconnect
    lock: threading.Lock = field(default_factory=threading.Lock)
    errors: list[str] = field(default_factory=list)

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.server.client_port}"

    def client(self, t: int) -> None:
        rng = random.Random(self.seed * 100 + t)
        last_seen: dict[bytes, bytes] = {}  # key -> a value this client saw there
        generation, kv = self.generation, KV(self.target, own_connection=True)
        client_id = t
        try:
            for n in range(10**9):
                if self.stop.is_set():
                    return
                self.up.wait()
                if generation != self.generation:
                    kv.close()
                    generation, kv = self.generation, KV(self.target, own_connection=True)
                key = rng.choice(KEYS)
                r = rng.random()
                arg: Arg
                if r < 0.35:
                    kind, arg = "put", f"c{t}.{n}".encode()
                elif r < 0.75:
                    kind, arg = "get", None
                else:
                    expected = last_seen.get(key) if rng.random() < 0.8 else None
                    kind, arg = "cas", (expected or b"c0.0", f"c{t}.{n}".encode())
                call = time.monotonic()
                try:
                    out = self._do(kv, key, kind, arg)
                except grpc.RpcError as e:
                    with self.lock:
                        self.errors.append(f"{e.code()}: {e.details()}")
                        self.ops.append(Op(client_id, call, math.inf, key, kind, arg, UNKNOWN))
                    client_id += THREADS  # a crashed client: the next ops are a new one's
                    kv.close()
                    self.up.wait()
                    generation, kv = self.generation, KV(self.target, own_connection=True)
                    continue
                ret = time.monotonic()
                with self.lock:
                    self.ops.append(Op(client_id, call, ret, key, kind, arg, out))
                if isinstance(out, bytes):  # a get that found the key
                    last_seen[key] = out
                elif isinstance(arg, bytes):  # a put
                    last_seen[key] = arg
                elif isinstance(arg, tuple) and out:  # a CAS that succeeded
                    last_seen[key] = arg[1]
                time.sleep(rng.uniform(0, THINK))
        finally:
            kv.close()

    @staticmethod
    def _do(kv: KV, key: bytes, kind: str, arg: Arg) -> object:
        if kind == "put":
            assert isinstance(arg, bytes)
            kv.put(key, arg, timeout=OP_TIMEOUT)
            return None
        if kind == "get":
            return kv.get(key, timeout=OP_TIMEOUT)
        assert isinstance(arg, tuple)
        expected, new = arg
        return kv.cas(key, expected, new, timeout=OP_TIMEOUT)

    def run(self) -> tuple[float, float]:
        """Run the clients, killing and restarting the server halfway; (kill, up again) times."""
        self.up.set()
        threads = [
            threading.Thread(target=self.client, args=(t,), daemon=True) for t in range(THREADS)
        ]
        for th in threads:
            th.start()
        time.sleep(DURATION / 2)
        killed = time.monotonic()
        self.server.kill()
        # Ops in flight are cut off, and each client's next one fails too: all
        # unknown. Then no new ops until the server is back.
        self.up.clear()
        self.server.start()
        self.generation += 1
        restarted = time.monotonic()
        self.up.set()
        time.sleep(DURATION / 2)
        self.stop.set()
        for th in threads:
            th.join(OP_TIMEOUT * 3)
            assert not th.is_alive(), "a client hung"
        return killed, restarted


@pytest.mark.parametrize("kind", ["etcd", "ketch"])
def test_history_with_a_crash_is_linearizable(make_server: ServerFactory, kind: str) -> None:
    server = make_server(kind)
    work = Workload(server, seed=7)
    killed, restarted = work.run()

    done = [op for op in work.ops if not op.pending]
    before = sum(op.ret < killed for op in done)
    after = sum(op.call > restarted for op in done)
    # The workload did something on both sides of the crash, with every kind of op.
    assert before >= 50 and after >= 50, (before, after, work.errors[:5])
    assert {op.kind for op in done} == {"put", "get", "cas"}
    assert any(op.kind == "cas" and op.output for op in done)

    started = time.monotonic()
    result = check(work.ops, timeout=CHECK_TIMEOUT)
    took = time.monotonic() - started
    summary = (
        f"{kind}: {len(work.ops)} ops ({len(work.ops) - len(done)} unknown), "
        f"{before} before the kill, {after} after; checked in {took:.2f}s, "
        f"search steps {sum(result.stats.values())}"
    )
    print(summary)
    assert result.verdict is not Verdict.TIMEOUT, summary
    assert result.ok, f"{summary}\n{result.explanation}"

    # The same history with stale reads planted in it must fail: the checker
    # sees real-size histories, not only hand-made ones.
    for mutated in stale_reads(work.ops, random.Random(1), count=5):
        assert check(mutated, timeout=CHECK_TIMEOUT).verdict is Verdict.ILLEGAL


def stale_reads(ops: list[Op], rng: random.Random, count: int) -> list[list[Op]]:
    """Copies of ops, each with one read answering a value overwritten before it began.

    A read G answers the value of put W although another put W2 on the key ran
    entirely after W and entirely before G: stale whatever the order, since
    every value is written once.
    """
    puts: dict[bytes, list[Op]] = {}
    for op in ops:
        if op.kind == "put" and not op.pending:
            puts.setdefault(op.key, []).append(op)
    candidates = []
    for i, g in enumerate(ops):
        if g.kind != "get" or g.pending:
            continue
        for w in puts.get(g.key, []):
            if any(w.ret < w2.call and w2.ret < g.call for w2 in puts[g.key]):
                candidates.append((i, w.arg))
                break
    assert len(candidates) >= count
    out = []
    for i, value in rng.sample(candidates, count):
        mutated = list(ops)
        mutated[i] = Op(**{**ops[i].__dict__, "output": value})
        out.append(mutated)
    return out
