"""The client's exceptions, and the one table that turns a gRPC status into one.

etcd names each server error once ("etcdserver: ..." in rpctypes) and sends it
with a gRPC code. The exceptions here keep that meaning: the class says what
happened, `str(e)` is the server's own text (so a CLI can print it exactly as
etcdctl does), and `hint` says what a caller can do about it.

A missing key is not an error: `get` returns an empty result, as in etcd.
"""

from __future__ import annotations

import grpc

__all__ = [
    "AuthFailed",
    "Compacted",
    "ConnectionFailed",
    "DeadlineExceeded",
    "DuplicateKey",
    "EtcdError",
    "FutureRevision",
    "InvalidArgument",
    "LeaderChanged",
    "LeaseExpired",
    "LeaseNotFound",
    "MemberNotFound",
    "NoLeader",
    "NoSpace",
    "PermissionDenied",
    "RequestTooLarge",
    "TooManyOps",
    "Unavailable",
    "Unimplemented",
    "WatchCanceled",
    "error_from_rpc",
]


class EtcdError(Exception):
    """Base of every error the client raises. `code` is the gRPC status code
    the server answered with (None for errors raised by the client itself)."""

    hint = ""

    def __init__(self, message: str, code: grpc.StatusCode | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


class Unavailable(EtcdError):
    """The server could not serve the request now (stopped, not capable, timed
    out inside Raft). Reads are retried on the next endpoint automatically;
    writes are not, because they may have been applied."""

    hint = "retry later or on another endpoint; a write may or may not have been applied"


class ConnectionFailed(Unavailable):
    """No endpoint accepted a connection within the dial timeout."""

    hint = "check that a server listens at the endpoints (and the TLS settings match)"


class NoLeader(Unavailable):
    """The member has no Raft leader, so it cannot serve linearizable requests."""

    hint = "wait for an election, or use a serializable read"


class LeaderChanged(Unavailable):
    """The leader changed while the request was in flight; it may or may not have been applied."""


class DeadlineExceeded(EtcdError, TimeoutError):
    """The call did not finish within its timeout."""

    hint = "raise the timeout, or check the server's health"


class Compacted(EtcdError):
    """The requested revision has been compacted away.

    `compact_revision` is the oldest revision still available when the server
    said so (watches report it; plain reads do not, and leave it 0)."""

    hint = "read at a newer revision, or restart the watch from compact_revision"

    def __init__(
        self, message: str, code: grpc.StatusCode | None = None, compact_revision: int = 0
    ) -> None:
        super().__init__(message, code)
        self.compact_revision = compact_revision


class FutureRevision(EtcdError):
    """The requested revision is newer than the store's current revision."""


class LeaseNotFound(EtcdError):
    """The lease does not exist: it expired, was revoked, or never existed."""

    hint = "grant a new lease"


class LeaseExpired(LeaseNotFound):
    """A keep-alive found that the lease had already expired (the server answered TTL <= 0)."""


class InvalidArgument(EtcdError):
    """The server rejected the request as malformed (empty key, bad option combination...)."""


class TooManyOps(InvalidArgument):
    """A transaction has more operations than the server's --max-txn-ops."""


class DuplicateKey(InvalidArgument):
    """A transaction writes the same key twice in one branch."""


class RequestTooLarge(InvalidArgument):
    """The request is larger than the server's --max-request-bytes."""


class NoSpace(EtcdError):
    """The backend is over its quota; only reads and deletes are served until it is defragmented
    and the NOSPACE alarm is disarmed."""


class PermissionDenied(EtcdError):
    """The authenticated user may not do this."""


class AuthFailed(EtcdError):
    """Authentication failed (bad user name or password, or an invalid token)."""


class MemberNotFound(EtcdError):
    """No member has the given ID."""


class Unimplemented(EtcdError):
    """The server does not implement this RPC (ketch answers so for APIs it does not have yet)."""

    hint = "use a server that implements this API"


class WatchCanceled(EtcdError):
    """The server canceled a watch (for a reason other than compaction)."""


# One table, keyed by the server's text (as etcd's rpctypes does), for errors
# whose class is finer than their gRPC code.
_BY_MESSAGE: dict[str, type[EtcdError]] = {
    "etcdserver: mvcc: required revision has been compacted": Compacted,
    "etcdserver: mvcc: required revision is a future revision": FutureRevision,
    "etcdserver: mvcc: database space exceeded": NoSpace,
    "etcdserver: requested lease not found": LeaseNotFound,
    # Go's context error: etcd's lock and election servers answer with it
    # (code UNKNOWN) when the call's deadline passes on their side first.
    "context deadline exceeded": DeadlineExceeded,
    "etcdserver: too many operations in txn request": TooManyOps,
    "etcdserver: duplicate key given in txn request": DuplicateKey,
    "etcdserver: request is too large": RequestTooLarge,
    "etcdserver: no leader": NoLeader,
    "etcdserver: leader changed": LeaderChanged,
    "etcdserver: member not found": MemberNotFound,
    "etcdserver: permission denied": PermissionDenied,
    "etcdserver: authentication failed, invalid user ID or password": AuthFailed,
    "etcdserver: invalid auth token": AuthFailed,
    "etcdserver: watch canceled": WatchCanceled,
}

_BY_CODE: dict[grpc.StatusCode, type[EtcdError]] = {
    grpc.StatusCode.UNAVAILABLE: Unavailable,
    grpc.StatusCode.DEADLINE_EXCEEDED: DeadlineExceeded,
    grpc.StatusCode.INVALID_ARGUMENT: InvalidArgument,
    grpc.StatusCode.PERMISSION_DENIED: PermissionDenied,
    grpc.StatusCode.UNAUTHENTICATED: AuthFailed,
    grpc.StatusCode.UNIMPLEMENTED: Unimplemented,
    grpc.StatusCode.RESOURCE_EXHAUSTED: NoSpace,
}


def error_from_rpc(err: grpc.RpcError) -> EtcdError:
    """The exception for a failed gRPC call, keeping the server's message."""
    code: grpc.StatusCode | None = err.code() if hasattr(err, "code") else None
    message = (err.details() if hasattr(err, "details") else None) or str(err)
    cls = _BY_MESSAGE.get(message)
    if cls is None and code is not None:
        cls = _BY_CODE.get(code)
    if cls is None:
        cls = EtcdError
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        # grpc's own text is "Deadline Exceeded"; Go's context says it this way,
        # which is what etcd's tools print.
        message = "context deadline exceeded"
    return cls(message, code)
