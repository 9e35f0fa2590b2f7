"""etcd's Watch service: one bidirectional stream per client, many watchers on it.

All watch logic is in the engine (rust/src/watch): this handler only moves
bytes. A task reads the client's WatchRequests and hands each to
`Engine.watch_request`; the handler writes the stream's responses, which
the engine pushes to the completion queue under the stream's token, in the
order the engine made them, and acknowledges them in batches once gRPC has
taken them (`Engine.watch_ack`: the engine's flow control, so a client that
stops reading stops costing memory). The stream's watchers are dropped when
the client goes away or the server stops.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import grpc
import grpc.aio

from . import _core
from .engine import EngineBridge

__all__ = ["WatchService"]

# Acknowledge at least this often while a burst is being written.
_ACK_EVERY = 64


class WatchService:
    """The `etcdserverpb.Watch` service over one engine."""

    def __init__(self, bridge: EngineBridge, engine: _core.Engine) -> None:
        self._bridge = bridge
        self._engine = engine
        self._queues: set[asyncio.Queue[bytes | None]] = set()

    def handler(self) -> grpc.GenericRpcHandler:
        return grpc.method_handlers_generic_handler(
            "etcdserverpb.Watch",
            {"Watch": grpc.stream_stream_rpc_method_handler(self._watch)},
        )

    def shutdown(self) -> None:
        """End every open stream (the server is stopping): clients see
        UNAVAILABLE and resume elsewhere, as from a stopping etcd."""
        for queue in self._queues:
            queue.put_nowait(None)

    async def _watch(
        self, requests: AsyncIterator[bytes], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[bytes]:
        engine = self._engine
        token, queue = self._bridge.open_stream()
        stream = engine.watch_open(token)
        self._queues.add(queue)
        failed: list[str] = []

        async def read() -> None:
            try:
                async for request in requests:
                    engine.watch_request(stream, request)
            except ValueError as e:
                # grpc-go fails the stream when a request does not unmarshal.
                failed.append(f"grpc: error unmarshalling request: {e}")
                queue.put_nowait(None)
            # A client that half-closes still gets its events (as etcd).

        reader = asyncio.ensure_future(read())
        try:
            stop = False
            while not stop:
                response = await queue.get()
                if response is None:
                    break
                sent = 0
                while True:
                    yield response
                    sent += 1
                    if sent == _ACK_EVERY:
                        engine.watch_ack(stream, sent)
                        sent = 0
                    if queue.empty():
                        break
                    response = queue.get_nowait()
                    if response is None:
                        stop = True
                        break
                if sent:
                    engine.watch_ack(stream, sent)
        finally:
            reader.cancel()
            self._queues.discard(queue)
            engine.watch_close(stream)
            self._bridge.close_stream(token)
        if failed:
            await context.abort(grpc.StatusCode.INTERNAL, failed[0])
        await context.abort(grpc.StatusCode.UNAVAILABLE, "etcdserver: server stopped")
