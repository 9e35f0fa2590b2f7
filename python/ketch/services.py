"""etcd's gRPC services, answered by the engine.

Each method is a unary handler over raw bytes (no (de)serializer): the
request's bytes go to the engine as they came off the wire, and the engine's
response bytes go back the same way. Python never parses an etcd message on
this path (Maintenance.Snapshot aside: see `_snapshot`). Lease.LeaseKeepAlive is a bidirectional stream: each request
on it is one engine call, answered in order. Watch, a bidirectional
stream with many responses per request, is in watch_service.py. A method
registered nowhere (the rest of Maintenance and Cluster) gets gRPC's own
UNIMPLEMENTED.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import AsyncIterator, Awaitable, Callable

import grpc
import grpc.aio

from . import _core
from ._pb import rpc_pb2
from .engine import EngineBridge
from .errors import GRPC_STATUS, EngineError

__all__ = ["generic_handlers"]

# service -> {method name -> engine method number}
_METHODS: dict[str, dict[str, int]] = {
    "etcdserverpb.KV": {
        "Range": _core.KV_RANGE,
        "Put": _core.KV_PUT,
        "DeleteRange": _core.KV_DELETE_RANGE,
        "Txn": _core.KV_TXN,
        "Compact": _core.KV_COMPACT,
    },
    "etcdserverpb.Maintenance": {
        "Status": _core.MAINTENANCE_STATUS,
        "Alarm": _core.MAINTENANCE_ALARM,
        "Hash": _core.MAINTENANCE_HASH,
        "HashKV": _core.MAINTENANCE_HASH_KV,
        "Defragment": _core.MAINTENANCE_DEFRAGMENT,
        "MoveLeader": _core.MAINTENANCE_MOVE_LEADER,
    },
    "etcdserverpb.Cluster": {"MemberList": _core.CLUSTER_MEMBER_LIST},
    "etcdserverpb.Lease": {
        "LeaseGrant": _core.LEASE_GRANT,
        "LeaseRevoke": _core.LEASE_REVOKE,
        "LeaseTimeToLive": _core.LEASE_TIME_TO_LIVE,
        "LeaseLeases": _core.LEASE_LEASES,
    },
}

_Handler = Callable[[bytes, grpc.aio.ServicerContext], Awaitable[bytes]]


def _unary(bridge: EngineBridge, method: int, max_receive: int) -> _Handler:
    call = bridge.call
    status = GRPC_STATUS.get
    unknown = grpc.StatusCode.UNKNOWN
    exhausted = grpc.StatusCode.RESOURCE_EXHAUSTED

    async def handle(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        if len(request) > max_receive:
            # grpc-go's words, which etcd's clients show; grpc-core would say
            # "SERVER: Received message larger than max".
            await context.abort(
                exhausted,
                f"grpc: received message larger than max ({len(request)} vs. {max_receive})",
            )
        try:
            return await call(method, request)
        except EngineError as e:
            await context.abort(status(e.name, unknown), e.message)
            raise  # abort() raises; this is for type checkers

    return handle


def _keep_alive(bridge: EngineBridge, max_receive: int) -> Callable[..., AsyncIterator[bytes]]:
    """LeaseKeepAlive: one renew per request on the stream, answered in order
    (etcd's leaseKeepAlive loop). An engine error ends the stream with it."""
    call = bridge.call
    status = GRPC_STATUS.get
    unknown = grpc.StatusCode.UNKNOWN
    method = _core.LEASE_KEEP_ALIVE

    async def handle(
        requests: AsyncIterator[bytes], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[bytes]:
        async for request in requests:
            if len(request) > max_receive:
                await context.abort(
                    grpc.StatusCode.RESOURCE_EXHAUSTED,
                    f"grpc: received message larger than max ({len(request)} vs. {max_receive})",
                )
            try:
                response = await call(method, request)
            except EngineError as e:
                await context.abort(status(e.name, unknown), e.message)
                raise  # abort() raises; this is for type checkers
            yield response

    return handle


# etcd's snapshotSendBufferSize.
_SNAPSHOT_CHUNK = 32 * 1024


def _snapshot(bridge: EngineBridge) -> Callable[..., AsyncIterator[bytes]]:
    """Maintenance.Snapshot, as etcd's maintenanceServer.Snapshot: the
    backend in 32 KiB blobs, each with the bytes still to come, then one more
    response whose blob is the SHA-256 of everything sent (etcdctl keeps it
    at the end of the file; `snapshot restore` checks it). The engine copies
    the backend to a file (consistent: writers wait meanwhile); this streams
    and removes it. Only here does Python build an etcd message: the engine
    answers with the copy's path."""
    call = bridge.call
    status = GRPC_STATUS.get
    unknown = grpc.StatusCode.UNKNOWN

    async def handle(request: bytes, context: grpc.aio.ServicerContext) -> AsyncIterator[bytes]:
        try:
            path = (await call(_core.MAINTENANCE_SNAPSHOT, request)).decode()
        except EngineError as e:
            await context.abort(status(e.name, unknown), e.message)
            raise  # abort() raises; this is for type checkers
        try:
            # File I/O off the event loop: a snapshot can be gigabytes.
            f = await asyncio.to_thread(open, path, "rb")
            with f:
                total = os.fstat(f.fileno()).st_size
                digest = hashlib.sha256()
                sent = 0
                while sent < total:
                    blob = await asyncio.to_thread(f.read, _SNAPSHOT_CHUNK)
                    if not blob:
                        break
                    sent += len(blob)
                    digest.update(blob)
                    yield rpc_pb2.SnapshotResponse(
                        remaining_bytes=total - sent, blob=blob
                    ).SerializeToString()
            yield rpc_pb2.SnapshotResponse(remaining_bytes=0, blob=digest.digest()).SerializeToString()
        finally:
            os.unlink(path)

    return handle


def generic_handlers(bridge: EngineBridge, max_receive: int) -> list[grpc.GenericRpcHandler]:
    """One generic handler per service, every method calling the engine.

    max_receive is etcd's gRPC message limit (max-request-bytes + 512 KiB);
    the server's own gRPC limit must sit above it so this check sees the request.
    """
    unary = [
        grpc.method_handlers_generic_handler(
            service,
            {
                name: grpc.unary_unary_rpc_method_handler(_unary(bridge, num, max_receive))
                for name, num in methods.items()
            },
        )
        for service, methods in _METHODS.items()
    ]
    # The server asks each generic handler in turn; this one only knows the stream.
    streams = grpc.method_handlers_generic_handler(
        "etcdserverpb.Lease",
        {"LeaseKeepAlive": grpc.stream_stream_rpc_method_handler(_keep_alive(bridge, max_receive))},
    )
    snapshot = grpc.method_handlers_generic_handler(
        "etcdserverpb.Maintenance",
        {"Snapshot": grpc.unary_stream_rpc_method_handler(_snapshot(bridge))},
    )
    return [*unary, streams, snapshot]
