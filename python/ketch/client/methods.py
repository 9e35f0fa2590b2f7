"""Every RPC the client makes, by its gRPC path, with the parser of its answer.

The paths are etcd's wire contract (service and method names from
rpc.proto, v3lock.proto and v3election.proto); both faces of the client call
through this one table.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from google.protobuf.message import Message

from .._pb import rpc_pb2, v3election_pb2, v3lock_pb2

R = TypeVar("R", bound=Message)
# A gRPC path and the parser of its answers (`R.FromString`).
Method = tuple[str, Callable[[bytes], Any]]


def _method(path: str, response: type[R]) -> tuple[str, Callable[[bytes], R]]:
    return path, response.FromString


def _serialize(msg: Message) -> bytes:
    return msg.SerializeToString()


def multicallable(channel: Any, kind: str, method: Method) -> Any:
    """grpc's callable for `method` on `channel`. `kind` is unary_unary,
    unary_stream or stream_stream: blocking and grpc.aio channels have the
    same three factories."""
    path, parse = method
    factory = getattr(channel, kind)
    return factory(path, request_serializer=_serialize, response_deserializer=parse)


RANGE = _method("/etcdserverpb.KV/Range", rpc_pb2.RangeResponse)
PUT = _method("/etcdserverpb.KV/Put", rpc_pb2.PutResponse)
DELETE = _method("/etcdserverpb.KV/DeleteRange", rpc_pb2.DeleteRangeResponse)
TXN = _method("/etcdserverpb.KV/Txn", rpc_pb2.TxnResponse)
COMPACT = _method("/etcdserverpb.KV/Compact", rpc_pb2.CompactionResponse)
WATCH = _method("/etcdserverpb.Watch/Watch", rpc_pb2.WatchResponse)
LEASE_GRANT = _method("/etcdserverpb.Lease/LeaseGrant", rpc_pb2.LeaseGrantResponse)
LEASE_REVOKE = _method("/etcdserverpb.Lease/LeaseRevoke", rpc_pb2.LeaseRevokeResponse)
LEASE_KEEPALIVE = _method("/etcdserverpb.Lease/LeaseKeepAlive", rpc_pb2.LeaseKeepAliveResponse)
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
SNAPSHOT = _method("/etcdserverpb.Maintenance/Snapshot", rpc_pb2.SnapshotResponse)
MOVE_LEADER = _method("/etcdserverpb.Maintenance/MoveLeader", rpc_pb2.MoveLeaderResponse)
AUTH_ENABLE = _method("/etcdserverpb.Auth/AuthEnable", rpc_pb2.AuthEnableResponse)
AUTH_DISABLE = _method("/etcdserverpb.Auth/AuthDisable", rpc_pb2.AuthDisableResponse)
AUTH_STATUS = _method("/etcdserverpb.Auth/AuthStatus", rpc_pb2.AuthStatusResponse)
AUTHENTICATE = _method("/etcdserverpb.Auth/Authenticate", rpc_pb2.AuthenticateResponse)
USER_ADD = _method("/etcdserverpb.Auth/UserAdd", rpc_pb2.AuthUserAddResponse)
USER_GET = _method("/etcdserverpb.Auth/UserGet", rpc_pb2.AuthUserGetResponse)
USER_LIST = _method("/etcdserverpb.Auth/UserList", rpc_pb2.AuthUserListResponse)
USER_DELETE = _method("/etcdserverpb.Auth/UserDelete", rpc_pb2.AuthUserDeleteResponse)
USER_CHANGE_PASSWORD = _method(
    "/etcdserverpb.Auth/UserChangePassword", rpc_pb2.AuthUserChangePasswordResponse
)
USER_GRANT_ROLE = _method("/etcdserverpb.Auth/UserGrantRole", rpc_pb2.AuthUserGrantRoleResponse)
USER_REVOKE_ROLE = _method("/etcdserverpb.Auth/UserRevokeRole", rpc_pb2.AuthUserRevokeRoleResponse)
ROLE_ADD = _method("/etcdserverpb.Auth/RoleAdd", rpc_pb2.AuthRoleAddResponse)
ROLE_GET = _method("/etcdserverpb.Auth/RoleGet", rpc_pb2.AuthRoleGetResponse)
ROLE_LIST = _method("/etcdserverpb.Auth/RoleList", rpc_pb2.AuthRoleListResponse)
ROLE_DELETE = _method("/etcdserverpb.Auth/RoleDelete", rpc_pb2.AuthRoleDeleteResponse)
ROLE_GRANT_PERMISSION = _method(
    "/etcdserverpb.Auth/RoleGrantPermission", rpc_pb2.AuthRoleGrantPermissionResponse
)
ROLE_REVOKE_PERMISSION = _method(
    "/etcdserverpb.Auth/RoleRevokePermission", rpc_pb2.AuthRoleRevokePermissionResponse
)
LOCK = _method("/v3lockpb.Lock/Lock", v3lock_pb2.LockResponse)
UNLOCK = _method("/v3lockpb.Lock/Unlock", v3lock_pb2.UnlockResponse)
CAMPAIGN = _method("/v3electionpb.Election/Campaign", v3election_pb2.CampaignResponse)
PROCLAIM = _method("/v3electionpb.Election/Proclaim", v3election_pb2.ProclaimResponse)
LEADER = _method("/v3electionpb.Election/Leader", v3election_pb2.LeaderResponse)
OBSERVE = _method("/v3electionpb.Election/Observe", v3election_pb2.LeaderResponse)
RESIGN = _method("/v3electionpb.Election/Resign", v3election_pb2.ResignResponse)


class Stubs:
    """What the channels of both transports share: grpc's callables for the
    methods above (blocking and grpc.aio channels make them the same way)."""

    _channel: Any

    def _unary_call(self, method: Method, request: Message, timeout: float | None, metadata: Any) -> Any:
        call = multicallable(self._channel, "unary_unary", method)
        return call(request, timeout=timeout, metadata=metadata)

    def server_stream(self, method: Method, request: Message, timeout: float | None, metadata: Any) -> Any:
        """A call whose answers are iterated (`async for` on grpc.aio); `cancel()` ends it."""
        call = multicallable(self._channel, "unary_stream", method)
        return call(request, timeout=timeout, metadata=metadata)

    def _stream_callable(self, method: Method) -> Any:
        return multicallable(self._channel, "stream_stream", method)
