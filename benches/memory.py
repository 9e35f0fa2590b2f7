"""Resident memory, etcd beside ketch: idle, per key, and under overwrites.

    python3 -m benches.memory                          # every row below, 256 B and 1 KiB values
    python3 -m benches.memory --rows keys --sizes 1024 --keys 100000
    python3 -m benches.memory --rows overwrites --overwrites 1000000 --overwrite-keys 10000

Rows (each on a fresh one-member server of each kind, the same flags,
benches.cluster; the load is benches/loadgen's `put` with sequential keys):
- **idle**: RSS once the member serves, before any write.
- **keys**: RSS after N distinct keys of V bytes (every N of --keys, every V
  of --sizes), right after the load and again after a 5 s rest (a server
  that frees what a burst took shows it there), and the data dir's size.
- **overwrites**: --overwrites puts of 256 B into --overwrite-keys keys, in
  ten rounds; after each round the history is compacted to the current
  revision (as --auto-compaction would) and RSS sampled. With the Raft log
  compacted every --snapshot-count entries (100,000, both servers' default)
  and the history compacted, what a member holds should not grow with the
  number of writes: the last sample against the first says whether it does.

RSS is VmRSS from /proc; disk is every file under the data dir.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from benches.cluster import Cluster
from benches.compare import REPO, build_loadgen, wait_ready

OVERWRITE_VALUE_BYTES = 256
OVERWRITE_ROUNDS = 10
REST_SECONDS = 5


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


@contextlib.contextmanager
def one_member(kind: str, cmd: list[str], loadgen: Path) -> Iterator[Cluster]:
    cluster = Cluster(kind=kind, cmd=cmd, members=1)
    try:
        cluster.start()
        if (why := wait_ready(loadgen, cluster, 30)) is not None:
            raise SystemExit(f"{kind} did not serve: {why}")
        time.sleep(1)
        yield cluster
    finally:
        cluster.stop()


def put(loadgen: Path, cluster: Cluster, total: int, keys: int, value_size: int) -> float:
    """`total` sequential puts over `keys` keys; the seconds they took."""
    started = time.monotonic()
    subprocess.run(
        [str(loadgen), "--endpoints", cluster.endpoints[0], "--conns", "10", "--clients", "200",
         "--total", str(total), "--duration", "1800s", "--key-space-size", str(keys),
         "--val-size", str(value_size), "--sequential-keys", "put"],
        check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    if (why := cluster.exited()) is not None:
        raise SystemExit(why)
    return time.monotonic() - started


def compact_all(endpoint: str) -> int:
    """Compacts the history to the current revision (physically, before
    answering); returns that revision."""
    from ketch import Client

    with Client(endpoint, timeout=60) as c:
        rev = c.status(endpoint).header.revision
        c.compact(rev, physical=True)
        return rev


def keys_row(
    kind: str, cmd: list[str], loadgen: Path, keys: int, value_size: int
) -> dict[str, float]:
    with one_member(kind, cmd, loadgen) as cluster:
        pid = cluster.pids[0]
        idle = rss_mib(pid)
        took = put(loadgen, cluster, keys, keys, value_size)
        loaded = rss_mib(pid)
        time.sleep(REST_SECONDS)
        return {
            "idle": idle,
            "loaded": loaded,
            "rested": rss_mib(pid),
            "disk": disk_mib(cluster.nodes[0].data_dir),
            "seconds": took,
        }


def overwrites_row(kind: str, cmd: list[str], loadgen: Path, puts: int, keys: int) -> list[float]:
    """RSS after each round of puts/OVERWRITE_ROUNDS overwrites, compacted."""
    samples = []
    with one_member(kind, cmd, loadgen) as cluster:
        pid = cluster.pids[0]
        for _ in range(OVERWRITE_ROUNDS):
            put(loadgen, cluster, puts // OVERWRITE_ROUNDS, keys, OVERWRITE_VALUE_BYTES)
            compact_all(cluster.endpoints[0])
            samples.append(rss_mib(pid))
            print(f"  {kind}: {len(samples) * (puts // OVERWRITE_ROUNDS):,} overwrites, RSS {samples[-1]:.0f} MiB",
                  file=sys.stderr, flush=True)  # fmt: skip
    return samples


def ratio(k: float, e: float) -> str:
    return f"{k / e:.2f}" if e else "-"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benches.memory", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument(
        "--rows", default="idle,keys,overwrites", help="which rows: idle, keys, overwrites"
    )
    p.add_argument("--keys", default="100000,1000000", help="distinct key counts for the keys rows")
    p.add_argument("--sizes", default="256,1024", help="value sizes in bytes for the keys rows")
    p.add_argument("--overwrites", type=int, default=1_000_000)
    p.add_argument("--overwrite-keys", type=int, default=10_000)
    p.add_argument("--etcd-cmd", default="etcd")
    p.add_argument("--ketch-cmd", default=str(REPO / ".venv" / "bin" / "ketch"))
    args = p.parse_args(argv)
    rows = set(args.rows.split(","))
    loadgen = build_loadgen()
    servers = (("etcd", args.etcd_cmd.split()), ("ketch", args.ketch_cmd.split()))
    out: list[str] = []

    if rows & {"idle", "keys"}:
        out += ["row | etcd RSS MiB | ketch RSS MiB | ketch/etcd | etcd 5 s later | ketch 5 s later | "
                "etcd disk MiB | ketch disk MiB | etcd load s | ketch load s",
                "----|---|---|---|---|---|---|---|---|---"]  # fmt: skip
    idle: dict[str, list[float]] = {"etcd": [], "ketch": []}
    if rows & {"keys"}:
        for size in (int(s) for s in args.sizes.split(",")):
            for n in (int(k) for k in args.keys.split(",")):
                r = {}
                for kind, cmd in servers:
                    print(f"{kind}: {n:,} keys of {size} B ...", file=sys.stderr, flush=True)
                    r[kind] = keys_row(kind, cmd, loadgen, n, size)
                    idle[kind].append(r[kind]["idle"])
                e, k = r["etcd"], r["ketch"]
                print(f"  {n:,} keys × {size} B: etcd {e['loaded']:.0f} MiB, ketch {k['loaded']:.0f} MiB",
                      file=sys.stderr, flush=True)  # fmt: skip
                out.append(f"{n:,} keys × {size} B | {e['loaded']:.0f} | {k['loaded']:.0f} | "
                           f"{ratio(k['loaded'], e['loaded'])} | {e['rested']:.0f} | {k['rested']:.0f} | "
                           f"{e['disk']:.0f} | {k['disk']:.0f} | {e['seconds']:.0f} | {k['seconds']:.0f}")  # fmt: skip
    if "idle" in rows:
        if not idle["etcd"]:
            for kind, cmd in servers:
                with one_member(kind, cmd, loadgen) as cluster:
                    idle[kind].append(rss_mib(cluster.pids[0]))
        e_idle, k_idle = min(idle["etcd"]), min(idle["ketch"])
        out.insert(2, f"idle (least of {len(idle['etcd'])} starts) | {e_idle:.1f} | {k_idle:.1f} | "
                      f"{ratio(k_idle, e_idle)} | | | | | |")  # fmt: skip

    if "overwrites" in rows:
        samples = {}
        for kind, cmd in servers:
            print(f"{kind}: {args.overwrites:,} overwrites of {args.overwrite_keys:,} keys ...",
                  file=sys.stderr, flush=True)  # fmt: skip
            samples[kind] = overwrites_row(kind, cmd, loadgen, args.overwrites, args.overwrite_keys)
        step = args.overwrites // OVERWRITE_ROUNDS
        out += ["", f"{args.overwrites:,} puts of {OVERWRITE_VALUE_BYTES} B into {args.overwrite_keys:,} keys, "
                    "compacted after each round: RSS MiB",
                "puts | etcd | ketch", "-----|------|------"]  # fmt: skip
        for i, (e, k) in enumerate(zip(samples["etcd"], samples["ketch"], strict=True)):
            out.append(f"{(i + 1) * step:,} | {e:.0f} | {k:.0f}")
        out.append(f"last/first | {samples['etcd'][-1] / samples['etcd'][0]:.2f} | "
                   f"{samples['ketch'][-1] / samples['ketch'][0]:.2f}")  # fmt: skip
    print("\n" + "\n".join(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
