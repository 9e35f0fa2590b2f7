"""EngineBridge: the engine's completion queue, as asyncio futures.

The engine takes a request with `submit(method, bytes, token)` and never
blocks; when answers are ready it makes its eventfd readable, and `drain()`
hands them all back as (token, error name or None, bytes). The bridge keeps
one future per token in flight and wakes the event loop through the fd, so a
request costs one future, one dict slot and two calls into Rust.

Clients do not come this way (the engine serves the client port itself,
rust/src/server); the server's own calls do (the peer service's member list),
and the engine tests drive the engine through it.
"""

from __future__ import annotations

import asyncio
from typing import Protocol

from .errors import EngineError

__all__ = ["EngineBridge", "EngineLike"]

_STOPPED = ("Stopped", "etcdserver: server stopped")


class EngineLike(Protocol):
    """What the bridge needs of `ketch._core.Engine` (tests pass a fake)."""

    def completion_fd(self) -> int: ...  # readable when drain() has work; drain() resets it
    def submit(self, method: int, request: bytes, token: int) -> None: ...
    def drain(self) -> list[tuple[int, str | None, bytes]]: ...
    def close(self) -> None: ...


class EngineBridge:
    """Calls into one engine from one asyncio loop."""

    def __init__(self, engine: EngineLike, loop: asyncio.AbstractEventLoop) -> None:
        self._engine = engine
        self._loop = loop
        self._submit = engine.submit
        self._engine_drain = engine.drain
        self._create_future = loop.create_future
        self._pending: dict[int, asyncio.Future[bytes]] = {}
        self._token = 0
        self._closed = False
        self._fd = engine.completion_fd()
        loop.add_reader(self._fd, self._drain)

    @property
    def in_flight(self) -> int:
        """Requests submitted and not yet answered."""
        return len(self._pending)

    async def call(self, method: int, request: bytes) -> bytes:
        """Run one request; its response bytes, or EngineError."""
        if self._closed:
            raise EngineError(*_STOPPED)
        token = self._token = self._token + 1
        fut: asyncio.Future[bytes] = self._create_future()
        self._pending[token] = fut
        try:
            self._submit(method, request, token)
        except BaseException:
            del self._pending[token]
            raise
        return await fut

    def _drain(self) -> None:
        # drain() resets the eventfd before it takes the queue, so an answer
        # that lands meanwhile is either taken now or wakes the loop again.
        self._resolve(self._engine_drain())

    def _resolve(self, answers: list[tuple[int, str | None, bytes]]) -> None:
        pop = self._pending.pop
        for token, error, payload in answers:
            fut = pop(token, None)
            # None or done: the caller went away (cancelled RPC); drop the answer.
            if fut is None or fut.done():
                continue
            if error is None:
                fut.set_result(payload)
            else:
                fut.set_exception(EngineError(error, payload.decode("utf-8", "replace")))

    async def close(self) -> None:
        """Stop taking calls, let the engine finish what it accepted, then close it.

        Call after the client server and the peer server have stopped, so
        nothing new arrives.
        `Engine.close()` blocks (it fsyncs and joins threads), so it runs in a
        worker thread; the fd is unwatched first because the engine may close it.
        """
        if self._closed:
            return
        self._closed = True
        self._loop.remove_reader(self._fd)
        await self._loop.run_in_executor(None, self._engine.close)
        try:
            answers = self._engine_drain()
        except (RuntimeError, OSError, ValueError):  # a closed engine may refuse
            answers = []
        self._resolve(answers)
        for fut in self._pending.values():
            if not fut.done():
                fut.set_exception(EngineError(*_STOPPED))
        self._pending.clear()
