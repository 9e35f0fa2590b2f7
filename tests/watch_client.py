"""A tiny etcd Watch client for the end-to-end tests.

Hand-rolled protobuf (etcd's rpc.proto and kv.proto field numbers), in the
style of wire.py, over grpcio's stream-stream call with raw bytes. A stream
reads its responses on a thread into a queue, or not at all (`read=False`:
a client that stalls). Test code only.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import grpc

from .wire import KV, _bytes, _field_bytes, _int, _varint, decode

NOPUT, NODELETE = 0, 1
PUT, DELETE = 0, 1


def _field_int(num: int, value: int) -> bytes:
    if not value:
        return b""
    return _varint(num << 3) + _varint(value & 0xFFFFFFFFFFFFFFFF)


def create(
    key: bytes,
    range_end: bytes = b"",
    *,
    start_revision: int = 0,
    progress_notify: bool = False,
    filters: Sequence[int] = (),
    prev_kv: bool = False,
    watch_id: int = 0,
    fragment: bool = False,
) -> bytes:
    """A WatchRequest holding a WatchCreateRequest."""
    body = (
        _field_bytes(1, key)
        + (_field_bytes(2, range_end) if range_end else b"")
        + _field_int(3, start_revision)
        + _field_int(4, int(progress_notify))
        + (_field_bytes(5, b"".join(_varint(f) for f in filters)) if filters else b"")
        + _field_int(6, int(prev_kv))
        + _field_int(7, watch_id)
        + _field_int(8, int(fragment))
    )
    return _field_bytes(1, body)


def cancel(watch_id: int) -> bytes:
    return _field_bytes(2, _field_int(1, watch_id))


def progress() -> bytes:
    return _field_bytes(3, b"")


def _signed(n: int) -> int:
    return n - (1 << 64) if n >= 1 << 63 else n


@dataclass(frozen=True)
class Event:
    type: int
    key: bytes
    value: bytes
    create_revision: int
    mod_revision: int
    version: int
    prev_value: bytes | None


@dataclass(frozen=True)
class Response:
    revision: int
    watch_id: int
    created: bool
    canceled: bool
    compact_revision: int
    cancel_reason: str
    fragment: bool
    events: list[Event] = field(default_factory=list)

    def control(self) -> tuple[int, int, bool, bool, int, str]:
        """Everything but the events, for comparing with etcd."""
        return (
            self.revision,
            self.watch_id,
            self.created,
            self.canceled,
            self.compact_revision,
            self.cancel_reason,
        )


def parse(buf: bytes) -> Response:
    f = decode(buf)
    header = decode(_bytes(f, 1))
    events = []
    for raw in f.get(11, []):
        assert isinstance(raw, bytes)
        e = decode(raw)
        kv = decode(_bytes(e, 2))
        prev = decode(_bytes(e, 3)) if 3 in e else None
        events.append(
            Event(
                type=_int(e, 1),
                key=_bytes(kv, 1),
                value=_bytes(kv, 5),
                create_revision=_int(kv, 2),
                mod_revision=_int(kv, 3),
                version=_int(kv, 4),
                prev_value=_bytes(prev, 5) if prev is not None else None,
            )
        )
    return Response(
        revision=_int(header, 3),
        watch_id=_signed(_int(f, 2)),
        created=bool(_int(f, 3)),
        canceled=bool(_int(f, 4)),
        compact_revision=_int(f, 5),
        cancel_reason=_bytes(f, 6).decode(),
        fragment=bool(_int(f, 7)),
        events=events,
    )


class WatchStream:
    """One Watch RPC. send() requests; get() the next response (read=True)."""

    def __init__(self, target: str, read: bool = True) -> None:
        self.channel = grpc.insecure_channel(
            target, options=[("grpc.max_receive_message_length", 1 << 30)]
        )
        self._requests: queue.Queue[bytes | None] = queue.Queue()
        method = self.channel.stream_stream("/etcdserverpb.Watch/Watch")
        self._call = method(iter(self._requests.get, None))
        self.responses: queue.Queue[Response | BaseException] = queue.Queue()
        self._reader: threading.Thread | None = None
        if read:
            self.start_reading()

    def start_reading(self) -> None:
        assert self._reader is None
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        try:
            for raw in self._call:
                self.responses.put(parse(raw))
        except grpc.RpcError as e:
            self.responses.put(e)

    def send(self, request: bytes) -> None:
        self._requests.put(request)

    def get(self, timeout: float = 10.0) -> Response:
        r = self.responses.get(timeout=timeout)
        if isinstance(r, BaseException):
            raise r
        return r

    def events_until(self, watch_ids: set[int], last_rev: int, timeout: float = 30.0) -> dict[int, list[Event]]:
        """Collect events per watch id until each has seen `last_rev`."""
        got: dict[int, list[Event]] = {w: [] for w in watch_ids}
        waiting = set(watch_ids)
        while waiting:
            r = self.get(timeout)
            if r.events:
                got.setdefault(r.watch_id, []).extend(r.events)
                if r.events[-1].mod_revision >= last_rev:
                    waiting.discard(r.watch_id)
        return got

    def close(self) -> None:
        self._call.cancel()
        self._requests.put(None)
        self.channel.close()


def burst(kv: KV, items: Iterator[tuple[bytes, bytes]], in_flight: int = 128) -> int:
    """Puts with up to `in_flight` outstanding (group commit); the last revision."""
    pending: list[Any] = []
    last = 0
    for key, value in items:
        pending.append(kv._put.future(_field_bytes(1, key) + _field_bytes(2, value), timeout=30))
        if len(pending) >= in_flight:
            last = max(last, _revision(pending.pop(0).result()))
    for fut in pending:
        last = max(last, _revision(fut.result()))
    return last


def _revision(put_response: bytes) -> int:
    return _int(decode(_bytes(decode(put_response), 1)), 3)
