"""The blocking transport under `ketch.Client`: grpc's blocking channels, with
threads where the asyncio twin (`_transport_async`) has tasks.

It offers the names `_transport_async` offers, so that `sync.py`, generated
from `aio.py`, runs the same logic over it. The client picks an endpoint by
its connection state before sending anything (a write is never sent twice,
so fail-over must happen before the request leaves): each channel is watched
with grpc's connectivity subscription, and `wait_ready` returns as soon as the
channel is READY, or (with `fail_fast`) as soon as connecting failed.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import grpc
from google.protobuf.message import Message

from .endpoints import Endpoint, TLSConfig, make_channel
from .methods import Method, Stubs

__all__ = ["Channel", "Event", "Lock", "Mailbox", "Runner", "Stream", "sleep"]

_READY = grpc.ChannelConnectivity.READY
_FAILURE = grpc.ChannelConnectivity.TRANSIENT_FAILURE
_IDLE = grpc.ChannelConnectivity.IDLE
Metadata = tuple[tuple[str, str], ...]

sleep = time.sleep
Event = threading.Event
Lock = threading.Lock


class Channel(Stubs):
    """One endpoint's blocking grpc channel, and whether it is connected."""

    def __init__(self, endpoint: Endpoint, tls: TLSConfig | None) -> None:
        self.endpoint = endpoint
        self._channel = make_channel(grpc, endpoint, tls)
        self._state: grpc.ChannelConnectivity | None = None
        self._was_ready = False
        self._cond = threading.Condition()
        self._channel.subscribe(self._on_state, try_to_connect=True)

    def _on_state(self, state: grpc.ChannelConnectivity) -> None:
        with self._cond:
            self._state = state
            self._was_ready = self._was_ready or state is _READY
            self._cond.notify_all()

    def wait_ready(self, timeout: float, fail_fast: bool) -> bool:
        """True once the channel is connected (or idle after having been: a call
        reconnects it); False after `timeout`, or at the first failure to
        connect when `fail_fast`."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                if self._state is _READY or (self._state is _IDLE and self._was_ready):
                    return True
                if fail_fast and self._state is _FAILURE:
                    return False
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)

    def unary(
        self, method: Method, request: Message, timeout: float | None, metadata: Metadata
    ) -> Any:
        return self._unary_call(method, request, timeout, metadata)

    def stream(self, method: Method, metadata: Metadata) -> Stream:
        return Stream(self._stream_callable(method), metadata)

    def close(self) -> None:
        try:
            self._channel.unsubscribe(self._on_state)
        finally:
            # grpc's connectivity poller (started by subscribe) notices the
            # unsubscribe only after its current 0.2 s wait; closing the channel
            # before that makes its next wait raise "Channel closed!" in that
            # thread. So close once it has stopped, without making callers wait.
            state = getattr(self._channel, "_connectivity_state", None)
            if state is not None and getattr(state, "polling", False):
                threading.Thread(target=self._close_when_unpolled, args=(state,), daemon=True).start()
            else:
                self._channel.close()

    def _close_when_unpolled(self, state: object) -> None:
        deadline = time.monotonic() + 2.0
        while getattr(state, "polling", False) and time.monotonic() < deadline:
            time.sleep(0.05)
        self._channel.close()


_END = object()


class Stream:
    """A bidirectional call. grpc's blocking API wants the requests as an
    iterator and gives the answers as one without a timeout, so requests go
    through a queue and a reader thread moves the answers into another, where
    `receive` can wait for them with a timeout."""

    def __init__(self, stub: Any, metadata: Metadata) -> None:
        self._requests: queue.Queue[Any] = queue.Queue()
        self._answers: queue.Queue[Any] = queue.Queue()
        self._call = stub(self._outgoing(), metadata=metadata)
        threading.Thread(target=self._read, name="ketch-stream", daemon=True).start()

    def _outgoing(self) -> Iterator[Message]:
        while (msg := self._requests.get()) is not _END:
            yield msg

    def _read(self) -> None:
        try:
            for resp in self._call:
                self._answers.put(resp)
            self._answers.put(_END)
        except grpc.RpcError as e:
            self._answers.put(e)

    def send(self, msg: Message) -> None:
        self._requests.put(msg)

    def receive(self, timeout: float | None = None) -> Any:
        """The next answer, or None once the server ended the stream; raises
        TimeoutError after `timeout` seconds without one, and grpc.RpcError
        if the call failed."""
        try:
            item = self._answers.get(timeout=timeout)
        except queue.Empty:
            raise TimeoutError from None
        if item is _END or isinstance(item, grpc.RpcError):
            self._answers.put(item)  # every later receive ends the same way
        if isinstance(item, grpc.RpcError):
            raise item
        return None if item is _END else item

    def cancel(self) -> None:
        self._call.cancel()
        self._requests.put(_END)


class Mailbox:
    """What a background runner hands to its reader, in order."""

    def __init__(self) -> None:
        self._q: queue.Queue[Any] = queue.Queue()

    def put(self, item: object) -> None:
        self._q.put(item)

    def get(self, timeout: float | None) -> Any:
        """The next item; raises TimeoutError when none came within `timeout`."""
        try:
            return self._q.get(timeout=timeout)
        except queue.Empty:
            raise TimeoutError from None


class Runner:
    """A daemon thread running `target()`; `stop` waits for it to return (the
    owner first makes it return, by setting its closed event and cancelling its
    stream: a thread cannot be cancelled)."""

    def __init__(self, target: Callable[[], None], name: str) -> None:
        self._thread = threading.Thread(target=target, name=name, daemon=True)
        self._thread.start()

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def stop(self) -> None:
        if self._thread is not threading.current_thread():
            self._thread.join(timeout=5)
