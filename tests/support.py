"""Real processes for the end-to-end tests: etcd, ketch, etcdctl.

Every server listens on 127.0.0.1 on a free port with its data in a temporary
directory, and is stopped by PID (SIGTERM, then SIGKILL after a timeout).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ketch.testing import free_port  # the one port picker, shared with ketch.testing's users

REPO = Path(__file__).resolve().parent.parent
ETCD = shutil.which("etcd") or "/usr/bin/etcd"
ETCDCTL = shutil.which("etcdctl") or "/usr/bin/etcdctl"
START_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0
ETCDCTL_TIMEOUT = 30.0
READY_LINE = "ready to serve client requests"


def ketch_command() -> list[str]:
    """How to run ketch: the interpreter running the tests, `-m ketch`."""
    return [sys.executable, "-m", "ketch"]


def subprocess_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment for a child: no ETCD*/ETCDCTL* leaking in from outside."""
    # No PYTHONPATH to python/: `python -m ketch` runs the installed package
    # (the wheel `.ci/dev test` installs), as the tests' own imports do.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ETCD_", "ETCDCTL_"))}
    env.update(extra or {})
    return env


@dataclass
class TLSFiles:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    # For members talking to each other: server and client use in one cert.
    peer_cert: Path
    peer_key: Path


@dataclass
class Server:
    """One etcd or ketch process and how to reach it."""

    kind: str  # "etcd" or "ketch"
    data_dir: Path
    client_port: int
    peer_port: int
    extra_args: Sequence[str] = ()
    # When set, the whole command line after the program (instead of the
    # standard flags above): for tests that configure through env or a file.
    args: Sequence[str] | None = None
    scheme: str = "http"
    env: dict[str, str] = field(default_factory=dict)
    # What etcdctl presents by default: (CA, client cert, client key).
    client_tls: tuple[Path, Path | None, Path | None] | None = None
    # etcdctl skips verifying the server's certificate (a generated one, --auto-tls).
    skip_verify: bool = False
    proc: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None
    _log: object = None
    starts: int = 0

    @property
    def client_url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.client_port}"

    @property
    def peer_url(self) -> str:
        return f"http://127.0.0.1:{self.peer_port}"

    @property
    def endpoint(self) -> str:
        return self.client_url

    def argv(self) -> list[str]:
        base = [ETCD] if self.kind == "etcd" else ketch_command()
        if self.args is not None:
            return [*base, *self.args]
        return [
            *base,
            "--name", "default",
            "--data-dir", str(self.data_dir),
            "--listen-client-urls", self.client_url,
            "--advertise-client-urls", self.client_url,
            "--listen-peer-urls", self.peer_url,
            "--initial-advertise-peer-urls", self.peer_url,
            "--initial-cluster", f"default={self.peer_url}",
            *self.extra_args,
        ]  # fmt: skip

    def start(self, wait: bool = True) -> Server:
        assert self.proc is None, "already running"
        self.starts += 1
        self.log_path = self.data_dir.parent / f"{self.data_dir.name}.{self.kind}.{self.starts}.log"
        self._log = open(self.log_path, "wb")  # noqa: SIM115 (closed in _reap)
        self.proc = subprocess.Popen(
            self.argv(),
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=subprocess_env(self.env),
            cwd=self.data_dir.parent,
        )
        if wait:
            self.wait_ready()
        return self

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path else ""

    def wait_ready(self, timeout: float = START_TIMEOUT) -> None:
        """Until the server says it is ready and a read through etcdctl succeeds."""
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        while READY_LINE not in self.log_text():
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"{self.kind} exited with {self.proc.returncode} while starting:\n{self.log_text()}"
                )
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.kind} not ready after {timeout}s:\n{self.log_text()}")
            time.sleep(0.02)
        while True:
            rc, _, err = etcdctl(self, "get", "--", "ready-probe", timeout=5)
            if rc == 0:
                return
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(
                    f"{self.kind} never answered a read ({err.strip()}):\n{self.log_text()}"
                )
            time.sleep(0.05)

    def stop(self, timeout: float = STOP_TIMEOUT) -> int:
        """SIGTERM, then SIGKILL if it has not exited after `timeout`; the exit code."""
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self._reap()

    def kill(self) -> int:
        """SIGKILL, no chance to clean up."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        return self._reap()

    def _reap(self) -> int:
        assert self.proc is not None
        rc = self.proc.returncode
        self.proc = None
        if self._log is not None:
            self._log.close()  # type: ignore[attr-defined]
            self._log = None
        return rc

    def etcdctl(
        self, *args: str, stdin: bytes | None = None, timeout: float = ETCDCTL_TIMEOUT
    ) -> tuple[int, str, str]:
        return etcdctl(self, *args, stdin=stdin, timeout=timeout)


def three_members(
    kind: str,
    root: Path,
    member_args: Sequence[str],
    *,
    client_scheme: str = "http",
    peer_scheme: str = "http",
    client_tls: tuple[Path, Path | None, Path | None] | None = None,
) -> list[Server]:
    """A 3-member cluster's Servers (not started) on free ports, data under
    root/kind, fast elections; `member_args` are each member's TLS flags."""
    ports = [(free_port(), free_port()) for _ in range(3)]
    initial = ",".join(f"m{i}={peer_scheme}://127.0.0.1:{pp}" for i, (_, pp) in enumerate(ports))
    servers = []
    for i, (cp, pp) in enumerate(ports):
        data_dir = root / kind / f"m{i}"
        data_dir.parent.mkdir(parents=True, exist_ok=True)
        args = [
            "--name", f"m{i}", "--data-dir", str(data_dir),
            "--listen-client-urls", f"{client_scheme}://127.0.0.1:{cp}",
            "--advertise-client-urls", f"{client_scheme}://127.0.0.1:{cp}",
            "--listen-peer-urls", f"{peer_scheme}://127.0.0.1:{pp}",
            "--initial-advertise-peer-urls", f"{peer_scheme}://127.0.0.1:{pp}",
            "--initial-cluster", initial,
            *member_args,
            "--heartbeat-interval", "50", "--election-timeout", "500",
        ]  # fmt: skip
        servers.append(
            Server(kind, data_dir=data_dir, client_port=cp, peer_port=pp, args=args, scheme=client_scheme,
                   client_tls=client_tls)
        )  # fmt: skip
    return servers


def etcdctl(
    server: Server | str,
    *args: str,
    stdin: bytes | None = None,
    timeout: float = ETCDCTL_TIMEOUT,
    tls: tuple[Path, Path | None, Path | None] | None = None,
) -> tuple[int, str, str]:
    """Run `etcdctl --endpoints <server> args...` (API v3); (exit code, stdout, stderr)."""
    endpoint = server if isinstance(server, str) else server.endpoint
    cmd = [ETCDCTL, "--endpoints", endpoint, "--dial-timeout", "5s", "--command-timeout", "10s"]
    if tls is None and isinstance(server, Server):
        tls = server.client_tls
    if isinstance(server, Server) and server.skip_verify:
        cmd += ["--insecure-transport=false", "--insecure-skip-tls-verify"]
    if tls is not None:
        ca, cert, key = tls
        cmd += ["--cacert", str(ca)]
        if cert is not None and key is not None:
            cmd += ["--cert", str(cert), "--key", str(key)]
    cmd += list(args)
    p = subprocess.run(
        cmd,
        check=False,
        input=stdin if stdin is not None else b"",
        capture_output=True,
        timeout=timeout,
        env=subprocess_env({"ETCDCTL_API": "3"}),
    )
    return p.returncode, p.stdout.decode(errors="replace"), p.stderr.decode(errors="replace")


def make_tls_files(directory: Path) -> TLSFiles:
    """A CA, a server cert for 127.0.0.1/localhost and a client cert, all fresh."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.timezone.utc)

    def key() -> ec.EllipticCurvePrivateKey:
        return ec.generate_private_key(ec.SECP256R1())

    def write_key(path: Path, k: ec.EllipticCurvePrivateKey) -> None:
        path.write_bytes(
            k.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )

    def name(cn: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    ca_key = key()
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(name("ketch test CA"))
        .issuer_name(name("ketch test CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
                encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )  # fmt: skip

    def leaf(
        cn: str, usages: list[x509.ObjectIdentifier], sans: list[x509.GeneralName]
    ) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
        k = key()
        b = (
            x509.CertificateBuilder()
            .subject_name(name(cn))
            .issuer_name(ca_cert.subject)
            .public_key(k.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                critical=False,
            )
        )
        if sans:
            b = b.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        return b.sign(ca_key, hashes.SHA256()), k

    local = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    server_cert, server_key = leaf("ketch test server", [ExtendedKeyUsageOID.SERVER_AUTH], local)
    client_cert, client_key = leaf("ketch test client", [ExtendedKeyUsageOID.CLIENT_AUTH], [])
    peer_usages = [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
    peer_cert, peer_key = leaf("ketch test peer", peer_usages, local)

    files = TLSFiles(
        ca=directory / "ca.pem",
        server_cert=directory / "server.pem",
        server_key=directory / "server-key.pem",
        client_cert=directory / "client.pem",
        client_key=directory / "client-key.pem",
        peer_cert=directory / "peer.pem",
        peer_key=directory / "peer-key.pem",
    )
    pem = serialization.Encoding.PEM
    files.ca.write_bytes(ca_cert.public_bytes(pem))
    files.server_cert.write_bytes(server_cert.public_bytes(pem))
    files.client_cert.write_bytes(client_cert.public_bytes(pem))
    write_key(files.server_key, server_key)
    write_key(files.client_key, client_key)
    files.peer_cert.write_bytes(peer_cert.public_bytes(pem))
    write_key(files.peer_key, peer_key)
    return files
