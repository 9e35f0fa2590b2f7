"""ketch: a Raft-replicated key-value store that speaks etcd's v3 API.

A small facade. The names that need grpc or the native engine
(`ketch._core`) load on first use, so `ketch --version` and configuration
errors answer without loading either.
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

from .config import Config, ConfigError, parse
from .membership import cluster_id, member_id

if TYPE_CHECKING:
    from .client import (
        AsyncClient,
        AuthFailed,
        Client,
        Compacted,
        Compare,
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
        Op,
        PermissionDenied,
        RequestTooLarge,
        TooManyOps,
        Unavailable,
        Unimplemented,
        WatchCanceled,
    )
    from .engine import EngineBridge
    from .errors import EngineError
    from .server import serve

# The client (ketch.client): loaded on first use too, so the server's command
# line does not pay for it.
_CLIENT_NAMES = (
    "AsyncClient", "AuthFailed", "Client", "Compacted", "Compare", "ConnectionFailed",
    "DeadlineExceeded", "DuplicateKey", "EtcdError", "FutureRevision", "InvalidArgument",
    "LeaderChanged", "LeaseExpired", "LeaseNotFound", "MemberNotFound", "NoLeader", "NoSpace",
    "Op", "PermissionDenied", "RequestTooLarge", "TooManyOps", "Unavailable", "Unimplemented",
    "WatchCanceled",
)  # fmt: skip

# Spelled out (with _CLIENT_NAMES) rather than built: linters and type checkers read
# __all__ without running it.
__all__ = [
    "ETCD_VERSION",
    "AsyncClient",
    "AuthFailed",
    "Client",
    "Compacted",
    "Compare",
    "Config",
    "ConfigError",
    "ConnectionFailed",
    "DeadlineExceeded",
    "DuplicateKey",
    "EngineBridge",
    "EngineError",
    "EtcdError",
    "FutureRevision",
    "InvalidArgument",
    "LeaderChanged",
    "LeaseExpired",
    "LeaseNotFound",
    "MemberNotFound",
    "NoLeader",
    "NoSpace",
    "Op",
    "PermissionDenied",
    "RequestTooLarge",
    "TooManyOps",
    "Unavailable",
    "Unimplemented",
    "WatchCanceled",
    "__version__",
    "cluster_id",
    "member_id",
    "parse",
    "serve",
]

_LAZY = {
    "EngineBridge": "engine",
    "EngineError": "errors",
    "serve": "server",
    **{name: "client" for name in _CLIENT_NAMES},
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'ketch' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(f".{module}", __name__), name)
