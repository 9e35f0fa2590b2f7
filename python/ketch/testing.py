"""Real servers for tests: a ketch member on free loopback ports, in a temp dir.

Any project that talks to etcd can test against ketch without installing etcd:

    from ketch.testing import member

    with member() as m:              # starts ketch, waits until it serves
        with m.client() as c:
            c.put("k", "v")
    # stopped (SIGTERM, then SIGKILL) and its data dir removed

With pytest the same is a fixture: this module is registered as a pytest
plugin (entry point `ketch`), so `ketch_member` (a fresh member per test) and
`ketch_client` (a Client connected to it) are available in every test once
ketch is installed.

`member(server="etcd")` starts the reference etcd instead (when it is
installed), for tests that compare the two. The command that runs ketch is
this interpreter's `-m ketch`, or the KETCH_TESTING_SERVER environment
variable (split like a shell command) to test against a ketch installed elsewhere.

`cluster(size)` starts `size` members forming one cluster (names m0, m1, ...)
and yields them; `[m.endpoint for m in members]` is what a Client or etcdctl
takes. Each member is stopped by PID when the block ends, like member()'s.
"""

from __future__ import annotations

import contextlib
import os
import random
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from .client import Client

__all__ = ["Member", "ServerStartError", "cluster", "free_port", "member", "tamper"]

START_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0
Server = Literal["ketch", "etcd"]


class ServerStartError(RuntimeError):
    """The server exited or did not serve in time. The message ends with its log."""


def _ephemeral_low() -> int:
    """The lowest port the kernel gives outgoing connections."""
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


# Ports handed out by this process: never handed out twice.
_handed_out: set[int] = set()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now.

    Taken below the kernel's ephemeral range: a port from bind(0) is in that
    range, and between this check and the server's own bind the kernel may
    give it to any outgoing connection (a cluster's members open many), and
    the server fails with "address already in use"."""
    low = _ephemeral_low()
    for _ in range(1000):
        port = random.randrange(10_000, low)
        if port in _handed_out:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        _handed_out.add(port)
        return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def server_command(server: Server) -> list[str]:
    if server == "etcd":
        etcd = shutil.which("etcd")
        if etcd is None:
            raise ServerStartError("etcd is not installed (on Debian: apt-get install etcd-server)")
        return [etcd]
    configured = os.environ.get("KETCH_TESTING_SERVER")
    return shlex.split(configured) if configured else [sys.executable, "-m", "ketch"]


@dataclass
class Member:
    """One server process: where it listens, where its data is, how to stop it."""

    server: Server
    data_dir: Path
    client_port: int
    peer_port: int
    name: str = "default"
    extra_args: Sequence[str] = ()
    # "name=peer-url,..." for all founding members; None: this member alone.
    initial_cluster: str | None = None
    proc: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None
    _log: IO[bytes] | None = field(default=None, repr=False)

    @property
    def endpoint(self) -> str:
        """host:port, what `Client` and etcdctl's --endpoints take."""
        return f"127.0.0.1:{self.client_port}"

    @property
    def client_url(self) -> str:
        return f"http://127.0.0.1:{self.client_port}"

    @property
    def peer_url(self) -> str:
        return f"http://127.0.0.1:{self.peer_port}"

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def argv(self) -> list[str]:
        return [
            *server_command(self.server),
            "--name", self.name,
            "--data-dir", str(self.data_dir),
            "--listen-client-urls", self.client_url,
            "--advertise-client-urls", self.client_url,
            "--listen-peer-urls", self.peer_url,
            "--initial-advertise-peer-urls", self.peer_url,
            "--initial-cluster", self.initial_cluster or f"{self.name}={self.peer_url}",
            *self.extra_args,
        ]  # fmt: skip

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path else ""

    def start(self, timeout: float = START_TIMEOUT) -> Member:
        """Start the process and wait until it answers a read."""
        self.spawn()
        self.wait_serving(timeout)
        return self

    def spawn(self) -> Member:
        """Start the process without waiting: a cluster's members serve only once a quorum runs."""
        if self.proc is not None:
            raise RuntimeError(f"{self.server} member {self.name} is already running")
        self.log_path = self.data_dir.parent / f"{self.data_dir.name}.{self.server}.log"
        self._log = open(self.log_path, "ab")  # noqa: SIM115 (closed in stop)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("ETCD_", "ETCDCTL_"))}
        self.proc = subprocess.Popen(
            self.argv(), stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT,
            env=env, cwd=self.data_dir.parent,
        )  # fmt: skip
        return self

    def wait_serving(self, timeout: float = START_TIMEOUT) -> None:
        """Until a (linearizable) read succeeds; on failure the process is stopped."""
        try:
            self._wait_serving(timeout)
        except BaseException:
            self.stop()
            raise

    def _wait_serving(self, timeout: float) -> None:
        from .client import Client, EtcdError

        if self.proc is None:
            raise RuntimeError(f"{self.server} member {self.name} is not running")
        deadline = time.monotonic() + timeout
        with Client(self.endpoint, timeout=1.0, dial_timeout=0.2) as c:
            while True:
                if self.proc.poll() is not None:
                    raise ServerStartError(
                        f"{self.server} exited with status {self.proc.returncode} while "
                        f"starting ({' '.join(self.argv())}); its log:\n{self.log_text()}"
                    )
                try:
                    c.get("ketch-testing-probe", timeout=1.0)
                    return
                except EtcdError:
                    if time.monotonic() > deadline:
                        raise ServerStartError(
                            f"{self.server} did not serve at {self.endpoint} within {timeout}s; "
                            f"its log:\n{self.log_text()}"
                        ) from None
                    time.sleep(0.05)

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """SIGTERM, then SIGKILL if it has not exited after `timeout` seconds."""
        if self.proc is not None:
            if self.proc.poll() is None:
                os.kill(self.proc.pid, signal.SIGTERM)
                try:
                    self.proc.wait(timeout)
                except subprocess.TimeoutExpired:
                    os.kill(self.proc.pid, signal.SIGKILL)
                    self.proc.wait()
            self.proc = None
        if self._log is not None:
            self._log.close()
            self._log = None

    def kill(self) -> None:
        """SIGKILL: a crash, for tests of recovery and fail-over."""
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        self.stop()

    def tamper(self, key: bytes, value: bytes, new_value: bytes) -> None:
        """Damages this stopped member's data out of band (see `tamper`)."""
        if self.proc is not None:
            raise RuntimeError(f"{self.server} member {self.name} must be stopped to tamper with its data")
        tamper(self.server, self.data_dir, key, value, new_value)

    def restart(self) -> Member:
        self.stop()
        return self.start()

    def client(self, **options: object) -> Client:
        """A Client connected to this member (options as Client's)."""
        from .client import Client

        return Client(self.endpoint, **options)  # type: ignore[arg-type]


def tamper(server: Server, data_dir: Path, key: bytes, value: bytes, new_value: bytes) -> None:
    """Damages a stopped member's backend out of band, for corruption checks:
    `key`'s newest value `value` becomes `new_value` (as long), with no Raft
    entry and no new revision, as bit rot would. ketch: through its own file
    format (`_core.tamper_backend`); etcd: bbolt's pages carry no checksums,
    so the value's bytes are overwritten in place in member/snap/db."""
    if len(value) != len(new_value):
        raise ValueError("the new value must be as long as the old one")
    if server == "ketch":
        from . import _core

        _core.tamper_backend(str(data_dir / "member" / "db.redb"), key, new_value)
        return
    db = data_dir / "member" / "snap" / "db"
    data = db.read_bytes()
    if value not in data:
        raise ValueError(f"{value!r} is not in {db}")
    db.write_bytes(data.replace(value, new_value))


@contextlib.contextmanager
def member(
    *,
    server: Server = "ketch",
    data_dir: str | Path | None = None,
    name: str = "default",
    extra_args: Sequence[str] = (),
    timeout: float = START_TIMEOUT,
) -> Iterator[Member]:
    """A running single-member server for the duration of the block.

    Without `data_dir` its data lives in a temporary directory removed afterwards."""
    with contextlib.ExitStack() as stack:
        if data_dir is None:
            root = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="ketch-testing-")))
        else:
            root = Path(data_dir)
            root.mkdir(parents=True, exist_ok=True)
        m = Member(server, root / name, free_port(), free_port(), name, tuple(extra_args))
        stack.callback(m.stop)
        m.start(timeout)
        yield m


@contextlib.contextmanager
def cluster(
    size: int = 3,
    *,
    server: Server = "ketch",
    data_dir: str | Path | None = None,
    extra_args: Sequence[str] = (),
    timeout: float = START_TIMEOUT,
) -> Iterator[list[Member]]:
    """`size` members forming one new cluster, running for the duration of the block.

    Member i is named m{i}, with its data in {data_dir}/m{i} (a temporary
    directory removed afterwards when `data_dir` is None). All are started
    before any is waited for, since none serves until a quorum has met."""
    if size < 1:
        raise ValueError(f"a cluster has at least one member, not {size}")
    with contextlib.ExitStack() as stack:
        if data_dir is None:
            root = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="ketch-testing-")))
        else:
            root = Path(data_dir)
            root.mkdir(parents=True, exist_ok=True)
        members = [
            Member(server, root / f"m{i}", free_port(), free_port(), f"m{i}", tuple(extra_args))
            for i in range(size)
        ]
        initial = ",".join(f"{m.name}={m.peer_url}" for m in members)
        for m in members:
            m.initial_cluster = initial
            m.extra_args = (
                "--initial-cluster-state", "new",
                "--initial-cluster-token", root.name,  # one cluster, one token
                *m.extra_args,
            )  # fmt: skip
        for m in members:
            stack.callback(m.stop)
        for m in members:
            m.spawn()
        for m in members:
            m.wait_serving(timeout)
        yield members


# -- pytest plugin (entry point `ketch` in the pytest11 group) --------------

try:
    import pytest
except ImportError:  # pytest is optional: the context managers above do not need it
    pass
else:

    @pytest.fixture
    def ketch_member(tmp_path: Path) -> Iterator[Member]:
        """A fresh single-member ketch on free loopback ports, stopped after the test."""
        with member(data_dir=tmp_path / "ketch") as m:
            yield m

    @pytest.fixture
    def ketch_client(ketch_member: Member) -> Iterator[Client]:
        """A Client connected to `ketch_member`."""
        with ketch_member.client() as c:
            yield c

    @pytest.fixture
    def ketch_cluster(tmp_path: Path) -> Iterator[list[Member]]:
        """A fresh 3-member ketch cluster on free loopback ports, each member
        stopped by PID after the test."""
        with cluster(3, data_dir=tmp_path / "ketch-cluster") as members:
            yield members
