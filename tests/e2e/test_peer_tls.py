"""Members talking over TLS with client-certificate auth (etcd's --peer-*
flags): a three-member cluster forms and replicates, run the same against
etcd and ketch; and ketch's peer port refuses whoever has no valid cert."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest

from ..support import Server, TLSFiles, etcdctl, make_tls_files, three_members

MEMBERS = 3


def start_cluster(kind: str, root: Path, tls: TLSFiles) -> list[Server]:
    peer_tls = [
        "--peer-cert-file", str(tls.peer_cert), "--peer-key-file", str(tls.peer_key),
        "--peer-trusted-ca-file", str(tls.ca), "--peer-client-cert-auth",
    ]  # fmt: skip
    return three_members(kind, root, peer_tls, peer_scheme="https")


@pytest.mark.parametrize("kind", ["etcd", "ketch"])
def test_a_cluster_forms_and_replicates_over_peer_tls(kind: str, tmp_path: Path) -> None:
    (tmp_path / "tls").mkdir()
    tls = make_tls_files(tmp_path / "tls")
    servers = start_cluster(kind, tmp_path, tls)
    try:
        for s in servers:
            s.start(wait=False)
        for s in servers:
            s.wait_ready()
        assert etcdctl(servers[0], "put", "over", "tls")[0] == 0
        rc, out, _ = etcdctl(servers[2], "get", "over", "--print-value-only")
        assert (rc, out) == (0, "tls\n")
        rc, out, _ = etcdctl(servers[1], "member", "list")
        assert rc == 0 and out.count(", started, ") == MEMBERS and out.count("https://127.0.0.1:") == MEMBERS
        if kind == "ketch":
            (tmp_path / "foreign").mkdir()
            refused_without_a_valid_cert(servers[0], tls, make_tls_files(tmp_path / "foreign"))
    finally:
        for s in servers:
            s.stop()


def refused_without_a_valid_cert(member: Server, tls: TLSFiles, foreign: TLSFiles) -> None:
    """ketch's peer service answers only callers with a cert from the peer CA
    (`foreign` holds certificates from another CA)."""
    target = f"127.0.0.1:{member.peer_port}"
    ca = tls.ca.read_bytes()
    attempts = {
        "plain text": grpc.insecure_channel(target),
        "TLS without a client cert": grpc.secure_channel(target, grpc.ssl_channel_credentials(ca)),
        "a client cert the peer CA did not sign": grpc.secure_channel(
            target,
            grpc.ssl_channel_credentials(
                ca, foreign.peer_key.read_bytes(), foreign.peer_cert.read_bytes()
            ),
        ),
    }
    good = grpc.secure_channel(
        target,
        grpc.ssl_channel_credentials(ca, tls.peer_key.read_bytes(), tls.peer_cert.read_bytes()),
    )
    members = "/ketchpeer.Raft/Members"
    for what, channel in attempts.items():
        with channel:
            with pytest.raises(grpc.RpcError) as e:
                channel.unary_unary(members)(b"", timeout=5)
            assert e.value.code() == grpc.StatusCode.UNAVAILABLE, what
    with good:
        assert good.unary_unary(members)(b"", timeout=5)
