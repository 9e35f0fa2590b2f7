"""ketch.peer: the peer transport between two fake engines over real gRPC on 127.0.0.1."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator, Awaitable, Callable

import grpc
import grpc.aio
import pytest
from ketch import peer
from ketch.errors import EngineError
from ketch.peer import PeerService, PeerTransport, fetch_members, open_channel

from ..support import free_port

MEMBER_LIST = 9  # any method number: the fake call answers by number


class FakeEngine:
    """The peer half of ketch._core.Engine: an eventfd, an outbox, and records."""

    def __init__(self, cluster_id: int, members: dict[int, list[str]] | None = None) -> None:
        self.cluster_id = cluster_id
        self._members = members or {}
        self._fd = os.eventfd(0, os.EFD_NONBLOCK)
        self._outbox: list[tuple[int, bool, bytes]] = []
        self.stepped: list[bytes] = []
        self.unreachable: list[int] = []
        self.snapshots: list[tuple[int, bool]] = []
        self.stepped_event = asyncio.Event()

    # engine -> transport
    def push(self, to: int, batch: bytes, is_snapshot: bool = False) -> None:
        self._outbox.append((to, is_snapshot, batch))
        os.eventfd_write(self._fd, 1)

    def peer_fd(self) -> int:
        return self._fd

    def drain_peer(self) -> list[tuple[int, bool, bytes]]:
        try:
            os.eventfd_read(self._fd)
        except BlockingIOError:
            pass
        out, self._outbox = self._outbox, []
        return out

    def step(self, batch: bytes) -> None:
        if batch == b"undecodable":
            raise ValueError("truncated message")
        self.stepped.append(batch)
        self.stepped_event.set()

    def report_unreachable(self, member_id: int) -> None:
        self.unreachable.append(member_id)

    def report_snapshot(self, member_id: int, ok: bool) -> None:
        self.snapshots.append((member_id, ok))

    def members(self) -> list[tuple[int, str, list[str], list[str], bool]]:
        return [(i, f"m{i:x}", urls, [], False) for i, urls in self._members.items()]

    def close(self) -> None:
        os.close(self._fd)


async def engine_call(method: int, request: bytes) -> bytes:
    """The receiving member's EngineBridge.call."""
    if method == MEMBER_LIST:
        return b"member-list"
    raise EngineError("LeaseNotFound", "etcdserver: requested lease not found")


class Peer:
    """A receiving member: PeerService on a gRPC server at 127.0.0.1:port."""

    def __init__(
        self,
        engine: FakeEngine,
        port: int,
        call: Callable[[int, bytes], Awaitable[bytes]] = engine_call,
    ) -> None:
        self.engine = engine
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self._service = PeerService(engine, call, MEMBER_LIST)
        self._server: grpc.aio.Server | None = None

    async def start(self, *extra: grpc.GenericRpcHandler) -> None:
        self._server = grpc.aio.server(options=peer.SERVER_OPTIONS)
        self._server.add_insecure_port(f"127.0.0.1:{self.port}")
        self._server.add_generic_rpc_handlers([*extra, self._service.handler()])
        await self._server.start()

    async def stop(self) -> None:
        if self._server is not None:
            await self._server.stop(None)
            self._server = None


@contextlib.asynccontextmanager
async def linked(
    port: int, *, receiver_cluster: int = 7, sender_cluster: int = 7, **options: int
) -> AsyncIterator[tuple[FakeEngine, Peer, PeerTransport]]:
    """A receiving member at `port` (member 2 in the sender's list) and a
    sending member's transport; both closed after the block."""
    receiver = Peer(FakeEngine(receiver_cluster), port)
    await receiver.start()
    sender = FakeEngine(sender_cluster, {2: [receiver.url]})
    transport = PeerTransport(sender, asyncio.get_running_loop(), **options)
    try:
        yield sender, receiver, transport
    finally:
        await transport.close()
        await receiver.stop()


async def eventually(check: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.01)


@pytest.fixture
def port() -> int:
    return free_port()


def run(coro: Awaitable[None]) -> None:
    asyncio.run(asyncio.wait_for(coro, 60))  # type: ignore[arg-type]


def test_batches_arrive_in_order(port: int) -> None:
    async def main() -> None:
        async with linked(port) as (sender, receiver, _transport):
            want = [b"batch-%d" % i for i in range(2000)]
            for i, b in enumerate(want):
                sender.push(2, b)
                if i % 100 == 0:
                    await asyncio.sleep(0)  # several drains, not one
            await eventually(lambda: len(receiver.engine.stepped) == len(want))
            assert receiver.engine.stepped == want
            assert sender.unreachable == []

    run(main())


def test_unknown_member_is_unreachable(port: int) -> None:
    async def main() -> None:
        sender = FakeEngine(7, {})
        transport = PeerTransport(sender, asyncio.get_running_loop())
        try:
            sender.push(5, b"x")
            await eventually(lambda: sender.unreachable == [5])
        finally:
            await transport.close()

    run(main())


def test_snapshot_goes_in_1_mib_chunks_and_is_reported(port: int) -> None:
    chunks: list[int] = []

    async def count_chunks(requests: AsyncIterator[bytes], context: object) -> bytes:
        whole = b""
        async for chunk in requests:
            chunks.append(len(chunk))
            whole += chunk
        receiver.engine.step(whole)
        return b""

    counting = grpc.method_handlers_generic_handler(
        peer.SERVICE, {"Snapshot": grpc.stream_unary_rpc_method_handler(count_chunks)}
    )
    receiver = Peer(FakeEngine(7), port)

    async def main() -> None:
        await receiver.start(counting)
        sender = FakeEngine(7, {2: [receiver.url]})
        transport = PeerTransport(sender, asyncio.get_running_loop())
        try:
            data = os.urandom(5 * 1024 * 1024 + 123)
            sender.push(2, b"before")
            sender.push(2, data, is_snapshot=True)
            sender.push(2, b"after")
            await eventually(lambda: sender.snapshots == [(2, True)])
            await eventually(lambda: len(receiver.engine.stepped) == 3)
            assert data in receiver.engine.stepped
            assert chunks == [1 << 20] * 5 + [123]
        finally:
            await transport.close()
            await receiver.stop()

    run(main())


def test_snapshot_through_the_service_is_stepped_whole(port: int) -> None:
    async def main() -> None:
        async with linked(port) as (sender, receiver, _transport):
            data = os.urandom(3 * 1024 * 1024 + 5)
            sender.push(2, data, is_snapshot=True)
            await eventually(lambda: sender.snapshots == [(2, True)])
            assert receiver.engine.stepped == [data]

    run(main())


def test_snapshot_to_a_down_peer_is_reported_failed(port: int) -> None:
    async def main() -> None:
        sender = FakeEngine(7, {2: [f"http://127.0.0.1:{port}"]})
        transport = PeerTransport(sender, asyncio.get_running_loop())
        try:
            sender.push(2, b"s" * 100, is_snapshot=True)
            await eventually(lambda: sender.snapshots == [(2, False)])
        finally:
            await transport.close()

    run(main())


def test_reconnects_after_the_peer_restarts(port: int) -> None:
    async def main() -> None:
        async with linked(port) as (sender, receiver, _transport):
            sender.push(2, b"one")
            await eventually(lambda: receiver.engine.stepped == [b"one"])
            await receiver.stop()
            # Down: sends fail, each failure is reported, nothing piles up.
            for _ in range(5):
                sender.push(2, b"lost")
                await asyncio.sleep(0.05)
            await eventually(lambda: 2 in sender.unreachable)
            await receiver.start()
            # Raft keeps sending (heartbeats); once the peer is back they arrive.
            for _ in range(200):
                sender.push(2, b"two")
                await asyncio.sleep(0.02)
                if b"two" in receiver.engine.stepped:
                    break
            assert b"two" in receiver.engine.stepped
            assert receiver.engine.stepped[0] == b"one"

    run(main())


def test_full_queue_drops_and_reports_unreachable(port: int) -> None:
    async def main() -> None:
        async with linked(port, queue_batches=3) as (sender, receiver, transport):
            for i in range(10):  # one drain: the sender task cannot run meanwhile
                sender._outbox.append((2, False, b"%d" % i))
            transport._drain()
            assert sender.unreachable == [2] * 7
            await eventually(lambda: len(receiver.engine.stepped) == 3)
            assert receiver.engine.stepped == [b"0", b"1", b"2"]

    run(main())


def test_other_cluster_is_refused(port: int, caplog: pytest.LogCaptureFixture) -> None:
    async def main() -> None:
        async with linked(port, receiver_cluster=0xBEEF, sender_cluster=0xCAFE) as (
            sender,
            receiver,
            _transport,
        ):
            for _ in range(20):
                sender.push(2, b"x")
                await asyncio.sleep(0.02)
            await eventually(lambda: 2 in sender.unreachable)
            assert receiver.engine.stepped == []
            channel = open_channel(receiver.url, None)
            with pytest.raises(grpc.aio.AioRpcError) as e:
                await channel.unary_unary(peer.MEMBERS)(b"", metadata=(("ketch-cluster-id", "cafe"),))  # type: ignore[arg-type]  # fmt: skip
            assert e.value.code() == grpc.StatusCode.FAILED_PRECONDITION
            assert e.value.details() == "cluster ID mismatch"
            await channel.close()

    run(main())
    assert "request cluster ID mismatch (got cafe want beef)" in caplog.text


def test_undecodable_batch_ends_the_stream_and_the_sender_recovers(port: int) -> None:
    async def main() -> None:
        async with linked(port) as (sender, receiver, _transport):
            sender.push(2, b"undecodable")
            await asyncio.sleep(0.1)
            for _ in range(200):
                sender.push(2, b"fine")
                await asyncio.sleep(0.02)
                if receiver.engine.stepped:
                    break
            assert receiver.engine.stepped[:1] == [b"fine"]

    run(main())


def test_fetch_members_skips_peers_that_are_down(
    port: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(peer, "MEMBERS_TIMEOUT_SECONDS", 0.5)

    async def main() -> None:
        receiver = Peer(FakeEngine(7), port)
        await receiver.start()
        down = f"http://127.0.0.1:{free_port()}"
        try:
            assert await fetch_members([down, receiver.url], None) == b"member-list"
            with pytest.raises(peer.PeerError) as e:
                await fetch_members([down], None)
            assert str(e.value) == (
                "cannot fetch cluster info from peer urls: "
                "could not retrieve cluster information from the given URLs"
            )
        finally:
            await receiver.stop()

    run(main())


def test_removed_member_stops_its_sender(port: int) -> None:
    async def main() -> None:
        async with linked(port) as (sender, receiver, transport):
            sender.push(2, b"a")
            await eventually(lambda: receiver.engine.stepped == [b"a"])
            sender._members = {}
            transport.refresh_members()
            sender.push(2, b"b")
            await eventually(lambda: sender.unreachable == [2])
            assert receiver.engine.stepped == [b"a"]

    run(main())


def test_a_joining_member_answers_peers_it_only_knows_from_the_member_list(port: int) -> None:
    async def main() -> None:
        receiver = Peer(FakeEngine(7), port)
        await receiver.start()
        joiner = FakeEngine(7, {})  # empty log: the engine knows no member yet
        transport = PeerTransport(
            joiner, asyncio.get_running_loop(), known_peers={2: (receiver.url,)}
        )
        try:
            joiner.push(2, b"vote")
            await eventually(lambda: receiver.engine.stepped == [b"vote"])
            # Once the log has named the members, the engine's list is the truth.
            joiner._members = {1: ["http://127.0.0.1:1"], 3: ["http://127.0.0.1:3"]}
            transport.refresh_members()
            joiner.push(2, b"gone")
            await eventually(lambda: joiner.unreachable == [2])
        finally:
            await transport.close()
            await receiver.stop()

    run(main())
