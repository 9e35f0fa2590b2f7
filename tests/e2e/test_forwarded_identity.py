"""A leader-only call made through a follower by a user known only by its
client certificate (--client-cert-auth, no token): the follower checks that
user and passes the call on to its leader, as etcd's followers do (etcd
forwards lease renewals and TTL look-ups to the leader's peer URL, with no
user). LeaseKeepAlive and LeaseTimeToLive through every member, side by side
with etcd."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import grpc
import pytest
from ketch._pb import auth_pb2, rpc_pb2

from ..support import Server, TLSFiles, make_tls_files, three_members
from .test_auth_rpcs import auth, enable_with_root, rpc, token_of

CN = "ketch test client"  # make_tls_files' client certificate
MEMBERS = 3


def start_cluster(kind: str, root: Path, tls: TLSFiles) -> list[Server]:
    client_tls = [
        "--cert-file", str(tls.server_cert), "--key-file", str(tls.server_key),
        "--trusted-ca-file", str(tls.ca), "--client-cert-auth",
    ]  # fmt: skip
    return three_members(
        kind, root, client_tls, client_scheme="https", client_tls=(tls.ca, tls.client_cert, tls.client_key)
    )


def lease_calls(ch: grpc.Channel) -> list[Any]:
    """Grant, one keep-alive and a TTL look-up (with keys), as the CN's user."""
    granted = rpc(ch, "/etcdserverpb.Lease/LeaseGrant", rpc_pb2.LeaseGrantRequest(TTL=60), rpc_pb2.LeaseGrantResponse)
    if isinstance(granted, tuple):
        return [granted]
    keep_alive = ch.stream_stream(
        "/etcdserverpb.Lease/LeaseKeepAlive",
        request_serializer=lambda m: m.SerializeToString(),
        response_deserializer=rpc_pb2.LeaseKeepAliveResponse.FromString,
    )
    try:
        first = next(keep_alive(iter([rpc_pb2.LeaseKeepAliveRequest(ID=granted.ID)]), timeout=10))
        renewed: Any = (first.ID == granted.ID, first.TTL)
    except grpc.RpcError as e:
        renewed = (e.code().name, e.details())  # type: ignore[attr-defined]
    ttl = rpc(ch, "/etcdserverpb.Lease/LeaseTimeToLive", rpc_pb2.LeaseTimeToLiveRequest(ID=granted.ID, keys=True),
              rpc_pb2.LeaseTimeToLiveResponse)  # fmt: skip
    return ["granted", renewed, ttl if isinstance(ttl, tuple) else (ttl.grantedTTL, list(ttl.keys))]


def scenario(servers: list[Server], tls: TLSFiles) -> list[Any]:
    creds = grpc.ssl_channel_credentials(
        tls.ca.read_bytes(), tls.client_key.read_bytes(), tls.client_cert.read_bytes()
    )
    channels = [grpc.secure_channel(f"127.0.0.1:{s.client_port}", creds) for s in servers]
    try:
        ch = channels[0]
        enable_with_root(ch)
        root = token_of(ch, "root", "rootpw")
        no_password = auth_pb2.UserAddOptions(no_password=True)
        auth(ch, "UserAdd", rpc_pb2.AuthUserAddRequest(name=CN, options=no_password), root)
        return [lease_calls(c) for c in channels]
    finally:
        for c in channels:
            c.close()


@pytest.mark.parametrize("kind", ["etcd", "ketch"])
def test_a_certificate_user_renews_its_lease_through_every_member(kind: str, tmp_path: Path) -> None:
    (tmp_path / "tls").mkdir()
    tls = make_tls_files(tmp_path / "tls")
    servers = start_cluster(kind, tmp_path, tls)
    try:
        for s in servers:
            s.start(wait=False)
        for s in servers:
            s.wait_ready()
        got = scenario(servers, tls)
    finally:
        for s in servers:
            s.stop()
    # Two of the three members are followers: each answered as the leader did.
    assert got == [["granted", (True, 60), (60, [])]] * MEMBERS
