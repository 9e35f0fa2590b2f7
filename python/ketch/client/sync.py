# Generated from aio.py by tools/unasync_client.py: edit aio.py, then run that script.
"""`ketch.Client`: a client for any etcd v3 server (ketch or etcd).

    with Client("127.0.0.1:2379") as c:
        c.put("greeting", "hello")
        c.get("greeting").value                # b"hello"
        for kv in c.range("app/", prefix=True):  # paged, at one revision
            ...
        with c.lease(ttl=10) as lease:           # kept alive until the block ends
            c.put("me", "here", lease=lease.id)
        with c.watch("app/", prefix=True) as w:
            for resp in w: ...

The client is written once, in aio.py (the asyncio face, on grpc.aio);
sync.py (the blocking face, with threads where aio.py has tasks) is
generated from it by tools/unasync_client.py, which drops the async words
and swaps the transport module. Edit aio.py, then run
`.venv/bin/python tools/unasync_client.py`; the test command checks that
sync.py is current. Fail-over and retries follow the rules in `policy`.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar

import grpc

from .._pb import auth_pb2, rpc_pb2, v3election_pb2, v3lock_pb2
from . import requests as rq
from ._transport_sync import Channel, Event, Lock, Mailbox, Runner, Stream
from ._transport_sync import sleep as pause
from .auth import AUTH_NOT_ENABLED, Metadata, credentials
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
from .methods import (
    ALARM,
    AUTH_DISABLE,
    AUTH_ENABLE,
    AUTH_STATUS,
    AUTHENTICATE,
    CAMPAIGN,
    COMPACT,
    DEFRAGMENT,
    DELETE,
    HASH_KV,
    LEADER,
    LEASE_GRANT,
    LEASE_KEEPALIVE,
    LEASE_LEASES,
    LEASE_REVOKE,
    LEASE_TTL,
    LOCK,
    MEMBER_ADD,
    MEMBER_LIST,
    MEMBER_PROMOTE,
    MEMBER_REMOVE,
    MEMBER_UPDATE,
    MOVE_LEADER,
    OBSERVE,
    PROCLAIM,
    PUT,
    RANGE,
    RESIGN,
    ROLE_ADD,
    ROLE_DELETE,
    ROLE_GET,
    ROLE_GRANT_PERMISSION,
    ROLE_LIST,
    ROLE_REVOKE_PERMISSION,
    SNAPSHOT,
    STATUS,
    TXN,
    UNLOCK,
    USER_ADD,
    USER_CHANGE_PASSWORD,
    USER_DELETE,
    USER_GET,
    USER_GRANT_ROLE,
    USER_LIST,
    USER_REVOKE_ROLE,
    WATCH,
)
from .policy import (
    DEFAULT_ENDPOINT,
    RETRY_PAUSE,
    Timeout,
    deadline,
    left,
    may_retry,
    renew_token,
    retryable,
)
from .requests import Bytes, Compare, Op, SortOrder, SortTarget
from .results import (
    AuthStatus,
    AuthToken,
    DeleteResult,
    GetResult,
    Header,
    KeepAliveResult,
    KeyValue,
    LeaderKey,
    LeaseGrant,
    LeaseInfo,
    LeaseList,
    LockResult,
    MemberList,
    NameList,
    PermissionType,
    PutResult,
    RoleInfo,
    Status,
    TxnResult,
    UserInfo,
    WatchResponse,
)
from .results import Event as WatchEvent

if TYPE_CHECKING:
    from typing_extensions import Self  # typing.Self needs 3.11; only the checker reads it

__all__ = ["Client", "KeepAlive", "Lease", "TxnBuilder", "Watch"]

M = TypeVar("M")
_DONE = object()  # a runner's last word to its reader: nothing more will come


def _deadline_exceeded(message: str = "context deadline exceeded") -> DeadlineExceeded:
    return DeadlineExceeded(message, grpc.StatusCode.DEADLINE_EXCEEDED)


def _take(out: Mailbox, timeout: float | None, deadline_message: str) -> Any:
    """The next item a runner left for its reader.

    Raises DeadlineExceeded when nothing came within `timeout`,
    StopIteration once the runner ended, and the runner's error if it
    failed; the end is put back so every later call ends the same way."""
    try:
        item = out.get(timeout)
    except TimeoutError:
        raise _deadline_exceeded(deadline_message) from None
    if item is _DONE:
        out.put(_DONE)
        raise StopIteration
    if isinstance(item, BaseException):
        out.put(_DONE)
        raise item
    return item


class Client:
    """A connection to an etcd-compatible cluster through one or more endpoints.

    Args:
        endpoints: "host:port", "http(s)://host:port", a comma-separated list, or a sequence.
        timeout: seconds for each call (None: no limit); every method also takes `timeout=`.
        dial_timeout: seconds to wait for an endpoint to connect before trying the next.
        ca_cert, cert, key: TLS files; giving any of them (or an https endpoint) turns TLS on.
        server_name: the name to verify in the server's certificate, if not the endpoint's host.
        user, password: an etcd user to authenticate as; every call then carries its token
            (against a server without auth enabled calls go without one).
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
        self._auth_lock = Lock()
        self.timeout = timeout
        self.dial_timeout = dial_timeout
        self._channels: dict[Endpoint, Channel] = {}
        self._lock = threading.Lock()  # guards _channels and _closed
        self._closed = False

    # -- plumbing ---------------------------------------------------------

    @property
    def endpoints(self) -> list[str]:
        """The endpoints as they were given."""
        return [ep.text for ep in self._ring.endpoints]

    def _channel(self, ep: Endpoint) -> Channel:
        with self._lock:
            if self._closed:
                raise EtcdError("the client is closed")
            ch = self._channels.get(ep)
            if ch is None:
                ch = self._channels[ep] = Channel(ep, self._tls)
            return ch

    def _deadline(self, timeout: Timeout) -> float | None:
        return deadline(timeout, self.timeout)

    def _dial_wait(self, deadline: float | None) -> float:
        until = left(deadline)
        return self.dial_timeout if until is None else min(self.dial_timeout, until)

    def connect(self, deadline: float | None, endpoint: str | None = None) -> Channel:
        """A connected channel: the current endpoint's if it connects, else the next's,
        with this client's user authenticated (see `metadata`).

        With several endpoints an endpoint that fails to connect is passed over
        at once; a single endpoint gets the whole dial timeout. Raises
        ConnectionFailed when none connects."""
        candidates = [self._ring.find(endpoint)] if endpoint else self._ring.order()
        fail_fast = len(candidates) > 1
        tried: list[str] = []
        for ep in candidates:
            ch = self._channel(ep)
            if ch.wait_ready(self._dial_wait(deadline), fail_fast):
                return self._authenticated(ch, deadline)
            tried.append(ep.text)
            if not endpoint:
                self._ring.fail(ep)
        # All failed fast: give the first one the dial timeout before giving up.
        if fail_fast:
            ch = self._channel(candidates[0])
            if ch.wait_ready(self._dial_wait(deadline), False):
                return self._authenticated(ch, deadline)
        raise ConnectionFailed(
            f"could not connect to {', '.join(tried)} within {self.dial_timeout}s "
            "(is a server listening there, with matching TLS settings?)",
            grpc.StatusCode.UNAVAILABLE,
        )

    def metadata(self) -> Metadata:
        """The gRPC metadata every call carries: the user's token, if the server gave one."""
        return () if self._auth is None else self._auth.metadata()

    def _authenticated(self, ch: Channel, deadline: float | None) -> Channel:
        auth = self._auth
        if auth is None or auth.known:
            return ch
        with self._auth_lock:
            if auth.known:
                return ch
            try:
                auth.accept(ch.unary(AUTHENTICATE, auth.request(), left(deadline), ()))
            except grpc.RpcError as e:
                if e.details() != AUTH_NOT_ENABLED:
                    raise error_from_rpc(e) from None
                auth.auth_not_enabled()
        return ch

    def call(
        self,
        method: tuple[str, Callable[[bytes], M]],  # one of `methods`
        request: Any,
        *,
        idempotent: bool,
        timeout: Timeout = ...,
        endpoint: str | None = None,
    ) -> M:
        """One unary RPC with fail-over (see `policy`): `idempotent` calls are
        sent again after an UNAVAILABLE answer until the deadline. `endpoint`
        pins the call to one endpoint. Raises the EtcdError for the answer."""
        deadline = self._deadline(timeout)
        token_renewed = False
        while True:
            try:
                ch = self.connect(deadline, endpoint)
            except ConnectionFailed:
                if deadline is not None and not left(deadline):
                    raise _deadline_exceeded() from None
                raise
            try:
                answer: M = ch.unary(method, request, left(deadline), self.metadata())
                return answer
            except grpc.RpcError as e:
                if self._auth is not None and not token_renewed and renew_token(e):
                    self._auth.forget()
                    token_renewed = True
                    continue
                if not (idempotent and retryable(e) and may_retry(deadline)):
                    raise error_from_rpc(e) from None
                if not endpoint:
                    self._ring.fail(ch.endpoint)
                pause(RETRY_PAUSE)

    def _write(self, method: tuple[str, Callable[[bytes], Any]], request: Any, timeout: Timeout) -> Header:
        """A call that changes something and answers only a header (sent once: see `policy`)."""
        resp = self.call(method, request, idempotent=False, timeout=timeout)
        return Header.from_pb(resp.header)

    def close(self) -> None:
        """Close every channel; calls after this raise EtcdError."""
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
        """Read a key, or the range [key, range_end) (`prefix`: every key that
        starts with `key`; `from_key`: every key from `key` on). A missing key
        is an empty result. `revision` reads the past; `serializable` lets the
        member answer from its own copy without asking the leader."""
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
        """Set a key's value (attached to `lease`, if given). `prev_kv` returns
        what it replaced; `ignore_value`/`ignore_lease` keep the current ones."""
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
        """Delete a key or a range (chosen as for `get`); `deleted` counts the keys."""
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
        """If every compare holds, run `success`, else `failure`; atomically.
        A transaction of reads only is retried like a read."""
        req = rq.txn_request(tuple(compare), tuple(success), tuple(failure))
        read_only = all(op.is_read for op in [*success, *failure])
        return TxnResult.from_pb(self.call(TXN, req, idempotent=read_only, timeout=timeout))

    def transaction(self) -> TxnBuilder:
        """A fluent transaction: `c.transaction().if_(...).then(...).else_(...).commit()`."""
        return TxnBuilder(self)

    def compact(self, revision: int, *, physical: bool = False, timeout: Timeout = ...) -> Header:
        """Discard history before `revision`. With `physical`, return only once
        the space is reclaimed."""
        req = rpc_pb2.CompactionRequest(revision=revision, physical=physical)
        return self._write(COMPACT, req, timeout)

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
        w = Watch(self, create)
        w._start()
        return w

    # -- Lease ------------------------------------------------------------

    def grant(self, ttl: int, *, id: int = 0, timeout: Timeout = ...) -> LeaseGrant:
        """Grant a lease of `ttl` seconds (`id`: choose its ID; 0 lets the server)."""
        req = rpc_pb2.LeaseGrantRequest(TTL=ttl, ID=id)
        return LeaseGrant.from_pb(self.call(LEASE_GRANT, req, idempotent=False, timeout=timeout))

    def revoke(self, lease_id: int, *, timeout: Timeout = ...) -> Header:
        """Revoke a lease, deleting the keys attached to it. Raises LeaseNotFound."""
        req = rpc_pb2.LeaseRevokeRequest(ID=lease_id)
        return self._write(LEASE_REVOKE, req, timeout)

    def time_to_live(self, lease_id: int, *, keys: bool = False, timeout: Timeout = ...) -> LeaseInfo:
        """A lease's remaining TTL (and with `keys`, the keys attached to it)."""
        req = rpc_pb2.LeaseTimeToLiveRequest(ID=lease_id, keys=keys)
        return LeaseInfo.from_pb(self.call(LEASE_TTL, req, idempotent=True, timeout=timeout))

    def leases(self, *, timeout: Timeout = ...) -> LeaseList:
        """The IDs of every live lease."""
        req = rpc_pb2.LeaseLeasesRequest()
        return LeaseList.from_pb(self.call(LEASE_LEASES, req, idempotent=True, timeout=timeout))

    def keep_alive_once(self, lease_id: int, *, timeout: Timeout = ...) -> KeepAliveResult:
        """Renew a lease once. Raises LeaseNotFound if it has expired."""
        ka = KeepAlive(self, lease_id, interval=None, forever=False)
        ka._start()
        try:
            return ka.get(timeout=self.timeout if timeout is ... else timeout)
        finally:
            ka.close()

    def keep_alive(self, lease_id: int, *, interval: float | None = None) -> KeepAlive:
        """Renew a lease every `interval` seconds (default: a third of its TTL,
        as etcd's clientv3 does) until closed; iterate it for each renewal's answer."""
        ka = KeepAlive(self, lease_id, interval=interval, forever=True)
        ka._start()
        return ka

    def lease(self, ttl: int, *, id: int = 0, keep_alive: bool = True) -> Lease:
        """A lease for a `with` block: granted on entry, kept alive during it
        (unless `keep_alive=False`), revoked on exit with the keys attached to it."""
        return Lease(self, ttl, id=id, keep_alive=keep_alive)

    # -- Cluster ----------------------------------------------------------

    def member_list(self, *, timeout: Timeout = ...) -> MemberList:
        """Every member of the cluster, learners included."""
        req = rpc_pb2.MemberListRequest()
        return MemberList.from_pb(self.call(MEMBER_LIST, req, idempotent=True, timeout=timeout))

    def member_add(
        self, peer_urls: Sequence[str], *, is_learner: bool = False, timeout: Timeout = ...
    ) -> MemberList:
        """Add a member (a learner with `is_learner`) reachable at `peer_urls`."""
        req = rpc_pb2.MemberAddRequest(peerURLs=list(peer_urls), isLearner=is_learner)
        return MemberList.from_pb(self.call(MEMBER_ADD, req, idempotent=False, timeout=timeout))

    def member_remove(self, member_id: int, *, timeout: Timeout = ...) -> MemberList:
        """Remove a member. Raises MemberNotFound."""
        req = rpc_pb2.MemberRemoveRequest(ID=member_id)
        return MemberList.from_pb(self.call(MEMBER_REMOVE, req, idempotent=False, timeout=timeout))

    def member_update(
        self, member_id: int, peer_urls: Sequence[str], *, timeout: Timeout = ...
    ) -> MemberList:
        """Change a member's peer URLs."""
        req = rpc_pb2.MemberUpdateRequest(ID=member_id, peerURLs=list(peer_urls))
        return MemberList.from_pb(self.call(MEMBER_UPDATE, req, idempotent=False, timeout=timeout))

    def member_promote(self, member_id: int, *, timeout: Timeout = ...) -> MemberList:
        """Make a learner a voting member (once it has caught up with the leader)."""
        req = rpc_pb2.MemberPromoteRequest(ID=member_id)
        return MemberList.from_pb(self.call(MEMBER_PROMOTE, req, idempotent=False, timeout=timeout))

    # -- Maintenance ------------------------------------------------------

    def status(self, endpoint: str | None = None, *, timeout: Timeout = ...) -> Status:
        """The status of `endpoint` (by default, of whichever endpoint answers)."""
        req = rpc_pb2.StatusRequest()
        resp = self.call(STATUS, req, idempotent=True, timeout=timeout, endpoint=endpoint)
        return Status.from_pb(resp)

    def alarms(self, *, timeout: Timeout = ...) -> rpc_pb2.AlarmResponse:
        """Every active alarm (NOSPACE, CORRUPT) of every member."""
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
        """Compact one member's backend file, giving freed pages back to the disk."""
        req = rpc_pb2.DefragmentRequest()
        resp = self.call(DEFRAGMENT, req, idempotent=True, timeout=timeout, endpoint=endpoint)
        return Header.from_pb(resp.header)

    def hash_kv(
        self, endpoint: str | None = None, revision: int = 0, *, timeout: Timeout = ...
    ) -> rpc_pb2.HashKVResponse:
        """One member's hash of its keys up to `revision` (0: the latest), to compare members."""
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
        if deadline is not None and not left(deadline):
            raise _deadline_exceeded()
        req = rpc_pb2.SnapshotRequest()
        call = ch.server_stream(SNAPSHOT, req, left(deadline), self.metadata())
        received = 0
        try:
            for chunk in call:
                received += len(chunk.blob)
                if progress is not None:
                    progress(received, received + chunk.remaining_bytes)
                yield chunk.blob
        except grpc.RpcError as e:
            raise error_from_rpc(e) from None
        finally:
            call.cancel()

    # -- Auth ---------------------------------------------------------------

    def auth_enable(self, *, timeout: Timeout = ...) -> Header:
        """Turn authentication on (the user root, with the role root, must exist).
        Every later call then needs a user's token: make a client with `user=`."""
        req = rpc_pb2.AuthEnableRequest()
        return self._write(AUTH_ENABLE, req, timeout)

    def auth_disable(self, *, timeout: Timeout = ...) -> Header:
        """Turn authentication off (as root)."""
        req = rpc_pb2.AuthDisableRequest()
        return self._write(AUTH_DISABLE, req, timeout)

    def auth_status(self, *, timeout: Timeout = ...) -> AuthStatus:
        """Whether authentication is on, and the auth store's revision."""
        req = rpc_pb2.AuthStatusRequest()
        return AuthStatus.from_pb(self.call(AUTH_STATUS, req, idempotent=True, timeout=timeout))

    def authenticate(self, name: str, password: str, *, timeout: Timeout = ...) -> AuthToken:
        """Check a user's password and get a token. A client made with `user=`
        does this itself; this call is for those who want the token."""
        req = rpc_pb2.AuthenticateRequest(name=name, password=password)
        return AuthToken.from_pb(self.call(AUTHENTICATE, req, idempotent=True, timeout=timeout))

    def user_add(
        self, name: str, password: str = "", *, no_password: bool = False, timeout: Timeout = ...
    ) -> Header:
        """Add a user; with `no_password` it can only authenticate by TLS certificate."""
        options = auth_pb2.UserAddOptions(no_password=no_password)
        req = rpc_pb2.AuthUserAddRequest(name=name, password=password, options=options)
        return self._write(USER_ADD, req, timeout)

    def user_get(self, name: str, *, timeout: Timeout = ...) -> UserInfo:
        """A user's roles. Raises EtcdError ("etcdserver: user name not found")."""
        req = rpc_pb2.AuthUserGetRequest(name=name)
        return UserInfo.from_pb(self.call(USER_GET, req, idempotent=True, timeout=timeout))

    def user_list(self, *, timeout: Timeout = ...) -> NameList:
        """Every user's name."""
        resp = self.call(USER_LIST, rpc_pb2.AuthUserListRequest(), idempotent=True, timeout=timeout)
        return NameList.from_pb(resp.header, resp.users)

    def user_delete(self, name: str, *, timeout: Timeout = ...) -> Header:
        """Delete a user."""
        req = rpc_pb2.AuthUserDeleteRequest(name=name)
        return self._write(USER_DELETE, req, timeout)

    def user_change_password(self, name: str, password: str, *, timeout: Timeout = ...) -> Header:
        """Set a user's password."""
        req = rpc_pb2.AuthUserChangePasswordRequest(name=name, password=password)
        return self._write(USER_CHANGE_PASSWORD, req, timeout)

    def user_grant_role(self, user: str, role: str, *, timeout: Timeout = ...) -> Header:
        """Give a user a role."""
        req = rpc_pb2.AuthUserGrantRoleRequest(user=user, role=role)
        return self._write(USER_GRANT_ROLE, req, timeout)

    def user_revoke_role(self, user: str, role: str, *, timeout: Timeout = ...) -> Header:
        """Take a role from a user."""
        req = rpc_pb2.AuthUserRevokeRoleRequest(name=user, role=role)
        return self._write(USER_REVOKE_ROLE, req, timeout)

    def role_add(self, name: str, *, timeout: Timeout = ...) -> Header:
        """Add a role (with no permissions yet)."""
        req = rpc_pb2.AuthRoleAddRequest(name=name)
        return self._write(ROLE_ADD, req, timeout)

    def role_get(self, name: str, *, timeout: Timeout = ...) -> RoleInfo:
        """A role's permissions. Raises EtcdError ("etcdserver: role name not found")."""
        req = rpc_pb2.AuthRoleGetRequest(role=name)
        return RoleInfo.from_pb(self.call(ROLE_GET, req, idempotent=True, timeout=timeout))

    def role_list(self, *, timeout: Timeout = ...) -> NameList:
        """Every role's name."""
        resp = self.call(ROLE_LIST, rpc_pb2.AuthRoleListRequest(), idempotent=True, timeout=timeout)
        return NameList.from_pb(resp.header, resp.roles)

    def role_delete(self, name: str, *, timeout: Timeout = ...) -> Header:
        """Delete a role (and take it from every user who has it)."""
        req = rpc_pb2.AuthRoleDeleteRequest(role=name)
        return self._write(ROLE_DELETE, req, timeout)

    def role_grant_permission(
        self,
        role: str,
        key: Bytes,
        range_end: Bytes | None = None,
        *,
        prefix: bool = False,
        from_key: bool = False,
        type: PermissionType | str = PermissionType.READWRITE,
        timeout: Timeout = ...,
    ) -> Header:
        """Let a role read and/or write a key or a range (chosen as for `get`);
        `type` is "read", "write" or "readwrite"."""
        k, end = rq.key_range(key, range_end, prefix, from_key)
        perm = auth_pb2.Permission(permType=PermissionType(type).to_pb(), key=k, range_end=end)
        req = rpc_pb2.AuthRoleGrantPermissionRequest(name=role, perm=perm)
        return self._write(ROLE_GRANT_PERMISSION, req, timeout)

    def role_revoke_permission(
        self,
        role: str,
        key: Bytes,
        range_end: Bytes | None = None,
        *,
        prefix: bool = False,
        from_key: bool = False,
        timeout: Timeout = ...,
    ) -> Header:
        """Take back a role's permission on exactly that key or range."""
        k, end = rq.key_range(key, range_end, prefix, from_key)
        req = rpc_pb2.AuthRoleRevokePermissionRequest(role=role, key=k, range_end=end)
        return self._write(ROLE_REVOKE_PERMISSION, req, timeout)

    # -- Lock and Election (the server-side recipes) ------------------------

    def lock(self, name: Bytes, lease: int, *, timeout: Timeout = ...) -> LockResult:
        """Wait until this caller holds the lock `name`, held for as long as
        `lease` lives; returns the key that owns it (give it to `unlock`).
        The server runs the recipe (etcd's v3lock); see `Mutex` for the
        client-side one. Pass `timeout=None` to wait without limit."""
        req = v3lock_pb2.LockRequest(name=rq.to_bytes(name), lease=lease)
        return LockResult.from_pb(self.call(LOCK, req, idempotent=False, timeout=timeout))

    def unlock(self, key: Bytes, *, timeout: Timeout = ...) -> Header:
        """Release the lock owned by `key` (what `lock` returned)."""
        req = v3lock_pb2.UnlockRequest(key=rq.to_bytes(key))
        return self._write(UNLOCK, req, timeout)

    def campaign(
        self, name: Bytes, lease: int, value: Bytes, *, timeout: Timeout = ...
    ) -> LeaderKey:
        """Wait until elected leader of the election `name` (for as long as
        `lease` lives), announcing `value`; returns the leadership to give to
        `proclaim` and `resign`. Pass `timeout=None` to wait without limit."""
        req = v3election_pb2.CampaignRequest(
            name=rq.to_bytes(name), lease=lease, value=rq.to_bytes(value)
        )
        resp = self.call(CAMPAIGN, req, idempotent=False, timeout=timeout)
        return LeaderKey.from_pb(resp.leader)

    def proclaim(self, leader: LeaderKey, value: Bytes, *, timeout: Timeout = ...) -> Header:
        """As the leader, announce a new `value` without a new election."""
        req = v3election_pb2.ProclaimRequest(leader=leader.to_pb(), value=rq.to_bytes(value))
        return self._write(PROCLAIM, req, timeout)

    def leader(self, name: Bytes, *, timeout: Timeout = ...) -> KeyValue:
        """The current leader's key and value. Raises EtcdError
        ("election: no leader") when nobody leads."""
        req = v3election_pb2.LeaderRequest(name=rq.to_bytes(name))
        resp = self.call(LEADER, req, idempotent=True, timeout=timeout)
        return KeyValue.from_pb(resp.kv)

    def resign(self, leader: LeaderKey, *, timeout: Timeout = ...) -> Header:
        """Give up leadership, so that the next campaigner is elected."""
        req = v3election_pb2.ResignRequest(leader=leader.to_pb())
        return self._write(RESIGN, req, timeout)

    def observe(self, name: Bytes, *, timeout: Timeout = None) -> Iterator[KeyValue]:
        """Each leader of the election `name` as it takes office or proclaims,
        starting with the current one. `timeout` bounds the whole observation
        (by default there is no limit); end it by leaving the loop."""
        deadline = self._deadline(timeout)
        ch = self.connect(deadline if deadline is not None else self._deadline(...))
        req = v3election_pb2.LeaderRequest(name=rq.to_bytes(name))
        call = ch.server_stream(OBSERVE, req, left(deadline), self.metadata())
        try:
            for resp in call:
                yield KeyValue.from_pb(resp.kv)
        except grpc.RpcError as e:
            raise error_from_rpc(e) from None
        finally:
            call.cancel()


class TxnBuilder:
    """etcd's If/Then/Else, spelled `if_`, `then`, `else_` (if and else are Python keywords)."""

    def __init__(self, client: Client) -> None:
        self._client = client
        self._compare: list[Compare] = []
        self._success: list[Op] = []
        self._failure: list[Op] = []

    def if_(self, *compares: Compare) -> TxnBuilder:
        """Add compares; all must hold for `then` to run."""
        self._compare.extend(compares)
        return self

    def then(self, *ops: Op) -> TxnBuilder:
        """Add operations to run when every compare holds."""
        self._success.extend(ops)
        return self

    def else_(self, *ops: Op) -> TxnBuilder:
        """Add operations to run when a compare fails."""
        self._failure.extend(ops)
        return self

    def commit(self, *, timeout: Timeout = ...) -> TxnResult:
        """Send the transaction (see `txn`)."""
        return self._client.txn(self._compare, self._success, self._failure, timeout=timeout)


def _cancel_error(resp: rpc_pb2.WatchResponse) -> EtcdError:
    """Why the server ended a watch: a compacted start revision, or its reason."""
    if resp.compact_revision:
        return Compacted(
            "etcdserver: mvcc: required revision has been compacted",
            compact_revision=resp.compact_revision,
        )
    return WatchCanceled(resp.cancel_reason or "etcdserver: watch canceled")


class _Follower:
    """What a watch and a keep-alive share: a background runner that follows a
    stream (opening another when it breaks) and leaves what it reads in a
    mailbox, which `get` and iteration empty in order."""

    _deadline_message = "context deadline exceeded"

    def __init__(self, client: Client) -> None:
        self._client = client
        self._out = Mailbox()
        self._closed = Event()
        self._stream: Stream | None = None
        self._runner: Runner | None = None

    def _follow(self) -> bool:
        """Follow one stream; True once there is nothing more to follow."""
        raise NotImplementedError

    def _run(self) -> None:
        try:
            while not self._closed.is_set():
                if self._follow():
                    return
                self._closed.wait(RETRY_PAUSE)
        finally:
            self._out.put(_DONE)

    def _stop_on(self, err: grpc.RpcError) -> bool:
        """After the stream failed: whether to stop (leaving the error for the reader,
        unless it was closed) rather than follow another stream."""
        if self._closed.is_set():
            return True
        if retryable(err):
            return False
        self._out.put(error_from_rpc(err))
        return True

    def get(self, timeout: float | None = None) -> Any:
        """The next answer; raises DeadlineExceeded after `timeout` seconds
        without one, StopIteration once closed, and the error that ended it."""
        return _take(self._out, timeout, self._deadline_message.format(timeout=timeout))

    def __iter__(self) -> Self:
        return self

    def __next__(self) -> Any:
        return self.get()

    def close(self) -> None:
        """Stop following: iterating then ends."""
        self._closed.set()
        if self._stream is not None:
            self._stream.cancel()
        self._out.put(_DONE)
        if self._runner is not None:
            self._runner.stop()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Watch(_Follower):
    """A running watch: an iterator of WatchResponse, and a context manager that cancels it.

    A background runner reads the stream. When the connection drops it
    reconnects (to the next endpoint that answers) and re-creates the watch
    from the revision after the last one delivered, so no event is lost or
    repeated. `revision` is that next revision; `reconnects` counts the
    times it had to. `get` raises Compacted or WatchCanceled when the server
    ends the watch."""

    _deadline_message = "no watch event within {timeout}s"

    def __init__(self, client: Client, create: rpc_pb2.WatchCreateRequest) -> None:
        super().__init__(client)
        self._create = create
        self.revision = create.start_revision  # the next revision to deliver (0: not known yet)
        self.reconnects = 0
        self._endpoint: Endpoint | None = None

    def _open(self, deadline: float | None) -> Stream:
        """Connect and ask for the watch, from the next revision not yet delivered."""
        ch = self._client.connect(deadline)
        create = rpc_pb2.WatchCreateRequest()
        create.CopyFrom(self._create)
        create.start_revision = self.revision
        metadata = (("hasleader", "true"), *self._client.metadata())
        self._stream = stream = ch.stream(WATCH, metadata)
        self._endpoint = ch.endpoint
        stream.send(rpc_pb2.WatchRequest(create_request=create))
        return stream

    def _start(self) -> None:
        """Create the watch: raises what stopped the server from accepting it.
        A cancel after creation (a compacted start revision, as etcd does it)
        comes out of `get` instead."""
        deadline = self._client._deadline(...)
        try:
            stream = self._open(deadline)
            first = stream.receive(left(deadline))
        except TimeoutError:
            self.close()
            raise _deadline_exceeded() from None
        except grpc.RpcError as e:
            self.close()
            raise error_from_rpc(e) from None
        if first is None or first.canceled:
            self.close()
            if first is None:
                raise EtcdError("the server closed the watch stream before creating the watch")
            raise _cancel_error(first)
        self._handle(first)
        self._runner = Runner(self._run, "ketch-watch")

    def _follow(self) -> bool:
        try:
            if self._stream is None:
                self._open(None)
                self.reconnects += 1
            assert self._stream is not None
            while (resp := self._stream.receive()) is not None:
                if not self._handle(resp):
                    return True
        except ConnectionFailed:
            pass
        except grpc.RpcError as e:
            if self._stop_on(e):
                return True
        except EtcdError as e:  # the client was closed under us
            self._out.put(e)
            return True
        # The stream ended or broke: resume on whichever endpoint answers.
        if self._stream is not None:
            self._stream.cancel()
            self._stream = None
        if self._endpoint is not None:
            self._client._ring.fail(self._endpoint)
        return self._closed.is_set()

    def _handle(self, resp: rpc_pb2.WatchResponse) -> bool:
        """Take one answer; False once it ended the watch."""
        if resp.created and not resp.canceled:
            if not self.revision:
                self.revision = resp.header.revision + 1
            return True
        if resp.canceled or resp.compact_revision:
            self._out.put(_cancel_error(resp))
            return False
        if resp.events:
            self.revision = resp.events[-1].kv.mod_revision + 1
        elif resp.header.revision >= self.revision:  # a progress notification
            self.revision = resp.header.revision + 1
        self._out.put(WatchResponse.from_pb(resp))
        return True

    def get(self, timeout: float | None = None) -> WatchResponse:
        """The next batch; raises DeadlineExceeded after `timeout` seconds without one,
        StopIteration once the watch is closed, and the watch's error if it failed."""
        resp: WatchResponse = super().get(timeout)
        return resp

    def __next__(self) -> WatchResponse:
        return self.get()

    def events(self) -> Iterator[WatchEvent]:
        """Every event, one at a time."""
        for resp in self:
            yield from resp.events


class KeepAlive(_Follower):
    """Renews a lease over LeaseKeepAlive's stream, from a background runner.

    With `forever=False` it sends one renewal (keep_alive_once). Otherwise it
    renews every `interval` seconds (a third of the TTL by default, as etcd's
    clientv3 does) until closed or the lease is gone; each answer can be read
    with `get` or by iterating, and `last` is the latest."""

    def __init__(
        self, client: Client, lease_id: int, *, interval: float | None, forever: bool
    ) -> None:
        super().__init__(client)
        self.lease_id = lease_id
        self._interval = interval
        self._forever = forever
        self.last: KeepAliveResult | None = None
        self._channel: Channel | None = None

    def _start(self) -> None:
        # Fails here, in the caller, if no endpoint answers.
        self._channel = self._client.connect(self._client._deadline(...))
        self._runner = Runner(self._run, "ketch-keepalive")

    def _follow(self) -> bool:
        try:
            if self._channel is None:
                self._channel = self._client.connect(None)
            self._stream = stream = self._channel.stream(LEASE_KEEPALIVE, self._client.metadata())
            while not self._closed.is_set():
                stream.send(rpc_pb2.LeaseKeepAliveRequest(ID=self.lease_id))
                resp = stream.receive()
                if resp is None:
                    break  # the stream ended: open another
                if resp.TTL <= 0:
                    self._out.put(self._gone())
                    return True
                self.last = KeepAliveResult.from_pb(resp)
                self._out.put(self.last)
                if not self._forever:
                    return True
                self._closed.wait(self._interval or max(resp.TTL / 3.0, 0.5))
            else:
                return True
        except ConnectionFailed:
            return False
        except grpc.RpcError as e:
            if self._stop_on(e):
                return True
        except EtcdError as e:  # the client was closed under us
            self._out.put(e)
            return True
        finally:
            if self._stream is not None:
                self._stream.cancel()
        if self._channel is not None:
            self._client._ring.fail(self._channel.endpoint)
        self._channel = None
        return False

    def _gone(self) -> EtcdError:
        if self.last is not None:
            return LeaseExpired(
                f"lease {self.lease_id:x} expired or was revoked", grpc.StatusCode.NOT_FOUND
            )
        return LeaseNotFound("etcdserver: requested lease not found", grpc.StatusCode.NOT_FOUND)

    def get(self, timeout: float | None = None) -> KeepAliveResult:
        """The next renewal's answer; raises DeadlineExceeded after `timeout`
        seconds without one, LeaseNotFound (LeaseExpired after a renewal) once
        the lease is gone, and StopIteration once closed."""
        result: KeepAliveResult = super().get(timeout)
        return result

    def __next__(self) -> KeepAliveResult:
        return self.get()

    @property
    def alive(self) -> bool:
        """True while it renews: False once closed, or once the lease is gone."""
        return self._runner is not None and self._runner.alive


class Lease:
    """A lease for a `with` block: granted on entering it, kept alive in the
    background during it, revoked at its end (with the keys attached to it)."""

    def __init__(self, client: Client, ttl: int, *, id: int, keep_alive: bool) -> None:
        self._client = client
        self._ttl = ttl
        self._want_id = id
        self._keep_alive = keep_alive
        self.id = 0  # the lease's ID, once granted
        self.ttl = 0  # the TTL the server granted
        self.grant: LeaseGrant | None = None
        self._keeper: KeepAlive | None = None

    def __enter__(self) -> Self:
        self.grant = self._client.grant(self._ttl, id=self._want_id)
        self.id, self.ttl = self.grant.id, self.grant.ttl
        if self._keep_alive:
            self._keeper = self._client.keep_alive(self.id)
        return self

    def __exit__(self, *exc: object) -> None:
        with contextlib.suppress(LeaseNotFound):  # expired already: what revoking wanted
            self.revoke()

    @property
    def alive(self) -> bool:
        """False once the keep-alive found the lease expired or revoked."""
        return self._keeper is not None and self._keeper.alive

    def refresh(self) -> KeepAliveResult:
        """Renew the lease once, now."""
        return self._client.keep_alive_once(self.id)

    def time_to_live(self, *, keys: bool = False) -> LeaseInfo:
        """The lease's remaining TTL (see `Client.time_to_live`)."""
        return self._client.time_to_live(self.id, keys=keys)

    def revoke(self) -> Header:
        """Stop the keep-alive and revoke the lease now."""
        if self._keeper is not None:
            self._keeper.close()
        return self._client.revoke(self.id)

