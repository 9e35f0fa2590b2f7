"""How a failed gRPC call becomes a ketch.client error: by etcd's message first."""

from __future__ import annotations

import grpc
from ketch.client.errors import DeadlineExceeded, error_from_rpc


class _Failed(grpc.RpcError):
    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        self._code, self._details = code, details

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._details


def test_a_server_side_deadline_is_a_deadline_whichever_side_noticed_first() -> None:
    # etcd's lock server answers UNKNOWN "context deadline exceeded" when its
    # side of the deadline passes before the client's.
    for code, details in (
        (grpc.StatusCode.UNKNOWN, "context deadline exceeded"),
        (grpc.StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded"),
    ):
        err = error_from_rpc(_Failed(code, details))
        assert isinstance(err, DeadlineExceeded)
        assert str(err).startswith("context deadline exceeded")
