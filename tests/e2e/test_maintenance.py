"""Maintenance: alarms (NOSPACE through the quota), Hash and HashKV.

Alarm behaviour is compared with etcd through etcdctl (differential.py);
hashes are ketch's own (etcd's depend on bbolt's pages), so those tests
compare ketch members with each other.
"""

from __future__ import annotations

import hashlib
import json

import pytest

from ..support import Server
from .differential import differential, step
from .metrics_text import scrape

NOSPACE = "etcdserver: mvcc: database space exceeded"
# Every write that grows the store is over a 1-byte quota, on etcd and ketch alike.
TINY_QUOTA = ("--quota-backend-bytes", "1")


def _alarm_lines(server: Server) -> list[str]:
    rc, out, err = server.etcdctl("alarm", "list")
    assert rc == 0, err
    return out.splitlines()


def test_nospace_alarm_differential(make_server) -> None:
    steps = [
        step("put", "foo", "bar"),
        step("alarm", "list"),
        step("endpoint", "status"),
        step("get", "foo"),
        step("del", "foo"),
        step("lease", "grant", "10"),
        step("compact", "1"),
        step("alarm", "disarm"),
        step("alarm", "list"),
        step("alarm", "disarm"),
        # Still over the quota: refused again, and the alarm is back.
        step("put", "foo", "bar"),
        step("alarm", "list"),
    ]
    etcd = differential(make_server, steps, TINY_QUOTA)
    assert NOSPACE in etcd[0].stderr and etcd[0].rc != 0
    assert etcd[1].stdout.endswith("alarm:NOSPACE \n"), etcd[1].stdout
    assert "alarm:NOSPACE" in etcd[2].stdout
    assert etcd[4].rc == 0 and NOSPACE in etcd[5].stderr
    assert etcd[7].stdout == etcd[1].stdout and etcd[8].stdout == ""
    assert etcd[11].stdout == etcd[1].stdout


def test_alarm_outlives_restart_and_caps_writes_under_the_quota(make_server) -> None:
    """Raised once, NOSPACE refuses puts, txns with puts and lease grants
    even after a restart with room to spare, until disarmed."""
    server = make_server("ketch", TINY_QUOTA)
    rc, _, err = server.etcdctl("put", "a", "1")
    assert rc != 0 and NOSPACE in err
    (line,) = _alarm_lines(server)
    assert line == f"memberID:{int(_member_hex(server), 16)} alarm:NOSPACE "
    server.stop()
    server.extra_args = ()  # default quota: plenty of room
    server.start()
    assert _alarm_lines(server) == [line]
    rc, _, err = server.etcdctl("put", "a", "1")
    assert rc != 0 and NOSPACE in err
    rc, _, err = server.etcdctl("lease", "grant", "10")
    assert rc != 0 and NOSPACE in err
    rc, _, err = server.etcdctl("txn", stdin=b"\nput a 1\n\n\n")
    assert rc != 0 and NOSPACE in err
    rc, out, err = server.etcdctl("txn", stdin=b"\ndel a\n\n\n")  # deletes still apply
    assert rc == 0, err
    rc, out, _ = server.etcdctl("endpoint", "status", "-w", "json")
    assert json.loads(out)[0]["Status"]["errors"] == [line]
    rc, out, err = server.etcdctl("alarm", "disarm")
    assert (rc, out) == (0, line + "\n"), err
    assert _alarm_lines(server) == []
    rc, _, err = server.etcdctl("put", "a", "1")
    assert rc == 0, err
    rc, out, _ = server.etcdctl("endpoint", "status", "-w", "json")
    assert "errors" not in json.loads(out)[0]["Status"]


def _member_hex(server: Server) -> str:
    rc, out, err = server.etcdctl("member", "list")
    assert rc == 0, err
    return out.split(",")[0]


def _hashkv(server: Server, *args: str) -> int:
    rc, out, err = server.etcdctl("endpoint", "hashkv", *args)
    assert rc == 0, err
    endpoint, hash_ = out.strip().split(", ")
    assert endpoint == server.endpoint
    return int(hash_)


def _fill(server: Server, pairs: list[tuple[str, str]]) -> None:
    for k, v in pairs:
        rc, _, err = server.etcdctl("put", k, v)
        assert rc == 0, err


def test_hashkv_same_data_same_hash(make_server) -> None:
    data = [("a", "1"), ("b", "2"), ("a", "3")]
    one, two = make_server("ketch"), make_server("ketch")
    _fill(one, data)
    _fill(two, data)
    assert _hashkv(one) == _hashkv(two)
    assert _hashkv(one, "--rev", "2") == _hashkv(two, "--rev", "2")
    # History counts: the same keys and values reached another way differ.
    three = make_server("ketch")
    _fill(three, [("b", "2"), ("a", "3")])
    assert _hashkv(three) != _hashkv(one)
    # A hash at an older revision is stable while the store moves on.
    at3 = _hashkv(one, "--rev", "3")
    _fill(one, [("c", "4")])
    assert _hashkv(one, "--rev", "3") == at3
    assert _hashkv(one) != at3


def test_hashkv_survives_restart_and_compaction_keeps_agreement(make_server) -> None:
    data = [("a", "1"), ("b", "2"), ("a", "3"), ("b", "4")]
    one, two = make_server("ketch"), make_server("ketch")
    for s in (one, two):
        _fill(s, data)
        rc, _, err = s.etcdctl("compact", "3")
        assert rc == 0, err
    before = _hashkv(one)
    assert before == _hashkv(two)
    one.stop()
    one.start()
    assert _hashkv(one) == before


def test_hashkv_errors_differential(make_server) -> None:
    steps = [
        step("put", "a", "1"),
        step("put", "a", "2"),
        step("endpoint", "hashkv", "--rev", "100"),
        step("compact", "2"),
        step("endpoint", "hashkv", "--rev", "2"),
        step("endpoint", "hashkv", "--rev", "1"),
    ]
    etcd = differential(make_server, steps)
    assert "future revision" in etcd[2].stderr
    assert "compacted" in etcd[4].stderr and "compacted" in etcd[5].stderr


BBOLT_MAGIC = (0xED0CDAED).to_bytes(4, "little")  # after the 16-byte page header of meta page 0


def test_snapshot_save(make_server, tmp_path) -> None:
    server = make_server("ketch")
    _fill(server, [(f"k{i}", "v" * 1000) for i in range(100)])
    out_db = tmp_path / "out.db"
    rc, out, err = server.etcdctl("snapshot", "save", str(out_db))
    assert rc == 0, err
    assert out == f"Snapshot saved at {out_db}\n"
    data = out_db.read_bytes()
    body, digest = data[:-32], data[-32:]
    assert hashlib.sha256(body).digest() == digest  # what `snapshot restore` checks
    assert body[16:20] == BBOLT_MAGIC and len(body) > 100 * 1000
    # No copy is left behind in the data dir.
    assert not list(server.data_dir.glob("member/snapshot-*"))
    # That the body is etcd's backend, which etcdctl and etcd read, is
    # checked in tests/e2e/test_snapshot_format.py.


def test_defrag_differential_and_data_intact(make_server) -> None:
    steps = [
        *[step("put", f"k{i}", "v" * 2000) for i in range(30)],
        step("del", "k", "--prefix"),
        step("put", "kept", "yes"),
        step("compact", "32"),
        step("defrag"),
        step("get", "", "--from-key"),
        step("put", "after", "1"),
        step("get", "", "--from-key"),
    ]
    etcd = differential(make_server, steps)
    assert etcd[33].stdout.startswith("Finished defragmenting etcd member[")


def test_defrag_does_not_grow_the_file(make_server) -> None:
    server = make_server("ketch")
    _fill(server, [(f"k{i}", "v" * 5000) for i in range(40)])
    rc, _, err = server.etcdctl("del", "k", "--prefix")
    assert rc == 0, err
    rc, _, err = server.etcdctl("compact", "42")
    assert rc == 0, err
    before = (server.data_dir / "member" / "db.redb").stat().st_size
    hash_before = _hashkv(server)
    rc, _, err = server.etcdctl("defrag")
    assert rc == 0, err
    assert (server.data_dir / "member" / "db.redb").stat().st_size <= before
    assert _hashkv(server) == hash_before


@pytest.mark.parametrize("kind", ["etcd", "ketch"])
def test_defrag_is_timed_and_logged(make_server, kind: str) -> None:
    """etcd's defrag histogram counts each defragment and its in-flight gauge
    is back to 0 after one; ketch logs etcd 3.5's two lines for each (etcd
    3.4 writes them only with --logger zap, and says "defragmented")."""
    server = make_server(kind)
    _fill(server, [(f"k{i}", "v" * 5000) for i in range(10)])
    for _ in range(2):
        rc, _, err = server.etcdctl("defrag")
        assert rc == 0, err
    families = scrape(server.client_url)
    count = [v for n, _, v in families["etcd_disk_backend_defrag_duration_seconds"].samples if n.endswith("_count")]
    assert count == [2]
    assert families["etcd_disk_defrag_inflight"].value() == 0
    if kind == "ketch":
        log = server.log_text()
        assert log.count('"msg":"defragmenting"') == 2, log[-2000:]
        assert log.count('"msg":"finished defragmenting directory"') == 2, log[-2000:]


def test_move_leader_differential(make_server) -> None:
    steps = [step("move-leader", "1234abcd"), step("move-leader", "0")]
    differential(make_server, steps)


def test_move_leader_to_itself(make_server) -> None:
    server = make_server("ketch")
    me = _member_hex(server)
    rc, out, err = server.etcdctl("move-leader", me)
    assert rc == 0, err
    assert out == f"Leadership transferred from {me} to {me}\n"
