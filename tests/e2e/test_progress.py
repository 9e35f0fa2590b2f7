"""The progress semantics kube-apiserver relies on once it sees etcd 3.5.13
(RequestWatchProgress: consistent reads from its watch cache, WatchList):
on each Watch stream, a progress response's header revision is at least
every write acknowledged before the request was sent, and comes after every
event at or below that revision. Raced here: writers, and progress requests
on several streams (a prefix watcher, a watcher that never matches, one
catching up from history, and a stream with both kinds)."""

from __future__ import annotations

import queue
import threading
import time

import grpc
import pytest
from ketch import ETCD_VERSION

from ..support import Server
from ..watch_client import WatchStream, create, progress
from ..wire import KV
from .test_watch import target

pytestmark = pytest.mark.timeout(120)

WRITERS = 3
PUTS_PER_WRITER = 150


class Acked:
    """The highest revision a writer has been told is committed."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.revision = 0

    def note(self, revision: int) -> None:
        with self._lock:
            self.revision = max(self.revision, revision)


def _check_stream(w: WatchStream, floors: list[int], lock: threading.Lock, until: threading.Event) -> int:
    """Reads one stream to the end of the race; the progress responses checked."""
    last_event = 0  # the highest event revision seen on this stream
    last_progress = 0
    checked = 0
    while True:
        try:
            r = w.get(timeout=0.5)
        except queue.Empty:
            if until.is_set():
                with lock:
                    if checked == len(floors):
                        return checked
            continue
        if r.created or r.canceled:
            continue
        if r.events:
            for e in r.events:
                # Nothing at or below a progress revision after that progress.
                assert e.mod_revision > last_progress, (e.mod_revision, last_progress)
                last_event = max(last_event, e.mod_revision)
            continue
        with lock:
            floor = floors[checked]
        checked += 1
        assert r.revision >= floor, f"progress at {r.revision} before the acknowledged write {floor}"
        assert r.revision >= last_event, f"progress at {r.revision} after an event at {last_event}"
        assert r.revision >= last_progress
        last_progress = r.revision


def test_progress_responses_race_writes_on_many_streams(ketch: Server) -> None:
    kv = KV(target(ketch))
    start = kv.put(b"/r/seed", b"0")
    acked = Acked()
    acked.note(start)
    specs = [
        [create(b"/r/", b"/r0", watch_id=1)],  # every write
        [create(b"/never", watch_id=1)],  # nothing ever matches
        [create(b"/r/", b"/r0", start_revision=1, watch_id=1)],  # from history
        [create(b"/r/", b"/r0", watch_id=1), create(b"/never", watch_id=2)],
    ]
    streams = [WatchStream(target(ketch)) for _ in specs]
    done = threading.Event()
    failures: list[BaseException] = []
    try:
        for w, reqs in zip(streams, specs, strict=True):
            for req in reqs:
                w.send(req)
        floors: list[list[int]] = [[] for _ in streams]
        locks = [threading.Lock() for _ in streams]
        checked = [0] * len(streams)

        def writer(n: int) -> None:
            c = KV(target(ketch), own_connection=True)
            try:
                for i in range(PUTS_PER_WRITER):
                    acked.note(c.put(b"/r/%d/%d" % (n, i), b"v"))
            finally:
                c.close()

        def requester(i: int) -> None:
            while not done.is_set():
                with locks[i]:
                    floors[i].append(acked.revision)
                    streams[i].send(progress())
                time.sleep(0.003)

        def reader(i: int) -> None:
            try:
                checked[i] = _check_stream(streams[i], floors[i], locks[i], done)
            except (AssertionError, IndexError, grpc.RpcError) as e:
                failures.append(e)

        readers = [threading.Thread(target=reader, args=(i,)) for i in range(len(streams))]
        requesters = [threading.Thread(target=requester, args=(i,)) for i in range(len(streams))]
        writers = [threading.Thread(target=writer, args=(n,)) for n in range(WRITERS)]
        for t in readers + requesters + writers:
            t.start()
        for t in writers:
            t.join(timeout=60)
        done.set()
        for t in requesters + readers:
            t.join(timeout=30)
        assert not failures, failures
        assert all(not t.is_alive() for t in readers), "a stream stopped answering progress requests"
        # Every stream answered every request, many of them during the writes.
        assert all(n >= 20 for n in checked), checked
        assert acked.revision == start + WRITERS * PUTS_PER_WRITER
    finally:
        done.set()
        for w in streams:
            w.close()
        kv.close()


def test_the_reported_version_opens_kubernetes_progress_paths(ketch: Server) -> None:
    """kube-apiserver 1.31 uses RequestWatchProgress from 3.5.13 (and 3.4.31) on."""
    major, minor, patch = (int(p) for p in ETCD_VERSION.split("."))
    assert (major, minor) == (3, 5) and patch >= 13
    rc, out, err = ketch.etcdctl("endpoint", "status", "-w", "json")
    assert rc == 0, err
    assert f'"version":"{ETCD_VERSION}"' in out
