"""The Auth service and its checks over gRPC, side by side: one scenario
(every Auth RPC, then the unhappy paths a user meets) runs against the real
etcd and against ketch, and each step's answer (response fields or gRPC
code and message) must be the same."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import grpc
import pytest
from ketch._pb import auth_pb2, rpc_pb2
from ketch.testing import Member, member

Step = Callable[[], Any]


def rpc(ch: grpc.Channel, path: str, req: Any, resp: Any, token: str | None = None) -> Any:
    call = ch.unary_unary(
        path,
        request_serializer=lambda m: m.SerializeToString(),
        response_deserializer=resp.FromString,
    )
    md = (("token", token),) if token else None
    try:
        return call(req, metadata=md, timeout=10)
    except grpc.RpcError as e:
        return (e.code().name, e.details())  # type: ignore[attr-defined]


def auth(ch: grpc.Channel, method: str, req: Any, token: str | None = None) -> Any:
    name = {
        "UserAdd": "AuthUserAdd",
        "UserGet": "AuthUserGet",
        "UserList": "AuthUserList",
        "UserDelete": "AuthUserDelete",
        "UserChangePassword": "AuthUserChangePassword",
        "UserGrantRole": "AuthUserGrantRole",
        "UserRevokeRole": "AuthUserRevokeRole",
        "RoleAdd": "AuthRoleAdd",
        "RoleGet": "AuthRoleGet",
        "RoleList": "AuthRoleList",
        "RoleDelete": "AuthRoleDelete",
        "RoleGrantPermission": "AuthRoleGrantPermission",
        "RoleRevokePermission": "AuthRoleRevokePermission",
    }.get(method, method)
    resp = getattr(rpc_pb2, f"{name}Response")
    return rpc(ch, f"/etcdserverpb.Auth/{method}", req, resp, token)


def shown(r: Any) -> Any:
    """A response without its header (IDs and revisions are each server's own)."""
    if isinstance(r, tuple):
        return r
    r.ClearField("header") if r.HasField("header") else None
    if isinstance(r, rpc_pb2.AuthenticateResponse):
        return "token" if r.token else "no token"
    return r.SerializeToString(deterministic=True)


def token_of(ch: grpc.Channel, name: str, password: str) -> str:
    r = auth(ch, "Authenticate", rpc_pb2.AuthenticateRequest(name=name, password=password))
    assert isinstance(r, rpc_pb2.AuthenticateResponse), r
    return str(r.token)


def watch_answer(ch: grpc.Channel, key: bytes, token: str) -> Any:
    call = ch.stream_stream(
        "/etcdserverpb.Watch/Watch",
        request_serializer=lambda m: m.SerializeToString(),
        response_deserializer=rpc_pb2.WatchResponse.FromString,
    )
    req = rpc_pb2.WatchRequest(create_request=rpc_pb2.WatchCreateRequest(key=key))
    stream = call(iter([req]), metadata=(("token", token),), timeout=5)
    first = next(stream)
    stream.cancel()
    return (
        first.created,
        first.canceled,
        first.cancel_reason,
        first.watch_id if first.canceled else "id",
    )


def scenario(m: Member) -> list[Any]:
    out: list[Any] = []
    with grpc.insecure_channel(m.endpoint) as ch:
        def a(*args):
            return out.append(shown(auth(ch, *args)))
        # (AuthStatus is etcd 3.5's: the reference etcd 3.4 has none; see below.)
        a("Authenticate", rpc_pb2.AuthenticateRequest(name="root", password="x"))
        a("AuthEnable", rpc_pb2.AuthEnableRequest())
        a("UserAdd", rpc_pb2.AuthUserAddRequest(name="", password="x"))
        a("UserAdd", rpc_pb2.AuthUserAddRequest(name="root", password="rootpw"))
        a("AuthEnable", rpc_pb2.AuthEnableRequest())
        a("RoleAdd", rpc_pb2.AuthRoleAddRequest(name=""))
        a("RoleAdd", rpc_pb2.AuthRoleAddRequest(name="root"))
        a("UserGrantRole", rpc_pb2.AuthUserGrantRoleRequest(user="root", role="root"))
        a("UserAdd", rpc_pb2.AuthUserAddRequest(name="alice", password="apw"))
        a(
            "UserAdd",
            rpc_pb2.AuthUserAddRequest(
                name="cn-only", options=auth_pb2.UserAddOptions(no_password=True)
            ),
        )
        a("RoleAdd", rpc_pb2.AuthRoleAddRequest(name="foo-rw"))
        # (A grant without a permission: etcd 3.4 panics; see below for 3.5's answer.)
        a(
            "RoleGrantPermission",
            rpc_pb2.AuthRoleGrantPermissionRequest(
                name="foo-rw",
                perm=auth_pb2.Permission(
                    permType=auth_pb2.Permission.READWRITE, key=b"foo", range_end=b"fop"
                ),
            ),
        )
        a("UserGrantRole", rpc_pb2.AuthUserGrantRoleRequest(user="alice", role="foo-rw"))
        a("UserGet", rpc_pb2.AuthUserGetRequest(name="alice"))
        a("UserList", rpc_pb2.AuthUserListRequest())
        a("RoleGet", rpc_pb2.AuthRoleGetRequest(role="foo-rw"))
        a("RoleList", rpc_pb2.AuthRoleListRequest())
        a("AuthEnable", rpc_pb2.AuthEnableRequest())
        root = token_of(ch, "root", "rootpw")
        alice = token_of(ch, "alice", "apw")
        a("Authenticate", rpc_pb2.AuthenticateRequest(name="alice", password="wrong"))
        a("Authenticate", rpc_pb2.AuthenticateRequest(name="nobody", password="x"))
        a("Authenticate", rpc_pb2.AuthenticateRequest(name="cn-only", password="x"))
        def kv(method, req, resp, tok):
            return out.append(
                    shown(rpc(ch, f"/etcdserverpb.KV/{method}", req, resp, tok))
                )
        put = rpc_pb2.PutRequest
        kv("Put", put(key=b"foo/1", value=b"v"), rpc_pb2.PutResponse, alice)
        kv("Put", put(key=b"bar", value=b"v"), rpc_pb2.PutResponse, alice)
        kv("Put", put(key=b"foo/1", value=b"v"), rpc_pb2.PutResponse, "forged.1")
        kv(
            "Range",
            rpc_pb2.RangeRequest(key=b"foo", range_end=b"fop"),
            rpc_pb2.RangeResponse,
            alice,
        )
        kv("Range", rpc_pb2.RangeRequest(key=b"foo", range_end=b"\0"), rpc_pb2.RangeResponse, alice)
        kv("Range", rpc_pb2.RangeRequest(key=b"foo"), rpc_pb2.RangeResponse, None)
        outside = rpc_pb2.Compare(
            key=b"bar", target=rpc_pb2.Compare.VERSION, result=rpc_pb2.Compare.EQUAL, version=0
        )
        inside_put = rpc_pb2.RequestOp(request_put=put(key=b"foo/2", value=b"v"))
        kv(
            "Txn",
            rpc_pb2.TxnRequest(compare=[outside], success=[inside_put]),
            rpc_pb2.TxnResponse,
            alice,
        )
        kv("Txn", rpc_pb2.TxnRequest(success=[inside_put]), rpc_pb2.TxnResponse, alice)
        kv(
            "DeleteRange",
            rpc_pb2.DeleteRangeRequest(key=b"foo/2", prev_kv=True),
            rpc_pb2.DeleteRangeResponse,
            alice,
        )
        out.append(watch_answer(ch, b"bar", alice))
        out.append(watch_answer(ch, b"foo/1", alice))
        out.append(
            shown(
                rpc(
                    ch,
                    "/etcdserverpb.Maintenance/Hash",
                    rpc_pb2.HashRequest(),
                    rpc_pb2.HashResponse,
                    alice,
                )
            )
        )
        a("UserList", rpc_pb2.AuthUserListRequest(), alice)
        a("UserGet", rpc_pb2.AuthUserGetRequest(name="alice"), alice)
        a("UserGet", rpc_pb2.AuthUserGetRequest(name="root"), alice)
        a("RoleGet", rpc_pb2.AuthRoleGetRequest(role="foo-rw"), alice)
        a("UserDelete", rpc_pb2.AuthUserDeleteRequest(name="root"), root)
        a("UserRevokeRole", rpc_pb2.AuthUserRevokeRoleRequest(name="root", role="root"), root)
        a("RoleDelete", rpc_pb2.AuthRoleDeleteRequest(role="root"), root)
        a(
            "RoleRevokePermission",
            rpc_pb2.AuthRoleRevokePermissionRequest(role="foo-rw", key=b"x"),
            root,
        )
        a(
            "UserChangePassword",
            rpc_pb2.AuthUserChangePasswordRequest(name="nobody", password="x"),
            root,
        )
        a("UserRevokeRole", rpc_pb2.AuthUserRevokeRoleRequest(name="alice", role="nope"), root)
        a("UserDelete", rpc_pb2.AuthUserDeleteRequest(name="alice"), root)
        kv(
            "Put", put(key=b"foo/1", value=b"v"), rpc_pb2.PutResponse, alice
        )  # a token of a deleted user
        a("RoleDelete", rpc_pb2.AuthRoleDeleteRequest(role="foo-rw"), root)
        a("AuthDisable", rpc_pb2.AuthDisableRequest(), root)
        a("UserDelete", rpc_pb2.AuthUserDeleteRequest(name="root"))
    return out


def test_every_auth_rpc_and_its_refusals_match_etcds(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    with member(server="etcd", data_dir=tmp_path_factory.mktemp("etcd")) as e:
        want = scenario(e)
    with member(server="ketch", data_dir=tmp_path_factory.mktemp("ketch")) as k:
        got = scenario(k)
    for i, (g, w) in enumerate(zip(got, want, strict=True)):
        assert g == w, f"step {i}"


def enable_with_root(ch: grpc.Channel) -> None:
    auth(ch, "UserAdd", rpc_pb2.AuthUserAddRequest(name="root", password="rootpw"))
    auth(ch, "RoleAdd", rpc_pb2.AuthRoleAddRequest(name="root"))
    auth(ch, "UserGrantRole", rpc_pb2.AuthUserGrantRoleRequest(user="root", role="root"))
    assert isinstance(
        auth(ch, "AuthEnable", rpc_pb2.AuthEnableRequest()), rpc_pb2.AuthEnableResponse
    )


@pytest.mark.parametrize("server", ["etcd", "ketch"])
def test_a_simple_token_expires_after_its_ttl_unused(
    server: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    short_ttl = ["--auth-token-ttl", "1"]
    data_dir = tmp_path_factory.mktemp(server)
    with (
        member(server=server, data_dir=data_dir, extra_args=short_ttl) as m,
        grpc.insecure_channel(m.endpoint) as ch,
    ):  # type: ignore[arg-type]
        enable_with_root(ch)
        token = token_of(ch, "root", "rootpw")
        put = rpc_pb2.PutRequest(key=b"k", value=b"v")
        assert isinstance(
            rpc(ch, "/etcdserverpb.KV/Put", put, rpc_pb2.PutResponse, token), rpc_pb2.PutResponse
        )
        time.sleep(3)
        got = rpc(ch, "/etcdserverpb.KV/Put", put, rpc_pb2.PutResponse, token)
        assert got == ("UNAUTHENTICATED", "etcdserver: invalid auth token")


def wait_answering(ch: grpc.Channel, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while isinstance(
        got := auth(
            ch, "Authenticate", rpc_pb2.AuthenticateRequest(name="root", password="rootpw")
        ),
        tuple,
    ):
        assert time.monotonic() < deadline, got
        time.sleep(0.2)


def test_ketch_keeps_its_users_and_the_enabled_flag_across_a_kill(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    with member(server="ketch", data_dir=tmp_path_factory.mktemp("ketch")) as m:
        with grpc.insecure_channel(m.endpoint) as ch:
            enable_with_root(ch)
            root = token_of(ch, "root", "rootpw")
            assert isinstance(
                auth(ch, "UserAdd", rpc_pb2.AuthUserAddRequest(name="bob", password="b"), root),
                rpc_pb2.AuthUserAddResponse,
            )
        m.kill()
        m.spawn()  # (start() probes with an anonymous read, which auth now refuses)
        with grpc.insecure_channel(m.endpoint) as ch:
            wait_answering(ch)
            # Simple tokens live in memory only: the old one is gone, the users are not.
            got = auth(ch, "UserList", rpc_pb2.AuthUserListRequest(), root)
            assert got == ("UNAUTHENTICATED", "etcdserver: invalid auth token")
            users = auth(ch, "UserList", rpc_pb2.AuthUserListRequest(), token_of(ch, "bob", "b"))
            assert users == ("PERMISSION_DENIED", "etcdserver: permission denied")
            users = auth(
                ch, "UserList", rpc_pb2.AuthUserListRequest(), token_of(ch, "root", "rootpw")
            )
            assert list(users.users) == ["bob", "root"]


def test_compact_needs_root_as_in_etcd_3_5(tmp_path_factory: pytest.TempPathFactory) -> None:
    with (
        member(server="ketch", data_dir=tmp_path_factory.mktemp("ketch")) as m,
        grpc.insecure_channel(m.endpoint) as ch,
    ):
        enable_with_root(ch)
        root = token_of(ch, "root", "rootpw")
        auth(ch, "UserAdd", rpc_pb2.AuthUserAddRequest(name="u", password="p"), root)
        got = rpc(
            ch,
            "/etcdserverpb.KV/Compact",
            rpc_pb2.CompactionRequest(revision=1),
            rpc_pb2.CompactionResponse,
            token_of(ch, "u", "p"),
        )
        assert got == ("PERMISSION_DENIED", "etcdserver: permission denied")
        ok = rpc(
            ch,
            "/etcdserverpb.KV/Compact",
            rpc_pb2.CompactionRequest(revision=1),
            rpc_pb2.CompactionResponse,
            root,
        )
        assert isinstance(ok, rpc_pb2.CompactionResponse)


def test_auth_status_as_etcd_3_5_answers_it(tmp_path_factory: pytest.TempPathFactory) -> None:
    with (
        member(server="ketch", data_dir=tmp_path_factory.mktemp("ketch")) as m,
        grpc.insecure_channel(m.endpoint) as ch,
    ):
        first = auth(ch, "AuthStatus", rpc_pb2.AuthStatusRequest())
        assert (first.enabled, first.authRevision) == (False, 1)
        enable_with_root(ch)  # three changes, then the flag (which is no new revision)
        assert auth(ch, "AuthStatus", rpc_pb2.AuthStatusRequest()) == (
            "INVALID_ARGUMENT",
            "etcdserver: user name is empty",
        )
        status = auth(ch, "AuthStatus", rpc_pb2.AuthStatusRequest(), token_of(ch, "root", "rootpw"))
        assert (status.enabled, status.authRevision) == (True, 4)


def test_a_grant_without_a_permission_is_refused_as_etcd_3_5_refuses_it(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    with (
        member(server="ketch", data_dir=tmp_path_factory.mktemp("ketch")) as m,
        grpc.insecure_channel(m.endpoint) as ch,
    ):
        auth(ch, "RoleAdd", rpc_pb2.AuthRoleAddRequest(name="r"))
        got = auth(ch, "RoleGrantPermission", rpc_pb2.AuthRoleGrantPermissionRequest(name="r"))
        assert got == ("INVALID_ARGUMENT", "etcdserver: permission not given")


def test_nested_txns_and_bad_ranges_are_checked_as_etcd_3_5_checks_them(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """etcd 3.4 lets a put inside a nested txn through unchecked and takes a
    grant whose end is before its key; 3.5 (and ketch) refuse both."""
    with (
        member(server="ketch", data_dir=tmp_path_factory.mktemp("ketch")) as m,
        grpc.insecure_channel(m.endpoint) as ch,
    ):
        enable_with_root(ch)
        root = token_of(ch, "root", "rootpw")
        auth(ch, "UserAdd", rpc_pb2.AuthUserAddRequest(name="u", password="p"), root)
        auth(ch, "RoleAdd", rpc_pb2.AuthRoleAddRequest(name="r"), root)
        bad = auth_pb2.Permission(permType=auth_pb2.Permission.READ, key=b"b", range_end=b"a")
        got = auth(
            ch,
            "RoleGrantPermission",
            rpc_pb2.AuthRoleGrantPermissionRequest(name="r", perm=bad),
            root,
        )
        assert got == ("INVALID_ARGUMENT", "etcdserver: invalid auth management")
        foo = auth_pb2.Permission(
            permType=auth_pb2.Permission.READWRITE, key=b"foo", range_end=b"fop"
        )
        auth(
            ch,
            "RoleGrantPermission",
            rpc_pb2.AuthRoleGrantPermissionRequest(name="r", perm=foo),
            root,
        )
        auth(ch, "UserGrantRole", rpc_pb2.AuthUserGrantRoleRequest(user="u", role="r"), root)
        inside = rpc_pb2.RequestOp(request_put=rpc_pb2.PutRequest(key=b"foo/1"))
        nested = rpc_pb2.RequestOp(
            request_txn=rpc_pb2.TxnRequest(
                success=[rpc_pb2.RequestOp(request_put=rpc_pb2.PutRequest(key=b"bar"))]
            )
        )
        txn = rpc_pb2.TxnRequest(success=[inside, nested])
        got = rpc(ch, "/etcdserverpb.KV/Txn", txn, rpc_pb2.TxnResponse, token_of(ch, "u", "p"))
        assert got == ("PERMISSION_DENIED", "etcdserver: permission denied")


@pytest.mark.parametrize("server", ["etcd", "ketch"])
def test_no_token_is_issued_for_a_password_changed_while_it_was_checked(
    server: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """etcd checks a password before proposing the entry that issues the
    token, and checks again if the auth store changed in between (its
    Authenticate loop): here Authenticates with the old password hammer the
    member while root changes it, and no token they got may outlive the
    change."""
    with (
        member(server=server, data_dir=tmp_path_factory.mktemp(server)) as m,
        grpc.insecure_channel(m.endpoint) as ch,
    ):  # type: ignore[arg-type]
        auth(ch, "UserAdd", rpc_pb2.AuthUserAddRequest(name="u", password="old"))
        auth(ch, "RoleAdd", rpc_pb2.AuthRoleAddRequest(name="r"))
        grant = auth_pb2.Permission(permType=auth_pb2.Permission.READWRITE, key=b"k")
        auth(
            ch, "RoleGrantPermission", rpc_pb2.AuthRoleGrantPermissionRequest(name="r", perm=grant)
        )
        auth(ch, "UserGrantRole", rpc_pb2.AuthUserGrantRoleRequest(user="u", role="r"))
        enable_with_root(ch)
        root = token_of(ch, "root", "rootpw")

        tokens: list[str] = []
        refusals: list[Any] = []
        stop = threading.Event()

        def hammer() -> None:
            while not stop.is_set():
                r = auth(ch, "Authenticate", rpc_pb2.AuthenticateRequest(name="u", password="old"))
                (tokens if isinstance(r, rpc_pb2.AuthenticateResponse) else refusals).append(
                    r.token if isinstance(r, rpc_pb2.AuthenticateResponse) else r
                )

        threads = [threading.Thread(target=hammer) for _ in range(4)]
        for t in threads:
            t.start()
        try:
            deadline = time.monotonic() + 10
            while len(tokens) < 8 and time.monotonic() < deadline:
                time.sleep(0.05)
            change = rpc_pb2.AuthUserChangePasswordRequest(name="u", password="new")
            changed = auth(ch, "UserChangePassword", change, root)
            assert isinstance(changed, rpc_pb2.AuthUserChangePasswordResponse), changed
            time.sleep(1.0)  # Authenticates checked before the change apply after it
        finally:
            stop.set()
            for t in threads:
                t.join(timeout=30)
        assert len(tokens) >= 8, (len(tokens), refusals[:3])
        assert (
            "INVALID_ARGUMENT",
            "etcdserver: authentication failed, invalid user ID or password",
        ) in [tuple(r) for r in refusals]
        get = rpc_pb2.RangeRequest(key=b"k")
        still_valid = [
            t
            for t in tokens
            if isinstance(
                rpc(ch, "/etcdserverpb.KV/Range", get, rpc_pb2.RangeResponse, t),
                rpc_pb2.RangeResponse,
            )
        ]
        assert still_valid == [], (
            f"{len(still_valid)} of {len(tokens)} old-password tokens still work"
        )
        new = token_of(ch, "u", "new")
        assert isinstance(
            rpc(ch, "/etcdserverpb.KV/Range", get, rpc_pb2.RangeResponse, new),
            rpc_pb2.RangeResponse,
        )
