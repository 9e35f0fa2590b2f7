"""Auth in a 3-member cluster, side by side with etcd: enabled through one
member and enforced by every member; a simple token issued by one member
used on another; a JWT issued by one member verified by another, and one
signed by another key refused; acknowledged role changes survive a kill -9
of the leader."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import grpc
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from ketch._pb import auth_pb2, rpc_pb2
from ketch.testing import Member, cluster

from ..e2e.test_auth_rpcs import auth, enable_with_root, rpc, token_of, wait_answering

pytestmark = pytest.mark.timeout(240)


def put(m: Member, key: bytes, token: str | None) -> Any:
    with grpc.insecure_channel(m.endpoint) as ch:
        r = rpc(
            ch,
            "/etcdserverpb.KV/Put",
            rpc_pb2.PutRequest(key=key, value=b"v"),
            rpc_pb2.PutResponse,
            token,
        )
    return "ok" if isinstance(r, rpc_pb2.PutResponse) else r


def scenario(members: list[Member]) -> list[Any]:
    a, b, c = members
    with grpc.insecure_channel(a.endpoint) as ch:
        enable_with_root(ch)
        root = token_of(ch, "root", "rootpw")
    time.sleep(1)  # the others apply the entries
    return [put(c, b"k", None), put(a, b"k", root), put(b, b"k", root), put(c, b"k", "bogus.9")]


def keys(tmp: Path, name: str) -> tuple[Path, Path]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    priv, pub = tmp / f"{name}.key", tmp / f"{name}.pub"
    priv.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    pub.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return priv, pub


def jwt_flag(priv: Path, pub: Path) -> str:
    return f"jwt,pub-key={pub},priv-key={priv},sign-method=RS256,ttl=5m"


@pytest.mark.parametrize("token", ["simple", "jwt"])
def test_auth_enabled_through_one_member_holds_on_all_as_in_etcd(
    token: str, tmp_path: Path
) -> None:
    args: list[str] = []
    if token == "jwt":
        args = ["--auth-token", jwt_flag(*keys(tmp_path, "k"))]
    answers = {}
    for server in ("etcd", "ketch"):
        with cluster(3, server=server, data_dir=tmp_path / server, extra_args=args) as members:  # type: ignore[arg-type]
            answers[server] = scenario(members)
    assert answers["ketch"] == answers["etcd"]
    assert answers["ketch"][:3] == [
        ("INVALID_ARGUMENT", "etcdserver: user name is empty"),
        "ok",
        "ok",
    ]


def test_a_jwt_signed_by_another_key_is_refused(tmp_path: Path) -> None:
    mine, other = keys(tmp_path, "mine"), keys(tmp_path, "other")
    other_args = ["--auth-token", jwt_flag(*other)]
    with (
        cluster(1, server="ketch", data_dir=tmp_path / "other", extra_args=other_args) as [o],
        grpc.insecure_channel(o.endpoint) as ch,
    ):
        enable_with_root(ch)
        forged = token_of(ch, "root", "rootpw")
    my_args = ["--auth-token", jwt_flag(*mine)]
    with (
        cluster(1, server="ketch", data_dir=tmp_path / "mine", extra_args=my_args) as [m],
        grpc.insecure_channel(m.endpoint) as ch,
    ):
        enable_with_root(ch)
        assert put(m, b"k", forged) == ("UNAUTHENTICATED", "etcdserver: invalid auth token")
        assert put(m, b"k", token_of(ch, "root", "rootpw")) == "ok"


def test_acknowledged_role_changes_survive_a_kill_of_the_leader(tmp_path: Path) -> None:
    with cluster(3, server="ketch", data_dir=tmp_path) as members:
        with grpc.insecure_channel(members[0].endpoint) as ch:
            enable_with_root(ch)
            root = token_of(ch, "root", "rootpw")
            granted = []
            for i in range(20):
                if isinstance(
                    auth(ch, "RoleAdd", rpc_pb2.AuthRoleAddRequest(name=f"r{i}"), root),
                    rpc_pb2.AuthRoleAddResponse,
                ):
                    perm = auth_pb2.Permission(
                        permType=auth_pb2.Permission.READ, key=f"k{i}".encode()
                    )
                    auth(
                        ch,
                        "RoleGrantPermission",
                        rpc_pb2.AuthRoleGrantPermissionRequest(name=f"r{i}", perm=perm),
                        root,
                    )
                    granted.append(f"r{i}")
        with grpc.insecure_channel(members[0].endpoint) as ch:
            status = rpc(
                ch,
                "/etcdserverpb.Maintenance/Status",
                rpc_pb2.StatusRequest(),
                rpc_pb2.StatusResponse,
                root,
            )
        by_id = {}
        for m in members:
            with grpc.insecure_channel(m.endpoint) as ch:
                s = rpc(
                    ch,
                    "/etcdserverpb.Maintenance/Status",
                    rpc_pb2.StatusRequest(),
                    rpc_pb2.StatusResponse,
                    root,
                )
                by_id[s.header.member_id] = m
        leader = by_id[status.leader]
        leader.kill()
        leader.spawn()
        for m in members:
            with grpc.insecure_channel(m.endpoint) as ch:
                wait_answering(ch)
                fresh = token_of(ch, "root", "rootpw")
                roles = auth(ch, "RoleList", rpc_pb2.AuthRoleListRequest(), fresh)
                assert set(granted) <= set(roles.roles), m.name
                got = auth(ch, "RoleGet", rpc_pb2.AuthRoleGetRequest(role=granted[-1]), fresh)
                assert [p.key for p in got.perm] == [granted[-1].replace("r", "k").encode()]
