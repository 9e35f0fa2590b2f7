"""Endpoints, fail-over, the retry policy, timeouts and TLS.

The retry policy is checked against an in-process gRPC server that answers
UNAVAILABLE on demand and counts what it received, so "never sent twice" is
observed, not inferred."""

from __future__ import annotations

import datetime
import time
from collections.abc import Callable, Iterator
from concurrent import futures
from pathlib import Path

import grpc
import pytest
from ketch import Client, ConnectionFailed, DeadlineExceeded, Unavailable
from ketch._pb import rpc_pb2
from ketch.testing import Member, free_port, member


class FlakyKV:
    """Answers the first `failures` calls of each method with UNAVAILABLE."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.calls: dict[str, int] = {}

    def handler(self, method: str, response: bytes, delay: float = 0.0) -> grpc.RpcMethodHandler:
        def behaviour(request: bytes, context: grpc.ServicerContext) -> bytes:
            n = self.calls[method] = self.calls.get(method, 0) + 1
            time.sleep(delay)
            if n <= self.failures:
                context.abort(grpc.StatusCode.UNAVAILABLE, "etcdserver: request timed out")
            return response

        return grpc.unary_unary_rpc_method_handler(behaviour)


@pytest.fixture
def flaky() -> Iterator[tuple[FlakyKV, str]]:
    kv = FlakyKV(failures=1)
    header = rpc_pb2.ResponseHeader(revision=7)
    handlers = {
        "Range": kv.handler("Range", rpc_pb2.RangeResponse(header=header).SerializeToString()),
        "Put": kv.handler("Put", rpc_pb2.PutResponse(header=header).SerializeToString()),
        "DeleteRange": kv.handler(
            "DeleteRange", rpc_pb2.DeleteRangeResponse().SerializeToString(), delay=2.0
        ),
    }
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler("etcdserverpb.KV", handlers)])
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield kv, f"127.0.0.1:{port}"
    server.stop(None)


def test_reads_are_retried_writes_are_not(flaky: tuple[FlakyKV, str], connect: Callable[..., Client]) -> None:
    kv, endpoint = flaky
    with connect(endpoint) as c:
        assert c.get("k").header.revision == 7  # failed once, retried, answered
        assert kv.calls["Range"] == 2
        with pytest.raises(Unavailable, match="request timed out"):
            c.put("k", "v")  # may have been applied: not sent again
        assert kv.calls["Put"] == 1


def test_every_call_has_a_timeout(flaky: tuple[FlakyKV, str], connect: Callable[..., Client]) -> None:
    _, endpoint = flaky
    with connect(endpoint, timeout=0.3) as c:
        start = time.monotonic()
        with pytest.raises(DeadlineExceeded, match="context deadline exceeded"):
            c.delete("k")
        assert time.monotonic() - start < 1.5
        with pytest.raises(DeadlineExceeded):
            c.delete("k", timeout=0.1)


def test_fails_over_to_the_next_endpoint(ketch_server: Member, connect: Callable[..., Client]) -> None:
    dead = f"127.0.0.1:{free_port()}"
    with connect([dead, ketch_server.endpoint], dial_timeout=2) as c:
        start = time.monotonic()
        assert c.put("fo", "v").header.revision > 0  # a write too: nothing was sent to the dead one
        assert time.monotonic() - start < 1.5  # passed over at once, not after the dial timeout
        assert c.get("fo").value == b"v"


def test_no_endpoint_reachable_is_a_connection_error(connect: Callable[..., Client]) -> None:
    with (
        connect(f"http://127.0.0.1:{free_port()}", dial_timeout=0.3, timeout=None) as c,
        pytest.raises(ConnectionFailed) as e,
    ):
        c.get("k")
    assert "could not connect" in str(e.value) and e.value.hint


def _certs(tmp: Path) -> dict[str, Path]:
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.timezone.utc)

    def name(cn: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    def build(cn: str, key: ec.EllipticCurvePrivateKey, issuer: x509.Name,
              signer: ec.EllipticCurvePrivateKey, ca: bool) -> x509.Certificate:  # fmt: skip
        b = (
            x509.CertificateBuilder().subject_name(name(cn)).issuer_name(issuer)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        )  # fmt: skip
        if not ca:
            b = b.add_extension(
                x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                critical=False,
            )
        return b.sign(signer, hashes.SHA256())

    files: dict[str, Path] = {}
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = build("ketch-test-ca", ca_key, name("ketch-test-ca"), ca_key, True)
    files["ca"] = tmp / "ca.pem"
    files["ca"].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    for who in ("server", "client"):
        key = ec.generate_private_key(ec.SECP256R1())
        cert = build(who, key, ca.subject, ca_key, False)
        files[who] = tmp / f"{who}.pem"
        files[who].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        files[who + "-key"] = tmp / f"{who}-key.pem"
        files[who + "-key"].write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
    return files


def test_tls_with_client_certificates(tmp_path: Path, connect: Callable[..., Client]) -> None:
    f = _certs(tmp_path)
    port = free_port()
    url = f"https://127.0.0.1:{port}"
    args = ["--listen-client-urls", url, "--advertise-client-urls", url,
            "--cert-file", str(f["server"]), "--key-file", str(f["server-key"]),
            "--trusted-ca-file", str(f["ca"]), "--client-cert-auth"]  # fmt: skip
    m = _tls_member(tmp_path, port, args)
    try:
        with connect(url, ca_cert=f["ca"], cert=f["client"], key=f["client-key"]) as c:
            assert c.put("tls", "v").header.revision > 0
            assert c.get("tls").value == b"v"
        with (
            connect(url, ca_cert=f["ca"], dial_timeout=0.5, timeout=2) as c,
            pytest.raises(Unavailable),  # the server requires a client certificate
        ):
            c.get("tls")
    finally:
        m.stop()


def _tls_member(tmp: Path, port: int, args: list[str]) -> Member:
    # ketch's TLS listener, started like any member but with https client URLs.
    class TLSMember(Member):
        def argv(self) -> list[str]:
            base = super().argv()
            i = base.index("--listen-client-urls")
            return base[:i] + base[i + 4 :] + args

        def _wait_serving(self, timeout: float) -> None:
            deadline = time.monotonic() + timeout
            import socket

            while time.monotonic() < deadline:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                    return
                except OSError:
                    time.sleep(0.05)
            raise RuntimeError(self.log_text())

    tmp.joinpath("data").mkdir()
    return TLSMember("ketch", tmp / "data" / "m", port, free_port()).start()


_ = member
