"""When the client tries again, and how long it waits: the rules both faces follow.

A call goes to the current endpoint if it is connected, else to the next
connected one. A call that failed after it was sent is sent again (to the
next endpoint) only when it is idempotent (reads, status and list calls) and
the answer said nothing about the request itself (UNAVAILABLE: that member
or its Raft group could not serve it now). Writes are never sent twice. A
call refused for its auth token is sent once more with a new token: the
server refused it before applying it.
"""

from __future__ import annotations

import time
from types import EllipsisType

import grpc

from .auth import RENEW_TOKEN

__all__ = ["DEFAULT_ENDPOINT", "RETRY_PAUSE", "Timeout", "deadline", "left", "may_retry", "renew_token", "retryable"]

DEFAULT_ENDPOINT = "127.0.0.1:2379"
# Between rounds over every endpoint when all were unreachable, and before
# a watch or keep-alive stream is opened again after it broke.
RETRY_PAUSE = 0.05
# A call's timeout in seconds; None waits forever; ... (the default) means the client's.
Timeout = float | None | EllipsisType


def retryable(err: grpc.RpcError) -> bool:
    """The endpoint could not serve the call now: another may (idempotent calls and streams)."""
    return bool(err.code() == grpc.StatusCode.UNAVAILABLE)


def renew_token(err: grpc.RpcError) -> bool:
    """The server no longer takes the call's token: get a new one and send the call again."""
    return err.details() in RENEW_TOKEN


def deadline(timeout: Timeout, default: float | None) -> float | None:
    """The monotonic time a call must end by (None: never)."""
    t = default if timeout is ... else timeout
    return None if t is None else time.monotonic() + float(t)


def left(deadline: float | None) -> float | None:
    """Seconds until `deadline` (never negative), None without one."""
    return None if deadline is None else max(0.0, deadline - time.monotonic())


def may_retry(deadline: float | None) -> bool:
    """Whether a pause and another round still fit before `deadline`."""
    return deadline is None or time.monotonic() + RETRY_PAUSE < deadline
