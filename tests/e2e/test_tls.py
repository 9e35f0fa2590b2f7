"""https client URLs, with and without client certificate authentication.

Certificates are made fresh per test (tests.support.make_tls_files); etcd
runs with the same files as the reference.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from ..support import TLSFiles, etcdctl, free_port, make_tls_files
from .differential import differential, step


@pytest.fixture
def tls(tmp_path: Path) -> TLSFiles:
    d = tmp_path / "tls"
    d.mkdir()
    return make_tls_files(d)


def _tls_args(tls: TLSFiles, client_cert_auth: bool = True) -> list[str]:
    args = ["--cert-file", str(tls.server_cert), "--key-file", str(tls.server_key)]
    if client_cert_auth:
        args += ["--client-cert-auth", "--trusted-ca-file", str(tls.ca)]
    return args


def test_client_cert_auth_same_as_etcd(make_server, tls: TLSFiles) -> None:
    steps = [
        step("member", "list"),
        step("put", "secure", "yes"),
        step("get", "secure", "-w", "json"),
        step("endpoint", "health"),
    ]
    etcd = differential(
        make_server,
        steps,
        _tls_args(tls),
        scheme="https",
        client_tls=(tls.ca, tls.client_cert, tls.client_key),
    )
    assert "https://127.0.0.1:" in etcd[0].stdout and etcd[1].stdout == "OK\n"


@pytest.mark.parametrize("kind", ["ketch", "etcd"])
def test_client_without_cert_is_refused(make_server, tls: TLSFiles, kind: str) -> None:
    server = make_server(
        kind, _tls_args(tls), scheme="https", client_tls=(tls.ca, tls.client_cert, tls.client_key)
    )
    # The handshake fails, so the client never gets a connection and gives
    # up when the command times out (etcdctl says the same for etcd).
    quick = ("--command-timeout", "2s")
    rc, _, err = etcdctl(server, *quick, "put", "k", "from-no-cert", tls=(tls.ca, None, None))
    assert (rc, err.splitlines()[-1]) == (1, "Error: context deadline exceeded")
    # Plain text against the TLS port gets nowhere either.
    rc, _, err = etcdctl(
        server.endpoint.replace("https://", "http://"), *quick, "put", "k", "plain"
    )
    assert (rc, err.splitlines()[-1]) == (1, "Error: context deadline exceeded")
    rc, out, _ = server.etcdctl("get", "k", "--print-value-only")
    assert (rc, out) == (0, "")


@pytest.mark.parametrize("kind", ["ketch", "etcd"])
def test_tls_without_client_auth_takes_any_client(make_server, tls: TLSFiles, kind: str) -> None:
    server = make_server(
        kind,
        _tls_args(tls, client_cert_auth=False),
        scheme="https",
        client_tls=(tls.ca, None, None),
    )
    assert server.etcdctl("put", "k", "v") == (0, "OK\n", "")
    rc, _, err = etcdctl(server, "get", "k", tls=(tls.ca, tls.client_cert, tls.client_key))
    assert rc == 0, err


@pytest.mark.parametrize("kind", ["ketch", "etcd"])
def test_http_and_https_listeners_together(make_server, tls: TLSFiles, kind: str) -> None:
    plain, secure = free_port(), free_port()
    urls = f"http://127.0.0.1:{plain},https://127.0.0.1:{secure}"
    server = make_server(
        kind,
        ["--listen-client-urls", urls, "--advertise-client-urls", urls, *_tls_args(tls)],
        client_port=plain,
    )
    assert server.etcdctl("put", "k", "over-http") == (0, "OK\n", "")
    rc, out, err = etcdctl(
        f"https://127.0.0.1:{secure}", "get", "k", "--print-value-only",
        tls=(tls.ca, tls.client_cert, tls.client_key),
    )  # fmt: skip
    assert (rc, out) == (0, "over-http\n"), err
    rc, out, _ = server.etcdctl("member", "list")
    assert f"http://127.0.0.1:{plain},https://127.0.0.1:{secure}" in out


@pytest.mark.parametrize("kind", ["ketch", "etcd"])
def test_rotated_server_certificate_is_served_without_a_restart(
    make_server, tmp_path: Path, kind: str
) -> None:
    """Replace the server's certificate and key in place with ones from
    another CA: the next connection gets the new one (etcd reloads on
    handshake too), and a client that trusts only the old CA is refused."""
    old_dir, new_dir = tmp_path / "old", tmp_path / "new"
    old_dir.mkdir()
    new_dir.mkdir()
    old, new = make_tls_files(old_dir), make_tls_files(new_dir)
    server = make_server(
        kind, _tls_args(old, client_cert_auth=False), scheme="https", client_tls=(old.ca, None, None)
    )
    assert server.etcdctl("put", "k", "before") == (0, "OK\n", "")
    # Key first, then certificate: a handshake in between may see a pair
    # that does not match, which must not stop the server.
    old.server_key.write_bytes(new.server_key.read_bytes())
    old.server_cert.write_bytes(new.server_cert.read_bytes())
    rc, out, err = etcdctl(server, "get", "k", "--print-value-only", tls=(new.ca, None, None))
    assert (rc, out) == (0, "before\n"), err
    quick = ("--command-timeout", "2s")
    rc, _, err = etcdctl(server, *quick, "get", "k", tls=(old.ca, None, None))
    assert rc == 1, err
    assert server.proc is not None and server.proc.poll() is None


@pytest.mark.parametrize("kind", ["ketch", "etcd"])
def test_auto_tls_serves_https_with_a_generated_certificate(make_server, kind: str) -> None:
    """--auto-tls with an https URL and no certificate files: a self-signed
    certificate under <data-dir>/fixtures/client; clients skip verification."""
    server = make_server(kind, ["--auto-tls"], scheme="https", skip_verify=True)
    assert server.etcdctl("put", "k", "auto") == (0, "OK\n", "")
    rc, out, err = server.etcdctl("get", "k", "--print-value-only")
    assert (rc, out) == (0, "auto\n"), err
    assert (server.data_dir / "fixtures" / "client" / "cert.pem").is_file()


def _handshake(port: int, ca: Path, version: object, ciphers: str | None = None) -> bool:
    import socket
    import ssl

    ctx = ssl.create_default_context(cafile=str(ca))
    ctx.minimum_version = ctx.maximum_version = version  # type: ignore[assignment]
    if ciphers:
        ctx.set_ciphers(ciphers)
    try:
        with (
            socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
            ctx.wrap_socket(raw, server_hostname="127.0.0.1"),
        ):
            return True
    except (ssl.SSLError, OSError):
        return False


def test_tls_min_version_limits_the_handshake(make_server, tls: TLSFiles) -> None:
    """--tls-min-version TLS1.3: a client limited to TLS 1.2 cannot connect
    (etcd 3.5's flag: Debian's etcd 3.4 has none to compare with)."""
    import ssl

    args = [*_tls_args(tls, client_cert_auth=False), "--tls-min-version", "TLS1.3"]
    server = make_server("ketch", args, scheme="https", client_tls=(tls.ca, None, None))
    assert server.etcdctl("put", "k", "v") == (0, "OK\n", "")
    assert _handshake(server.client_port, tls.ca, ssl.TLSVersion.TLSv1_3)
    assert not _handshake(server.client_port, tls.ca, ssl.TLSVersion.TLSv1_2)


def test_cipher_suites_limit_tls12_handshakes(make_server, tls: TLSFiles) -> None:
    """Only the listed TLS 1.2 suite is offered. (Debian's etcd 3.4 with this
    one-suite list does not serve etcdctl at all: Go's HTTP/2 requires an
    AES-128-GCM suite, so there is no etcd run to compare with.)"""
    import ssl

    args = [*_tls_args(tls, client_cert_auth=False),
            "--cipher-suites", "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384"]  # fmt: skip
    server = make_server("ketch", args, scheme="https", client_tls=(tls.ca, None, None))
    assert server.etcdctl("put", "k", "v") == (0, "OK\n", "")
    v12 = ssl.TLSVersion.TLSv1_2
    assert _handshake(server.client_port, tls.ca, v12, "ECDHE-ECDSA-AES256-GCM-SHA384")
    assert not _handshake(server.client_port, tls.ca, v12, "ECDHE-ECDSA-AES128-GCM-SHA256")
