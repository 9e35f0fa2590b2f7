"""`ketch.Client`: a blocking client for any etcd v3 server (ketch or etcd).

    with Client("127.0.0.1:2379") as c:
        c.put("greeting", "hello")
        c.get("greeting").value                    # b"hello"
        for kv in c.range("app/", prefix=True):    # paged, at one revision
            ...
        with c.lease(ttl=10) as lease:             # kept alive until the block ends
            c.put("me", "here", lease=lease.id)
        with c.watch("app/", prefix=True) as w:
            for resp in w: ...

Fail-over and retries: a call goes to the current endpoint if it is
connected, else to the next connected one. A call that failed after it was
sent is retried (on the next endpoint) only when it is idempotent: reads,
status and list calls. Writes are never sent twice.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from types import EllipsisType, TracebackType
from typing import TYPE_CHECKING, Any, TypeVar

import grpc
from google.protobuf.message import Message

from .._pb import rpc_pb2
from . import requests as rq
from .auth import AUTH_NOT_ENABLED, AUTHENTICATE_PATH, RENEW_TOKEN, Metadata, credentials
from .channels import SyncChannel
from .endpoints import Endpoint, EndpointRing, PathLike, TLSConfig, parse_endpoints
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

if TYPE_CHECKING:
    from typing_extensions import Self  # typing.Self needs 3.11; only the checker reads it

__all__ = ["Client", "KeepAlive", "Lease", "TxnBuilder", "Watch"]

M = TypeVar("M", bound=Message)
# A call's timeout in seconds; None waits forever; ... (the default) means the client's.
Timeout = float | None | EllipsisType
DEFAULT_ENDPOINT = "127.0.0.1:2379"
RETRY_PAUSE = 0.05  # between rounds over every endpoint, when all were unreachable


def _method(path: str, response: type[Message]) -> tuple[str, Callable[[bytes], Any]]:
    return path, response.FromString


# Every unary RPC of etcd's v3 API: (path, response parser).
RANGE = _method("/etcdserverpb.KV/Range", rpc_pb2.RangeResponse)
PUT = _method("/etcdserverpb.KV/Put", rpc_pb2.PutResponse)
DELETE = _method("/etcdserverpb.KV/DeleteRange", rpc_pb2.DeleteRangeResponse)
TXN = _method("/etcdserverpb.KV/Txn", rpc_pb2.TxnResponse)
COMPACT = _method("/etcdserverpb.KV/Compact", rpc_pb2.CompactionResponse)
LEASE_GRANT = _method("/etcdserverpb.Lease/LeaseGrant", rpc_pb2.LeaseGrantResponse)
LEASE_REVOKE = _method("/etcdserverpb.Lease/LeaseRevoke", rpc_pb2.LeaseRevokeResponse)
LEASE_TTL = _method("/etcdserverpb.Lease/LeaseTimeToLive", rpc_pb2.LeaseTimeToLiveResponse)
LEASE_LEASES = _method("/etcdserverpb.Lease/LeaseLeases", rpc_pb2.LeaseLeasesResponse)
MEMBER_ADD = _method("/etcdserverpb.Cluster/MemberAdd", rpc_pb2.MemberAddResponse)
MEMBER_REMOVE = _method("/etcdserverpb.Cluster/MemberRemove", rpc_pb2.MemberRemoveResponse)
MEMBER_UPDATE = _method("/etcdserverpb.Cluster/MemberUpdate", rpc_pb2.MemberUpdateResponse)
MEMBER_LIST = _method("/etcdserverpb.Cluster/MemberList", rpc_pb2.MemberListResponse)
MEMBER_PROMOTE = _method("/etcdserverpb.Cluster/MemberPromote", rpc_pb2.MemberPromoteResponse)
ALARM = _method("/etcdserverpb.Maintenance/Alarm", rpc_pb2.AlarmResponse)
STATUS = _method("/etcdserverpb.Maintenance/Status", rpc_pb2.StatusResponse)
DEFRAGMENT = _method("/etcdserverpb.Maintenance/Defragment", rpc_pb2.DefragmentResponse)
HASH_KV = _method("/etcdserverpb.Maintenance/HashKV", rpc_pb2.HashKVResponse)
MOVE_LEADER = _method("/etcdserverpb.Maintenance/MoveLeader", rpc_pb2.MoveLeaderResponse)
WATCH_PATH = "/etcdserverpb.Watch/Watch"
KEEPALIVE_PATH = "/etcdserverpb.Lease/LeaseKeepAlive"
SNAPSHOT_PATH = "/etcdserverpb.Maintenance/Snapshot"


def _serialize(msg: Message) -> bytes:
    return msg.SerializeToString()


def _retryable(err: grpc.RpcError) -> bool:
    """A failure that says nothing about the request itself: the endpoint (or
    its Raft group) could not serve it now."""
    return err.code() == grpc.StatusCode.UNAVAILABLE  # type: ignore[no-any-return]


class Client:
    """A connection to an etcd-compatible cluster through one or more endpoints.

    Args:
        endpoints: "host:port", "http(s)://host:port", a comma-separated list, or a sequence.
        timeout: seconds for each call (None: no limit); every method also takes `timeout=`.
        dial_timeout: seconds to wait for an endpoint to connect before trying the next.
        ca_cert, cert, key: TLS files; giving any of them (or an https endpoint) turns TLS on.
        server_name: the name to verify in the server's certificate, if not the endpoint's host.
        user, password: an etcd user to authenticate as; every call then carries its token
            (against a server without auth enabled, such as ketch, calls go without one).
    """

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
        self._auth_lock = threading.Lock()
        self.timeout = timeout
        self.dial_timeout = dial_timeout
        self._channels: dict[Endpoint, SyncChannel] = {}
        self._lock = threading.Lock()
        self._closed = False

    # -- plumbing ---------------------------------------------------------

    @property
    def endpoints(self) -> list[str]:
        return [ep.text for ep in self._ring.endpoints]

    def _channel(self, ep: Endpoint) -> SyncChannel:
        with self._lock:
            if self._closed:
                raise EtcdError("the client is closed")
            ch = self._channels.get(ep)
            if ch is None:
                ch = self._channels[ep] = SyncChannel(ep, self._tls)
            return ch

    def connect(self, deadline: float | None, endpoint: str | None = None) -> SyncChannel:
        """A connected channel: the current endpoint's if it connects, else the next's,
        with this client's user authenticated (see `metadata`).

        With several endpoints an endpoint that fails to connect is passed over
        at once; a single endpoint gets the whole dial timeout."""
        ch = self._connect(deadline, endpoint)
        if self._auth is not None and not self._auth.known:
            self._authenticate(ch, deadline)
        return ch

    def metadata(self) -> Metadata:
        """The gRPC metadata every call carries: the user's token, if the server gave one."""
        return () if self._auth is None else self._auth.metadata()

    def _authenticate(self, ch: SyncChannel, deadline: float | None) -> None:
        auth = self._auth
        assert auth is not None
        with self._auth_lock:
            if auth.known:
                return
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            stub = ch.channel.unary_unary(
                AUTHENTICATE_PATH,
                request_serializer=_serialize,
                response_deserializer=rpc_pb2.AuthenticateResponse.FromString,
            )
            try:
                auth.accept(stub(auth.request(), timeout=left))
            except grpc.RpcError as e:
                if e.details() != AUTH_NOT_ENABLED:
                    raise error_from_rpc(e) from None
                auth.auth_not_enabled()

    def _connect(self, deadline: float | None, endpoint: str | None) -> SyncChannel:
        candidates = [self._ring.find(endpoint)] if endpoint else self._ring.order()
        fail_fast = len(candidates) > 1
        tried: list[str] = []
        for ep in candidates:
            wait = self.dial_timeout
            if deadline is not None:
                wait = min(wait, max(0.0, deadline - time.monotonic()))
            ch = self._channel(ep)
            if ch.wait_ready(wait, fail_fast):
                return ch
            tried.append(ep.text)
            if not endpoint:
                self._ring.fail(ep)
        # All failed fast: give the first one the dial timeout before giving up.
        if fail_fast:
            ch = self._channel(candidates[0])
            wait = self.dial_timeout
            if deadline is not None:
                wait = min(wait, max(0.0, deadline - time.monotonic()))
            if ch.wait_ready(wait, False):
                return ch
        raise ConnectionFailed(
            f"could not connect to {', '.join(tried)} within {self.dial_timeout}s "
            "(is a server listening there, with matching TLS settings?)",
            grpc.StatusCode.UNAVAILABLE,
        )

    def _deadline(self, timeout: Timeout) -> float | None:
        t = self.timeout if timeout is ... else timeout
        return None if t is None else time.monotonic() + float(t)

    def call(
        self,
        method: tuple[str, Callable[[bytes], M]],
        request: Message,
        *,
        idempotent: bool,
        timeout: Timeout = ...,
        endpoint: str | None = None,
    ) -> M:
        """One unary RPC with fail-over; `idempotent` calls are retried after an
        UNAVAILABLE answer until the deadline."""
        path, parse = method
        deadline = self._deadline(timeout)
        token_renewed = False
        while True:
            try:
                ch = self.connect(deadline, endpoint)
            except ConnectionFailed:
                if deadline is not None and time.monotonic() >= deadline:
                    raise DeadlineExceeded(
                        "context deadline exceeded", grpc.StatusCode.DEADLINE_EXCEEDED
                    ) from None
                raise
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            stub = ch.channel.unary_unary(
                path, request_serializer=_serialize, response_deserializer=parse
            )
            try:
                answer = stub(request, timeout=left, metadata=self.metadata())
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
                    self._ring.fail(ch.endpoint)
                time.sleep(RETRY_PAUSE)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            channels, self._channels = list(self._channels.values()), {}
        for ch in channels:
            ch.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, t: type[BaseException] | None, v: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # -- KV ---------------------------------------------------------------

    def get(
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
        """Read a key, or the range [key, range_end). A missing key is an empty result."""
        req = rq.range_request(
            key, range_end, prefix=prefix, from_key=from_key, revision=revision, limit=limit,
            sort_order=sort_order, sort_target=sort_target, serializable=serializable,
            keys_only=keys_only, count_only=count_only, min_mod_revision=min_mod_revision,
            max_mod_revision=max_mod_revision, min_create_revision=min_create_revision,
            max_create_revision=max_create_revision,
        )  # fmt: skip
        return GetResult.from_pb(self.call(RANGE, req, idempotent=True, timeout=timeout))

    def range(
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
    ) -> Iterator[KeyValue]:
        """Every key in a range, in key order, fetched `page_size` at a time.

        All pages are read at the revision of the first, so the result is one
        consistent snapshot even while others write (until it is compacted)."""
        if page_size <= 0:
            raise ValueError("page_size must be positive")
        start, end = rq.key_range(key, range_end, prefix, from_key)
        if not end:  # a single key
            end = start + b"\0"
        while True:
            page = self.get(
                start, end, revision=revision, limit=page_size, keys_only=keys_only,
                serializable=serializable, timeout=timeout,
            )  # fmt: skip
            revision = revision or page.header.revision
            yield from page.kvs
            if not page.more or not page.kvs:
                return
            start = page.kvs[-1].key + b"\0"

    def put(
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
        return PutResult.from_pb(self.call(PUT, req, idempotent=False, timeout=timeout))

    def delete(
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
        return DeleteResult.from_pb(self.call(DELETE, req, idempotent=False, timeout=timeout))

    def txn(
        self,
        compare: Sequence[Compare] = (),
        success: Sequence[Op] = (),
        failure: Sequence[Op] = (),
        *,
        timeout: Timeout = ...,
    ) -> TxnResult:
        """If every compare holds, run `success`, else `failure`; atomically."""
        req = rq.txn_request(tuple(compare), tuple(success), tuple(failure))
        read_only = all(op.is_read for op in [*success, *failure])
        return TxnResult.from_pb(self.call(TXN, req, idempotent=read_only, timeout=timeout))

    def transaction(self) -> TxnBuilder:
        """A fluent transaction: `c.transaction().if_(...).then(...).else_(...).commit()`."""
        return TxnBuilder(self)

    def compact(
        self, revision: int, *, physical: bool = False, timeout: Timeout = ...
    ) -> Header:
        """Discard history before `revision`. With `physical`, return only once
        the space is reclaimed."""
        req = rpc_pb2.CompactionRequest(revision=revision, physical=physical)
        return Header.from_pb(self.call(COMPACT, req, idempotent=False, timeout=timeout).header)

    # -- Watch ------------------------------------------------------------

    def watch(
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
    ) -> Watch:
        """Watch a key or range from `start_revision` (0: from now on).

        Returns once the server has accepted the watch. Iterate it for
        WatchResponse batches; if the connection drops it resumes from the
        revision after the last event seen, on whichever endpoint answers."""
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
        return Watch(self, create)

    # -- Lease ------------------------------------------------------------

    def grant(self, ttl: int, *, id: int = 0, timeout: Timeout = ...) -> LeaseGrant:
        req = rpc_pb2.LeaseGrantRequest(TTL=ttl, ID=id)
        return LeaseGrant.from_pb(self.call(LEASE_GRANT, req, idempotent=False, timeout=timeout))

    def revoke(self, lease_id: int, *, timeout: Timeout = ...) -> Header:
        req = rpc_pb2.LeaseRevokeRequest(ID=lease_id)
        return Header.from_pb(self.call(LEASE_REVOKE, req, idempotent=False, timeout=timeout).header)

    def time_to_live(
        self, lease_id: int, *, keys: bool = False, timeout: Timeout = ...
    ) -> LeaseInfo:
        req = rpc_pb2.LeaseTimeToLiveRequest(ID=lease_id, keys=keys)
        return LeaseInfo.from_pb(self.call(LEASE_TTL, req, idempotent=True, timeout=timeout))

    def leases(self, *, timeout: Timeout = ...) -> LeaseList:
        req = rpc_pb2.LeaseLeasesRequest()
        return LeaseList.from_pb(self.call(LEASE_LEASES, req, idempotent=True, timeout=timeout))

    def keep_alive_once(self, lease_id: int, *, timeout: Timeout = ...) -> KeepAliveResult:
        """Renew a lease once. Raises LeaseNotFound if it has expired."""
        with KeepAlive(self, lease_id, interval=None) as ka:
            t = self.timeout if timeout is ... else timeout
            return ka.get(timeout=t)

    def keep_alive(self, lease_id: int, *, interval: float | None = None) -> KeepAlive:
        """Renew a lease every `interval` seconds (default: a third of its TTL)
        until closed; iterate it for each renewal's answer."""
        return KeepAlive(self, lease_id, interval=interval, forever=True)

    def lease(self, ttl: int, *, id: int = 0, keep_alive: bool = True) -> Lease:
        """Grant a lease; as a context manager, keep it alive for the block and revoke it after."""
        return Lease(self, self.grant(ttl, id=id), keep_alive=keep_alive)

    # -- Cluster and maintenance -----------------------------------------

    def member_list(self, *, timeout: Timeout = ...) -> MemberList:
        req = rpc_pb2.MemberListRequest()
        return MemberList.from_pb(self.call(MEMBER_LIST, req, idempotent=True, timeout=timeout))

    def member_add(
        self, peer_urls: Sequence[str], *, is_learner: bool = False, timeout: Timeout = ...
    ) -> MemberList:
        req = rpc_pb2.MemberAddRequest(peerURLs=list(peer_urls), isLearner=is_learner)
        return MemberList.from_pb(self.call(MEMBER_ADD, req, idempotent=False, timeout=timeout))

    def member_remove(self, member_id: int, *, timeout: Timeout = ...) -> MemberList:
        req = rpc_pb2.MemberRemoveRequest(ID=member_id)
        return MemberList.from_pb(self.call(MEMBER_REMOVE, req, idempotent=False, timeout=timeout))

    def member_update(
        self, member_id: int, peer_urls: Sequence[str], *, timeout: Timeout = ...
    ) -> MemberList:
        req = rpc_pb2.MemberUpdateRequest(ID=member_id, peerURLs=list(peer_urls))
        return MemberList.from_pb(self.call(MEMBER_UPDATE, req, idempotent=False, timeout=timeout))

    def member_promote(self, member_id: int, *, timeout: Timeout = ...) -> MemberList:
        req = rpc_pb2.MemberPromoteRequest(ID=member_id)
        return MemberList.from_pb(self.call(MEMBER_PROMOTE, req, idempotent=False, timeout=timeout))

    def status(self, endpoint: str | None = None, *, timeout: Timeout = ...) -> Status:
        """The status of `endpoint` (by default, of whichever endpoint answers)."""
        req = rpc_pb2.StatusRequest()
        return Status.from_pb(
            self.call(STATUS, req, idempotent=True, timeout=timeout, endpoint=endpoint)
        )

    def alarms(self, *, timeout: Timeout = ...) -> rpc_pb2.AlarmResponse:
        req = rpc_pb2.AlarmRequest(action=rpc_pb2.AlarmRequest.GET)
        return self.call(ALARM, req, idempotent=True, timeout=timeout)

    def disarm(
        self,
        member_id: int = 0,
        alarm: rpc_pb2.AlarmType = rpc_pb2.NONE,
        *,
        timeout: Timeout = ...,
    ) -> rpc_pb2.AlarmResponse:
        """Deactivate an alarm (by default every alarm of every member)."""
        req = rpc_pb2.AlarmRequest(
            action=rpc_pb2.AlarmRequest.DEACTIVATE, memberID=member_id, alarm=alarm
        )
        return self.call(ALARM, req, idempotent=False, timeout=timeout)

    def defragment(self, endpoint: str | None = None, *, timeout: Timeout = ...) -> Header:
        req = rpc_pb2.DefragmentRequest()
        resp = self.call(DEFRAGMENT, req, idempotent=True, timeout=timeout, endpoint=endpoint)
        return Header.from_pb(resp.header)

    def hash_kv(
        self, endpoint: str | None = None, revision: int = 0, *, timeout: Timeout = ...
    ) -> rpc_pb2.HashKVResponse:
        req = rpc_pb2.HashKVRequest(revision=revision)
        return self.call(HASH_KV, req, idempotent=True, timeout=timeout, endpoint=endpoint)

    def move_leader(
        self, target_id: int, *, endpoint: str | None = None, timeout: Timeout = ...
    ) -> rpc_pb2.MoveLeaderResponse:
        """Hand leadership to member `target_id`; only the leader can, so send
        it to the leader's `endpoint`."""
        req = rpc_pb2.MoveLeaderRequest(targetID=target_id)
        return self.call(MOVE_LEADER, req, idempotent=False, timeout=timeout, endpoint=endpoint)

    def snapshot(
        self,
        endpoint: str | None = None,
        *,
        timeout: Timeout = None,
        progress: Callable[[int, int], None] | None = None,
    ) -> Iterator[bytes]:
        """The backend database of one member, as a stream of chunks; the last
        chunk is the SHA-256 of all the others (etcd keeps it in the file).
        `timeout` bounds the whole transfer (by default there is no limit).
        `progress(received, total)` is called after each chunk (total: bytes
        received plus what the server says remains)."""
        deadline = self._deadline(timeout)
        ch = self.connect(deadline if deadline is not None else self._deadline(...), endpoint)
        left = None if deadline is None else deadline - time.monotonic()
        if left is not None and left <= 0:
            raise DeadlineExceeded("context deadline exceeded", grpc.StatusCode.DEADLINE_EXCEEDED)
        stream = ch.channel.unary_stream(
            SNAPSHOT_PATH,
            request_serializer=_serialize,
            response_deserializer=rpc_pb2.SnapshotResponse.FromString,
        )(rpc_pb2.SnapshotRequest(), timeout=left, metadata=self.metadata())
        received = 0
        try:
            for chunk in stream:
                received += len(chunk.blob)
                if progress is not None:
                    progress(received, received + chunk.remaining_bytes)
                yield chunk.blob
        except grpc.RpcError as e:
            raise error_from_rpc(e) from None


class TxnBuilder:
    """etcd's If/Then/Else, spelled `if_`, `then`, `else_` (if and else are Python keywords)."""

    def __init__(self, client: Client) -> None:
        self._client = client
        self._compare: list[Compare] = []
        self._success: list[Op] = []
        self._failure: list[Op] = []

    def if_(self, *compares: Compare) -> TxnBuilder:
        self._compare.extend(compares)
        return self

    def then(self, *ops: Op) -> TxnBuilder:
        self._success.extend(ops)
        return self

    def else_(self, *ops: Op) -> TxnBuilder:
        self._failure.extend(ops)
        return self

    def commit(self, *, timeout: Timeout = ...) -> TxnResult:
        return self._client.txn(self._compare, self._success, self._failure, timeout=timeout)


class _RequestQueue:
    """The request side of a bidirectional stream: what `put` adds is sent, in order,
    until `close`."""

    _END = object()

    def __init__(self) -> None:
        self._q: queue.Queue[Any] = queue.Queue()

    def put(self, msg: Message) -> None:
        self._q.put(msg)

    def close(self) -> None:
        self._q.put(self._END)

    def __iter__(self) -> Iterator[Message]:
        while True:
            msg = self._q.get()
            if msg is self._END:
                return
            yield msg


_DONE = object()


def _take(out: queue.Queue[Any], timeout: float | None, deadline_message: str) -> Any:
    """The next item a stream's reader thread queued for its iterator.

    Raises DeadlineExceeded when nothing came within `timeout`, StopIteration
    once the stream ended, and the stream's error if it failed; the end marker
    is put back so every later call ends the same way."""
    try:
        item = out.get(timeout=timeout)
    except queue.Empty:
        raise DeadlineExceeded(deadline_message, grpc.StatusCode.DEADLINE_EXCEEDED) from None
    if item is _DONE:
        out.put(_DONE)
        raise StopIteration
    if isinstance(item, BaseException):
        out.put(_DONE)
        raise item
    return item


class Watch:
    """A running watch: an iterator of WatchResponse, and a context manager that cancels it.

    A background thread reads the stream. When the connection drops it
    reconnects (to the next endpoint that answers) and re-creates the watch
    from the revision after the last one delivered, so no event is lost or
    repeated. `revision` is that next revision."""

    def __init__(self, client: Client, create: rpc_pb2.WatchCreateRequest) -> None:
        self._client = client
        self._create = create
        self.revision = create.start_revision  # the next revision to be delivered (0: not known yet)
        self.reconnects = 0
        self._out: queue.Queue[Any] = queue.Queue()
        self._closed = threading.Event()
        self._created = threading.Event()
        self._call: Any = None
        self._requests: _RequestQueue | None = None
        # Raised by the constructor: the stream failed before the watch was
        # created. A cancel after creation (a compacted start revision, as
        # etcd does it) comes out of get() instead, whatever the timing.
        self._create_error: BaseException | None = None
        self._finished = False
        deadline = client._deadline(...)
        self._channel = client.connect(deadline)  # fails here, synchronously, if nothing answers
        self._thread = threading.Thread(target=self._run, name="ketch-watch", daemon=True)
        self._thread.start()
        wait = None if deadline is None else max(0.0, deadline - time.monotonic())
        if not self._created.wait(wait):
            self.close()
            raise DeadlineExceeded("context deadline exceeded", grpc.StatusCode.DEADLINE_EXCEEDED)
        if self._create_error is not None:
            self.close()
            raise self._create_error

    def _open(self, channel: SyncChannel) -> Iterator[rpc_pb2.WatchResponse]:
        create = rpc_pb2.WatchCreateRequest()
        create.CopyFrom(self._create)
        create.start_revision = self.revision
        self._requests = _RequestQueue()
        self._requests.put(rpc_pb2.WatchRequest(create_request=create))
        stream = channel.channel.stream_stream(
            WATCH_PATH,
            request_serializer=_serialize,
            response_deserializer=rpc_pb2.WatchResponse.FromString,
        )
        metadata = (("hasleader", "true"), *self._client.metadata())
        self._call = stream(iter(self._requests), metadata=metadata)
        return self._call  # type: ignore[no-any-return]

    def _run(self) -> None:
        channel: SyncChannel | None = self._channel
        while not self._closed.is_set():
            try:
                if channel is None:
                    channel = self._client.connect(None)
                    self.reconnects += 1
                for resp in self._open(channel):
                    self._handle(resp)
                    if self._finished:
                        return
            except ConnectionFailed:
                time.sleep(RETRY_PAUSE)
                continue
            except grpc.RpcError as e:
                if self._closed.is_set():
                    return
                if not _retryable(e):
                    self._fail(error_from_rpc(e))
                    return
            except EtcdError as e:  # the client was closed under us
                self._fail(e)
                return
            finally:
                if self._requests is not None:
                    self._requests.close()
            # The stream ended or broke: resume on whichever endpoint answers.
            if channel is not None:
                self._client._ring.fail(channel.endpoint)
            channel = None
            time.sleep(RETRY_PAUSE)

    def _handle(self, resp: rpc_pb2.WatchResponse) -> None:
        if resp.created:
            if not self.revision:
                self.revision = resp.header.revision + 1
            self._created.set()
            if not resp.canceled:
                return
        if resp.canceled:
            if resp.compact_revision:
                self._fail(
                    Compacted(
                        "etcdserver: mvcc: required revision has been compacted",
                        compact_revision=resp.compact_revision,
                    )
                )
            else:
                self._fail(WatchCanceled(resp.cancel_reason or "etcdserver: watch canceled"))
            return
        if resp.compact_revision:
            self._fail(
                Compacted(
                    "etcdserver: mvcc: required revision has been compacted",
                    compact_revision=resp.compact_revision,
                )
            )
            return
        if resp.events:
            self.revision = resp.events[-1].kv.mod_revision + 1
        elif resp.header.revision >= self.revision:  # a progress notification
            self.revision = resp.header.revision + 1
        self._out.put(WatchResponse.from_pb(resp))

    def _fail(self, err: BaseException) -> None:
        if not self._created.is_set():
            self._create_error = err
        self._finished = True
        self._out.put(err)
        self._created.set()

    def get(self, timeout: float | None = None) -> WatchResponse:
        """The next batch; raises DeadlineExceeded after `timeout` seconds without one,
        StopIteration once the watch is closed, and the watch's error if it failed."""
        item: WatchResponse = _take(self._out, timeout, f"no watch event within {timeout}s")
        return item

    def __iter__(self) -> Iterator[WatchResponse]:
        return self

    def __next__(self) -> WatchResponse:
        return self.get()

    def events(self) -> Iterator[Any]:
        """Every event, one at a time."""
        for resp in self:
            yield from resp.events

    def close(self) -> None:
        self._closed.set()
        if self._call is not None:
            self._call.cancel()
        if self._requests is not None:
            self._requests.close()
        self._out.put(_DONE)
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(timeout=5)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class KeepAlive:
    """Renews a lease over LeaseKeepAlive's stream, from a background thread.

    With `interval=None` it sends one renewal (keep_alive_once). Otherwise it
    renews every `interval` seconds (a third of the TTL by default, as
    etcd's clientv3 does) until closed or the lease is gone; each answer can
    be read with `get` or by iterating."""

    def __init__(
        self, client: Client, lease_id: int, *, interval: float | None, forever: bool = False
    ) -> None:
        self._client = client
        self.lease_id = lease_id
        self._interval = interval
        self._forever = forever
        self._out: queue.Queue[Any] = queue.Queue()
        self._closed = threading.Event()
        self.last: KeepAliveResult | None = None
        self._call: Any = None
        self._requests = _RequestQueue()
        self._channel = client.connect(client._deadline(...))
        self._thread = threading.Thread(target=self._run, name="ketch-keepalive", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        channel: SyncChannel | None = self._channel
        interval = self._interval
        while not self._closed.is_set():
            self._requests = _RequestQueue()
            try:
                if channel is None:
                    channel = self._client.connect(None)
                stream = channel.channel.stream_stream(
                    KEEPALIVE_PATH,
                    request_serializer=_serialize,
                    response_deserializer=rpc_pb2.LeaseKeepAliveResponse.FromString,
                )
                self._call = stream(iter(self._requests), metadata=self._client.metadata())
                while not self._closed.is_set():
                    self._requests.put(rpc_pb2.LeaseKeepAliveRequest(ID=self.lease_id))
                    resp = next(self._call)
                    if resp.TTL <= 0:
                        self._out.put(
                            LeaseExpired(
                                f"lease {self.lease_id:x} expired or was revoked",
                                grpc.StatusCode.NOT_FOUND,
                            )
                            if self.last is not None
                            else LeaseNotFound(
                                "etcdserver: requested lease not found", grpc.StatusCode.NOT_FOUND
                            )
                        )
                        return
                    self.last = KeepAliveResult.from_pb(resp)
                    self._out.put(self.last)
                    if not self._forever:
                        return
                    if interval is None:
                        interval = max(resp.TTL / 3.0, 0.5)
                    self._closed.wait(interval)
                return
            except ConnectionFailed:
                time.sleep(RETRY_PAUSE)
            except (grpc.RpcError, StopIteration) as e:
                if self._closed.is_set():
                    return
                if isinstance(e, grpc.RpcError) and not _retryable(e):
                    self._out.put(error_from_rpc(e))
                    return
                if channel is not None:
                    self._client._ring.fail(channel.endpoint)
                channel = None
                time.sleep(RETRY_PAUSE)
            except EtcdError as e:
                self._out.put(e)
                return
            finally:
                self._requests.close()

    def get(self, timeout: float | None = None) -> KeepAliveResult:
        item: KeepAliveResult = _take(self._out, timeout, "context deadline exceeded")
        return item

    def __iter__(self) -> Iterator[KeepAliveResult]:
        return self

    def __next__(self) -> KeepAliveResult:
        return self.get()

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def close(self) -> None:
        self._closed.set()
        if self._call is not None:
            self._call.cancel()
        self._requests.close()
        self._out.put(_DONE)
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout=5)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Lease:
    """A granted lease. As a context manager it is kept alive in the background
    for the duration of the block and revoked at its end (with the keys attached to it)."""

    def __init__(self, client: Client, grant: LeaseGrant, *, keep_alive: bool) -> None:
        self._client = client
        self.id = grant.id
        self.ttl = grant.ttl
        self.grant = grant
        self._keep_alive = keep_alive
        self._keeper: KeepAlive | None = None

    def __enter__(self) -> Self:
        if self._keep_alive:
            self._keeper = KeepAlive(self._client, self.id, interval=None, forever=True)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._keeper is not None:
            self._keeper.close()
        try:
            self.revoke()
        except LeaseNotFound:
            pass  # expired already: what revoking wanted

    @property
    def alive(self) -> bool:
        """False once the keep-alive found the lease expired or revoked."""
        return self._keeper is not None and self._keeper.alive

    def refresh(self) -> KeepAliveResult:
        return self._client.keep_alive_once(self.id)

    def time_to_live(self, *, keys: bool = False) -> LeaseInfo:
        return self._client.time_to_live(self.id, keys=keys)

    def revoke(self) -> None:
        if self._keeper is not None:
            self._keeper.close()
        self._client.revoke(self.id)

