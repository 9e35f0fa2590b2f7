"""Start an etcd-compatible server (etcd or ketch) as 1 or 3 members on
loopback, and read what each member costs from /proc.

Both servers get the same flags, spelled as etcd spells them; ketch takes
etcd's flags. Every member runs in its own session (process group), so
`stop()` can end it and anything it spawned by its own id.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

CLK_TCK = os.sysconf("SC_CLK_TCK")


def free_ports(n: int) -> list[int]:
    """n distinct free TCP ports on 127.0.0.1 (held open together, so distinct)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def process_tree(pid: int) -> list[int]:
    """pid and its live descendants (threads' children included)."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        try:
            for task in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{task}/children") as f:
                    todo.extend(int(c) for c in f.read().split())
        except OSError:
            continue
    return out


def cpu_seconds(pid: int) -> float:
    """utime + stime of pid and its live descendants, in seconds."""
    total = 0
    for p in process_tree(pid):
        try:
            with open(f"/proc/{p}/stat") as f:
                # comm (field 2) may hold spaces; the fields after ')' are fixed.
                rest = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(rest[11]) + int(rest[12])  # fields 14 and 15: utime, stime
    return total / CLK_TCK


def peak_rss_mib(pid: int) -> float:
    """VmHWM (peak resident set) of pid plus its live descendants, in MiB."""
    total_kib = 0
    for p in process_tree(pid):
        try:
            with open(f"/proc/{p}/status") as f:
                for line in f:
                    if line.startswith("VmHWM:"):
                        total_kib += int(line.split()[1])
        except OSError:
            continue
    return total_kib / 1024


def machine_busy_seconds() -> float:
    """CPU-seconds the whole machine has spent not idle, over all cores."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return (sum(fields[:8]) - idle) / CLK_TCK


@dataclass
class Member:
    name: str
    client_url: str
    peer_url: str
    data_dir: Path
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None


@dataclass
class Cluster:
    """`members` members of one server kind, on fresh ports and a fresh data dir."""

    kind: str  # "etcd" or "ketch", for messages
    cmd: list[str]  # the server's argv before the flags
    members: int
    root: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="ketch-bench-")))
    nodes: list[Member] = field(default_factory=list)

    def __post_init__(self) -> None:
        ports = free_ports(2 * self.members)
        for i in range(self.members):
            name = f"m{i}"
            self.nodes.append(
                Member(
                    name=name,
                    client_url=f"http://127.0.0.1:{ports[2 * i]}",
                    peer_url=f"http://127.0.0.1:{ports[2 * i + 1]}",
                    data_dir=self.root / f"{name}.data",
                    log_path=self.root / f"{name}.log",
                )
            )

    @property
    def endpoints(self) -> list[str]:
        return [n.client_url.removeprefix("http://") for n in self.nodes]

    @property
    def pids(self) -> list[int]:
        return [n.proc.pid for n in self.nodes if n.proc is not None]

    def flags(self, n: Member) -> list[str]:
        initial = ",".join(f"{m.name}={m.peer_url}" for m in self.nodes)
        return [
            f"--name={n.name}",
            f"--data-dir={n.data_dir}",
            f"--listen-client-urls={n.client_url}",
            f"--advertise-client-urls={n.client_url}",
            f"--listen-peer-urls={n.peer_url}",
            f"--initial-advertise-peer-urls={n.peer_url}",
            f"--initial-cluster={initial}",
        ]

    def start(self) -> None:
        for n in self.nodes:
            with open(n.log_path, "wb") as log:
                n.proc = subprocess.Popen(
                    [*self.cmd, *self.flags(n)],
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )

    def exited(self) -> str | None:
        """A message naming the first member that has exited, or None."""
        for n in self.nodes:
            if n.proc is not None and n.proc.poll() is not None:
                return f"{self.kind} {n.name} exited with {n.proc.returncode}: {self.log_tail(n)}"
        return None

    def log_tail(self, n: Member, lines: int = 3) -> str:
        try:
            text = n.log_path.read_text(errors="replace").strip().splitlines()
        except OSError:
            return ""
        return " | ".join(text[-lines:])

    def cpu_seconds(self) -> float:
        """Summed over members: the cluster's cost."""
        return sum(cpu_seconds(p) for p in self.pids)

    def peak_rss_mib(self) -> float:
        """The largest member's peak: what one machine must hold."""
        return max((peak_rss_mib(p) for p in self.pids), default=0.0)

    def stop(self, keep_data: bool = False) -> None:
        """SIGTERM each member, SIGKILL its process group after 5 s; then drop the data."""
        for n in self.nodes:
            if n.proc is not None and n.proc.poll() is None:
                n.proc.terminate()
        deadline = time.monotonic() + 5
        for n in self.nodes:
            if n.proc is None:
                continue
            try:
                n.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                n.proc.kill()
                n.proc.wait()
            # Children it left behind share its process group (its pid).
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(n.proc.pid, signal.SIGKILL)
        if not keep_data:
            subprocess.run(["rm", "-rf", str(self.root)], check=False)
