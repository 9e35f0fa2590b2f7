"""The peer port of a running ketch member (rust/src/server/transport.rs),
called as another member would call it, and ketch.peer.fetch_members (a
joining member's one Python call to it). Whole clusters over this transport
are tests/cluster's and tests/e2e/test_peer_tls.py's."""

from __future__ import annotations

import asyncio

import grpc
import pytest
from ketch._pb import rpc_pb2
from ketch.peer import CLUSTER_ID_KEY, MEMBERS, PeerError, fetch_members

from ..support import Server, free_port


def peer_call(
    server: Server, method: str, request: bytes, metadata: tuple[tuple[str, str], ...]
) -> tuple[grpc.StatusCode, str, bytes]:
    with grpc.insecure_channel(f"127.0.0.1:{server.peer_port}") as channel:
        try:
            if method.endswith("/Members"):
                answer = channel.unary_unary(method)(request, metadata=metadata, timeout=10)
            else:
                answer = channel.stream_unary(method)(iter([request]), metadata=metadata, timeout=10)
        except grpc.RpcError as e:
            return e.code(), e.details() or "", b""
    return grpc.StatusCode.OK, "", answer


def cluster_id(server: Server) -> str:
    rc, out, err = server.etcdctl("member", "list", "-w", "json")
    assert rc == 0, err
    import json

    return f"{int(json.loads(out)['header']['cluster_id']):x}"


def test_members_answers_the_member_list(ketch: Server) -> None:
    code, details, answer = peer_call(ketch, MEMBERS, b"", ())
    assert code == grpc.StatusCode.OK, details
    members = rpc_pb2.MemberListResponse.FromString(answer).members
    assert [m.peerURLs for m in members] == [[ketch.peer_url]]


def test_other_cluster_is_refused(ketch: Server) -> None:
    wrong = ((CLUSTER_ID_KEY, "cafe"),)
    for method in (MEMBERS, "/ketchpeer.Raft/Messages", "/ketchpeer.Raft/Snapshot"):
        assert peer_call(ketch, method, b"", wrong)[:2] == (
            grpc.StatusCode.FAILED_PRECONDITION,
            "cluster ID mismatch",
        ), method
    # Only Members may come without one: a joining member does not know it yet.
    assert peer_call(ketch, "/ketchpeer.Raft/Messages", b"", ())[0] == grpc.StatusCode.FAILED_PRECONDITION
    assert "request cluster ID mismatch (got cafe want" in ketch.log_text()


def test_undecodable_batch_ends_that_call_only(ketch: Server) -> None:
    ours = ((CLUSTER_ID_KEY, cluster_id(ketch)),)
    code, details, _ = peer_call(ketch, "/ketchpeer.Raft/Messages", b"\xff\xff\xff", ours)
    assert code == grpc.StatusCode.INVALID_ARGUMENT and details.startswith("bad Raft batch"), details
    code, details, _ = peer_call(ketch, "/ketchpeer.Raft/Snapshot", b"\xff\xff\xff", ours)
    assert code == grpc.StatusCode.INVALID_ARGUMENT and details.startswith("bad snapshot"), details
    assert ketch.etcdctl("put", "k", "still-serving") == (0, "OK\n", "")


def test_fetch_members_skips_peers_that_are_down(ketch: Server) -> None:
    down = f"http://127.0.0.1:{free_port()}"
    answer = asyncio.run(fetch_members([down, ketch.peer_url], None))
    assert [m.peerURLs for m in rpc_pb2.MemberListResponse.FromString(answer).members] == [
        [ketch.peer_url]
    ]
    with pytest.raises(PeerError):
        asyncio.run(fetch_members([down], None))
