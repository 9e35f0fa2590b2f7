"""ketch's Python client for etcd's v3 API: `Client` (blocking) and `AsyncClient` (asyncio).

It talks to any etcd-compatible server, ketch or etcd. The two faces are one
implementation (`aio`, from which `sync` is generated) with the same methods,
arguments, results and errors. See `requests` for Compare and Op
(transactions), `results` for what calls return, `errors` for what they
raise, `policy` for when a call is sent again, and `concurrency` for the
client-side Mutex and Election recipes.
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
    AuthStatus,
    AuthToken,
    DeleteResult,
    Event,
    EventType,
    GetResult,
    Header,
    KeepAliveResult,
    KeyValue,
    LeaderKey,
    LeaseGrant,
    LeaseInfo,
    LeaseList,
    LockResult,
    Member,
    MemberList,
    NameList,
    Permission,
    PermissionType,
    PutResult,
    RoleInfo,
    Status,
    TxnResult,
    UserInfo,
    WatchResponse,
)
from .sync import Client, KeepAlive, Lease, TxnBuilder, Watch

if TYPE_CHECKING:
    from .aio import AsyncClient, AsyncKeepAlive, AsyncLease, AsyncTxnBuilder, AsyncWatch

_ASYNC_NAMES = ("AsyncClient", "AsyncKeepAlive", "AsyncLease", "AsyncTxnBuilder", "AsyncWatch")


def __getattr__(name: str) -> Any:
    # asyncio and grpc.aio load only for those who use them (ketchctl starts faster).
    if name in _ASYNC_NAMES:
        from . import aio

        return getattr(aio, name)
    raise AttributeError(f"module 'ketch.client' has no attribute {name!r}")

__all__ = [
    "AsyncClient", "AsyncKeepAlive", "AsyncLease", "AsyncTxnBuilder", "AsyncWatch",
    "AuthFailed", "AuthStatus", "AuthToken", "Client", "Compacted", "Compare",
    "ConnectionFailed", "DeadlineExceeded", "DeleteResult", "DuplicateKey", "Election",
    "EtcdError", "Event", "EventType", "FutureRevision", "GetResult", "Header",
    "InvalidArgument", "KeepAlive", "KeepAliveResult", "KeyValue", "LeaderChanged", "LeaderKey",
    "Lease", "LeaseExpired", "LeaseGrant", "LeaseInfo", "LeaseList", "LeaseNotFound",
    "LockResult", "Member", "MemberList", "MemberNotFound", "Mutex", "NameList", "NoLeader",
    "NoSpace", "Op", "Permission", "PermissionDenied", "PermissionType", "PutResult",
    "RequestTooLarge", "RoleInfo", "Session", "Status", "TLSConfig", "TooManyOps", "TxnBuilder",
    "TxnResult", "Unavailable", "Unimplemented", "UserInfo", "Watch", "WatchCanceled",
    "WatchResponse", "prefix_range_end",
]  # fmt: skip
