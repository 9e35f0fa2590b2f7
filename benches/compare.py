"""Side-by-side benchmark: the real etcd and ketch, on the same workloads.

    python -m benches.compare                      # 1 member, every workload, both servers
    python -m benches.compare --members 3 --duration 3
    python -m benches.compare --only etcd --workloads put@50,put@200,range-l,range-s,txn-put
    python -m benches.compare --check              # exit 1 if a ratio fell >10% under baseline
    python -m benches.compare --update-baseline    # accept this run's ratios

Each workload starts a fresh cluster of each server (new data dirs, new
ports), so a row's peak RSS belongs to that workload alone; both stay up
while their runs interleave (etcd, ketch, ketch, etcd, ...), so whatever
else the machine does drifts over both alike. With --repeat 2 or more the
medians are reported, and beside each row how far etcd's own runs spread
around their median (the noise band: a ratio inside it is no lead). See
benches/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from benches.cluster import Cluster, cpu_seconds, machine_busy_seconds

REPO = Path(__file__).resolve().parent.parent
LOADGEN_DIR = REPO / "benches" / "loadgen"
BASELINE = REPO / "benches" / "baseline.json"
SERVERS = ("etcd", "ketch")
TOLERANCE = 0.10  # --check fails a ratio more than 10% below its baseline

# name -> loadgen arguments. "NAME@N" runs NAME with --clients N.
WORKLOADS: dict[str, list[str]] = {
    "put": ["put"],
    "range-l": ["range", "--consistency", "l"],
    "range-s": ["range", "--consistency", "s"],
    "range-l-1000": ["range", "--consistency", "l", "--prefix-keys", "1000"],
    "range-s-1000": ["range", "--consistency", "s", "--prefix-keys", "1000"],
    "txn-put": ["txn-put"],
    # put-rate 0: the next put goes out once every watcher has the last one,
    # so qps is the server's fan-out throughput, comparable between servers.
    "watch-100": ["watch-latency", "--watchers", "100", "--put-rate", "0"],
    "watch-10000": ["watch-latency", "--watchers", "10000", "--put-rate", "0"],
    "lease-keepalive": ["lease-keepalive"],
    # The cost of auth on the hot path: the same put and ranges with auth on.
    "put-auth": ["put"],
    "range-l-auth": ["range", "--consistency", "l"],
    "range-s-auth": ["range", "--consistency", "s"],
}
# Workloads run with auth enabled, as an operator sets it up: root holding
# the root role, one user whose one role has READWRITE on the prefix named
# here (all the keys the workload touches: put's zero-padded numbers,
# range's "range/..."), and the load generator authenticated as that user
# (a simple token, etcd's default, on every request).
AUTH_PREFIXES: dict[str, str] = {"put-auth": "0", "range-l-auth": "range/", "range-s-auth": "range/"}
AUTH_USER = "bench:bench-password"
DEFAULT_WORKLOADS = (
    "put@50,put@200,range-l,range-s,range-l-1000,txn-put,watch-100,watch-10000,lease-keepalive"
)


@dataclass
class Result:
    """One workload on one server."""

    server: str
    workload: str
    ok: bool
    status: str = ""  # why not ok: "UNIMPLEMENTED: ...", "FAILED: ...", "NOT RUN: ..."
    qps: float = 0.0
    p50_ms: float = 0.0
    p99_ms: float = 0.0
    p999_ms: float = 0.0
    total: int = 0
    errors: int = 0
    server_cpu_s: float = 0.0
    cpu_s_per_1k: float = 0.0
    peak_rss_mib: float = 0.0
    loadgen_cpu_cores: float = 0.0  # loadgen CPU-seconds per wall second
    other_cpu_cores: float = 0.0  # the rest of the machine over the same interval
    loadgen: dict[str, object] = field(default_factory=dict)
    startup_failed: bool = False  # the cluster never served


def parse_workload(spec: str, clients: int) -> tuple[str, list[str], int]:
    name, _, n = spec.partition("@")
    if name not in WORKLOADS:
        raise SystemExit(f"unknown workload {name!r}; known: {', '.join(WORKLOADS)}")
    return name, WORKLOADS[name], int(n) if n else clients


def build_loadgen() -> Path:
    """cargo build --release (a no-op when up to date); returns the binary."""
    target = Path(os.environ.get("CARGO_TARGET_DIR", LOADGEN_DIR / "target"))
    print(f"building loadgen (cargo, release, target {target})", file=sys.stderr)
    subprocess.run(
        [
            "cargo",
            "build",
            "--release",
            "--quiet",
            "--manifest-path",
            str(LOADGEN_DIR / "Cargo.toml"),
        ],
        check=True,
        env={**os.environ, "CARGO_TARGET_DIR": str(target)},
    )
    return target / "release" / "loadgen"


def server_cmd(server: str, args: argparse.Namespace) -> list[str] | str:
    """The server's argv, or why it cannot run."""
    cmd: str = args.etcd_cmd if server == "etcd" else args.ketch_cmd
    argv = cmd.split()
    if args.server_cpus:
        # Both servers on the same CPUs (the load generator is not pinned).
        argv = ["taskset", "-c", args.server_cpus, *argv]
    exe = cmd.split()[0]
    if os.sep in exe:
        if not os.access(exe, os.X_OK):
            hint = " (bash .ci/dev build)" if server == "ketch" else ""
            return f"NOT RUN: {exe} not found{hint}"
    elif not any(os.access(Path(d) / exe, os.X_OK) for d in os.environ["PATH"].split(os.pathsep)):
        return f"NOT RUN: {exe} not on PATH"
    return argv


def wait_ready(loadgen: Path, cluster: Cluster, timeout: float) -> str | None:
    """None once every member answers a linearizable get; else why not."""
    cmd = [
        str(loadgen),
        "--endpoints",
        ",".join(cluster.endpoints),
        "--conns",
        str(len(cluster.endpoints)),
        "wait-ready",
        "--timeout",
        f"{timeout}s",
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    while proc.poll() is None:
        if (why := cluster.exited()) is not None:
            proc.kill()
            proc.wait()
            return why
        time.sleep(0.1)
    if proc.returncode != 0:
        err = (proc.stderr.read() if proc.stderr else "").strip().splitlines()
        return f"not ready: {err[-1] if err else proc.returncode}"
    return None


def run_loadgen(cmd: list[str], cluster: Cluster, timeout: float) -> tuple[Result, str]:
    """Runs one loadgen, sampling CPU at its measure markers. Returns the
    partial Result (numbers from loadgen and /proc) and loadgen's stderr."""
    res = Result(server=cluster.kind, workload="", ok=False)
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    killer = threading.Timer(timeout, proc.kill)
    killer.start()
    marks: dict[str, tuple[float, float, float, float]] = {}
    err_lines: list[str] = []
    try:
        assert proc.stderr is not None and proc.stdout is not None
        for line in proc.stderr:
            line = line.rstrip("\n")
            if line in ("loadgen: measure begin", "loadgen: measure end"):
                marks[line.rsplit(" ", 1)[1]] = (
                    time.monotonic(),
                    cluster.cpu_seconds(),
                    cpu_seconds(proc.pid),
                    machine_busy_seconds(),
                )
            else:
                err_lines.append(line)
        out = proc.stdout.read()
        proc.wait()
    finally:
        killer.cancel()
    stderr = "\n".join(err_lines)
    report: dict[str, object] = {}
    for line in out.splitlines():
        if line.startswith("{"):
            report = json.loads(line)
    res.loadgen = report
    if proc.returncode != 0 or "error" in report:
        why = str(
            report.get("error") or (err_lines[-1] if err_lines else f"exit {proc.returncode}")
        )
        if proc.returncode == -9:
            why = f"loadgen killed after {timeout:.0f}s"
        if (i := why.find("UNIMPLEMENTED")) >= 0:
            # "lease grant: UNIMPLEMENTED: x" -> "UNIMPLEMENTED: x (lease grant)"
            where = why[:i].rstrip(": ")
            res.status = why[i:] + (f" ({where})" if where else "")
        else:
            res.status = f"FAILED: {why}"
        if (died := cluster.exited()) is not None:
            res.status = f"FAILED: {died}"
        return res, stderr
    res.ok = True
    for k in ("qps", "p50_ms", "p99_ms", "p999_ms"):
        setattr(res, k, float(report.get(k, 0.0)))  # type: ignore[arg-type]
    res.total = int(report.get("total", 0))  # type: ignore[call-overload]
    res.errors = int(report.get("errors", 0))  # type: ignore[call-overload]
    if "begin" in marks and "end" in marks:
        (t0, s0, l0, m0), (t1, s1, l1, m1) = marks["begin"], marks["end"]
        wall = max(t1 - t0, 1e-9)
        res.server_cpu_s = s1 - s0
        res.cpu_s_per_1k = 1000 * res.server_cpu_s / res.total if res.total else 0.0
        res.loadgen_cpu_cores = (l1 - l0) / wall
        res.other_cpu_cores = max(0.0, (m1 - m0) - (s1 - s0) - (l1 - l0)) / wall
    if res.errors:
        res.status = f"{res.errors} errors (first: {report.get('first_error', '?')})"
    return res, stderr


def start_cluster(
    server: str, argv: list[str], loadgen: Path, args: argparse.Namespace
) -> tuple[Cluster, str | None]:
    """A running cluster, and why it does not serve (None when it does)."""
    cluster = Cluster(kind=server, cmd=argv, members=args.members)
    cluster.start()
    return cluster, wait_ready(loadgen, cluster, args.ready_timeout)


def enable_auth(loadgen: Path, cluster: Cluster, prefix: str) -> str | None:
    """None once auth is on with the measured user (AUTH_PREFIXES); else why not."""
    cmd = [str(loadgen), "--endpoints", cluster.endpoints[0], "--user", AUTH_USER]
    proc = subprocess.run(
        [*cmd, "enable-auth", "--prefix", prefix],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if proc.returncode != 0:
        err = proc.stderr.strip().splitlines()
        return f"enabling auth: {err[-1] if err else proc.returncode}"
    return None


def run_on(
    cluster: Cluster,
    label: str,
    wl_args: list[str],
    clients: int,
    loadgen: Path,
    args: argparse.Namespace,
) -> Result:
    """One run of a workload against a serving cluster."""
    conns = max(args.conns, args.members)
    cmd = [
        str(loadgen),
        "--endpoints",
        ",".join(cluster.endpoints),
        "--conns",
        str(conns),
        "--clients",
        str(clients),
        "--duration",
        f"{args.duration}s",
        *(["--user", AUTH_USER] if label.split("@")[0] in AUTH_PREFIXES else []),
        *wl_args,
    ]
    res, stderr = run_loadgen(cmd, cluster, timeout=args.duration + 120)
    res.workload = label
    res.peak_rss_mib = cluster.peak_rss_mib()
    if args.verbose and stderr:
        print(stderr, file=sys.stderr)
    return res


def etcd_band(runs: list[Result]) -> tuple[float, float] | None:
    """etcd's runs of one workload against their median: (lowest, highest)."""
    qps = sorted(r.qps for r in runs if r.ok)
    if len(qps) < 2 or qps[len(qps) // 2] <= 0:
        return None
    mid = qps[len(qps) // 2]
    return qps[0] / mid, qps[-1] / mid


def median_run(runs: list[Result]) -> Result:
    """The run with the median qps; a failed run stands for them all."""
    failed = [r for r in runs if not r.ok]
    if failed:
        return failed[0]
    return sorted(runs, key=lambda r: r.qps)[len(runs) // 2]


def fmt_qps(r: Result | None) -> str:
    return f"{r.qps:,.0f}" if r and r.ok else "-"


def fmt(r: Result | None, attr: str, spec: str) -> str:
    return format(getattr(r, attr), spec) if r and r.ok else "-"


def ratio(rows: dict[str, Result], server: str = "ketch") -> float | None:
    """server's qps / etcd's on one workload."""
    e, k = rows.get("etcd"), rows.get(server)
    if e and k and e.ok and k.ok and e.qps > 0:
        return k.qps / e.qps
    return None


def print_table(
    table: dict[str, dict[str, Result]],
    servers: list[str],
    members: int,
    bands: dict[str, tuple[float, float]] | None = None,
) -> None:
    bands = bands or {}
    cols = ["workload"]
    for s in servers:
        cols.append(f"{s} qps")
    ratios = [s for s in servers if s != "etcd"] if "etcd" in servers else []
    cols += [f"{s}/etcd" for s in ratios]
    if bands:
        cols.append("etcd/etcd band")
    for title in ("p99 ms", "CPU-s/1k req", "peak RSS MiB"):
        cols += [f"{title} {s}" for s in servers]
    lines = []
    notes: dict[str, list[str]] = {}  # one line per distinct reason, naming its rows
    for wl, rows in table.items():
        cells = [wl] + [fmt_qps(rows.get(s)) for s in servers]
        for s in ratios:
            q = ratio(rows, s)
            cells.append(f"{q:.2f}" if q is not None else "-")
        if bands:
            band = bands.get(wl)
            cells.append(f"{band[0]:.2f}-{band[1]:.2f}" if band else "-")
        cells += [fmt(rows.get(s), "p99_ms", ".2f") for s in servers]
        cells += [fmt(rows.get(s), "cpu_s_per_1k", ".3f") for s in servers]
        cells += [fmt(rows.get(s), "peak_rss_mib", ".0f") for s in servers]
        for s in servers:
            r = rows.get(s)
            if r and r.status:
                notes.setdefault(f"{s}: {r.status}", []).append(wl)
                tag = r.status.split(":")[0] if not r.ok else f"{r.errors} errors"
                cells[0] += f"  [{s}: {tag}]"
        lines.append(cells)
    widths = [max(len(c), *(len(row[i]) for row in lines)) for i, c in enumerate(cols)]
    print(f"\n{members} member(s); CPU summed over members, RSS of the largest member")
    print(" | ".join(c.ljust(w) for c, w in zip(cols, widths, strict=True)))
    print("-|-".join("-" * w for w in widths))
    for row in lines:
        print(
            " | ".join(
                c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True))
            )
        )
    for why, wls in notes.items():
        print(f"{', '.join(wls)}: {why}")
    lg = [r.loadgen_cpu_cores for rows in table.values() for r in rows.values() if r.ok]
    other = [r.other_cpu_cores for rows in table.values() for r in rows.values() if r.ok]
    if lg:
        print(
            f"loadgen CPU: at most {max(lg):.2f} cores; other processes on the machine: "
            f"up to {max(other):.2f} cores during a measurement"
        )


def baseline_key(workload: str, members: int) -> str:
    return f"{workload}/m{members}"


def check(table: dict[str, dict[str, Result]], members: int, path: Path) -> int:
    if not path.exists():
        print(f"--check: no baseline at {path}; run with --update-baseline first", file=sys.stderr)
        return 1
    base: dict[str, float] = json.loads(path.read_text())["ratios"]
    failed = []
    for wl, rows in table.items():
        key = baseline_key(wl, members)
        if key not in base:
            continue
        now, was = ratio(rows), base[key]
        if now is None:
            failed.append(
                f"{key}: no ratio now (baseline {was:.2f}): "
                + "; ".join(f"{s}: {r.status}" for s, r in rows.items() if not r.ok)
            )
        elif now < was * (1 - TOLERANCE):
            failed.append(f"{key}: ratio {now:.2f} < baseline {was:.2f} - {TOLERANCE:.0%}")
        else:
            print(f"--check: {key}: ratio {now:.2f} (baseline {was:.2f}) ok")
    if not any(baseline_key(wl, members) in base for wl in table):
        print(f"--check: no workload of this run has an entry in {path}")
    for f in failed:
        print(f"--check: REGRESSION {f}")
    return 1 if failed else 0


def update_baseline(table: dict[str, dict[str, Result]], members: int, path: Path) -> None:
    data = json.loads(path.read_text()) if path.exists() else {"ratios": {}}
    for wl, rows in table.items():
        if (r := ratio(rows)) is not None:
            data["ratios"][baseline_key(wl, members)] = round(r, 4)
    data["ratios"] = dict(sorted(data["ratios"].items()))
    data["note"] = (
        "ketch qps / etcd qps of the last accepted run (python -m benches.compare --update-baseline)"
    )
    path.write_text(json.dumps(data, indent=2) + "\n")
    print(f"baseline written to {path}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m benches.compare",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--workloads",
        default=DEFAULT_WORKLOADS,
        help=f"comma-separated, NAME or NAME@CLIENTS; names: {', '.join(WORKLOADS)}",
    )
    p.add_argument("--members", type=int, choices=(1, 3), default=1)
    p.add_argument("--duration", type=float, default=5.0, help="seconds per workload (default 5)")
    p.add_argument("--clients", type=int, default=50, help="clients where a workload names none")
    p.add_argument("--conns", type=int, default=10)
    p.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="runs per workload and server; the median by qps is reported",
    )
    p.add_argument("--only", choices=SERVERS, help="run one server only")
    p.add_argument(
        "--server-cpus",
        help="run every server member pinned to these CPUs (taskset -c LIST, e.g. 0 or 0,1)",
    )
    p.add_argument("--etcd-cmd", default="etcd")
    p.add_argument("--ketch-cmd", default=str(REPO / ".venv" / "bin" / "ketch"))
    p.add_argument("--loadgen", type=Path, help="use this loadgen binary instead of building one")
    p.add_argument(
        "--ready-timeout", type=float, default=30.0, help="seconds for a cluster to serve"
    )
    p.add_argument("--json", type=Path, help="write every result here")
    p.add_argument(
        "--check",
        action="store_true",
        # argparse %-formats help strings: the percent sign is doubled.
        help=f"exit 1 if a ratio fell >{TOLERANCE * 100:.0f}%% under baseline",
    )
    p.add_argument("--update-baseline", action="store_true")
    p.add_argument("--baseline", type=Path, default=BASELINE)
    p.add_argument("--keep-data", action="store_true", help="leave the temp data dirs and logs")
    p.add_argument("-v", "--verbose", action="store_true", help="show loadgen's stderr")
    args = p.parse_args(argv)

    servers = [args.only] if args.only else list(SERVERS)
    if (args.check or args.update_baseline) and not set(SERVERS) <= set(servers):
        p.error("--check and --update-baseline need both servers")
    specs = [
        parse_workload(s.strip(), args.clients) for s in args.workloads.split(",") if s.strip()
    ]
    loadgen = args.loadgen or build_loadgen()

    argvs = {s: server_cmd(s, args) for s in servers}
    broken: dict[str, str] = {}  # a server whose cluster did not come up once is not retried
    table: dict[str, dict[str, Result]] = {}
    bands: dict[str, tuple[float, float]] = {}
    for name, wl_args, clients in specs:
        label = f"{name}@{clients}"
        runs: dict[str, list[Result]] = {s: [] for s in servers}
        clusters: dict[str, Cluster] = {}
        try:
            for server in servers:
                argv_or_why = argvs[server]
                if isinstance(argv_or_why, str) or server in broken:
                    why = argv_or_why if isinstance(argv_or_why, str) else broken[server]
                    runs[server].append(Result(server=server, workload=label, ok=False, status=why))
                    continue
                cluster, why = start_cluster(server, argv_or_why, loadgen, args)
                clusters[server] = cluster
                if why is None and name in AUTH_PREFIXES:
                    why = enable_auth(loadgen, cluster, AUTH_PREFIXES[name])
                if why is not None:
                    broken[server] = f"FAILED: {why}"
                    runs[server].append(
                        Result(server=server, workload=label, ok=False, status=broken[server])
                    )
            # etcd, ketch, ketch, etcd, ...: each server runs first as often as last.
            for i in range(args.repeat):
                order = servers if i % 2 == 0 else servers[::-1]
                for server in order:
                    if server not in clusters or (runs[server] and not runs[server][-1].ok):
                        continue  # not serving, or it failed this workload once already
                    print(
                        f"{server} x{args.members}: {label} (run {i + 1}/{args.repeat}) ...",
                        file=sys.stderr,
                        flush=True,
                    )
                    r = run_on(clusters[server], label, wl_args, clients, loadgen, args)
                    print(
                        f"  {r.qps:,.0f} qps, p99 {r.p99_ms:.2f} ms, {r.cpu_s_per_1k:.3f} CPU-s/1k, "
                        f"loadgen {r.loadgen_cpu_cores:.2f} cores, others {r.other_cpu_cores:.2f} cores"
                        if r.ok
                        else f"  {r.status}",
                        file=sys.stderr,
                        flush=True,
                    )
                    runs[server].append(r)
        finally:
            for cluster in clusters.values():
                cluster.stop(keep_data=args.keep_data)
        for server in servers:
            table.setdefault(label, {})[server] = median_run(runs[server])
        if (band := etcd_band(runs.get("etcd", []))) is not None:
            bands[label] = band

    print_table(table, servers, args.members, bands)
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "members": args.members,
                    "duration_s": args.duration,
                    "conns": args.conns,
                    "etcd_cmd": args.etcd_cmd,
                    "ketch_cmd": args.ketch_cmd,
                    "results": [asdict(r) for rows in table.values() for r in rows.values()],
                    "ratios": {wl: ratio(rows) for wl, rows in table.items()},
                    "etcd_bands": bands,
                },
                indent=2,
            )
            + "\n"
        )
        print(f"results written to {args.json}")
    if args.update_baseline:
        update_baseline(table, args.members, args.baseline)
    if args.check:
        return check(table, args.members, args.baseline)
    return 0


if __name__ == "__main__":
    sys.exit(main())
