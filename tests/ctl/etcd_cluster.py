"""A real 3-member etcd cluster on free loopback ports, for the member and
move-leader tests (ketch cannot form one yet). Each member is /usr/bin/etcd
with its data in a temp dir; `stop` ends each by its PID."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from ketch.client import Client, EtcdError
from ketch.testing import free_port

START_TIMEOUT = 30.0


@dataclass
class EtcdMember:
    name: str
    data_dir: Path
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
        etcd = shutil.which("etcd") or "/usr/bin/etcd"
        env = {k: v for k, v in os.environ.items() if not k.startswith(("ETCD_", "ETCDCTL_"))}
        log = open(self.data_dir.parent / f"{self.name}.log", "ab")  # noqa: SIM115 (the child keeps it)
        with log:
            self.proc = subprocess.Popen(
                [etcd, "--name", self.name, "--data-dir", str(self.data_dir),
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


def wait_serving(members: list[EtcdMember], timeout: float = START_TIMEOUT) -> None:
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
                        raise RuntimeError(f"etcd member {m.name} did not serve within {timeout}s") from None
                    time.sleep(0.1)


@contextlib.contextmanager
def etcd_cluster(root: Path, size: int = 3) -> Iterator[list[EtcdMember]]:
    members = [EtcdMember(f"m{i}", root / f"m{i}") for i in range(size)]
    initial = ",".join(f"{m.name}={m.peer_url}" for m in members)
    try:
        for m in members:
            m.start(initial)
        wait_serving(members)
        yield members
    finally:
        for m in members:
            m.stop()
