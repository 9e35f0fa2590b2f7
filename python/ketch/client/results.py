"""What the client returns: typed, immutable views of etcd's responses.

Each result keeps the wire message it came from in `raw` (a protobuf message
of etcd's v3 API), for callers that need a field this view does not name or
want to print it the way etcdctl does.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Union

from .._pb import auth_pb2, kv_pb2, rpc_pb2, v3election_pb2, v3lock_pb2

__all__ = [
    "AuthStatus",
    "AuthToken",
    "DeleteResult",
    "Event",
    "EventType",
    "GetResult",
    "Header",
    "KeepAliveResult",
    "KeyValue",
    "LeaderKey",
    "LeaseGrant",
    "LeaseInfo",
    "LeaseList",
    "LockResult",
    "Member",
    "MemberList",
    "NameList",
    "Permission",
    "PermissionType",
    "PutResult",
    "RoleInfo",
    "Status",
    "TxnResult",
    "UserInfo",
    "WatchResponse",
]


@dataclass(frozen=True, slots=True)
class Header:
    """Which cluster and member answered, and the store's revision when it did."""

    cluster_id: int
    member_id: int
    revision: int
    raft_term: int

    @classmethod
    def from_pb(cls, h: rpc_pb2.ResponseHeader) -> Header:
        return cls(h.cluster_id, h.member_id, h.revision, h.raft_term)


@dataclass(frozen=True, slots=True)
class KeyValue:
    """One key at one revision. `lease` is 0 when no lease is attached."""

    key: bytes
    value: bytes
    create_revision: int
    mod_revision: int
    version: int
    lease: int

    @classmethod
    def from_pb(cls, kv: kv_pb2.KeyValue) -> KeyValue:
        return cls(kv.key, kv.value, kv.create_revision, kv.mod_revision, kv.version, kv.lease)


def _kvs(kvs: Any) -> tuple[KeyValue, ...]:
    return tuple(KeyValue.from_pb(kv) for kv in kvs)


@dataclass(frozen=True, slots=True)
class GetResult:
    """A range read. `count` is the number of keys in the range (not only those
    returned); `more` says a limit cut the answer short."""

    header: Header
    kvs: tuple[KeyValue, ...]
    more: bool
    count: int
    raw: rpc_pb2.RangeResponse = field(repr=False, compare=False)

    @classmethod
    def from_pb(cls, r: rpc_pb2.RangeResponse) -> GetResult:
        return cls(Header.from_pb(r.header), _kvs(r.kvs), r.more, r.count, r)

    def __bool__(self) -> bool:
        return bool(self.kvs)

    @property
    def value(self) -> bytes | None:
        """The first key's value, or None when nothing matched."""
        return self.kvs[0].value if self.kvs else None


@dataclass(frozen=True, slots=True)
class PutResult:
    header: Header
    prev_kv: KeyValue | None
    raw: rpc_pb2.PutResponse = field(repr=False, compare=False)

    @classmethod
    def from_pb(cls, r: rpc_pb2.PutResponse) -> PutResult:
        prev = KeyValue.from_pb(r.prev_kv) if r.HasField("prev_kv") else None
        return cls(Header.from_pb(r.header), prev, r)


@dataclass(frozen=True, slots=True)
class DeleteResult:
    header: Header
    deleted: int
    prev_kvs: tuple[KeyValue, ...]
    raw: rpc_pb2.DeleteRangeResponse = field(repr=False, compare=False)

    @classmethod
    def from_pb(cls, r: rpc_pb2.DeleteRangeResponse) -> DeleteResult:
        return cls(Header.from_pb(r.header), r.deleted, _kvs(r.prev_kvs), r)


OpResult = Union[GetResult, PutResult, DeleteResult, "TxnResult"]


@dataclass(frozen=True, slots=True)
class TxnResult:
    """`succeeded` says whether every compare held (so the success branch ran);
    `responses` has one result per operation of the branch that ran."""

    header: Header
    succeeded: bool
    responses: tuple[OpResult, ...]
    raw: rpc_pb2.TxnResponse = field(repr=False, compare=False)

    @classmethod
    def from_pb(cls, r: rpc_pb2.TxnResponse) -> TxnResult:
        out: list[OpResult] = []
        for op in r.responses:
            kind = op.WhichOneof("response")
            if kind == "response_range":
                out.append(GetResult.from_pb(op.response_range))
            elif kind == "response_put":
                out.append(PutResult.from_pb(op.response_put))
            elif kind == "response_delete_range":
                out.append(DeleteResult.from_pb(op.response_delete_range))
            elif kind == "response_txn":
                out.append(TxnResult.from_pb(op.response_txn))
        return cls(Header.from_pb(r.header), r.succeeded, tuple(out), r)


class EventType(str, Enum):
    PUT = "PUT"
    DELETE = "DELETE"


@dataclass(frozen=True, slots=True)
class Event:
    """One change seen by a watch. For DELETE, `kv` holds the key and the
    revision of the delete; `prev_kv` is set only when the watch asked for it."""

    type: EventType
    kv: KeyValue
    prev_kv: KeyValue | None

    @classmethod
    def from_pb(cls, e: kv_pb2.Event) -> Event:
        kind = EventType.DELETE if e.type == kv_pb2.Event.DELETE else EventType.PUT
        prev = KeyValue.from_pb(e.prev_kv) if e.HasField("prev_kv") else None
        return cls(kind, KeyValue.from_pb(e.kv), prev)


@dataclass(frozen=True, slots=True)
class WatchResponse:
    """One batch from a watch: events that happened at or before
    `header.revision`, or a progress notification (no events)."""

    header: Header
    events: tuple[Event, ...]
    compact_revision: int
    raw: rpc_pb2.WatchResponse = field(repr=False, compare=False)

    @classmethod
    def from_pb(cls, r: rpc_pb2.WatchResponse) -> WatchResponse:
        events = tuple(Event.from_pb(e) for e in r.events)
        return cls(Header.from_pb(r.header), events, r.compact_revision, r)

    @property
    def is_progress_notify(self) -> bool:
        return not self.events and not self.raw.created and not self.raw.canceled


@dataclass(frozen=True, slots=True)
class LeaseGrant:
    header: Header
    id: int
    ttl: int
    raw: rpc_pb2.LeaseGrantResponse = field(repr=False, compare=False)

    @classmethod
    def from_pb(cls, r: rpc_pb2.LeaseGrantResponse) -> LeaseGrant:
        return cls(Header.from_pb(r.header), r.ID, r.TTL, r)


@dataclass(frozen=True, slots=True)
class KeepAliveResult:
    """A lease renewed: `ttl` is its new time to live in seconds (<= 0: it had expired)."""

    header: Header
    id: int
    ttl: int
    raw: rpc_pb2.LeaseKeepAliveResponse = field(repr=False, compare=False)

    @classmethod
    def from_pb(cls, r: rpc_pb2.LeaseKeepAliveResponse) -> KeepAliveResult:
        return cls(Header.from_pb(r.header), r.ID, r.TTL, r)


@dataclass(frozen=True, slots=True)
class LeaseInfo:
    """A lease's time to live. An expired or unknown lease has ttl == -1 and granted_ttl == 0."""

    header: Header
    id: int
    ttl: int
    granted_ttl: int
    keys: tuple[bytes, ...]
    raw: rpc_pb2.LeaseTimeToLiveResponse = field(repr=False, compare=False)

    @classmethod
    def from_pb(cls, r: rpc_pb2.LeaseTimeToLiveResponse) -> LeaseInfo:
        return cls(Header.from_pb(r.header), r.ID, r.TTL, r.grantedTTL, tuple(r.keys), r)

    @property
    def expired(self) -> bool:
        return self.ttl == -1


@dataclass(frozen=True, slots=True)
class LeaseList:
    header: Header
    ids: tuple[int, ...]
    raw: rpc_pb2.LeaseLeasesResponse = field(repr=False, compare=False)

    @classmethod
    def from_pb(cls, r: rpc_pb2.LeaseLeasesResponse) -> LeaseList:
        return cls(Header.from_pb(r.header), tuple(s.ID for s in r.leases), r)


@dataclass(frozen=True, slots=True)
class Member:
    """A cluster member. An unstarted member (added, not yet joined) has no name."""

    id: int
    name: str
    peer_urls: tuple[str, ...]
    client_urls: tuple[str, ...]
    is_learner: bool

    @classmethod
    def from_pb(cls, m: rpc_pb2.Member) -> Member:
        return cls(m.ID, m.name, tuple(m.peerURLs), tuple(m.clientURLs), m.isLearner)


@dataclass(frozen=True, slots=True)
class MemberList:
    """The cluster's members after a member call; `added` is the new member
    after member_add (None for the other calls)."""

    header: Header
    members: tuple[Member, ...]
    raw: Any = field(repr=False, compare=False)
    added: Member | None = None

    @classmethod
    def from_pb(cls, r: Any) -> MemberList:
        added = Member.from_pb(r.member) if isinstance(r, rpc_pb2.MemberAddResponse) else None
        return cls(Header.from_pb(r.header), tuple(Member.from_pb(m) for m in r.members), r, added)


@dataclass(frozen=True, slots=True)
class Status:
    """One member's view of itself (Maintenance.Status)."""

    header: Header
    version: str
    db_size: int
    leader: int
    raft_index: int
    raft_term: int
    raft_applied_index: int
    errors: tuple[str, ...]
    db_size_in_use: int
    is_learner: bool
    raw: rpc_pb2.StatusResponse = field(repr=False, compare=False)

    @classmethod
    def from_pb(cls, r: rpc_pb2.StatusResponse) -> Status:
        return cls(
            Header.from_pb(r.header),
            r.version,
            r.dbSize,
            r.leader,
            r.raftIndex,
            r.raftTerm,
            r.raftAppliedIndex,
            tuple(r.errors),
            r.dbSizeInUse,
            r.isLearner,
            r,
        )

    @property
    def is_leader(self) -> bool:
        return self.leader == self.header.member_id


@dataclass(frozen=True, slots=True)
class LockResult:
    """A lock held through the server's Lock service: `key` owns it until unlocked
    or until its lease ends."""

    header: Header
    key: bytes
    raw: v3lock_pb2.LockResponse = field(repr=False, compare=False)

    @classmethod
    def from_pb(cls, r: v3lock_pb2.LockResponse) -> LockResult:
        return cls(Header.from_pb(r.header), r.key, r)


@dataclass(frozen=True, slots=True)
class LeaderKey:
    """A leadership won through the server's Election service: the election's
    `name`, the leader's `key` (created at revision `rev` under `lease`)."""

    name: bytes
    key: bytes
    rev: int
    lease: int

    @classmethod
    def from_pb(cls, k: v3election_pb2.LeaderKey) -> LeaderKey:
        return cls(k.name, k.key, k.rev, k.lease)

    def to_pb(self) -> v3election_pb2.LeaderKey:
        return v3election_pb2.LeaderKey(name=self.name, key=self.key, rev=self.rev, lease=self.lease)


@dataclass(frozen=True, slots=True)
class AuthStatus:
    """Whether auth is enabled, and the auth store's revision (it grows with
    every change of users, roles or permissions)."""

    header: Header
    enabled: bool
    auth_revision: int

    @classmethod
    def from_pb(cls, r: rpc_pb2.AuthStatusResponse) -> AuthStatus:
        return cls(Header.from_pb(r.header), r.enabled, r.authRevision)


@dataclass(frozen=True, slots=True)
class AuthToken:
    """What Authenticate answered: the token later calls carry."""

    header: Header
    token: str

    @classmethod
    def from_pb(cls, r: rpc_pb2.AuthenticateResponse) -> AuthToken:
        return cls(Header.from_pb(r.header), r.token)


@dataclass(frozen=True, slots=True)
class NameList:
    """The names of every user (UserList) or role (RoleList), sorted."""

    header: Header
    names: tuple[str, ...]

    @classmethod
    def from_pb(cls, header: rpc_pb2.ResponseHeader, names: Any) -> NameList:
        return cls(Header.from_pb(header), tuple(names))


@dataclass(frozen=True, slots=True)
class UserInfo:
    """A user's roles, sorted."""

    header: Header
    roles: tuple[str, ...]

    @classmethod
    def from_pb(cls, r: rpc_pb2.AuthUserGetResponse) -> UserInfo:
        return cls(Header.from_pb(r.header), tuple(r.roles))


class PermissionType(str, Enum):
    """What a role may do with a key range."""

    READ = "read"
    WRITE = "write"
    READWRITE = "readwrite"

    def to_pb(self) -> auth_pb2.Permission.Type:
        wire = {"READ": auth_pb2.Permission.READ, "WRITE": auth_pb2.Permission.WRITE}
        return wire.get(self.name, auth_pb2.Permission.READWRITE)


@dataclass(frozen=True, slots=True)
class Permission:
    """A role's grant on one key (`range_end` empty), on [key, range_end), or on
    every key from `key` on (`range_end` b"\\0")."""

    type: PermissionType
    key: bytes
    range_end: bytes

    @classmethod
    def from_pb(cls, p: auth_pb2.Permission) -> Permission:
        name = auth_pb2.Permission.Type.Name(p.permType)
        return cls(PermissionType[name], p.key, p.range_end)


@dataclass(frozen=True, slots=True)
class RoleInfo:
    """A role's permissions, sorted by key."""

    header: Header
    permissions: tuple[Permission, ...]

    @classmethod
    def from_pb(cls, r: rpc_pb2.AuthRoleGetResponse) -> RoleInfo:
        return cls(Header.from_pb(r.header), tuple(Permission.from_pb(p) for p in r.perm))
