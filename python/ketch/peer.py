"""The peer transport: Raft traffic between members, on ketch's own gRPC service.

Not etcd's rafthttp: members of a ketch cluster talk only to each other, so
the wire is ketch's. Service `ketchpeer.Raft` on every --listen-peer-urls,
all methods raw bytes (no protobuf in Python):

- Messages  stream-unary: each request is one batch from the engine's
            drain_peer(), handed to the receiver's engine.step() as is.
- Snapshot  stream-unary: one snapshot batch in 1 MiB chunks, joined and
            stepped whole. Its own call, so heartbeats never queue behind it.
- Members   unary: the engine's MemberListResponse (a joining member learns
            its ID and the cluster's ID from it before it has an engine).

Every call carries the sender's cluster ID (`ketch-cluster-id`, hex); a
member of another cluster is refused with FAILED_PRECONDITION, as etcd
refuses a peer whose X-Etcd-Cluster-ID differs. Members alone may come
without it: the joiner does not know the ID yet.

Sending (PeerTransport) is one `_Sender` per peer: a task writing batches
from a bounded queue onto one long-lived Messages call. When that call fails
or the queue is full the batch is dropped and the engine told
`report_unreachable`: Raft retransmits what matters, which is what etcd's
streamWriter does too. Batches are never parsed or copied here: every write
makes one batch per follower, so this is a hot path.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Sequence
from typing import Any, Protocol
from urllib.parse import urlsplit

import grpc
import grpc.aio

from .errors import EngineError

__all__ = [
    "CLUSTER_ID_KEY",
    "PeerEngine",
    "PeerError",
    "PeerService",
    "PeerTransport",
    "fetch_members",
    "open_channel",
]

log = logging.getLogger("ketch.peer")

SERVICE = "ketchpeer.Raft"
MESSAGES = f"/{SERVICE}/Messages"
SNAPSHOT = f"/{SERVICE}/Snapshot"
MEMBERS = f"/{SERVICE}/Members"

CLUSTER_ID_KEY = "ketch-cluster-id"

SNAPSHOT_CHUNK_BYTES = 1 << 20
# Batches waiting for one peer. A follower this far behind is beyond what a
# queue helps with; Raft's probing and retransmission take over.
SEND_QUEUE_BATCHES = 4096
RECONNECT_MIN_SECONDS = 0.05
RECONNECT_MAX_SECONDS = 1.0
MEMBERS_TIMEOUT_SECONDS = 5.0
# Batches carry whole log entries (up to --max-request-bytes each) and
# snapshots their chunks: no gRPC size limit between members.
_NO_LIMIT = 2**31 - 1
CHANNEL_OPTIONS: list[tuple[str, int]] = [
    ("grpc.max_send_message_length", _NO_LIMIT),
    ("grpc.max_receive_message_length", _NO_LIMIT),
    # A peer that vanished without a FIN (power loss, partition) shows up
    # within seconds instead of after TCP's retransmission timeout.
    ("grpc.keepalive_time_ms", 5000),
    ("grpc.keepalive_timeout_ms", 5000),
    ("grpc.keepalive_permit_without_calls", 1),
    # Reconnect quickly: a restarted member should hear from its leader soon.
    ("grpc.initial_reconnect_backoff_ms", 50),
    ("grpc.max_reconnect_backoff_ms", 1000),
]
SERVER_OPTIONS: list[tuple[str, int]] = [
    ("grpc.max_send_message_length", _NO_LIMIT),
    ("grpc.max_receive_message_length", _NO_LIMIT),
    ("grpc.so_reuseport", 0),
    ("grpc.http2.min_recv_ping_interval_without_data_ms", 1000),
    ("grpc.keepalive_permit_without_calls", 1),
]


class PeerError(Exception):
    """The peers could not be asked (joining a cluster): one line for stderr."""


class PeerEngine(Protocol):
    """What the transport needs of `ketch._core.Engine` (tests pass a fake)."""

    @property
    def cluster_id(self) -> int: ...
    def peer_fd(self) -> int: ...
    def drain_peer(self) -> list[tuple[int, bool, bytes]]: ...
    def step(self, batch: bytes) -> None: ...
    def report_unreachable(self, member_id: int) -> None: ...
    def report_snapshot(self, member_id: int, ok: bool) -> None: ...
    def members(self) -> list[tuple[int, str, list[str], list[str], bool]]: ...


# Raw bytes both ways: no (de)serializers on any peer call.
_Unary = grpc.aio.UnaryUnaryMultiCallable[bytes, bytes]
_Stream = grpc.aio.StreamUnaryMultiCallable[bytes, bytes]


def open_channel(url: str, credentials: grpc.ChannelCredentials | None) -> grpc.aio.Channel:
    """A channel to one peer URL (https: with the peer TLS credentials)."""
    parts = urlsplit(url)
    if parts.scheme == "https":
        if credentials is None:
            credentials = grpc.ssl_channel_credentials()
        return grpc.aio.secure_channel(parts.netloc, credentials, options=CHANNEL_OPTIONS)
    return grpc.aio.insecure_channel(parts.netloc, options=CHANNEL_OPTIONS)


def _cluster_metadata(cluster_id: int) -> tuple[tuple[str, str], ...]:
    return ((CLUSTER_ID_KEY, f"{cluster_id:x}"),)


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


# --- receiving ----------------------------------------------------------------

_Call = Callable[[int, bytes], Awaitable[bytes]]


class PeerService:
    """The `ketchpeer.Raft` handlers over one engine.

    call runs a request on this member's engine (EngineBridge.call);
    member_list is the engine's method number for Cluster.MemberList.
    """

    def __init__(
        self,
        engine: PeerEngine,
        call: _Call,
        member_list: int,
    ) -> None:
        self._engine = engine
        self._call = call
        self._member_list = member_list
        self._cluster_id = f"{engine.cluster_id:x}"
        self._snapshots_received = 0

    def handler(self) -> grpc.GenericRpcHandler:
        return grpc.method_handlers_generic_handler(
            SERVICE,
            {
                "Messages": grpc.stream_unary_rpc_method_handler(self._messages),
                "Snapshot": grpc.stream_unary_rpc_method_handler(self._snapshot),
                "Members": grpc.unary_unary_rpc_method_handler(self._members),
            },
        )

    async def _check_cluster(
        self, context: grpc.aio.ServicerContext, required: bool = True
    ) -> dict[str, str]:
        metadata = {str(k): str(v) for k, v in context.invocation_metadata() or ()}
        theirs = metadata.get(CLUSTER_ID_KEY)
        if theirs is None and not required:
            return metadata
        if theirs != self._cluster_id:
            log.warning("request cluster ID mismatch (got %s want %s)", theirs, self._cluster_id)
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, "cluster ID mismatch")
        return metadata

    async def _messages(
        self, requests: AsyncIterator[bytes], context: grpc.aio.ServicerContext
    ) -> bytes:
        await self._check_cluster(context)
        step = self._engine.step
        async for batch in requests:
            try:
                step(batch)
            except ValueError as e:
                log.warning("dropping a peer stream: undecodable Raft batch: %s", e)
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"bad Raft batch: {e}")
        return b""

    async def _snapshot(
        self, chunks: AsyncIterator[bytes], context: grpc.aio.ServicerContext
    ) -> bytes:
        await self._check_cluster(context)
        whole = bytearray()
        async for chunk in chunks:
            whole += chunk
        try:
            self._engine.step(bytes(whole))
        except ValueError as e:
            log.warning("refusing a snapshot from a peer: %s", e)
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"bad snapshot: {e}")
        self._snapshots_received += 1
        log.info("received a snapshot from a peer (%d bytes)", len(whole))
        return b""

    async def _members(self, request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        await self._check_cluster(context, required=False)
        return await self._run(self._call, self._member_list, b"", context)

    @staticmethod
    async def _run(
        call: _Call, method: int, body: bytes, context: grpc.aio.ServicerContext
    ) -> bytes:
        try:
            return await call(method, body)
        except EngineError as e:
            await _abort_with(context, e)
            raise  # abort() raises; this is for type checkers


async def _abort_with(context: grpc.aio.ServicerContext, e: EngineError) -> None:
    # Only the member list is asked of the engine here: a joining member
    # tries the next peer on any failure.
    await context.abort(grpc.StatusCode.UNAVAILABLE, e.message)


# --- sending ------------------------------------------------------------------


class PeerTransport:
    """Carries the engine's outbound Raft batches to the other members.

    known_peers: peer URLs by member ID to use until the engine's own member
    list names another member: a member joining a running cluster starts
    with an empty log, so it knows the others only from the member list it
    fetched (etcd's "remotes"), and must answer the leader before it can
    learn them from the log.
    """

    def __init__(
        self,
        engine: PeerEngine,
        loop: asyncio.AbstractEventLoop,
        credentials: grpc.ChannelCredentials | None = None,
        *,
        queue_batches: int = SEND_QUEUE_BATCHES,
        known_peers: dict[int, tuple[str, ...]] | None = None,
    ) -> None:
        self._engine = engine
        self._loop = loop
        self._credentials = credentials
        self._queue_batches = queue_batches
        self._cluster_id = engine.cluster_id
        self._metadata = _cluster_metadata(engine.cluster_id)
        self._senders: dict[int, _Sender] = {}
        self._urls: dict[int, tuple[str, ...]] = {}
        self._known_peers = dict(known_peers or {})
        self._closed = False
        self.refresh_members()
        self._fd = engine.peer_fd()
        loop.add_reader(self._fd, self._drain)

    def _drain(self) -> None:
        senders = self._senders
        for to, is_snapshot, batch in self._engine.drain_peer():
            sender = senders.get(to) or self._new_sender(to)
            if sender is None:
                self._engine.report_unreachable(to)
            elif is_snapshot:
                sender.send_snapshot(batch)
            else:
                sender.send(batch)

    def _new_sender(self, member_id: int) -> _Sender | None:
        if self._closed:
            return None
        urls = self._urls.get(member_id)
        if urls is None:
            self.refresh_members()  # a member added since we last looked
            urls = self._urls.get(member_id)
            if urls is None:
                return None
        sender = _Sender(self, member_id, urls)
        self._senders[member_id] = sender
        return sender

    def refresh_members(self) -> None:
        """Take the peer URLs from the engine's member list again (call when
        stats()["membership_version"] changed): a removed member's sender
        stops, an updated member's reconnects to its new URLs."""
        by_id = {m[0]: tuple(m[2]) for m in self._engine.members()}
        if self._known_peers:
            if len(by_id) > 1:
                self._known_peers = {}  # the log has told the engine who is in the cluster
            else:
                by_id = {**self._known_peers, **by_id}
        self._urls = by_id
        for member_id, sender in list(self._senders.items()):
            urls = self._urls.get(member_id)
            if urls is None:
                del self._senders[member_id]
                sender.close()
            elif urls != sender.urls:
                sender.set_urls(urls)

    async def close(self) -> None:
        """Stop sending: unwatch the engine, cancel every call and task."""
        if self._closed:
            return
        self._closed = True
        self._loop.remove_reader(self._fd)
        senders = list(self._senders.values())
        self._senders.clear()
        for sender in senders:
            sender.close()
        await asyncio.gather(*(s.closed() for s in senders), return_exceptions=True)


class _Sender:
    """One peer: a task moving queued batches onto a long-lived Messages call."""

    def __init__(self, transport: PeerTransport, member_id: int, urls: tuple[str, ...]) -> None:
        self._transport = transport
        self._engine = transport._engine
        self._report_unreachable = transport._engine.report_unreachable
        self.member_id = member_id
        self.urls = urls
        self._url_index = 0
        self._channel: grpc.aio.Channel | None = None
        self._old_channels: list[grpc.aio.Channel] = []
        self._queue: asyncio.Queue[bytes] = asyncio.Queue(transport._queue_batches)
        self._put = self._queue.put_nowait
        # While the peer is down, batches are dropped at once (and reported)
        # rather than queued to go out stale when it is back.
        self._down = False
        self._active = True  # for logging changes only
        self._tasks: set[asyncio.Task[None]] = set()
        self._spawn(self._run())

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def channel(self) -> grpc.aio.Channel:
        if self._channel is None:
            url = self.urls[self._url_index % len(self.urls)]
            self._channel = open_channel(url, self._transport._credentials)
        return self._channel

    def set_urls(self, urls: tuple[str, ...]) -> None:
        self.urls = urls
        self._url_index = 0
        self._drop_channel()

    def _drop_channel(self) -> None:
        if self._channel is not None:
            self._old_channels.append(self._channel)
            self._channel = None

    def send(self, batch: bytes) -> None:
        if self._down:
            self._report_unreachable(self.member_id)
            return
        try:
            self._put(batch)
        except asyncio.QueueFull:
            self._report_unreachable(self.member_id)

    def send_snapshot(self, batch: bytes) -> None:
        self._spawn(self._send_snapshot(batch))

    async def _run(self) -> None:
        queue = self._queue
        delay = RECONNECT_MIN_SECONDS
        while True:
            await self._close_old_channels()
            stub: _Stream = self.channel().stream_unary(MESSAGES)
            call = stub(metadata=self._transport._metadata)
            write = call.write
            try:
                batch = await queue.get()
                while True:
                    await write(batch)
                    self._became_active()
                    delay = RECONNECT_MIN_SECONDS
                    batch = queue.get_nowait() if queue.qsize() else await queue.get()
            except grpc.aio.AioRpcError as e:
                self._became_inactive(e.details() or str(e.code()))
            except asyncio.InvalidStateError:
                # The call ended while idle; its status says why.
                self._became_inactive(await call.details() or str(await call.code()))
            finally:
                call.cancel()
            # The batch in hand and everything queued is lost with the call.
            self._down = True
            self._report_unreachable(self.member_id)
            while queue.qsize():
                queue.get_nowait()
            if len(self.urls) > 1:
                self._url_index += 1
                self._drop_channel()
            await asyncio.sleep(delay)
            delay = min(delay * 2, RECONNECT_MAX_SECONDS)
            self._down = False

    def _became_active(self) -> None:
        if not self._active:
            self._active = True
            log.info("peer %x became active", self.member_id)

    def _became_inactive(self, why: str) -> None:
        if self._active:
            self._active = False
            log.warning(
                "peer %x became inactive (message send to peer failed): %s", self.member_id, why
            )

    async def _send_snapshot(self, data: bytes) -> None:
        ok = False
        stub: _Stream = self.channel().stream_unary(SNAPSHOT)
        call = stub(metadata=self._transport._metadata)
        try:
            for offset in range(0, len(data), SNAPSHOT_CHUNK_BYTES):
                await call.write(data[offset : offset + SNAPSHOT_CHUNK_BYTES])
            await call.done_writing()
            await call
            ok = True
            log.info("sent a snapshot to peer %x (%d bytes)", self.member_id, len(data))
        except (grpc.aio.AioRpcError, asyncio.InvalidStateError) as e:
            details = e.details() if isinstance(e, grpc.aio.AioRpcError) else str(e)
            log.warning("sending a snapshot to peer %x failed: %s", self.member_id, details)
        finally:
            call.cancel()
            if not self._transport._closed:
                self._engine.report_snapshot(self.member_id, ok)

    async def _close_old_channels(self) -> None:
        while self._old_channels:
            await self._old_channels.pop().close()

    def close(self) -> None:
        for task in self._tasks:
            task.cancel()

    async def closed(self) -> None:
        """Wait for the tasks close() cancelled, then close the channels."""
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._drop_channel()
        await self._close_old_channels()
