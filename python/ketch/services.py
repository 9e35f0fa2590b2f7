"""etcd's gRPC services, answered by the engine.

Each method is a unary handler over raw bytes (no (de)serializer): the
request's bytes go to the engine as they came off the wire, and the engine's
response bytes go back the same way. Python never parses an etcd message on
this path. A method not registered here (Watch, Lease, the rest of
Maintenance and Cluster) gets gRPC's own UNIMPLEMENTED.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import grpc
import grpc.aio

from . import _core
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
    "etcdserverpb.Maintenance": {"Status": _core.MAINTENANCE_STATUS},
    "etcdserverpb.Cluster": {"MemberList": _core.CLUSTER_MEMBER_LIST},
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


def generic_handlers(bridge: EngineBridge, max_receive: int) -> list[grpc.GenericRpcHandler]:
    """One generic handler per service, every method calling the engine.

    max_receive is etcd's gRPC message limit (max-request-bytes + 512 KiB);
    the server's own gRPC limit must sit above it so this check sees the request.
    """
    return [
        grpc.method_handlers_generic_handler(
            service,
            {
                name: grpc.unary_unary_rpc_method_handler(_unary(bridge, num, max_receive))
                for name, num in methods.items()
            },
        )
        for service, methods in _METHODS.items()
    ]
