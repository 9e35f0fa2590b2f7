"""The one table from engine error names to gRPC status codes.

The engine names each error (`EtcdError::name()` in rust/src/error.rs) and
carries etcd's exact wire message; this table picks the status code etcd
puts beside that message (etcd's `rpctypes/error.go`). Keep the two in step.
"""

from __future__ import annotations

import grpc

__all__ = ["GRPC_STATUS", "EngineError", "status_of"]

_C = grpc.StatusCode

GRPC_STATUS: dict[str, grpc.StatusCode] = {
    "EmptyKey": _C.INVALID_ARGUMENT,
    "KeyNotFound": _C.INVALID_ARGUMENT,
    "ValueProvided": _C.INVALID_ARGUMENT,
    "LeaseProvided": _C.INVALID_ARGUMENT,
    "TooManyOps": _C.INVALID_ARGUMENT,
    "DuplicateKey": _C.INVALID_ARGUMENT,
    "RequestTooLarge": _C.INVALID_ARGUMENT,
    "Compacted": _C.OUT_OF_RANGE,
    "FutureRev": _C.OUT_OF_RANGE,
    "NoSpace": _C.RESOURCE_EXHAUSTED,
    "Corrupt": _C.DATA_LOSS,
    "BadLeaderTransferee": _C.FAILED_PRECONDITION,
    "LeaseNotFound": _C.NOT_FOUND,
    "LeaseExists": _C.FAILED_PRECONDITION,
    "LeaseTtlTooLarge": _C.OUT_OF_RANGE,
    "NoLeader": _C.UNAVAILABLE,
    "Timeout": _C.UNAVAILABLE,
    "Stopped": _C.UNAVAILABLE,
    # Cluster membership and leadership (etcd's ErrGRPCMember*, ErrGRPCNotLeader, ...).
    "NotLeader": _C.FAILED_PRECONDITION,  # "etcdserver: not leader"
    "LeaderChanged": _C.UNAVAILABLE,  # "etcdserver: leader changed"
    "TooManyRequests": _C.RESOURCE_EXHAUSTED,  # "etcdserver: too many requests"
    "NotSupportedForLearner": _C.UNAVAILABLE,  # "etcdserver: rpc not supported for learner"
    "MemberExists": _C.FAILED_PRECONDITION,  # "etcdserver: member ID already exist"
    "PeerUrlExists": _C.FAILED_PRECONDITION,  # "etcdserver: Peer URLs already exists"
    "MemberBadUrls": _C.INVALID_ARGUMENT,  # "etcdserver: given member URLs are invalid"
    # etcd answers a removed ID as not found too (v3rpc/util.go maps
    # membership.ErrIDRemoved to ErrGRPCMemberNotFound); so does the engine.
    "MemberNotFound": _C.NOT_FOUND,  # "etcdserver: member not found"
    "MemberNotLearner": _C.FAILED_PRECONDITION,  # "etcdserver: can only promote a learner member"
    "LearnerNotReady": _C.FAILED_PRECONDITION,  # "... a learner member which is in sync with leader"
    "TooManyLearners": _C.FAILED_PRECONDITION,  # "etcdserver: too many learner members in cluster"
    # "etcdserver: re-configuration failed due to not enough started members":
    # etcd's util.go maps it to rpctypes.ErrMemberNotEnoughStarted, a plain
    # error rather than a gRPC status, so its clients see codes.Unknown.
    "NotEnoughStartedMembers": _C.UNKNOWN,
    # "etcdserver: request timed out, possibly due to previous leader failure"
    "TimeoutDueToLeaderFail": _C.UNAVAILABLE,
    # "etcdserver: request timed out, leader transfer took too long": not in
    # etcd's v3rpc error map, so grpc-go sends it as codes.Unknown.
    "LeaderTransferTimeout": _C.UNKNOWN,
    # A request whose bytes do not decode. etcd never sees such a request:
    # grpc-go rejects it first with codes.Internal and this same message
    # (grpc/server.go, "grpc: error unmarshalling request: ..."), so that is
    # what a client of real etcd gets.
    # Authenticate while auth is off (always, on ketch): etcd's ErrGRPCAuthNotEnabled.
    "AuthNotEnabled": _C.FAILED_PRECONDITION,
    "BadRequest": _C.INTERNAL,
    "Internal": _C.INTERNAL,
}


def status_of(name: str) -> grpc.StatusCode:
    """The status code for an engine error name; UNKNOWN for a name not in the table."""
    return GRPC_STATUS.get(name, _C.UNKNOWN)


class EngineError(Exception):
    """A request the engine answered with an error: its name and etcd's message."""

    def __init__(self, name: str, message: str) -> None:
        super().__init__(name, message)
        self.name = name
        self.message = message

    def __str__(self) -> str:
        return self.message
