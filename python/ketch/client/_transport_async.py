"""The asyncio transport under `ketch.AsyncClient`: grpc.aio channels and streams,
and the few waiting primitives the client's logic needs.

The client's logic is written once, in `aio.py`, against this module's names;
`sync.py` is the same logic generated for `_transport_sync`, which offers the
same names over grpc's blocking API and threads. Only this module and its
twin know which of the two they are.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Coroutine
from typing import Any

import grpc
import grpc.aio
from google.protobuf.message import Message

from .endpoints import Endpoint, TLSConfig, make_channel
from .methods import Method, Stubs

__all__ = ["Channel", "Event", "Lock", "Mailbox", "Runner", "Stream", "sleep"]

_READY = grpc.ChannelConnectivity.READY
_FAILURE = grpc.ChannelConnectivity.TRANSIENT_FAILURE
Metadata = tuple[tuple[str, str], ...]


async def sleep(seconds: float) -> None:
    await asyncio.sleep(seconds)


class Channel(Stubs):
    """One endpoint's grpc.aio channel (made inside the running loop)."""

    def __init__(self, endpoint: Endpoint, tls: TLSConfig | None) -> None:
        self.endpoint = endpoint
        self._channel = make_channel(grpc.aio, endpoint, tls)

    async def wait_ready(self, timeout: float, fail_fast: bool) -> bool:
        """True once connected; False after `timeout`, or at the first failure when `fail_fast`."""

        async def until_ready() -> bool:
            state = self._channel.get_state(try_to_connect=True)
            while state is not _READY:
                if fail_fast and state is _FAILURE:
                    return False
                await self._channel.wait_for_state_change(state)
                state = self._channel.get_state(try_to_connect=True)
            return True

        try:
            return await asyncio.wait_for(until_ready(), timeout)
        except asyncio.TimeoutError:
            return False

    async def unary(
        self, method: Method, request: Message, timeout: float | None, metadata: Metadata
    ) -> Any:
        return await self._unary_call(method, request, timeout, metadata)

    def stream(self, method: Method, metadata: Metadata) -> Stream:
        return Stream(self._stream_callable(method)(metadata=metadata))

    async def close(self) -> None:
        await self._channel.close()


class Stream:
    """A bidirectional call: `send` a request, `receive` the next answer
    (None once the server ended the stream), `cancel` to end it."""

    def __init__(self, call: Any) -> None:
        self._call = call

    async def send(self, msg: Message) -> None:
        await self._call.write(msg)

    async def receive(self, timeout: float | None = None) -> Any:
        """The next answer; raises TimeoutError after `timeout` seconds without one,
        and grpc.RpcError if the call failed."""
        try:
            resp = await asyncio.wait_for(self._call.read(), timeout)
        except asyncio.TimeoutError:
            raise TimeoutError from None
        return None if resp is grpc.aio.EOF else resp

    def cancel(self) -> None:
        self._call.cancel()


class Mailbox:
    """What a background runner hands to its reader, in order."""

    def __init__(self) -> None:
        self._q: asyncio.Queue[Any] = asyncio.Queue()

    def put(self, item: object) -> None:
        self._q.put_nowait(item)

    async def get(self, timeout: float | None) -> Any:
        """The next item; raises TimeoutError when none came within `timeout`."""
        try:
            return await asyncio.wait_for(self._q.get(), timeout)
        except asyncio.TimeoutError:
            raise TimeoutError from None


class Event:
    """asyncio.Event with threading.Event's `wait(timeout) -> bool`."""

    def __init__(self) -> None:
        self._event = asyncio.Event()

    def set(self) -> None:
        self._event.set()

    def is_set(self) -> bool:
        return self._event.is_set()

    async def wait(self, timeout: float | None = None) -> bool:
        try:
            await asyncio.wait_for(self._event.wait(), timeout)
        except asyncio.TimeoutError:
            return False
        return True


Lock = asyncio.Lock


class Runner:
    """A background task running `target()` until it returns or is stopped."""

    def __init__(self, target: Callable[[], Coroutine[Any, Any, None]], name: str) -> None:
        self._task: asyncio.Task[None] = asyncio.create_task(target(), name=name)

    @property
    def alive(self) -> bool:
        return not self._task.done()

    async def stop(self) -> None:
        """Cancel the task and wait for it (unless it is the one asking)."""
        if self._task is asyncio.current_task():
            return
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
