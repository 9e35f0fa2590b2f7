"""Put latency while the server compacts a large history and while it
defragments, etcd beside ketch (one member each, the same flags).

    python3 -m benches.maintenance_latency --revisions 1000000

For each server: write `--revisions` records (txns of 128 puts over
`--keys` keys, so most records become garbage), then measure single puts
from one client in three windows: a quiet baseline, during
`Compact(physical=true)` at the newest revision, and during `Defragment`.
In the defragment window a second client also reads one key after another
(serializable gets: the store's read path, not Raft's). Prints p50 / p99 /
max of each window, how long the maintenance call took, and the db size
before and after. Numbers, not assertions.
"""

from __future__ import annotations

import argparse
import re
import shutil
import statistics
import threading
import time
from collections.abc import Callable

from ketch import Client, Op

from .cluster import Cluster

TXN_OPS = 128


def _percentile(xs: list[float], q: float) -> float:
    if not xs:
        return float("nan")
    s = sorted(xs)
    return s[min(len(s) - 1, int(q * len(s)))]


def _puts_while(c: Client, busy: Callable[[], bool], min_seconds: float) -> list[float]:
    """Latencies (ms) of puts sent one after another while `busy()` or for `min_seconds`."""
    out: list[float] = []
    start = time.monotonic()
    i = 0
    while busy() or time.monotonic() - start < min_seconds:
        t = time.perf_counter()
        c.put(f"probe/{i % 100}", "x" * 32, timeout=60)
        out.append((time.perf_counter() - t) * 1000)
        i += 1
    return out


def _gets_while(c: Client, busy: Callable[[], bool], keys: int) -> list[float]:
    """Latencies (ms) of serializable gets sent one after another while `busy()`."""
    out: list[float] = []
    i = 0
    while busy():
        t = time.perf_counter()
        c.get(f"k/{(i * 7919) % keys:07d}", serializable=True, timeout=60)
        out.append((time.perf_counter() - t) * 1000)
        i += 1
    return out


def _during(
    c: Client, call: Callable[[], object], reader: Client | None = None, keys: int = 1
) -> tuple[list[float], list[float], float]:
    """Put latencies while `call` runs on another thread, get latencies from
    `reader` (if given) meanwhile, and how long the call took (s)."""
    done = threading.Event()
    took = [0.0]
    gets: list[float] = []
    if reader is not None:
        rd = threading.Thread(
            target=lambda: gets.extend(_gets_while(reader, lambda: not done.is_set(), keys)), daemon=True
        )
        rd.start()

    def run() -> None:
        t = time.monotonic()
        try:
            call()
        finally:
            took[0] = time.monotonic() - t
            done.set()

    th = threading.Thread(target=run, daemon=True)
    th.start()
    lat = _puts_while(c, lambda: not done.is_set(), 0.0)
    th.join()
    if reader is not None:
        rd.join()
    return lat, gets, took[0]


def _row(kind: str, window: str, lat: list[float], extra: str = "") -> str:
    p50 = statistics.median(lat) if lat else float("nan")
    return (f"{kind:6} {window:12} n={len(lat):6d} p50={p50:7.2f}ms "
            f"p99={_percentile(lat, 0.99):8.2f}ms max={max(lat, default=0.0):8.2f}ms {extra}")  # fmt: skip


def bench(kind: str, cmd: list[str], revisions: int, keys: int) -> list[str]:
    cluster = Cluster(kind=kind, cmd=cmd, members=1)
    cluster.start()
    rows: list[str] = []
    try:
        with Client(cluster.endpoints, timeout=60) as c, Client(cluster.endpoints, timeout=60) as reader:
            deadline = time.monotonic() + 60
            while True:
                try:
                    c.put("ready", "1")
                    break
                except Exception:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.2)
            written, t = 0, 0
            t0 = time.monotonic()
            while written < revisions:
                ops = [Op.put(f"k/{(t * TXN_OPS + i) % keys:07d}", "v" * 100) for i in range(TXN_OPS)]
                c.txn(success=ops)
                written += TXN_OPS
                t += 1
            fill = time.monotonic() - t0
            rev = c.put("last", "1").header.revision
            size0 = c.status().db_size
            rows.append(f"{kind:6} filled {written} records in {fill:.1f}s, revision {rev}, db {size0 / 2**20:.1f} MiB")
            rows.append(_row(kind, "baseline", _puts_while(c, lambda: False, 3.0)))
            lat, _, took = _during(c, lambda: c.compact(rev, physical=True, timeout=600))
            size1 = c.status().db_size
            rows.append(_row(kind, "compaction", lat, f"compact took {took:.2f}s"))
            lat, gets, took = _during(c, lambda: c.defragment(timeout=600), reader, keys)
            size2 = c.status().db_size
            shrunk = f"db {size1 / 2**20:.1f} -> {size2 / 2**20:.1f} MiB"
            rows.append(_row(kind, "defragment", lat, f"defrag took {took:.2f}s; {shrunk}"))
            rows.append(_row(kind, "defrag-reads", gets))
            if kind == "ketch":
                held = re.findall(r'"msg":"finished defragmenting directory".*?"writes-held":"([^"]+)"',
                                  cluster.nodes[0].log_path.read_text(errors="replace"))  # fmt: skip
                rows.append(f"{kind:6} defragment held writes for {held[-1] if held else '?'}")
    finally:
        cluster.stop()
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--revisions", type=int, default=1_000_000)
    p.add_argument("--keys", type=int, default=10_000, help="distinct keys the records cycle over")
    p.add_argument("--servers", default="etcd,ketch")
    args = p.parse_args(argv)
    ketch = shutil.which("ketch") or ".venv/bin/ketch"
    cmds = {"etcd": ["/usr/bin/etcd"], "ketch": [ketch]}
    for kind in args.servers.split(","):
        for line in bench(kind, cmds[kind], args.revisions, args.keys):
            print(line, flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
