"""With --client-cert-auth, a request without a token is made as the user
its client certificate's CN names (etcd's AuthInfoFromTLS): refused while no
such user exists, then allowed within that user's permissions. Side by side
with etcd."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import grpc
import pytest
from ketch._pb import auth_pb2, rpc_pb2

from ..conftest import ServerFactory
from ..support import make_tls_files
from .test_auth_rpcs import auth, enable_with_root, rpc, token_of

CN = "ketch test client"  # make_tls_files' client certificate


def scenario(ch: grpc.Channel) -> list[Any]:
    def put(key: bytes, token: str | None = None) -> Any:
        r = rpc(
            ch,
            "/etcdserverpb.KV/Put",
            rpc_pb2.PutRequest(key=key, value=b"v"),
            rpc_pb2.PutResponse,
            token,
        )
        return "ok" if isinstance(r, rpc_pb2.PutResponse) else r

    enable_with_root(ch)
    out = [put(b"foo/1")]  # the CN is no user yet
    root = token_of(ch, "root", "rootpw")
    auth(
        ch,
        "UserAdd",
        rpc_pb2.AuthUserAddRequest(name=CN, options=auth_pb2.UserAddOptions(no_password=True)),
        root,
    )
    auth(ch, "RoleAdd", rpc_pb2.AuthRoleAddRequest(name="foo"), root)
    perm = auth_pb2.Permission(permType=auth_pb2.Permission.READWRITE, key=b"foo", range_end=b"fop")
    auth(
        ch,
        "RoleGrantPermission",
        rpc_pb2.AuthRoleGrantPermissionRequest(name="foo", perm=perm),
        root,
    )
    auth(ch, "UserGrantRole", rpc_pb2.AuthUserGrantRoleRequest(user=CN, role="foo"), root)
    out += [put(b"foo/1"), put(b"bar"), put(b"bar", root)]  # a token wins over the certificate
    return out


@pytest.mark.parametrize("kind", ["etcd", "ketch"])
def test_the_certificate_common_name_is_the_user(
    make_server: ServerFactory, tmp_path: Path, kind: str
) -> None:
    (tmp_path / "tls").mkdir()
    tls = make_tls_files(tmp_path / "tls")
    s = make_server(kind, [f"--cert-file={tls.server_cert}", f"--key-file={tls.server_key}",
                           f"--trusted-ca-file={tls.ca}", "--client-cert-auth"],
                    scheme="https", client_tls=(tls.ca, tls.client_cert, tls.client_key))  # fmt: skip
    creds = grpc.ssl_channel_credentials(
        tls.ca.read_bytes(), tls.client_key.read_bytes(), tls.client_cert.read_bytes()
    )
    with grpc.secure_channel(f"127.0.0.1:{s.client_port}", creds) as ch:
        got = scenario(ch)
    assert got == [("PERMISSION_DENIED", "etcdserver: permission denied"), "ok",
                   ("PERMISSION_DENIED", "etcdserver: permission denied"), "ok"]  # fmt: skip
