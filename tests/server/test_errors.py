"""ketch.errors: one status code for every error the engine can name."""

from __future__ import annotations

import re

import grpc
from ketch.errors import GRPC_STATUS, EngineError, status_of

from ..support import REPO


def engine_error_names() -> set[str]:
    """The names EtcdError::name() returns, read from rust/src/error.rs."""
    source = (REPO / "rust" / "src" / "error.rs").read_text()
    return set(re.findall(r'EtcdError::\w+(?:\(_\))? => "(\w+)"', source))


def test_every_engine_error_has_a_status() -> None:
    names = engine_error_names()
    assert len(names) >= 16
    assert names == set(GRPC_STATUS), "errors.py and rust/src/error.rs are out of step"


def test_codes_are_etcds() -> None:
    c = grpc.StatusCode
    assert GRPC_STATUS["EmptyKey"] == c.INVALID_ARGUMENT
    assert GRPC_STATUS["RequestTooLarge"] == c.INVALID_ARGUMENT
    assert GRPC_STATUS["Compacted"] == GRPC_STATUS["FutureRev"] == c.OUT_OF_RANGE
    assert GRPC_STATUS["NoSpace"] == c.RESOURCE_EXHAUSTED
    assert GRPC_STATUS["LeaseNotFound"] == c.NOT_FOUND
    assert (
        GRPC_STATUS["NoLeader"] == GRPC_STATUS["Timeout"] == GRPC_STATUS["Stopped"] == c.UNAVAILABLE
    )
    assert status_of("SomethingNew") == c.UNKNOWN


def test_cluster_codes_are_etcds() -> None:
    """rpctypes/error.go: ErrGRPCNotLeader, ErrGRPCMember*, ErrGRPCTooManyLearners, ..."""
    c = grpc.StatusCode
    assert GRPC_STATUS["NotLeader"] == c.FAILED_PRECONDITION
    assert GRPC_STATUS["LeaderChanged"] == c.UNAVAILABLE
    assert GRPC_STATUS["TooManyRequests"] == c.RESOURCE_EXHAUSTED
    assert GRPC_STATUS["NotSupportedForLearner"] == c.UNAVAILABLE
    assert GRPC_STATUS["MemberNotFound"] == c.NOT_FOUND
    assert GRPC_STATUS["NotEnoughStartedMembers"] == c.UNKNOWN
    for name in (
        "MemberExists",
        "PeerUrlExists",
        "MemberNotLearner",
        "LearnerNotReady",
        "TooManyLearners",
    ):
        assert GRPC_STATUS[name] == c.FAILED_PRECONDITION, name


def test_engine_error_carries_the_message_verbatim() -> None:
    e = EngineError("Compacted", "etcdserver: mvcc: required revision has been compacted")
    assert (e.name, e.message, str(e)) == (
        "Compacted",
        "etcdserver: mvcc: required revision has been compacted",
        e.message,
    )
