"""etcd's Watch service: one bidirectional stream per client, many watchers on it.

All watch logic is in the engine (rust/src/watch): this handler only moves
bytes, through the same `submit` as every other call (so it works in the
gRPC worker processes too): the stream's token names it in the engine
(WATCH_OPEN). A task hands each client WatchRequest to WATCH_REQUEST; the
handler writes the stream's responses, which the engine pushes under the
token in the order it made them, and acknowledges them in batches once gRPC
has taken them (WATCH_ACK: the engine's flow control, so a client that
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
from .errors import EngineError

__all__ = ["WatchService"]

# Acknowledge at least this often while a burst is being written.
_ACK_EVERY = 64


class WatchService:
    """The `etcdserverpb.Watch` service over one engine (or a worker's engine client)."""

    def __init__(self, bridge: EngineBridge) -> None:
        self._bridge = bridge
        self._queues: set[asyncio.Queue[bytes | EngineError | None]] = set()

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
        bridge = self._bridge
        token, queue = bridge.open_stream()
        submit = bridge.stream_submit
        submit(_core.WATCH_OPEN, b"", token)
        self._queues.add(queue)

        def ack(n: int) -> None:
            submit(_core.WATCH_ACK, n.to_bytes(8, "little"), token)

        async def read() -> None:
            async for request in requests:
                submit(_core.WATCH_REQUEST, request, token)
            # A client that half-closes still gets its events (as etcd).

        reader = asyncio.ensure_future(read())
        failed: EngineError | None = None
        try:
            stop = False
            while not stop:
                response = await queue.get()
                if not isinstance(response, bytes):
                    failed = response
                    break
                sent = 0
                while True:
                    yield response
                    sent += 1
                    if sent == _ACK_EVERY:
                        ack(sent)
                        sent = 0
                    if queue.empty():
                        break
                    item = queue.get_nowait()
                    if not isinstance(item, bytes):
                        failed, stop = item, True
                        break
                    response = item
                if sent:
                    ack(sent)
        finally:
            reader.cancel()
            self._queues.discard(queue)
            submit(_core.WATCH_CLOSE, b"", token)
            bridge.close_stream(token)
        if failed is not None:
            # grpc-go fails the stream when a request does not unmarshal.
            await context.abort(
                grpc.StatusCode.INTERNAL, f"grpc: error unmarshalling request: {failed.message}"
            )
        await context.abort(grpc.StatusCode.UNAVAILABLE, "etcdserver: server stopped")
