"""A real 3-member cluster of etcd or of ketch on free loopback ports, for the
member and move-leader tests. Each member is /usr/bin/etcd or `python -m
ketch` with the same flags and its data in a temp dir; `stop` ends each by
its PID."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from ketch.client import Client, EtcdError
from ketch.testing import free_port

START_TIMEOUT = 30.0


def program(kind: str) -> list[str]:
    """How to run a member of this kind."""
    if kind == "etcd":
        return [shutil.which("etcd") or "/usr/bin/etcd"]
    return [sys.executable, "-m", "ketch", "--grpc-workers", "1"]


@dataclass
class ClusterMember:
    name: str
    data_dir: Path
    kind: str = "etcd"
    client_port: int = field(default_factory=free_port)
    peer_port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.client_port}"

    @property
    def client_url(self) -> str:
        return f"http://127.0.0.1:{self.client_port}"

    @property
    def peer_url(self) -> str:
        return f"http://127.0.0.1:{self.peer_port}"

    def start(self, initial_cluster: str, state: str = "new") -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("ETCD_", "ETCDCTL_"))}
        log = open(self.data_dir.parent / f"{self.name}.log", "ab")  # noqa: SIM115 (the child keeps it)
        with log:
            self.proc = subprocess.Popen(
                [*program(self.kind), "--name", self.name, "--data-dir", str(self.data_dir),
                 "--listen-client-urls", self.client_url, "--advertise-client-urls", self.client_url,
                 "--listen-peer-urls", self.peer_url, "--initial-advertise-peer-urls", self.peer_url,
                 "--initial-cluster", initial_cluster, "--initial-cluster-state", state,
                 "--initial-cluster-token", "ketchctl-test"],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env,
            )  # fmt: skip

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.proc = None


def wait_serving(members: list[ClusterMember], timeout: float = START_TIMEOUT) -> None:
    """Until every member answers a linearizable read (so the cluster has a leader)."""
    deadline = time.monotonic() + timeout
    for m in members:
        with Client(m.endpoint, timeout=1.0, dial_timeout=0.5) as c:
            while True:
                try:
                    c.get("probe")
                    break
                except EtcdError:
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"member {m.name} did not serve within {timeout}s") from None
                    time.sleep(0.1)


@contextlib.contextmanager
def cluster_of(kind: str, root: Path, size: int = 3) -> Iterator[list[ClusterMember]]:
    members = [ClusterMember(f"m{i}", root / f"m{i}", kind) for i in range(size)]
    initial = ",".join(f"{m.name}={m.peer_url}" for m in members)
    try:
        for m in members:
            m.start(initial)
        wait_serving(members)
        yield members
    finally:
        for m in members:
            m.stop()
