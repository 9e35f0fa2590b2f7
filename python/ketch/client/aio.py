"""`ketch.AsyncClient`: the asyncio twin of `ketch.Client`, over grpc.aio.

    async with AsyncClient("127.0.0.1:2379") as c:
        await c.put("k", "v")
        async with c.lease(ttl=10) as lease:
            await c.put("me", "here", lease=lease.id)
        async with await c.watch("k") as w:
            async for resp in w: ...

Same methods, arguments, results, errors, fail-over and retry policy as the
blocking client; watches and keep-alives run on the event loop instead of threads.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar

import grpc
import grpc.aio
from google.protobuf.message import Message

from .._pb import rpc_pb2
from . import requests as rq
from .auth import AUTH_NOT_ENABLED, AUTHENTICATE_PATH, RENEW_TOKEN, Metadata, credentials
from .channels import use_tls
from .endpoints import Endpoint, EndpointRing, PathLike, TLSConfig, channel_options, parse_endpoints
from .errors import (
    Compacted,
    ConnectionFailed,
    DeadlineExceeded,
    EtcdError,
    LeaseExpired,
    LeaseNotFound,
    WatchCanceled,
    error_from_rpc,
)
from .requests import Bytes, Compare, Op, SortOrder, SortTarget
from .results import (
    DeleteResult,
    GetResult,
    Header,
    KeepAliveResult,
    KeyValue,
    LeaseGrant,
    LeaseInfo,
    LeaseList,
    MemberList,
    PutResult,
    Status,
    TxnResult,
    WatchResponse,
)
from .sync import (
    ALARM,
    COMPACT,
    DEFAULT_ENDPOINT,
    DEFRAGMENT,
    DELETE,
    HASH_KV,
    KEEPALIVE_PATH,
    LEASE_GRANT,
    LEASE_LEASES,
    LEASE_REVOKE,
    LEASE_TTL,
    MEMBER_ADD,
    MEMBER_LIST,
    MEMBER_PROMOTE,
    MEMBER_REMOVE,
    MEMBER_UPDATE,
    MOVE_LEADER,
    PUT,
    RANGE,
    RETRY_PAUSE,
    SNAPSHOT_PATH,
    STATUS,
    TXN,
    WATCH_PATH,
    Timeout,
    _retryable,
    _serialize,
)  # fmt: skip

if TYPE_CHECKING:
    from typing_extensions import Self  # typing.Self needs 3.11; only the checker reads it

__all__ = ["AsyncClient", "AsyncKeepAlive", "AsyncLease", "AsyncWatch"]

M = TypeVar("M", bound=Message)
_READY = grpc.ChannelConnectivity.READY
_FAILURE = grpc.ChannelConnectivity.TRANSIENT_FAILURE


async def _wait_ready(channel: grpc.aio.Channel, timeout: float, fail_fast: bool) -> bool:
    async def until_ready() -> bool:
        state = channel.get_state(try_to_connect=True)
        while state is not _READY:
            if fail_fast and state is _FAILURE:
                return False
            await channel.wait_for_state_change(state)
            state = channel.get_state(try_to_connect=True)
        return True

    try:
        return await asyncio.wait_for(until_ready(), timeout)
    except asyncio.TimeoutError:
        return False


class AsyncClient:
    """See `ketch.Client`: the same arguments and methods, as coroutines."""

    def __init__(
        self,
        endpoints: str | Sequence[str] = DEFAULT_ENDPOINT,
        *,
        timeout: float | None = 5.0,
        dial_timeout: float = 2.0,
        ca_cert: PathLike | None = None,
        cert: PathLike | None = None,
        key: PathLike | None = None,
        server_name: str | None = None,
        user: str | None = None,
        password: str | None = None,
    ) -> None:
        self._ring = EndpointRing(parse_endpoints(endpoints))
        any_tls = ca_cert is not None or cert is not None or key is not None or server_name
        self._tls = TLSConfig(ca_cert, cert, key, server_name) if any_tls else None
        self._auth = credentials(user, password)
        self._auth_lock: asyncio.Lock | None = None  # made on first use, inside the loop
        self.timeout = timeout
        self.dial_timeout = dial_timeout
        self._channels: dict[Endpoint, grpc.aio.Channel] = {}
        self._closed = False

    @property
    def endpoints(self) -> list[str]:
        return [ep.text for ep in self._ring.endpoints]

    def _channel(self, ep: Endpoint) -> grpc.aio.Channel:
        if self._closed:
            raise EtcdError("the client is closed")
        ch = self._channels.get(ep)
        if ch is None:
            options = channel_options(self._tls)
            if use_tls(ep, self._tls):
                creds = (self._tls or TLSConfig()).credentials()
                ch = grpc.aio.secure_channel(ep.target, creds, options=options)
            else:
                ch = grpc.aio.insecure_channel(ep.target, options=options)
            self._channels[ep] = ch
        return ch

    def _deadline(self, timeout: Timeout) -> float | None:
        t = self.timeout if timeout is ... else timeout
        return None if t is None else time.monotonic() + float(t)

    def _wait_for(self, deadline: float | None) -> float:
        if deadline is None:
            return self.dial_timeout
        return min(self.dial_timeout, max(0.0, deadline - time.monotonic()))

    async def connect(
        self, deadline: float | None, endpoint: str | None = None
    ) -> tuple[Endpoint, grpc.aio.Channel]:
        """A connected channel (see `Client.connect`), this client's user authenticated."""
        ep, ch = await self._connect(deadline, endpoint)
        if self._auth is not None and not self._auth.known:
            await self._authenticate(ch, deadline)
        return ep, ch

    def metadata(self) -> Metadata:
        """The gRPC metadata every call carries: the user's token, if the server gave one."""
        return () if self._auth is None else self._auth.metadata()

    async def _authenticate(self, ch: grpc.aio.Channel, deadline: float | None) -> None:
        auth = self._auth
        assert auth is not None
        if self._auth_lock is None:
            self._auth_lock = asyncio.Lock()
        async with self._auth_lock:
            if auth.known:
                return
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            stub = ch.unary_unary(
                AUTHENTICATE_PATH,
                request_serializer=_serialize,
                response_deserializer=rpc_pb2.AuthenticateResponse.FromString,
            )
            try:
                auth.accept(await stub(auth.request(), timeout=left))
            except grpc.RpcError as e:
                if e.details() != AUTH_NOT_ENABLED:
                    raise error_from_rpc(e) from None
                auth.auth_not_enabled()

    async def _connect(
        self, deadline: float | None, endpoint: str | None
    ) -> tuple[Endpoint, grpc.aio.Channel]:
        candidates = [self._ring.find(endpoint)] if endpoint else self._ring.order()
        fail_fast = len(candidates) > 1
        tried: list[str] = []
        for ep in candidates:
            ch = self._channel(ep)
            if await _wait_ready(ch, self._wait_for(deadline), fail_fast):
                return ep, ch
            tried.append(ep.text)
            if not endpoint:
                self._ring.fail(ep)
        if fail_fast:
            ch = self._channel(candidates[0])
            if await _wait_ready(ch, self._wait_for(deadline), False):
                return candidates[0], ch
        raise ConnectionFailed(
            f"could not connect to {', '.join(tried)} within {self.dial_timeout}s "
            "(is a server listening there, with matching TLS settings?)",
            grpc.StatusCode.UNAVAILABLE,
        )

    async def call(
        self,
        method: tuple[str, Callable[[bytes], M]],
        request: Message,
        *,
        idempotent: bool,
        timeout: Timeout = ...,
        endpoint: str | None = None,
    ) -> M:
        path, parse = method
        deadline = self._deadline(timeout)
        token_renewed = False
        while True:
            try:
                ep, ch = await self.connect(deadline, endpoint)
            except ConnectionFailed:
                if deadline is not None and time.monotonic() >= deadline:
                    raise DeadlineExceeded(
                        "context deadline exceeded", grpc.StatusCode.DEADLINE_EXCEEDED
                    ) from None
                raise
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            stub = ch.unary_unary(path, request_serializer=_serialize, response_deserializer=parse)
            try:
                answer = await stub(request, timeout=left, metadata=self.metadata())
                return answer  # type: ignore[no-any-return]
            except grpc.RpcError as e:
                if self._auth is not None and not token_renewed and e.details() in RENEW_TOKEN:
                    # Refused before it was applied: safe to send again, once.
                    self._auth.forget()
                    token_renewed = True
                    continue
                if not (idempotent and _retryable(e)):
                    raise error_from_rpc(e) from None
                if deadline is not None and time.monotonic() + RETRY_PAUSE >= deadline:
                    raise error_from_rpc(e) from None
                if not endpoint:
                    self._ring.fail(ep)
                await asyncio.sleep(RETRY_PAUSE)

    async def close(self) -> None:
        self._closed = True
        channels, self._channels = list(self._channels.values()), {}
        for ch in channels:
            await ch.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, t: type[BaseException] | None, v: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    # -- KV ---------------------------------------------------------------

    async def get(
        self,
        key: Bytes,
        range_end: Bytes | None = None,
        *,
        prefix: bool = False,
        from_key: bool = False,
        revision: int = 0,
        limit: int = 0,
        sort_order: SortOrder = "none",
        sort_target: SortTarget = "key",
        serializable: bool = False,
        keys_only: bool = False,
        count_only: bool = False,
        min_mod_revision: int = 0,
        max_mod_revision: int = 0,
        min_create_revision: int = 0,
        max_create_revision: int = 0,
        timeout: Timeout = ...,
    ) -> GetResult:
        req = rq.range_request(
            key, range_end, prefix=prefix, from_key=from_key, revision=revision, limit=limit,
            sort_order=sort_order, sort_target=sort_target, serializable=serializable,
            keys_only=keys_only, count_only=count_only, min_mod_revision=min_mod_revision,
            max_mod_revision=max_mod_revision, min_create_revision=min_create_revision,
            max_create_revision=max_create_revision,
        )  # fmt: skip
        return GetResult.from_pb(await self.call(RANGE, req, idempotent=True, timeout=timeout))

    async def range(
        self,
        key: Bytes,
        range_end: Bytes | None = None,
        *,
        prefix: bool = False,
        from_key: bool = False,
        revision: int = 0,
        page_size: int = 1000,
        keys_only: bool = False,
        serializable: bool = False,
        timeout: Timeout = ...,
    ) -> AsyncIterator[KeyValue]:
        """Every key in a range, paged, all pages at the first page's revision."""
        if page_size <= 0:
            raise ValueError("page_size must be positive")
        start, end = rq.key_range(key, range_end, prefix, from_key)
        if not end:
            end = start + b"\0"
        while True:
            page = await self.get(
                start, end, revision=revision, limit=page_size, keys_only=keys_only,
                serializable=serializable, timeout=timeout,
            )  # fmt: skip
            revision = revision or page.header.revision
            for kv in page.kvs:
                yield kv
            if not page.more or not page.kvs:
                return
            start = page.kvs[-1].key + b"\0"

    async def put(
        self,
        key: Bytes,
        value: Bytes = b"",
        *,
        lease: int = 0,
        prev_kv: bool = False,
        ignore_value: bool = False,
        ignore_lease: bool = False,
        timeout: Timeout = ...,
    ) -> PutResult:
        req = rq.put_request(
            key, value, lease=lease, prev_kv=prev_kv, ignore_value=ignore_value,
            ignore_lease=ignore_lease,
        )  # fmt: skip
        return PutResult.from_pb(await self.call(PUT, req, idempotent=False, timeout=timeout))

    async def delete(
        self,
        key: Bytes,
        range_end: Bytes | None = None,
        *,
        prefix: bool = False,
        from_key: bool = False,
        prev_kv: bool = False,
        timeout: Timeout = ...,
    ) -> DeleteResult:
        req = rq.delete_request(key, range_end, prefix=prefix, from_key=from_key, prev_kv=prev_kv)
        return DeleteResult.from_pb(await self.call(DELETE, req, idempotent=False, timeout=timeout))

    async def txn(
        self,
        compare: Sequence[Compare] = (),
        success: Sequence[Op] = (),
        failure: Sequence[Op] = (),
        *,
        timeout: Timeout = ...,
    ) -> TxnResult:
        req = rq.txn_request(tuple(compare), tuple(success), tuple(failure))
        read_only = all(op.is_read for op in [*success, *failure])
        return TxnResult.from_pb(await self.call(TXN, req, idempotent=read_only, timeout=timeout))

    async def compact(self, revision: int, *, physical: bool = False, timeout: Timeout = ...) -> Header:
        req = rpc_pb2.CompactionRequest(revision=revision, physical=physical)
        resp = await self.call(COMPACT, req, idempotent=False, timeout=timeout)
        return Header.from_pb(resp.header)

    # -- Watch ------------------------------------------------------------

    async def watch(
        self,
        key: Bytes,
        range_end: Bytes | None = None,
        *,
        prefix: bool = False,
        from_key: bool = False,
        start_revision: int = 0,
        prev_kv: bool = False,
        progress_notify: bool = False,
        no_put: bool = False,
        no_delete: bool = False,
    ) -> AsyncWatch:
        """Start a watch; returns once the server has accepted it (see `Client.watch`)."""
        k, end = rq.key_range(key, range_end, prefix, from_key)
        filters = [
            f
            for f, on in (
                (rpc_pb2.WatchCreateRequest.NOPUT, no_put),
                (rpc_pb2.WatchCreateRequest.NODELETE, no_delete),
            )
            if on
        ]
        create = rpc_pb2.WatchCreateRequest(
            key=k, range_end=end, start_revision=start_revision, prev_kv=prev_kv,
            progress_notify=progress_notify, filters=filters,
        )  # fmt: skip
        w = AsyncWatch(self, create)
        await w._start()
        return w

    # -- Lease ------------------------------------------------------------

    async def grant(self, ttl: int, *, id: int = 0, timeout: Timeout = ...) -> LeaseGrant:
        req = rpc_pb2.LeaseGrantRequest(TTL=ttl, ID=id)
        return LeaseGrant.from_pb(await self.call(LEASE_GRANT, req, idempotent=False, timeout=timeout))

    async def revoke(self, lease_id: int, *, timeout: Timeout = ...) -> Header:
        req = rpc_pb2.LeaseRevokeRequest(ID=lease_id)
        resp = await self.call(LEASE_REVOKE, req, idempotent=False, timeout=timeout)
        return Header.from_pb(resp.header)

    async def time_to_live(self, lease_id: int, *, keys: bool = False, timeout: Timeout = ...) -> LeaseInfo:
        req = rpc_pb2.LeaseTimeToLiveRequest(ID=lease_id, keys=keys)
        return LeaseInfo.from_pb(await self.call(LEASE_TTL, req, idempotent=True, timeout=timeout))

    async def leases(self, *, timeout: Timeout = ...) -> LeaseList:
        req = rpc_pb2.LeaseLeasesRequest()
        return LeaseList.from_pb(await self.call(LEASE_LEASES, req, idempotent=True, timeout=timeout))

    async def keep_alive_once(self, lease_id: int, *, timeout: Timeout = ...) -> KeepAliveResult:
        ka = AsyncKeepAlive(self, lease_id, forever=False)
        try:
            t = self.timeout if timeout is ... else timeout
            return await asyncio.wait_for(ka.__anext__(), t)
        except asyncio.TimeoutError:
            raise DeadlineExceeded(
                "context deadline exceeded", grpc.StatusCode.DEADLINE_EXCEEDED
            ) from None
        finally:
            await ka.aclose()

    def keep_alive(self, lease_id: int, *, interval: float | None = None) -> AsyncKeepAlive:
        return AsyncKeepAlive(self, lease_id, forever=True, interval=interval)

    def lease(self, ttl: int, *, id: int = 0, keep_alive: bool = True) -> AsyncLease:
        """`async with client.lease(ttl) as lease:` grants it, keeps it alive, revokes it after."""
        return AsyncLease(self, ttl, id=id, keep_alive=keep_alive)

    # -- Cluster and maintenance -----------------------------------------

    async def member_list(self, *, timeout: Timeout = ...) -> MemberList:
        req = rpc_pb2.MemberListRequest()
        return MemberList.from_pb(await self.call(MEMBER_LIST, req, idempotent=True, timeout=timeout))

    async def member_add(
        self, peer_urls: Sequence[str], *, is_learner: bool = False, timeout: Timeout = ...
    ) -> MemberList:
        req = rpc_pb2.MemberAddRequest(peerURLs=list(peer_urls), isLearner=is_learner)
        return MemberList.from_pb(await self.call(MEMBER_ADD, req, idempotent=False, timeout=timeout))

    async def member_remove(self, member_id: int, *, timeout: Timeout = ...) -> MemberList:
        req = rpc_pb2.MemberRemoveRequest(ID=member_id)
        return MemberList.from_pb(await self.call(MEMBER_REMOVE, req, idempotent=False, timeout=timeout))

    async def member_update(
        self, member_id: int, peer_urls: Sequence[str], *, timeout: Timeout = ...
    ) -> MemberList:
        req = rpc_pb2.MemberUpdateRequest(ID=member_id, peerURLs=list(peer_urls))
        return MemberList.from_pb(await self.call(MEMBER_UPDATE, req, idempotent=False, timeout=timeout))

    async def member_promote(self, member_id: int, *, timeout: Timeout = ...) -> MemberList:
        req = rpc_pb2.MemberPromoteRequest(ID=member_id)
        return MemberList.from_pb(await self.call(MEMBER_PROMOTE, req, idempotent=False, timeout=timeout))

    async def status(self, endpoint: str | None = None, *, timeout: Timeout = ...) -> Status:
        req = rpc_pb2.StatusRequest()
        resp = await self.call(STATUS, req, idempotent=True, timeout=timeout, endpoint=endpoint)
        return Status.from_pb(resp)

    async def alarms(self, *, timeout: Timeout = ...) -> rpc_pb2.AlarmResponse:
        req = rpc_pb2.AlarmRequest(action=rpc_pb2.AlarmRequest.GET)
        return await self.call(ALARM, req, idempotent=True, timeout=timeout)

    async def disarm(
        self,
        member_id: int = 0,
        alarm: rpc_pb2.AlarmType = rpc_pb2.NONE,
        *,
        timeout: Timeout = ...,
    ) -> rpc_pb2.AlarmResponse:
        """Deactivate one member's alarm (see `Client.disarm`)."""
        req = rpc_pb2.AlarmRequest(
            action=rpc_pb2.AlarmRequest.DEACTIVATE, memberID=member_id, alarm=alarm
        )
        return await self.call(ALARM, req, idempotent=False, timeout=timeout)

    async def defragment(self, endpoint: str | None = None, *, timeout: Timeout = ...) -> Header:
        req = rpc_pb2.DefragmentRequest()
        resp = await self.call(DEFRAGMENT, req, idempotent=True, timeout=timeout, endpoint=endpoint)
        return Header.from_pb(resp.header)

    async def hash_kv(
        self, endpoint: str | None = None, revision: int = 0, *, timeout: Timeout = ...
    ) -> rpc_pb2.HashKVResponse:
        req = rpc_pb2.HashKVRequest(revision=revision)
        return await self.call(HASH_KV, req, idempotent=True, timeout=timeout, endpoint=endpoint)

    async def move_leader(
        self, target_id: int, *, endpoint: str | None = None, timeout: Timeout = ...
    ) -> rpc_pb2.MoveLeaderResponse:
        """Hand leadership to member `target_id`; send it to the leader's `endpoint`."""
        req = rpc_pb2.MoveLeaderRequest(targetID=target_id)
        return await self.call(MOVE_LEADER, req, idempotent=False, timeout=timeout, endpoint=endpoint)

    async def snapshot(
        self, endpoint: str | None = None, *, timeout: Timeout = None
    ) -> AsyncIterator[bytes]:
        """The backend database of one member, chunk by chunk; the last chunk is
        the SHA-256 of the others. `timeout` bounds the whole transfer (default: none)."""
        deadline = self._deadline(timeout)
        _, ch = await self.connect(deadline if deadline is not None else self._deadline(...), endpoint)
        left = None if deadline is None else deadline - time.monotonic()
        if left is not None and left <= 0:
            raise DeadlineExceeded("context deadline exceeded", grpc.StatusCode.DEADLINE_EXCEEDED)
        call = ch.unary_stream(
            SNAPSHOT_PATH,
            request_serializer=_serialize,
            response_deserializer=rpc_pb2.SnapshotResponse.FromString,
        )(rpc_pb2.SnapshotRequest(), timeout=left, metadata=self.metadata())
        try:
            async for chunk in call:
                yield chunk.blob
        except grpc.RpcError as e:
            raise error_from_rpc(e) from None
        finally:
            call.cancel()


class AsyncWatch:
    """An async iterator of WatchResponse that resumes after reconnects (see `Watch`)."""

    def __init__(self, client: AsyncClient, create: rpc_pb2.WatchCreateRequest) -> None:
        self._client = client
        self._create = create
        self.revision = create.start_revision
        self.reconnects = 0
        self._call: Any = None
        self._endpoint: Endpoint | None = None
        self._closed = False
        self._error: BaseException | None = None

    async def _open(self, deadline: float | None) -> None:
        ep, ch = await self._client.connect(deadline)
        self._endpoint = ep
        create = rpc_pb2.WatchCreateRequest()
        create.CopyFrom(self._create)
        create.start_revision = self.revision
        stream = ch.stream_stream(
            WATCH_PATH,
            request_serializer=_serialize,
            response_deserializer=rpc_pb2.WatchResponse.FromString,
        )
        self._call = stream(metadata=(("hasleader", "true"), *self._client.metadata()))
        await self._call.write(rpc_pb2.WatchRequest(create_request=create))
        resp = await self._call.read()
        if resp is grpc.aio.EOF:
            raise EtcdError("the server closed the watch stream before creating the watch")
        self._check(resp)
        if not self.revision:
            self.revision = resp.header.revision + 1

    async def _start(self) -> None:
        try:
            await self._open(self._client._deadline(...))
        except grpc.RpcError as e:
            raise error_from_rpc(e) from None

    def _check(self, resp: rpc_pb2.WatchResponse) -> None:
        if resp.canceled or (resp.compact_revision and not resp.events):
            if resp.compact_revision:
                raise Compacted(
                    "etcdserver: mvcc: required revision has been compacted",
                    compact_revision=resp.compact_revision,
                )
            raise WatchCanceled(resp.cancel_reason or "etcdserver: watch canceled")

    def __aiter__(self) -> AsyncWatch:
        return self

    async def __anext__(self) -> WatchResponse:
        if self._error is not None:
            raise StopAsyncIteration
        while not self._closed:
            try:
                resp = await self._call.read()
            except grpc.RpcError as e:
                if self._closed:
                    break
                if not _retryable(e):
                    self._error = error_from_rpc(e)
                    raise self._error from None
                resp = grpc.aio.EOF
            except asyncio.CancelledError:
                if self._closed:
                    break
                raise
            if resp is grpc.aio.EOF:
                await self._reconnect()
                continue
            try:
                self._check(resp)
            except EtcdError as e:
                self._error = e
                raise
            if resp.created:
                continue
            if resp.events:
                self.revision = resp.events[-1].kv.mod_revision + 1
            elif resp.header.revision >= self.revision:
                self.revision = resp.header.revision + 1
            return WatchResponse.from_pb(resp)
        raise StopAsyncIteration

    async def _reconnect(self) -> None:
        if self._endpoint is not None:
            self._client._ring.fail(self._endpoint)
        while not self._closed:
            await asyncio.sleep(RETRY_PAUSE)
            try:
                await self._open(None)
                self.reconnects += 1
                return
            except (ConnectionFailed, grpc.RpcError):
                continue

    async def get(self, timeout: float | None = None) -> WatchResponse:
        try:
            return await asyncio.wait_for(self.__anext__(), timeout)
        except asyncio.TimeoutError:
            raise DeadlineExceeded(
                f"no watch event within {timeout}s", grpc.StatusCode.DEADLINE_EXCEEDED
            ) from None

    async def close(self) -> None:
        self._closed = True
        if self._call is not None:
            self._call.cancel()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


class AsyncKeepAlive:
    """Renews a lease over LeaseKeepAlive's stream; iterate it for each renewal."""

    def __init__(
        self, client: AsyncClient, lease_id: int, *, forever: bool, interval: float | None = None
    ) -> None:
        self._client = client
        self.lease_id = lease_id
        self._forever = forever
        self._interval = interval
        self._call: Any = None
        self._endpoint: Endpoint | None = None
        self._sent_any = False
        self._done = False
        self.last: KeepAliveResult | None = None

    async def _ensure_stream(self) -> None:
        if self._call is None:
            ep, ch = await self._client.connect(self._client._deadline(...))
            self._endpoint = ep
            stream = ch.stream_stream(
                KEEPALIVE_PATH,
                request_serializer=_serialize,
                response_deserializer=rpc_pb2.LeaseKeepAliveResponse.FromString,
            )
            self._call = stream(metadata=self._client.metadata())

    def __aiter__(self) -> AsyncKeepAlive:
        return self

    async def __anext__(self) -> KeepAliveResult:
        if self._done:
            raise StopAsyncIteration
        if self.last is not None:
            if not self._forever:
                raise StopAsyncIteration
            interval = self._interval or max(self.last.ttl / 3.0, 0.5)
            await asyncio.sleep(interval)
        while True:
            try:
                await self._ensure_stream()
                await self._call.write(rpc_pb2.LeaseKeepAliveRequest(ID=self.lease_id))
                resp = await self._call.read()
                if resp is grpc.aio.EOF:
                    raise EtcdError("the keep-alive stream ended")
                break
            except grpc.RpcError as e:
                if not _retryable(e):
                    self._done = True
                    raise error_from_rpc(e) from None
            except (ConnectionFailed, EtcdError):
                pass
            if self._endpoint is not None:
                self._client._ring.fail(self._endpoint)
            self._call = None
            await asyncio.sleep(RETRY_PAUSE)
        if resp.TTL <= 0:
            self._done = True
            if self.last is not None:
                raise LeaseExpired(
                    f"lease {self.lease_id:x} expired or was revoked", grpc.StatusCode.NOT_FOUND
                )
            raise LeaseNotFound("etcdserver: requested lease not found", grpc.StatusCode.NOT_FOUND)
        self.last = KeepAliveResult.from_pb(resp)
        return self.last

    async def aclose(self) -> None:
        self._done = True
        if self._call is not None:
            self._call.cancel()


class AsyncLease:
    """A lease granted on entering `async with`, kept alive by a task, revoked on exit."""

    def __init__(self, client: AsyncClient, ttl: int, *, id: int, keep_alive: bool) -> None:
        self._client = client
        self._ttl = ttl
        self._want_id = id
        self._keep_alive = keep_alive
        self.id = 0
        self.ttl = 0
        self._task: asyncio.Task[None] | None = None
        self._keeper: AsyncKeepAlive | None = None

    async def __aenter__(self) -> Self:
        grant = await self._client.grant(self._ttl, id=self._want_id)
        self.id, self.ttl = grant.id, grant.ttl
        if self._keep_alive:
            self._keeper = self._client.keep_alive(self.id)
            self._task = asyncio.create_task(self._renew(self._keeper))
        return self

    async def _renew(self, keeper: AsyncKeepAlive) -> None:
        try:
            async for _ in keeper:
                pass
        except LeaseNotFound:
            pass  # `alive` turns False; the owner finds out from its next write

    @property
    def alive(self) -> bool:
        return self._task is not None and not self._task.done()

    async def __aexit__(self, *exc: object) -> None:
        await self._stop()
        try:
            await self._client.revoke(self.id)
        except LeaseNotFound:
            pass

    async def _stop(self) -> None:
        if self._keeper is not None:
            await self._keeper.aclose()
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, EtcdError):
                pass

    async def time_to_live(self, *, keys: bool = False) -> LeaseInfo:
        return await self._client.time_to_live(self.id, keys=keys)

    async def revoke(self) -> None:
        await self._stop()
        await self._client.revoke(self.id)
