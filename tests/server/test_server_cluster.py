"""ketch.server's cluster pieces, without a real engine: joining a running
cluster (against a stand-in for a member's peer port that answers Members),
noticing removal, and binding the peer listeners."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Awaitable
from types import ModuleType
from typing import Any

import grpc.aio
import pytest
from ketch import _core, peer
from ketch._pb import rpc_pb2
from ketch.config import parse

from ..support import free_port

# The contract's method numbers, for an engine built before they landed.
_CONTRACT = {
    "CLUSTER_MEMBER_ADD": 24,
    "CLUSTER_MEMBER_REMOVE": 25,
    "CLUSTER_MEMBER_UPDATE": 26,
    "CLUSTER_MEMBER_PROMOTE": 27,
}


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    for name, number in _CONTRACT.items():
        if not hasattr(_core, name):
            monkeypatch.setattr(_core, name, number, raising=False)
    from ketch import server

    return server


def run(coro: Awaitable[Any]) -> Any:
    async def bounded() -> Any:
        return await asyncio.wait_for(coro, 60)

    return asyncio.run(bounded())


def three(ports: list[int], state: str = "existing", name: str = "c") -> Any:
    cluster = ",".join(f"{n}=http://127.0.0.1:{p}" for n, p in zip("abc", ports, strict=True))
    me = ports["abc".index(name)]
    return parse(
        [
            "--name", name,
            "--initial-cluster", cluster,
            "--initial-cluster-state", state,
            "--initial-advertise-peer-urls", f"http://127.0.0.1:{me}",
            "--listen-peer-urls", f"http://127.0.0.1:{me}",
        ],
        {},
    )  # fmt: skip


def member_list(cluster_id: int, members: list[tuple[int, list[str]]]) -> bytes:
    answer = rpc_pb2.MemberListResponse()
    answer.header.cluster_id = cluster_id
    for member_id, urls in members:
        answer.members.add(ID=member_id, peerURLs=urls)
    return answer.SerializeToString()


class MembersPeer:
    """A stand-in for a running member's peer port: Members answers `answer`."""

    def __init__(self, answer: bytes, port: int) -> None:
        self.answer, self.port = answer, port
        self._server: grpc.aio.Server | None = None

    async def _members(self, request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        return self.answer

    async def start(self) -> None:
        self._server = grpc.aio.server()
        self._server.add_insecure_port(f"127.0.0.1:{self.port}")
        handler = grpc.method_handlers_generic_handler(
            "ketchpeer.Raft", {"Members": grpc.unary_unary_rpc_method_handler(self._members)}
        )
        self._server.add_generic_rpc_handlers([handler])
        await self._server.start()

    async def stop(self) -> None:
        if self._server is not None:
            await self._server.stop(None)


def serving_members(answer: bytes, port: int) -> MembersPeer:
    return MembersPeer(answer, port)


def test_join_learns_ids_from_a_running_member(
    server: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(peer, "MEMBERS_TIMEOUT_SECONDS", 0.5)
    ports = [free_port() for _ in range(3)]
    cfg = three(ports)
    urls = [[f"http://127.0.0.1:{p}"] for p in ports]
    answer = member_list(0x77, [(0xA, urls[0]), (0xB, urls[1]), (0xC, urls[2])])

    async def main() -> Any:
        b = serving_members(answer, ports[1])  # a is down: asked first, skipped
        await b.start()
        try:
            result = await server._join_existing(cfg, None)
            return result
        finally:
            await b.stop()

    member_id, cluster_id, peers = run(main())
    assert (member_id, cluster_id) == (0xC, 0x77)
    assert peers == {0xA: tuple(urls[0]), 0xB: tuple(urls[1]), 0xC: tuple(urls[2])}


@pytest.mark.parametrize(
    ("members", "fragment"),
    [
        ("two", ": member count is unequal"),
        (
            "stranger",
            ": PeerURLs: no match found for existing member (d, [http://10.9.9.9:1]), last resolver error (<nil>)",
        ),
    ],
)
def test_join_refuses_a_cluster_unlike_initial_cluster(
    server: ModuleType, members: str, fragment: str
) -> None:
    ports = [free_port() for _ in range(3)]
    cfg = three(ports)
    urls = [[f"http://127.0.0.1:{p}"] for p in ports]
    listed = [(0xA, urls[0]), (0xB, urls[1])]
    if members == "stranger":
        listed.append((0xD, ["http://10.9.9.9:1"]))
    answer = member_list(0x77, listed)

    async def main() -> None:
        a = serving_members(answer, ports[0])
        await a.start()
        try:
            with pytest.raises(server.ServeError) as e:
                await server._join_existing(cfg, None)
            assert str(e.value).startswith("error validating peerURLs {ClusterID:77 Members:[")
            assert str(e.value).endswith(fragment)
        finally:
            await a.stop()

    run(main())


def test_join_with_no_member_up_fails_in_etcds_words(
    server: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(peer, "MEMBERS_TIMEOUT_SECONDS", 0.2)
    cfg = three([free_port() for _ in range(3)])
    with pytest.raises(server.ServeError) as e:
        run(server._join_existing(cfg, None))
    assert str(e.value) == (
        "cannot fetch cluster info from peer urls: "
        "could not retrieve cluster information from the given URLs"
    )


class StatsEngine:
    def __init__(self, **stats: int) -> None:
        self.member_id = 1
        self.stats_now = dict(stats)

    def stats(self) -> dict[str, int]:
        return dict(self.stats_now)


def test_removal_stops_the_server(
    server: ModuleType, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(server, "MEMBERSHIP_POLL_SECONDS", 0.01)
    engine = StatsEngine(membership_version=1, removed=0)
    stop = server.Stop()
    watch = threading.Thread(target=server._watch_membership, args=(engine, stop), daemon=True)
    watch.start()
    time.sleep(0.05)
    engine.stats_now["membership_version"] = 2
    time.sleep(0.05)
    assert not stop.is_set() and watch.is_alive()
    engine.stats_now["removed"] = 1
    watch.join(5)
    assert not watch.is_alive() and stop.is_set()
    assert "the member has been permanently removed from the cluster" in caplog.text


def test_stop_wakes_a_waiting_watch(server: ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(server, "MEMBERSHIP_POLL_SECONDS", 60)
    stop = server.Stop()
    watch = threading.Thread(
        target=server._watch_membership, args=(StatsEngine(removed=0), stop), daemon=True
    )
    watch.start()
    time.sleep(0.05)
    stop.set()
    watch.join(5)
    assert not watch.is_alive()


def test_peer_port_in_use_fails_like_go(server: ModuleType) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        cfg = three([port, free_port(), free_port()], state="new", name="a")
        with pytest.raises(server.ServeError) as e:
            server._peer_sockets(cfg)
        assert str(e.value) == f"listen tcp 127.0.0.1:{port}: bind: address already in use"
