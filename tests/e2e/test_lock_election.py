"""etcd's server-side Lock and Election services (v3lockpb, v3electionpb),
called over raw gRPC against etcd and ketch alike."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from ketch._pb import rpc_pb2, v3election_pb2, v3lock_pb2

from ..support import Server

KINDS = ["etcd", "ketch"]


class Stub:
    """Raw calls with the generated messages: (status code, details, response)."""

    def __init__(self, server: Server) -> None:
        self.channel = grpc.insecure_channel(f"127.0.0.1:{server.client_port}")

    def call(self, method: str, request: Any, reply: Any, timeout: float = 10) -> tuple[grpc.StatusCode, str, Any]:
        fn = self.channel.unary_unary(
            method, request_serializer=type(request).SerializeToString, response_deserializer=reply.FromString
        )
        try:
            return grpc.StatusCode.OK, "", fn(request, timeout=timeout)
        except grpc.RpcError as e:
            return e.code(), e.details() or "", None

    def grant(self, ttl: int = 60) -> int:
        code, details, r = self.call(
            "/etcdserverpb.Lease/LeaseGrant", rpc_pb2.LeaseGrantRequest(TTL=ttl), rpc_pb2.LeaseGrantResponse
        )
        assert code == grpc.StatusCode.OK, details
        return int(r.ID)

    def lock(self, name: bytes, lease: int, timeout: float = 10) -> tuple[grpc.StatusCode, str, Any]:
        return self.call(
            "/v3lockpb.Lock/Lock", v3lock_pb2.LockRequest(name=name, lease=lease), v3lock_pb2.LockResponse, timeout
        )

    def unlock(self, key: bytes) -> tuple[grpc.StatusCode, str, Any]:
        return self.call("/v3lockpb.Lock/Unlock", v3lock_pb2.UnlockRequest(key=key), v3lock_pb2.UnlockResponse)

    def election(self, method: str, request: Any, reply: Any) -> tuple[grpc.StatusCode, str, Any]:
        return self.call(f"/v3electionpb.Election/{method}", request, reply)


@pytest.fixture(params=KINDS)
def stub(request: pytest.FixtureRequest, make_server) -> Iterator[Stub]:
    s = Stub(make_server(request.param))
    yield s
    s.channel.close()


def test_lock_waits_for_the_holder(stub: Stub) -> None:
    first, second = stub.grant(), stub.grant()
    code, _, held = stub.lock(b"job", first)
    assert code == grpc.StatusCode.OK and held.key == b"job/%x" % first
    assert held.header.revision > 0
    got: list[tuple[grpc.StatusCode, str, Any]] = []
    waiter = threading.Thread(target=lambda: got.append(stub.lock(b"job", second)))
    waiter.start()
    time.sleep(0.5)
    assert got == []  # still waiting for the first holder
    assert stub.unlock(held.key)[0] == grpc.StatusCode.OK
    waiter.join(10)
    assert got and got[0][0] == grpc.StatusCode.OK and got[0][2].key == b"job/%x" % second
    # Locking again with the lease that holds it answers at once.
    code, _, again = stub.lock(b"job", second)
    assert code == grpc.StatusCode.OK and again.key == got[0][2].key


def test_a_lock_gone_with_its_lease_lets_the_next_in(stub: Stub) -> None:
    short, other = stub.grant(2), stub.grant()
    assert stub.lock(b"l", short)[0] == grpc.StatusCode.OK
    start = time.monotonic()
    code, _, held = stub.lock(b"l", other, timeout=20)
    assert code == grpc.StatusCode.OK and held.key == b"l/%x" % other
    assert time.monotonic() - start > 0.5  # it waited for the lease to expire


def test_lock_on_an_unknown_lease_is_etcds_error(stub: Stub) -> None:
    # etcd's lock server runs clientv3, which turns the status into a plain
    # error: the code is lost, the words are kept.
    assert stub.lock(b"x", 0x1234)[:2] == (grpc.StatusCode.UNKNOWN, "etcdserver: requested lease not found")


def test_campaign_proclaim_observe_resign(stub: Stub) -> None:
    e = v3election_pb2
    assert stub.election("Leader", e.LeaderRequest(name=b"e"), e.LeaderResponse)[:2] == (
        grpc.StatusCode.UNKNOWN,
        "election: no leader",
    )
    lease = stub.grant()
    code, details, won = stub.election(
        "Campaign", e.CampaignRequest(name=b"e", lease=lease, value=b"v1"), e.CampaignResponse
    )
    assert code == grpc.StatusCode.OK, details
    leader = won.leader
    assert (leader.name, leader.key, leader.lease) == (b"e", b"e/%x" % lease, lease)
    code, _, now = stub.election("Leader", e.LeaderRequest(name=b"e"), e.LeaderResponse)
    assert code == grpc.StatusCode.OK and now.kv.value == b"v1" and now.kv.create_revision == leader.rev

    observer = stub.channel.unary_stream(
        "/v3electionpb.Election/Observe",
        request_serializer=e.LeaderRequest.SerializeToString,
        response_deserializer=e.LeaderResponse.FromString,
    )(e.LeaderRequest(name=b"e"), timeout=10)
    seen = [next(observer).kv.value]
    ok = stub.election("Proclaim", e.ProclaimRequest(leader=leader, value=b"v2"), e.ProclaimResponse)
    assert ok[0] == grpc.StatusCode.OK
    seen.append(next(observer).kv.value)
    assert seen == [b"v1", b"v2"]
    observer.cancel()

    stale = e.LeaderKey(name=leader.name, key=leader.key, rev=leader.rev + 100, lease=lease)
    assert stub.election("Proclaim", e.ProclaimRequest(leader=stale, value=b"x"), e.ProclaimResponse)[:2] == (
        grpc.StatusCode.UNKNOWN,
        "election: not leader",
    )
    assert stub.election("Proclaim", e.ProclaimRequest(value=b"x"), e.ProclaimResponse)[:2] == (
        grpc.StatusCode.UNKNOWN,
        '"leader" field must be provided',
    )
    assert stub.election("Resign", e.ResignRequest(leader=leader), e.ResignResponse)[0] == grpc.StatusCode.OK
    assert stub.election("Leader", e.LeaderRequest(name=b"e"), e.LeaderResponse)[1] == "election: no leader"
