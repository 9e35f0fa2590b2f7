"""ketch.engine.EngineBridge over a fake engine with the real completion contract.

The fake answers from its own thread in a scrambled order and signals an
eventfd, as the Rust engine does, so the bridge's wake-up, matching of tokens
and shutdown are tested without the native module.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import threading
import time

import pytest
import uvloop
from ketch.engine import EngineBridge
from ketch.errors import EngineError

ECHO, FAIL, SLOW = 1, 2, 3


class FakeEngine:
    """submit() queues; a worker answers in batches, out of order; drain() takes all answers."""

    def __init__(self) -> None:
        self._fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        self._lock = threading.Lock()
        self._incoming: list[tuple[int, bytes, int]] = []
        self._done: list[tuple[int, str | None, bytes]] = []
        self._wake = threading.Condition(self._lock)
        self._closing = False
        self.submitted = 0
        self.closed = False
        self.refuse = False
        self._worker = threading.Thread(target=self._run, daemon=True)
        self._worker.start()

    def completion_fd(self) -> int:
        return self._fd

    def submit(self, method: int, request: bytes, token: int) -> None:
        with self._lock:
            if self._closing or self.refuse:
                raise RuntimeError("engine closed")
            self._incoming.append((method, request, token))
            self.submitted += 1
            self._wake.notify()

    def drain(self) -> list[tuple[int, str | None, bytes]]:
        # Like the engine: reset the eventfd first, then take the queue.
        with contextlib.suppress(BlockingIOError):
            os.eventfd_read(self._fd)
        with self._lock:
            done, self._done = self._done, []
        return done

    def _run(self) -> None:
        rng = random.Random(7)
        while True:
            with self._lock:
                while not self._incoming and not self._closing:
                    self._wake.wait()
                if not self._incoming and self._closing:
                    return
                batch, self._incoming = self._incoming, []
            rng.shuffle(batch)
            for method, request, token in batch:
                if method == SLOW:
                    time.sleep(0.2)
                answer = (
                    (
                        token,
                        "FutureRev",
                        b"etcdserver: mvcc: required revision is a future revision",
                    )
                    if method == FAIL
                    else (token, None, request[::-1])
                )
                with self._lock:
                    self._done.append(answer)
                os.eventfd_write(self._fd, 1)

    def close(self) -> None:
        with self._lock:
            self._closing = True
            self._wake.notify()
        self._worker.join()
        self.closed = True

    def stats(self) -> dict[str, int]:
        return {"submitted": self.submitted}


@pytest.fixture(params=["asyncio", "uvloop"])
def run(request: pytest.FixtureRequest):  # type: ignore[no-untyped-def]
    """Run a coroutine on the stock loop and on uvloop (what the server uses)."""
    return asyncio.run if request.param == "asyncio" else uvloop.run


async def _with_bridge(test) -> None:  # type: ignore[no-untyped-def]
    engine = FakeEngine()
    bridge = EngineBridge(engine, asyncio.get_running_loop())
    try:
        await test(engine, bridge)
    finally:
        await bridge.close()
        os.close(engine.completion_fd())


def test_many_concurrent_calls_get_their_own_answers(run) -> None:  # type: ignore[no-untyped-def]
    async def test(engine: FakeEngine, bridge: EngineBridge) -> None:
        requests = [f"request {i}".encode() for i in range(5000)]
        answers = await asyncio.gather(*(bridge.call(ECHO, r) for r in requests))
        assert answers == [r[::-1] for r in requests]
        assert bridge.in_flight == 0

    run(_with_bridge(test))


def test_errors_become_engine_errors(run) -> None:  # type: ignore[no-untyped-def]
    async def test(engine: FakeEngine, bridge: EngineBridge) -> None:
        with pytest.raises(EngineError) as e:
            await bridge.call(FAIL, b"x")
        assert (e.value.name, e.value.message) == (
            "FutureRev",
            "etcdserver: mvcc: required revision is a future revision",
        )
        assert await bridge.call(ECHO, b"ok") == b"ko"

    run(_with_bridge(test))


def test_cancelled_caller_does_not_disturb_others(run) -> None:  # type: ignore[no-untyped-def]
    async def test(engine: FakeEngine, bridge: EngineBridge) -> None:
        slow = asyncio.ensure_future(bridge.call(SLOW, b"slow"))
        await asyncio.sleep(0.01)
        slow.cancel()
        assert await bridge.call(ECHO, b"after") == b"retfa"
        await asyncio.sleep(0.3)  # the slow answer arrives for nobody and is dropped
        assert bridge.in_flight == 0

    run(_with_bridge(test))


def test_close_waits_for_accepted_work_then_refuses(run) -> None:  # type: ignore[no-untyped-def]
    async def test(engine: FakeEngine, bridge: EngineBridge) -> None:
        pending = asyncio.ensure_future(bridge.call(SLOW, b"in flight"))
        await asyncio.sleep(0.01)
        await bridge.close()
        assert engine.closed
        assert await pending == b"thgilf ni"
        with pytest.raises(EngineError) as e:
            await bridge.call(ECHO, b"late")
        assert e.value.name == "Stopped"

    run(_with_bridge(test))


def test_submit_failure_leaves_nothing_pending(run) -> None:  # type: ignore[no-untyped-def]
    async def test(engine: FakeEngine, bridge: EngineBridge) -> None:
        engine.refuse = True
        with pytest.raises(RuntimeError):
            await bridge.call(ECHO, b"x")
        assert bridge.in_flight == 0

    run(_with_bridge(test))
