"""Memory and disk per key, etcd beside ketch: resident memory idle and after
N puts of V-byte values into K keys, and the data dir's size on disk.

    python3 -m benches.memory                     # 1,000,000 puts of 256 B into 100,000 keys
    python3 -m benches.memory --puts 200000 --keys 50000 --value-size 1024

Each server runs as one member on a fresh data dir with the same flags
(benches.cluster); the load is benches/loadgen's `put`, sequential keys so
that every key is written puts/keys times. RSS is VmRSS from /proc, read
after the load and again after a 5 s rest (a server that frees what a burst
took shows it there); disk is every file under the data dir.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import subprocess
import sys
import time
from pathlib import Path

from benches.cluster import Cluster
from benches.compare import REPO, build_loadgen, wait_ready


def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def disk_mib(root: Path) -> float:
    total = 0
    for dirpath, _, files in os.walk(root):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.stat(os.path.join(dirpath, name)).st_size
    return total / (1024 * 1024)


def measure(kind: str, cmd: list[str], loadgen: Path, args: argparse.Namespace) -> dict[str, float]:
    cluster = Cluster(kind=kind, cmd=cmd, members=1)
    try:
        cluster.start()
        if (why := wait_ready(loadgen, cluster, 30)) is not None:
            raise SystemExit(f"{kind} did not serve: {why}")
        pid = cluster.pids[0]
        time.sleep(1)
        idle = rss_mib(pid)
        started = time.monotonic()
        subprocess.run(
            [str(loadgen), "--endpoints", cluster.endpoints[0], "--conns", "10", "--clients", "200",
             "--total", str(args.puts), "--duration", "900s", "--key-space-size", str(args.keys),
             "--val-size", str(args.value_size), "--sequential-keys", "put"],
            check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        took = time.monotonic() - started
        loaded = rss_mib(pid)
        time.sleep(5)
        rested = rss_mib(pid)
        return {
            "idle": idle,
            "loaded": loaded,
            "rested": rested,
            "disk": disk_mib(cluster.nodes[0].data_dir),
            "seconds": took,
        }
    finally:
        cluster.stop()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benches.memory", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("--puts", type=int, default=1_000_000)
    p.add_argument("--keys", type=int, default=100_000)
    p.add_argument("--value-size", type=int, default=256)
    p.add_argument("--etcd-cmd", default="etcd")
    p.add_argument("--ketch-cmd", default=str(REPO / ".venv" / "bin" / "ketch"))
    args = p.parse_args(argv)
    loadgen = build_loadgen()
    rows = {}
    for kind, cmd in (("etcd", args.etcd_cmd), ("ketch", args.ketch_cmd)):
        print(f"{kind}: {args.puts:,} puts of {args.value_size} B into {args.keys:,} keys ...",
              file=sys.stderr, flush=True)  # fmt: skip
        rows[kind] = measure(kind, cmd.split(), loadgen, args)
    print(f"\n{args.puts:,} puts of {args.value_size} B values into {args.keys:,} keys, one member")
    print("server | RSS idle MiB | RSS after MiB | RSS 5 s later MiB | data dir MiB | load s")
    print("-------|--------------|---------------|-------------------|--------------|-------")
    for kind, r in rows.items():
        print(f"{kind:6} | {r['idle']:12.0f} | {r['loaded']:13.0f} | {r['rested']:17.0f} | "
              f"{r['disk']:12.1f} | {r['seconds']:6.1f}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
