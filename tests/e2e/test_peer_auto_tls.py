"""etcd's --peer-auto-tls: with https peer URLs and no peer certificate
files, each member makes a self-signed certificate in
<data-dir>/fixtures/peer at start, serves its peer port with it, and dials
the others without verifying theirs. A three-member cluster forms and
replicates that way, run the same against etcd and ketch."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest
from ketch.config import parse
from ketch.server import _with_peer_auto_tls
from ketch.tls import peer_dial_tls

from ..support import Server, etcdctl, free_port, make_tls_files, three_members

MEMBERS = 3


def start_cluster(kind: str, root: Path) -> list[Server]:
    return three_members(kind, root, ["--peer-auto-tls"], peer_scheme="https")


def served_certificate(port: int) -> bytes:
    """The DER certificate the peer port presents, taken unverified."""
    return ssl.PEM_cert_to_DER_cert(ssl.get_server_certificate(("127.0.0.1", port), timeout=5))


@pytest.mark.parametrize("kind", ["etcd", "ketch"])
def test_a_cluster_forms_and_replicates_with_peer_auto_tls(kind: str, tmp_path: Path) -> None:
    servers = start_cluster(kind, tmp_path)
    try:
        for s in servers:
            s.start(wait=False)
        for s in servers:
            s.wait_ready()
        assert etcdctl(servers[0], "put", "auto", "tls")[0] == 0
        rc, out, _ = etcdctl(servers[2], "get", "auto", "--print-value-only")
        assert (rc, out) == (0, "tls\n")
        # Leader-only calls from followers go to the leader over the same peer TLS.
        rc, out, _ = etcdctl(servers[1], "lease", "grant", "60")
        assert rc == 0, out
        lease = out.split()[1]
        for s in servers:
            rc, out, _ = etcdctl(s, "lease", "keep-alive", "--once", lease)
            assert rc == 0 and "keepalived with TTL" in out, out
        rc, out, _ = etcdctl(servers[1], "member", "list")
        assert rc == 0 and out.count(", started, ") == MEMBERS and out.count("https://127.0.0.1:") == MEMBERS
        certificates = []
        for s in servers:
            fixtures = Path(s.data_dir) / "fixtures" / "peer"
            assert "PRIVATE KEY" in (fixtures / "key.pem").read_text()
            on_disk = ssl.PEM_cert_to_DER_cert((fixtures / "cert.pem").read_text())
            assert served_certificate(s.peer_port) == on_disk
            certificates.append(on_disk)
        # Each member made its own.
        assert len(set(certificates)) == MEMBERS
    finally:
        for s in servers:
            s.stop()


def test_given_peer_certificates_are_verified_despite_peer_auto_tls(tmp_path: Path) -> None:
    """etcd: "ignoring peer auto TLS since certs given"; those certificates
    are verified against --peer-trusted-ca-file as without the flag, and no
    certificate is generated."""
    tls = make_tls_files(tmp_path)
    data_dir = tmp_path / "member"
    args = [
        "--data-dir", str(data_dir), "--peer-auto-tls",
        "--listen-peer-urls", f"https://127.0.0.1:{free_port()}",
        "--peer-cert-file", str(tls.peer_cert), "--peer-key-file", str(tls.peer_key),
        "--peer-trusted-ca-file", str(tls.ca),
    ]  # fmt: skip
    cfg = parse(args, {})
    dial = peer_dial_tls(_with_peer_auto_tls(cfg))
    assert dial == (tls.ca.read_bytes(), tls.peer_cert.read_bytes(), tls.peer_key.read_bytes(), False)
    assert not (data_dir / "fixtures").exists()


def test_peer_auto_tls_replaces_the_peer_trust_settings(tmp_path: Path) -> None:
    """As etcd's PeerSelfCert replaces the peer TLSInfo whole: no CA, no peer
    client cert auth; the generated pair is dialled with, unverified."""
    tls = make_tls_files(tmp_path)
    data_dir = tmp_path / "member"
    args = [
        "--data-dir", str(data_dir), "--peer-auto-tls", "--peer-client-cert-auth",
        "--listen-peer-urls", f"https://127.0.0.1:{free_port()}",
        "--peer-trusted-ca-file", str(tls.ca),
    ]  # fmt: skip
    cfg = parse(args, {})
    auto = _with_peer_auto_tls(cfg)
    fixtures = data_dir / "fixtures" / "peer"
    assert (auto.peer_cert_file, auto.peer_key_file) == (str(fixtures / "cert.pem"), str(fixtures / "key.pem"))
    assert (auto.peer_trusted_ca_file, auto.peer_client_cert_auth) == ("", False)
    dial = peer_dial_tls(auto)
    assert dial == (None, (fixtures / "cert.pem").read_bytes(), (fixtures / "key.pem").read_bytes(), True)
