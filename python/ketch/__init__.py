"""ketch: a Raft-replicated key-value store that speaks etcd's v3 API."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# The client is loaded on first use, not at `import ketch`: the server's
# command line (--help, --version, flag errors) must not pay for grpc.
_CLIENT_NAMES = (
    "AsyncClient", "AuthFailed", "Client", "Compacted", "Compare", "ConnectionFailed",
    "DeadlineExceeded", "DuplicateKey", "EtcdError", "FutureRevision", "InvalidArgument",
    "LeaderChanged", "LeaseExpired", "LeaseNotFound", "MemberNotFound", "NoLeader", "NoSpace",
    "Op", "PermissionDenied", "RequestTooLarge", "TooManyOps", "Unavailable", "Unimplemented",
    "WatchCanceled",
)  # fmt: skip

__all__ = ["__version__", *_CLIENT_NAMES]

if TYPE_CHECKING:
    from .client import (
        AsyncClient, AuthFailed, Client, Compacted, Compare, ConnectionFailed, DeadlineExceeded,
        DuplicateKey, EtcdError, FutureRevision, InvalidArgument, LeaderChanged, LeaseExpired,
        LeaseNotFound, MemberNotFound, NoLeader, NoSpace, Op, PermissionDenied, RequestTooLarge,
        TooManyOps, Unavailable, Unimplemented, WatchCanceled,
    )  # fmt: skip


def __getattr__(name: str) -> Any:
    if name in _CLIENT_NAMES:
        from . import client

        return getattr(client, name)
    raise AttributeError(f"module 'ketch' has no attribute {name!r}")
