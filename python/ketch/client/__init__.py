"""ketch's Python client for etcd's v3 API: `Client` (blocking) and `AsyncClient` (asyncio).

It talks to any etcd-compatible server, ketch or etcd. See `sync` and `aio`
for the two clients, `requests` for Compare and Op (transactions), `results`
for what calls return and `errors` for what they raise.
"""

from typing import TYPE_CHECKING, Any

from .concurrency import Election, Mutex, Session
from .endpoints import TLSConfig
from .errors import (
    AuthFailed,
    Compacted,
    ConnectionFailed,
    DeadlineExceeded,
    DuplicateKey,
    EtcdError,
    FutureRevision,
    InvalidArgument,
    LeaderChanged,
    LeaseExpired,
    LeaseNotFound,
    MemberNotFound,
    NoLeader,
    NoSpace,
    PermissionDenied,
    RequestTooLarge,
    TooManyOps,
    Unavailable,
    Unimplemented,
    WatchCanceled,
)
from .requests import Compare, Op, prefix_range_end
from .results import (
    DeleteResult,
    Event,
    EventType,
    GetResult,
    Header,
    KeepAliveResult,
    KeyValue,
    LeaseGrant,
    LeaseInfo,
    LeaseList,
    Member,
    MemberList,
    PutResult,
    Status,
    TxnResult,
    WatchResponse,
)
from .sync import Client, KeepAlive, Lease, TxnBuilder, Watch

if TYPE_CHECKING:
    from .aio import AsyncClient, AsyncLease, AsyncWatch


def __getattr__(name: str) -> Any:
    # asyncio and grpc.aio load only for those who use them (ketchctl starts faster).
    if name in ("AsyncClient", "AsyncLease", "AsyncWatch"):
        from . import aio

        return getattr(aio, name)
    raise AttributeError(f"module 'ketch.client' has no attribute {name!r}")

__all__ = [
    "AsyncClient", "AsyncLease", "AsyncWatch", "AuthFailed", "Client", "Compacted", "Compare",
    "ConnectionFailed", "DeadlineExceeded", "DeleteResult", "DuplicateKey", "Election",
    "EtcdError", "Event",
    "EventType", "FutureRevision", "GetResult", "Header", "InvalidArgument", "KeepAlive",
    "KeepAliveResult", "KeyValue", "LeaderChanged", "Lease", "LeaseExpired", "LeaseGrant",
    "LeaseInfo", "LeaseList", "LeaseNotFound", "Member", "MemberList", "MemberNotFound", "Mutex",
    "NoLeader", "NoSpace", "Op", "PermissionDenied", "PutResult", "RequestTooLarge", "Session",
    "Status",
    "TLSConfig", "TooManyOps", "TxnBuilder", "TxnResult", "Unavailable", "Unimplemented",
    "Watch", "WatchCanceled", "WatchResponse", "prefix_range_end",
]  # fmt: skip
