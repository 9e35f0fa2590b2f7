"""ketch: a Raft-replicated key-value store that speaks etcd's v3 API.

The package's top level is the client API: `Client`, `AsyncClient` and what
they take, return and raise (all of `ketch.client`). The server is run by the
`ketch` command (`ketch.cli`); test fixtures are in `ketch.testing`; the
native engine is `ketch._core`. The client's names load on first use, so
`ketch --version` and configuration errors answer without loading grpc.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
#: The etcd server version ketch reports in Maintenance.Status: the API level
#: it implements. Clients such as kube-apiserver gate features on this, not
#: on ketch's own version: kube-apiserver 1.31 uses RequestWatchProgress
#: (consistent reads from its watch cache, WatchList) only from 3.5.13 on.
#: 3.5.13 is the highest patch whose behaviour ketch implements: progress
#: answered once a stream's watchers are synced, at a revision at least every
#: acknowledged write (tests/e2e/test_progress.py), and 3.5.11's /livez and
#: /readyz.
ETCD_VERSION = "3.5.13"

if TYPE_CHECKING:
    from .client import (
        AsyncClient,
        AsyncKeepAlive,
        AsyncLease,
        AsyncTxnBuilder,
        AsyncWatch,
        AuthFailed,
        AuthStatus,
        AuthToken,
        Client,
        Compacted,
        Compare,
        ConnectionFailed,
        DeadlineExceeded,
        DeleteResult,
        DuplicateKey,
        Election,
        EtcdError,
        Event,
        EventType,
        FutureRevision,
        GetResult,
        Header,
        InvalidArgument,
        KeepAlive,
        KeepAliveResult,
        KeyValue,
        LeaderChanged,
        LeaderKey,
        Lease,
        LeaseExpired,
        LeaseGrant,
        LeaseInfo,
        LeaseList,
        LeaseNotFound,
        LockResult,
        Member,
        MemberList,
        MemberNotFound,
        Mutex,
        NameList,
        NoLeader,
        NoSpace,
        Op,
        Permission,
        PermissionDenied,
        PermissionType,
        PutResult,
        RequestTooLarge,
        RoleInfo,
        Session,
        Status,
        TLSConfig,
        TooManyOps,
        TxnBuilder,
        TxnResult,
        Unavailable,
        Unimplemented,
        UserInfo,
        Watch,
        WatchCanceled,
        WatchResponse,
        prefix_range_end,
    )

# Spelled out rather than taken from ketch.client's: linters and type
# checkers read __all__ without running it; tests/client/test_facade.py
# checks that the two agree.
__all__ = [
    "ETCD_VERSION",
    "AsyncClient",
    "AsyncKeepAlive",
    "AsyncLease",
    "AsyncTxnBuilder",
    "AsyncWatch",
    "AuthFailed",
    "AuthStatus",
    "AuthToken",
    "Client",
    "Compacted",
    "Compare",
    "ConnectionFailed",
    "DeadlineExceeded",
    "DeleteResult",
    "DuplicateKey",
    "Election",
    "EtcdError",
    "Event",
    "EventType",
    "FutureRevision",
    "GetResult",
    "Header",
    "InvalidArgument",
    "KeepAlive",
    "KeepAliveResult",
    "KeyValue",
    "LeaderChanged",
    "LeaderKey",
    "Lease",
    "LeaseExpired",
    "LeaseGrant",
    "LeaseInfo",
    "LeaseList",
    "LeaseNotFound",
    "LockResult",
    "Member",
    "MemberList",
    "MemberNotFound",
    "Mutex",
    "NameList",
    "NoLeader",
    "NoSpace",
    "Op",
    "Permission",
    "PermissionDenied",
    "PermissionType",
    "PutResult",
    "RequestTooLarge",
    "RoleInfo",
    "Session",
    "Status",
    "TLSConfig",
    "TooManyOps",
    "TxnBuilder",
    "TxnResult",
    "Unavailable",
    "Unimplemented",
    "UserInfo",
    "Watch",
    "WatchCanceled",
    "WatchResponse",
    "__version__",
    "prefix_range_end",
]  # fmt: skip
_CLIENT_NAMES = frozenset(__all__) - {"ETCD_VERSION", "__version__"}


def __getattr__(name: str) -> Any:
    if name not in _CLIENT_NAMES:
        raise AttributeError(f"module 'ketch' has no attribute {name!r}")
    from . import client

    return getattr(client, name)
