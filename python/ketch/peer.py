"""Asking a running member for the cluster's member list, before this member
has an engine (joining with --initial-cluster-state existing).

The peer transport itself (Raft messages, snapshots, and the Members call
this asks) is the engine's: rust/src/server/transport.rs, service
`ketchpeer.Raft` on every --listen-peer-urls. This is its one Python client:
a joining member knows neither its own ID nor the cluster's until a member
answers.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from urllib.parse import urlsplit

import grpc
import grpc.aio

__all__ = ["CLUSTER_ID_KEY", "MEMBERS", "PeerError", "fetch_members", "open_channel"]

log = logging.getLogger("ketch.peer")

MEMBERS = "/ketchpeer.Raft/Members"
CLUSTER_ID_KEY = "ketch-cluster-id"
MEMBERS_TIMEOUT_SECONDS = 5.0
_NO_LIMIT = 2**31 - 1  # a member list of any size
CHANNEL_OPTIONS: list[tuple[str, int]] = [
    ("grpc.max_receive_message_length", _NO_LIMIT),
]


class PeerError(Exception):
    """The peers could not be asked (joining a cluster): one line for stderr."""


_Unary = grpc.aio.UnaryUnaryMultiCallable[bytes, bytes]


def open_channel(url: str, credentials: grpc.ChannelCredentials | None) -> grpc.aio.Channel:
    """A channel to one peer URL (https: with the peer TLS credentials)."""
    parts = urlsplit(url)
    if parts.scheme == "https":
        if credentials is None:
            credentials = grpc.ssl_channel_credentials()
        return grpc.aio.secure_channel(parts.netloc, credentials, options=CHANNEL_OPTIONS)
    return grpc.aio.insecure_channel(parts.netloc, options=CHANNEL_OPTIONS)


async def fetch_members(urls: Sequence[str], credentials: grpc.ChannelCredentials | None) -> bytes:
    """The MemberListResponse bytes of the first of these peer URLs that answers
    (etcd's GetClusterFromRemotePeers); PeerError when none does."""
    for url in urls:
        channel = open_channel(url, credentials)
        try:
            stub: _Unary = channel.unary_unary(MEMBERS)
            answer = await stub(b"", timeout=MEMBERS_TIMEOUT_SECONDS, wait_for_ready=True)
            return answer
        except grpc.aio.AioRpcError as e:
            log.warning("could not get cluster response from %s: %s", url, e.details())
        finally:
            await channel.close()
    raise PeerError(
        "cannot fetch cluster info from peer urls: "
        "could not retrieve cluster information from the given URLs"
    )
