"""Both faces of the client behind one blocking interface, so that every client
test runs once against `Client` and once against `AsyncClient`.

`OnLoop` drives an async object from the test's thread: each call runs on an
event loop of its own thread, coroutines are awaited there, async iterators
become iterators, and the objects the async face hands back (watches,
leases, keep-alives, transactions) come wrapped the same way. A test that
passes through it used every async method with the arguments it would give
the blocking one: the point of the suite is that the two faces take the same
arguments and give the same results and errors.
"""

from __future__ import annotations

import asyncio
import inspect
import threading
from collections.abc import Callable, Iterator
from typing import Any

from ketch.client import AsyncClient, Client

FACES = ("sync", "async")


class Loop:
    """An event loop running in a thread of its own until `close`."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="test-loop", daemon=True)
        self._thread.start()

    def run(self, coro: Any) -> Any:
        try:
            return asyncio.run_coroutine_threadsafe(coro, self.loop).result()
        except StopAsyncIteration:
            raise StopIteration from None  # what the blocking face raises there

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=5)
        self.loop.close()


class OnLoop:
    """An object of the async face, used as its blocking twin would be."""

    def __init__(self, target: Any, loop: Loop) -> None:
        self._target = target
        self._loop = loop

    def _wrap(self, result: Any) -> Any:
        if inspect.iscoroutine(result):
            return self._wrap(self._loop.run(result))
        if inspect.isasyncgen(result):
            return self._iterate(result)
        if type(result).__module__ == "ketch.client.aio":
            return OnLoop(result, self._loop)
        return result

    def _iterate(self, agen: Any) -> Iterator[Any]:
        try:
            while True:
                try:
                    item = self._loop.run(agen.__anext__())
                except StopIteration:
                    return
                yield self._wrap(item)
        finally:
            if inspect.isasyncgen(agen):
                self._loop.run(agen.aclose())

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._target, name)
        if not callable(attr):
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            return self._wrap(attr(*args, **kwargs))

        return call

    def __enter__(self) -> Any:
        entered = self._loop.run(self._target.__aenter__())
        return self if entered is self._target else self._wrap(entered)

    def __exit__(self, *exc: object) -> None:
        self._loop.run(self._target.__aexit__(*exc))

    def __iter__(self) -> Iterator[Any]:
        return self._iterate(self._target)

    def __next__(self) -> Any:
        return self._wrap(self._loop.run(self._target.__anext__()))


class AsyncAsSync(OnLoop):
    """An AsyncClient with its own loop, closed with it."""

    def __init__(self, endpoints: Any, **options: Any) -> None:
        super().__init__(AsyncClient(endpoints, **options), Loop())

    def close(self) -> None:
        try:
            self._loop.run(self._target.close())
        finally:
            self._loop.close()

    def __exit__(self, *exc: object) -> None:
        self.close()


def connector(face: str) -> Callable[..., Client]:
    """What makes a client of `face` from Client's arguments."""
    if face == "sync":
        return Client
    return AsyncAsSync  # type: ignore[return-value]
