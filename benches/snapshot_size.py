"""Snapshot save and restore, etcd beside ketch: time and size for N keys.

    python3 -m benches.snapshot_size                 # 1,000,000 keys of 256 B
    python3 -m benches.snapshot_size --keys 100000 --value-size 100

Each server runs as one member on a fresh data dir (benches.cluster) and is
loaded with benches/loadgen's `put`, every key written once. Then, for each:
`etcdctl snapshot save` from it (both speak the same stream), the file's
size, and the time to restore that file into a new data dir with its own
tool (`etcdctl snapshot restore` for etcd's file, `ketchctl snapshot
restore` for ketch's), and ketchctl's restore of etcd's file (a migration).
Times are wall-clock seconds on this machine, so compare the ratio.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benches.cluster import Cluster
from benches.compare import REPO, build_loadgen, wait_ready

KETCHCTL = [str(REPO / ".venv" / "bin" / "python"), "-m", "ketch.ctl"]


def timed(cmd: list[str]) -> float:
    env = {**os.environ, "ETCDCTL_API": "3"}
    started = time.monotonic()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    return time.monotonic() - started


def dir_mib(root: Path) -> float:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file()) / (1 << 20)


def save(kind: str, cmd: list[str], loadgen: Path, args: argparse.Namespace, out: Path) -> dict[str, float]:
    cluster = Cluster(kind=kind, cmd=cmd, members=1)
    try:
        cluster.start()
        if (why := wait_ready(loadgen, cluster, 30)) is not None:
            raise SystemExit(f"{kind} did not serve: {why}")
        subprocess.run(
            [str(loadgen), "--endpoints", cluster.endpoints[0], "--conns", "10", "--clients", "200",
             "--total", str(args.keys), "--duration", "1800s", "--key-space-size", str(args.keys),
             "--val-size", str(args.value_size), "--sequential-keys", "put"],
            check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        took = timed(["etcdctl", "--endpoints", cluster.endpoints[0], "--command-timeout", "600s",
                      "snapshot", "save", str(out)])  # fmt: skip
        return {"save": took, "size": out.stat().st_size / (1 << 20), "data_dir": dir_mib(cluster.nodes[0].data_dir)}
    finally:
        cluster.stop()


def restore(tool: list[str], snap: Path, work: Path) -> tuple[float, float]:
    target = work / f"restored-{time.monotonic_ns()}"
    took = timed([*tool, "snapshot", "restore", str(snap), "--data-dir", str(target)])
    size = dir_mib(target)
    shutil.rmtree(target)
    return took, size


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benches.snapshot_size", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("--keys", type=int, default=1_000_000)
    p.add_argument("--value-size", type=int, default=256)
    p.add_argument("--etcd-cmd", default="etcd")
    p.add_argument("--ketch-cmd", default=str(REPO / ".venv" / "bin" / "ketch"))
    args = p.parse_args(argv)
    loadgen = build_loadgen()
    work = Path(tempfile.mkdtemp(prefix="ketch-snapshot-bench-"))
    try:
        rows: dict[str, dict[str, float]] = {}
        for kind, cmd, tool in (("etcd", args.etcd_cmd, ["etcdctl"]), ("ketch", args.ketch_cmd, KETCHCTL)):
            print(f"{kind}: {args.keys:,} keys of {args.value_size} B ...", file=sys.stderr, flush=True)
            snap = work / f"{kind}.db"
            rows[kind] = save(kind, cmd.split(), loadgen, args, snap)
            rows[kind]["restore"], rows[kind]["restored"] = restore(tool, snap, work)
        migrate, migrated = restore(KETCHCTL, work / "etcd.db", work)
        print(f"\n{args.keys:,} keys of {args.value_size} B, one member; seconds and MiB")
        print("server | data dir MiB | save s | snapshot MiB | restore s | restored dir MiB")
        print("-------|--------------|--------|--------------|-----------|-----------------")
        for kind, r in rows.items():
            print(f"{kind:6} | {r['data_dir']:12.1f} | {r['save']:6.1f} | {r['size']:12.1f} | "
                  f"{r['restore']:9.1f} | {r['restored']:16.1f}")  # fmt: skip
        e, k = rows["etcd"], rows["ketch"]
        print(f"\nketch/etcd: save {k['save'] / e['save']:.2f}x, size {k['size'] / e['size']:.2f}x, "
              f"restore {k['restore'] / e['restore']:.2f}x")  # fmt: skip
        print(f"ketchctl restore of etcd's snapshot (migration): {migrate:.1f} s, {migrated:.1f} MiB")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
