"""Compaction off the write path, with real processes.

The logical half applies with the Compact entry; the backend's old revisions
go afterwards in batches (etcd's 1,000 a batch, a pause between), so writes
keep flowing, a physical Compact answers only once they are gone, and a
SIGKILL in the middle is finished by the next start.

Whether the backend is really compacted is judged by Maintenance.Hash, which
hashes the whole key table, garbage included: a member compacted across a
crash must end up with the same table as one that compacted in one go.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import grpc
import pytest
from ketch import Client, Op
from ketch._pb import rpc_pb2

from ..support import Server

FINISHED = '"msg":"finished scheduled compaction"'
KEYS_PER_TXN = 128  # --max-txn-ops


def _hash(server: Server) -> int:
    """Maintenance.Hash: every table, every record (ketch's own numbers)."""
    with grpc.insecure_channel(f"127.0.0.1:{server.client_port}") as ch:
        call = ch.unary_unary(
            "/etcdserverpb.Maintenance/Hash",
            request_serializer=rpc_pb2.HashRequest.SerializeToString,
            response_deserializer=rpc_pb2.HashResponse.FromString,
        )
        return int(call(rpc_pb2.HashRequest(), timeout=30).hash)


def _fill(client: Client, txns: int, round_: int) -> int:
    """`txns` txns of 128 puts each (one revision, 128 records); the revision after."""
    rev = 0
    for t in range(txns):
        ops = [
            Op.put(f"k/{t:04d}/{i:03d}", f"v{round_}-{t}-{i}-" + "x" * 64)
            for i in range(KEYS_PER_TXN)
        ]
        rev = client.txn(success=ops).header.revision
    return rev


def _load(servers: list[Server], rounds: int, txns: int) -> int:
    """The same writes on every server, in the same order: the same revisions."""
    revs = set()
    for s in servers:
        with Client([s.endpoint]) as c:
            for r in range(rounds):
                rev = _fill(c, txns, r)
            revs.add(rev)
    (rev,) = revs
    return rev


def _wait_for(cond: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def _all_kvs(server: Server, revision: int = 0) -> list[tuple[bytes, bytes, int, int, int]]:
    with Client([server.endpoint]) as c:
        r = c.get(b"\0", from_key=True, revision=revision)
        return [(kv.key, kv.value, kv.create_revision, kv.mod_revision, kv.version) for kv in r.kvs]


def test_physical_compact_answers_when_the_backend_is_compacted(make_server) -> None:
    a = make_server("ketch")
    b = make_server("ketch")
    rev = _load([a, b], rounds=3, txns=20)  # 7,680 records, 5,120 of them garbage after
    before = _hash(a)
    assert before == _hash(b)
    with Client([a.endpoint]) as c:
        c.compact(rev - 1, physical=True, timeout=60)
    # Answered: the garbage is gone (the table changed) and the log says so.
    assert FINISHED in a.log_text()
    after = _hash(a)
    assert after != before
    with Client([b.endpoint]) as c:
        c.compact(rev - 1)  # not physical: answered after the logical half
    _wait_for(lambda: FINISHED in b.log_text(), "b's compaction")
    assert _hash(b) == after
    assert _all_kvs(a) == _all_kvs(b)
    rc, _, err = a.etcdctl("get", "k/0000/000", f"--rev={rev - 2}")
    assert rc != 0 and "required revision has been compacted" in err


def test_writes_and_reads_flow_during_a_long_compaction(make_server) -> None:
    # Slow batches (100 records, 50 ms apart): about 8 s for 15,000 records.
    s = make_server("ketch", ("--experimental-compaction-batch-limit=100",
                              "--experimental-compaction-sleep-interval=50ms"))  # fmt: skip
    rev = _load([s], rounds=4, txns=30)
    with Client([s.endpoint]) as c:
        c.compact(rev)
        done = 0
        for i in range(50):
            c.put(f"during/{i}", "x")
            assert c.get(f"during/{i}").kvs[0].value == b"x"
            done += 1
        # Every put and read answered while the compaction was still going.
        assert FINISHED not in s.log_text(), "the compaction ended before the writes; make it longer"
        assert done == 50
        c.compact(rev + 50, physical=True, timeout=60)  # waits for both compactions
    assert FINISHED in s.log_text()


def test_kill_during_a_big_compaction_resumes_on_restart(make_server) -> None:
    """SIGKILL in the middle of a compaction; the restart finishes it: below
    the revision only what it keeps, above it everything, and the same
    backend as a member that compacted without a crash."""
    slow = ("--experimental-compaction-batch-limit=100", "--experimental-compaction-sleep-interval=50ms")
    a = make_server("ketch", slow)
    b = make_server("ketch")
    rev = _load([a, b], rounds=4, txns=40)  # 20,480 records
    with Client([a.endpoint]) as c, Client([b.endpoint]) as d:
        for client in (c, d):
            client.put("after", "compaction")  # rev + 1: above the compaction
        c.compact(rev)  # logical now, physical in ~200 batches
        d.compact(rev, physical=True, timeout=60)
    above = _all_kvs(b, rev + 1)
    time.sleep(1.0)  # some batches done, most not
    assert FINISHED not in a.log_text(), "the compaction ended before the kill; make it longer"
    a.kill()
    a.extra_args = ()  # default pacing: finish quickly
    a.start()
    _wait_for(lambda: FINISHED in a.log_text(), "the resumed compaction")
    assert '"msg":"resume scheduled compaction"' in a.log_text()
    assert f'"scheduled-compact-revision":{rev}' in a.log_text()
    assert _hash(a) == _hash(b), "the resumed compaction left a different backend"
    assert _all_kvs(a, rev + 1) == above
    assert _all_kvs(a) == _all_kvs(b)
    with Client([a.endpoint]) as c:
        assert c.status().header.revision == rev + 1
        hk = c.hash_kv(revision=rev + 1)
        assert hk.compact_revision == rev
    with Client([b.endpoint]) as d:
        assert d.hash_kv(revision=rev + 1).hash == hk.hash
    rc, _, err = a.etcdctl("get", "k/0000/000", f"--rev={rev - 1}")
    assert rc != 0 and "required revision has been compacted" in err


@pytest.mark.parametrize("kind", ["etcd", "ketch"])
def test_periodic_auto_compaction_with_a_short_retention(make_server, kind: str) -> None:
    """--auto-compaction-retention=2s: the leader compacts at the revision of
    about two seconds before, once two seconds have passed, then every two
    seconds (etcd 3.5's v3compactor.Periodic), on etcd and ketch alike."""
    s = make_server(kind, ("--auto-compaction-mode=periodic", "--auto-compaction-retention=2s"))
    with Client([s.endpoint]) as c:
        first = c.put("k", "0").header.revision
        start = time.monotonic()
        compacted = -1
        i = 0
        while time.monotonic() - start < 20 and compacted <= first:
            i += 1
            c.put("k", str(i))
            compacted = c.hash_kv().compact_revision
            time.sleep(0.05)
        assert compacted > first, f"{kind} did not compact within 20s"
        # The revision compacted at is the one about a retention ago, not the newest.
        assert compacted < c.put("k", "last").header.revision - 5
