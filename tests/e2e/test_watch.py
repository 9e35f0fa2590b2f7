"""Watch, end to end: etcdctl against etcd and ketch, and raw gRPC streams."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from ..support import ETCDCTL, Server, free_port, subprocess_env
from ..watch_client import (
    DELETE,
    NODELETE,
    NOPUT,
    PUT,
    Event,
    Response,
    WatchStream,
    burst,
    cancel,
    create,
    progress,
)
from ..wire import KV
from .differential import differential, normalize, step

ServerFactory = Callable[..., Server]


def target(server: Server) -> str:
    return f"127.0.0.1:{server.client_port}"


# --- etcdctl, byte for byte against etcd ------------------------------------

# Background `etcdctl watch` processes: name -> (args, stdin lines)
WATCHERS: dict[str, tuple[tuple[str, ...], bytes | None]] = {
    "key": (("watch", "k1"), None),
    "prefix": (("watch", "--prefix", "k"), None),
    "rev-prev-kv": (("watch", "--rev", "1", "--prev-kv", "k1"), None),
    "json": (("watch", "-w", "json", "--prefix", "k"), None),
    "range": (("watch", "k1", "k3"), None),
    "interactive": (("watch", "-i"), b"watch --prefix k\n"),
}


def _etcdctl(server: Server, *args: str) -> None:
    rc, _, err = server.etcdctl(*args)
    assert rc == 0, err


def _watch_scenario(server: Server) -> dict[str, str]:
    """Writes while etcdctl watches; what each watcher printed."""
    _etcdctl(server, "put", "k1", "before")  # rev 2: only --rev 1 sees it
    procs = {}
    for name, (args, stdin) in WATCHERS.items():
        p = subprocess.Popen(
            [ETCDCTL, "--endpoints", server.endpoint, *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=subprocess_env({"ETCDCTL_API": "3"}),
        )
        if stdin is not None:
            assert p.stdin is not None
            p.stdin.write(stdin)
            p.stdin.flush()
        procs[name] = p
    time.sleep(1.0)  # every watcher is created
    _etcdctl(server, "put", "k1", "v1")
    _etcdctl(server, "put", "k2", "v2")
    _etcdctl(server, "put", "other", "x")
    _etcdctl(server, "put", "k1", "v1b")
    _etcdctl(server, "del", "k", "--prefix")
    _etcdctl(server, "put", "k3", "v3")
    interactive = procs["interactive"]
    assert interactive.stdin is not None
    time.sleep(0.5)
    interactive.stdin.write(b"progress\n")
    interactive.stdin.flush()
    time.sleep(1.0)
    out = {}
    for name, p in procs.items():
        if WATCHERS[name][1] is not None:
            assert p.stdin is not None
            p.stdin.close()  # interactive etcdctl exits on EOF, with an error line
            p.wait(timeout=10)
        else:
            p.terminate()
            p.wait(timeout=10)
        assert p.stdout is not None
        out[name] = p.stdout.read().decode()
        p.stdout.close()
        if p.stdin is not None and not p.stdin.closed:
            p.stdin.close()
    return out


def test_etcdctl_watch_matches_etcd(make_server: ServerFactory) -> None:
    client_port, peer_port = free_port(), free_port()
    outputs = {}
    for kind in ("etcd", "ketch"):
        server = make_server(kind, client_port=client_port, peer_port=peer_port)
        outputs[kind] = _watch_scenario(server)
        server.stop()
    want, got = outputs["etcd"], outputs["ketch"]
    assert "PUT\nk1\nv1\n" in want["key"], want  # the scenario did what it says
    assert "progress notify: 8" in want["interactive"], want
    s = step("watch")
    for name in WATCHERS:
        assert normalize(s, got[name]) == normalize(s, want[name]), (
            f"etcdctl {' '.join(WATCHERS[name][0])}\n--- etcd\n{want[name]}--- ketch\n{got[name]}"
        )


def test_etcdctl_watch_compacted_revision_matches_etcd(make_server: ServerFactory) -> None:
    want = differential(
        make_server,
        [
            step("put", "a", "1"),
            step("put", "a", "2"),
            step("put", "a", "3"),
            step("compact", "3"),
            step("watch", "a", "--rev", "2"),
            step("watch", "--prefix", "a", "--rev", "1"),
        ],
    )
    assert "compacted" in want[4].stdout + want[4].stderr


# --- raw gRPC -------------------------------------------------------------


def _control_scenario(server: Server) -> list[tuple[int, int, bool, bool, int, str]]:
    """Create/cancel/progress/ids/compaction/future: every control response."""
    kv = KV(target(server))
    for i in range(5):
        kv.put(b"c", b"%d" % i)  # revs 2..6
    rc, _, err = server.etcdctl("compact", "4")
    assert rc == 0, err
    w = WatchStream(target(server))
    got: list[Response] = []
    try:
        w.send(create(b"c", watch_id=7))  # client-chosen id
        got.append(w.get())
        w.send(create(b"c"))  # auto: 0
        got.append(w.get())
        w.send(create(b"c", watch_id=7))  # duplicate
        got.append(w.get())
        w.send(create(b"d", b"c"))  # empty range
        got.append(w.get())
        w.send(progress())
        got.append(w.get())
        w.send(cancel(0))
        got.append(w.get())
        w.send(cancel(12345))  # unknown: no answer
        w.send(create(b"c", start_revision=9, watch_id=20))  # future
        got.append(w.get())
        w.send(create(b"c", start_revision=2, watch_id=30))  # compacted
        got.append(w.get())
        got.append(w.get())
        w.send(create(b"c", start_revision=4, watch_id=40))  # at the compaction: history
        got.append(w.get())
        got.append(w.get())  # its history, from the compaction on
        seen: dict[int, list[int]] = {40: [e.mod_revision for e in got[-1].events]}
        for i in range(4):
            kv.put(b"c", b"late%d" % i)  # revs 7..10
        while len(seen.get(20, [])) < 2 or len(seen.get(40, [])) < 7 or len(seen.get(7, [])) < 4:
            r = w.get()
            seen.setdefault(r.watch_id, []).extend(e.mod_revision for e in r.events)
        assert seen[20] == [9, 10], seen
        assert seen[40] == [4, 5, 6, 7, 8, 9, 10], seen
        assert seen[7] == [7, 8, 9, 10], seen
    finally:
        w.close()
        kv.close()
    return [r.control() for r in got]


def test_watch_control_responses_match_etcd(make_server: ServerFactory) -> None:
    client_port, peer_port = free_port(), free_port()
    results = {}
    for kind in ("etcd", "ketch"):
        server = make_server(kind, client_port=client_port, peer_port=peer_port)
        results[kind] = _control_scenario(server)
        server.stop()
    want, got = results["etcd"], results["ketch"]
    assert want[2][3] and "duplicate" in want[2][5]
    assert want[8][3] and want[8][4] == 4  # canceled as compacted
    assert got == want, f"\netcd:  {want}\nketch: {got}"


def test_watch_filters_and_prev_kv(ketch: Server) -> None:
    kv = KV(target(ketch))
    w = WatchStream(target(ketch))
    try:
        w.send(create(b"f", filters=[NOPUT], watch_id=1))
        w.send(create(b"f", filters=[NODELETE], watch_id=2))
        w.send(create(b"f", prev_kv=True, watch_id=3))
        for _ in range(3):
            assert w.get().created
        kv.put(b"f", b"one")
        kv.put(b"f", b"two")
        rc, _, err = ketch.etcdctl("del", "f")
        assert rc == 0, err
        want_counts = {1: 1, 2: 2, 3: 3}
        got: dict[int, list[Event]] = {1: [], 2: [], 3: []}
        while any(len(got[i]) < n for i, n in want_counts.items()):
            r = w.get()
            got[r.watch_id].extend(r.events)
        assert [(e.type, e.mod_revision) for e in got[1]] == [(DELETE, 4)]
        assert [(e.type, e.mod_revision) for e in got[2]] == [(PUT, 2), (PUT, 3)]
        assert [e.prev_value for e in got[3]] == [None, b"one", b"two"]
    finally:
        w.close()
        kv.close()


def test_thousand_watchers_see_a_ten_thousand_write_burst(ketch: Server) -> None:
    kv = KV(target(ketch))
    one = WatchStream(target(ketch))
    several = [WatchStream(target(ketch)) for _ in range(4)]
    try:
        keys = [b"burst/%04d" % i for i in range(1000)]
        for k in keys:
            one.send(create(k))
        one.send(create(b"burst/", b"burst0", watch_id=5000))  # the whole prefix
        for i, k in enumerate(keys):
            several[i % 4].send(create(k))
        for _ in range(1001):
            assert one.get().created
        for s in several:
            for _ in range(250):
                assert s.get().created
        start = time.monotonic()
        order = [keys[(i * 7) % 1000] for i in range(10_000)]  # each key 10 times
        last = burst(kv, ((k, b"v%d" % n) for n, k in enumerate(order)))
        assert last == 10_001
        write_seconds = time.monotonic() - start
        got_one = _read_all(one, {5000: 10_000, **{i: 10 for i in range(1000)}})
        everything = got_one.pop(5000)
        assert [e.mod_revision for e in everything] == list(range(2, last + 1))
        by_key: dict[bytes, list[int]] = {}
        for e in everything:
            by_key.setdefault(e.key, []).append(e.mod_revision)
        for i, k in enumerate(keys):
            assert [(e.key, e.mod_revision) for e in got_one[i]] == [(k, r) for r in by_key[k]]
        for n, s in enumerate(several):
            got = _read_all(s, {i: 10 for i in range(250)})
            for i in range(250):
                k = keys[n + 4 * i]
                assert [(e.key, e.mod_revision) for e in got[i]] == [(k, r) for r in by_key[k]]
        print(f"10,000 writes with 2,001 watchers: {10_000 / write_seconds:.0f} writes/s")
    finally:
        for s in [one, *several]:
            s.close()
        kv.close()


def _read_all(stream: WatchStream, counts: dict[int, int]) -> dict[int, list[Event]]:
    """Reads until each watch id has its count of events (in arrival order)."""
    got: dict[int, list[Event]] = {i: [] for i in counts}
    todo = set(counts)
    while todo:
        r = stream.get(timeout=30)
        got.setdefault(r.watch_id, []).extend(r.events)
        if r.watch_id in todo and len(got[r.watch_id]) >= counts[r.watch_id]:
            todo.discard(r.watch_id)
    return got


def _rss_kib(server: Server) -> int:
    """VmRSS of the member process plus its gRPC worker processes."""
    assert server.proc is not None
    pid = server.proc.pid
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    total = 0
    for p in [pid, *map(int, children)]:
        for line in Path(f"/proc/{p}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1])
    return total


def test_stalled_watcher_does_not_slow_writers_or_grow_memory(ketch: Server) -> None:
    kv = KV(target(ketch))
    value = b"x" * 4096
    n = 3000
    watchers = 5

    def timed_burst(tag: bytes) -> tuple[float, int, float]:
        """(puts/s, last revision, RSS growth in MiB) of n puts under stall/."""
        rss = _rss_kib(ketch)
        start = time.monotonic()
        last = burst(kv, ((b"stall/%s/%d" % (tag, i), value) for i in range(n)))
        return n / (time.monotonic() - start), last, (_rss_kib(ketch) - rss) / 1024

    burst(kv, ((b"warm/%d" % i, value) for i in range(500)))
    # The backend's own cache grows with the data: measure that alone first.
    base_rate, _, base_growth = timed_burst(b"a")
    # A client with 5 prev_kv watchers on the prefix that never reads: every
    # put makes 5 responses of ~8 KiB, 120 MiB per burst if all were kept.
    stalled = WatchStream(target(ketch), read=False)
    for _ in range(watchers):
        stalled.send(create(b"stall/", b"stall0", prev_kv=True))
    try:
        time.sleep(0.3)
        stalled_rate, _, growth_b = timed_burst(b"b")
        _, last, growth_c = timed_burst(b"c")
        extra = growth_b + growth_c - 2 * base_growth
        print(
            f"writer: {base_rate:.0f} puts/s alone, {stalled_rate:.0f} puts/s with a stalled "
            f"client; RSS growth per {n} puts: {base_growth:.0f} MiB alone, "
            f"{growth_b:.0f} and {growth_c:.0f} MiB stalled (extra {extra:.0f} MiB; "
            f"{2 * n * watchers * 2 * len(value) / 2**20:.0f} MiB of events unread)"
        )
        assert stalled_rate >= 0.5 * base_rate
        # The engine keeps at most its flow-control bound (8 MiB) per stream.
        assert extra < 40, f"RSS grew {extra:.0f} MiB more than without the watcher"
        # The client reads again: caught up from history, in order, nothing missed.
        stalled.start_reading()
        counts = {i: 2 * n for i in range(watchers)}
        first = last - 2 * n + 1
        got = _read_all(stalled, counts)
        for i in range(watchers):
            assert [e.mod_revision for e in got[i]] == list(range(first, last + 1))
            assert all(e.prev_value is None for e in got[i])  # all creates
    finally:
        stalled.close()
        kv.close()


@pytest.mark.parametrize("how", ["SIGTERM", "SIGKILL"])
def test_watch_resumed_after_restart_misses_and_repeats_nothing(ketch: Server, how: str) -> None:
    kv = KV(target(ketch))
    w = WatchStream(target(ketch))
    w.send(create(b"r/", b"r0"))
    assert w.get().created
    last_written = burst(kv, ((b"r/%d" % (i % 10), b"%d" % i) for i in range(300)))
    seen: list[int] = []
    # Read only part of it before the server goes away.
    while len(seen) < 100:
        seen.extend(e.mod_revision for e in w.get().events)
    w.close()
    kv.close()
    if how == "SIGTERM":
        assert ketch.stop() == 0
    else:
        ketch.kill()
    ketch.start()
    kv = KV(target(ketch))
    more = burst(kv, ((b"r/%d" % (i % 10), b"after%d" % i) for i in range(100)))
    assert more == last_written + 100
    w = WatchStream(target(ketch))
    try:
        w.send(create(b"r/", b"r0", start_revision=seen[-1] + 1))
        assert w.get().created
        kv.put(b"r/live", b"1")
        resumed = [e.mod_revision for e in w.events_until({0}, more + 1)[0]]
        assert seen + resumed == list(range(2, more + 2)), "a gap or a duplicate"
    finally:
        w.close()
        kv.close()


def test_progress_notify_interval_flag(make_server: ServerFactory) -> None:
    server = make_server("ketch", ["--experimental-watch-progress-notify-interval", "300ms"])
    kv = KV(target(server))
    w = WatchStream(target(server))
    try:
        kv.put(b"p", b"1")
        w.send(create(b"p", progress_notify=True, watch_id=3))
        w.send(create(b"q", watch_id=4))  # did not ask: never notified
        assert w.get().created and w.get().created
        r = w.get(timeout=5)
        assert (r.watch_id, r.revision, r.events) == (3, 2, [])
        kv.put(b"other", b"1")
        r = w.get(timeout=5)
        assert (r.watch_id, r.revision, r.events) == (3, 3, [])
    finally:
        w.close()
        kv.close()
