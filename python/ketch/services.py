"""etcd's gRPC services, answered by the engine.

Each method is a unary handler over raw bytes (no (de)serializer): the
request's bytes go to the engine as they came off the wire, and the engine's
response bytes go back the same way. Python never parses an etcd message on
this path (Maintenance.Snapshot aside: see `_snapshot`). Lease.LeaseKeepAlive is a bidirectional stream: each request
on it is one engine call, answered in order. Watch, a bidirectional
stream with many responses per request, is in watch_service.py. A method
registered nowhere gets gRPC's own UNIMPLEMENTED.

A few calls only the leader can answer (MemberPromote and the lease calls
whose answer lives in the leader's lessor: etcd forwards those too). On any
other member the engine answers NotLeader, and the handler runs the same
request on the leader through `forward` (ketch.peer's Forward RPC) and
answers with what the leader answered.
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
    "etcdserverpb.Cluster": {
        "MemberAdd": _core.CLUSTER_MEMBER_ADD,
        "MemberRemove": _core.CLUSTER_MEMBER_REMOVE,
        "MemberUpdate": _core.CLUSTER_MEMBER_UPDATE,
        "MemberList": _core.CLUSTER_MEMBER_LIST,
        "MemberPromote": _core.CLUSTER_MEMBER_PROMOTE,
    },
    # Only Authenticate, answered as etcd answers it with auth disabled.
    "etcdserverpb.Auth": {
        "Authenticate": _core.AUTH_AUTHENTICATE,
    },
    "etcdserverpb.Lease": {
        "LeaseGrant": _core.LEASE_GRANT,
        "LeaseRevoke": _core.LEASE_REVOKE,
        "LeaseTimeToLive": _core.LEASE_TIME_TO_LIVE,
        "LeaseLeases": _core.LEASE_LEASES,
    },
}

# Methods the engine answers with NotLeader on a follower (see the module doc).
FORWARDED_METHODS = frozenset(
    {
        _core.CLUSTER_MEMBER_PROMOTE,
        _core.LEASE_KEEP_ALIVE,
        _core.LEASE_TIME_TO_LIVE,
    }
)

_Handler = Callable[[bytes, grpc.aio.ServicerContext], Awaitable[bytes]]
# Runs (method, request bytes) on the leader: its answer, or its EngineError.
Forward = Callable[[int, bytes], Awaitable[bytes]]


def _calling(bridge: EngineBridge, method: int, forward: Forward | None) -> Forward:
    """How a handler runs its method: on this member's engine, and for a
    forwarded method on the leader when this member is not the leader."""
    call = bridge.call
    if forward is None or method not in FORWARDED_METHODS:
        return call
    to_leader = forward

    async def call_or_forward(method: int, request: bytes) -> bytes:
        try:
            return await call(method, request)
        except EngineError as e:
            if e.name != "NotLeader":
                raise
        return await to_leader(method, request)

    return call_or_forward


def _unary(
    bridge: EngineBridge, method: int, max_receive: int, forward: Forward | None = None
) -> _Handler:
    call = _calling(bridge, method, forward)
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


def _keep_alive(
    bridge: EngineBridge, max_receive: int, forward: Forward | None = None
) -> Callable[..., AsyncIterator[bytes]]:
    """LeaseKeepAlive: one renew per request on the stream, answered in order
    (etcd's leaseKeepAlive loop); on a follower each renew goes to the leader.
    An engine error ends the stream with it."""
    method = _core.LEASE_KEEP_ALIVE
    call = _calling(bridge, method, forward)
    status = GRPC_STATUS.get
    unknown = grpc.StatusCode.UNKNOWN

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
            yield rpc_pb2.SnapshotResponse(
                remaining_bytes=0, blob=digest.digest()
            ).SerializeToString()
        finally:
            os.unlink(path)

    return handle


def generic_handlers(
    bridge: EngineBridge, max_receive: int, forward: Forward | None = None
) -> list[grpc.GenericRpcHandler]:
    """One generic handler per service, every method calling the engine.

    max_receive is etcd's gRPC message limit (max-request-bytes + 512 KiB);
    the server's own gRPC limit must sit above it so this check sees the request.
    forward runs a FORWARDED_METHODS request on the leader (None: one
    member, nothing to forward to).
    """
    unary = [
        grpc.method_handlers_generic_handler(
            service,
            {
                name: grpc.unary_unary_rpc_method_handler(_unary(bridge, num, max_receive, forward))
                for name, num in methods.items()
            },
        )
        for service, methods in _METHODS.items()
    ]
    # The server asks each generic handler in turn; this one only knows the stream.
    streams = grpc.method_handlers_generic_handler(
        "etcdserverpb.Lease",
        {
            "LeaseKeepAlive": grpc.stream_stream_rpc_method_handler(
                _keep_alive(bridge, max_receive, forward)
            )
        },
    )
    snapshot = grpc.method_handlers_generic_handler(
        "etcdserverpb.Maintenance",
        {"Snapshot": grpc.unary_stream_rpc_method_handler(_snapshot(bridge))},
    )
    return [*unary, streams, snapshot]
