"""Corruption checks beside etcd: one member's store is damaged on purpose
while it is stopped (a value rewritten out of band, same revision: no Raft
entry), then

- with --experimental-initial-corrupt-check it refuses to start, saying it
  "found data inconsistency with peers", while an undamaged member restarts
  with the same flag;
- with --experimental-corrupt-check-time the leader finds the mismatch, the
  CORRUPT alarm goes up on every member through Raft, the leader's log names
  the member that differs, and writes are refused with "etcdserver: corrupt
  cluster" while reads still work.

ketch's store is damaged through its own file format; etcd's by
overwriting the value's bytes in its bbolt file (ketch.testing.tamper)."""

from __future__ import annotations

import json
import time

import pytest
from ketch.testing import tamper

from .conftest import KINDS, ClusterFactory
from .harness import Cluster, Member

pytestmark = pytest.mark.timeout(180)

KEY = b"corrupt-me"
VALUE = b"original-value"
DAMAGED = b"tampered-value"
# The line the leader logs, naming the member that differs: etcd 3.5's zap
# line (ketch's); etcd 3.4's default capnslog says it in its own words.
MISMATCH_LINE = {"ketch": "same compact revision then hashes must match", "etcd": "expected hash"}


def _damage(cluster: Cluster, m: Member) -> None:
    """Stops `m` cleanly, rewrites KEY's value in its backend, leaves it stopped."""
    m.server.stop()
    cluster.network.set_pid(m.name, None)
    tamper(cluster.kind, m.server.data_dir, KEY, VALUE, DAMAGED)


def _settle(cluster: Cluster) -> None:
    cluster.ctl("put", KEY.decode(), VALUE.decode())
    for i in range(5):
        cluster.ctl("put", f"other-{i}", "v")
    # Every member has applied the writes before one is stopped.
    deadline = time.monotonic() + 20
    while len({s.revision for s in cluster.status().values()}) != 1:
        assert time.monotonic() < deadline, cluster.status()
        time.sleep(0.1)


@pytest.mark.parametrize("kind", KINDS)
def test_initial_check_refuses_a_damaged_member(kind: str, make_cluster: ClusterFactory) -> None:
    # etcd learns its peers before it starts from its snapshot file only
    # (without one its check asks nobody and passes): have it write one.
    cluster = make_cluster(kind, 3, ["--experimental-initial-corrupt-check", "--snapshot-count", "5"])
    _settle(cluster)
    healthy, damaged = cluster.members["m1"], cluster.members["m2"]

    healthy.server.stop()
    cluster.network.set_pid(healthy.name, None)
    cluster.restart(healthy)
    assert "found data inconsistency" not in healthy.server.log_text()

    _damage(cluster, damaged)
    cluster.spawn(damaged)
    assert damaged.server.proc is not None
    code = damaged.server.proc.wait(60)
    assert code != 0
    assert f"{damaged.hex_id} found data inconsistency with peers" in damaged.server.log_text()
    # The others keep serving, undamaged.
    assert cluster.ctl("get", KEY.decode(), "--print-value-only", via=[healthy]).strip() == VALUE.decode()


def _alarms(cluster: Cluster, m: Member) -> str:
    return cluster.ctl("alarm", "list", via=[m])


@pytest.mark.parametrize("kind", KINDS)
def test_periodic_check_raises_corrupt_and_refuses_writes(kind: str, make_cluster: ClusterFactory) -> None:
    cluster = make_cluster(kind, 3, ["--experimental-corrupt-check-time", "1s"])
    _settle(cluster)
    damaged = cluster.members["m2"]
    _damage(cluster, damaged)
    cluster.restart(damaged)

    others = [m for m in cluster.members.values() if m is not damaged]
    deadline = time.monotonic() + 60
    while not all("alarm:CORRUPT" in _alarms(cluster, m) for m in cluster.members.values()):
        assert time.monotonic() < deadline, "no CORRUPT alarm: " + _alarms(cluster, others[0])
        time.sleep(0.5)
    listed = _alarms(cluster, others[0]).split()
    # Raised for the cluster, as etcd 3.5 (and 3.4.23) do: member ID 0,
    # which etcdctl's text form leaves out.
    assert listed == ["alarm:CORRUPT"], listed

    # The leader's log says which member differs.
    leader_logs = "".join(m.server.log_text() for m in cluster.members.values())
    assert MISMATCH_LINE[kind] in leader_logs
    assert damaged.hex_id in leader_logs

    for args in (("put", "k", "v"), ("del", "other-0")):
        with pytest.raises(AssertionError, match="etcdserver: corrupt cluster"):
            cluster.ctl(*args, via=others)
    assert cluster.ctl("get", KEY.decode(), "--print-value-only", via=[others[0]]).strip() == VALUE.decode()


# etcd 3.4 has no compaction hash check (3.5's
# --experimental-compact-hash-check-enabled): ketch only.
COMPACT_CHECK = ["--experimental-compact-hash-check-enabled", "--experimental-compact-hash-check-time", "1s"]


def _compact(cluster: Cluster) -> None:
    for i in range(3):
        cluster.ctl("put", f"more-{i}", "v")
    rev = max(s.revision for s in cluster.status().values())
    cluster.ctl("compaction", str(rev))


def test_compact_hash_check_raises_corrupt_naming_the_follower(make_cluster: ClusterFactory) -> None:
    cluster = make_cluster("ketch", 3, COMPACT_CHECK)
    _settle(cluster)
    leader = cluster.leader()
    damaged = next(m for m in cluster.members.values() if m is not leader)
    _damage(cluster, damaged)
    cluster.restart(damaged)
    assert cluster.leader() is leader
    _compact(cluster)

    deadline = time.monotonic() + 30
    while "alarm:CORRUPT" not in _alarms(cluster, leader):
        assert time.monotonic() < deadline, "no CORRUPT alarm: " + leader.server.log_text()[-3000:]
        time.sleep(0.5)
    assert _alarms(cluster, leader).split() == ["alarm:CORRUPT"]
    # etcd 3.5's line, naming the follower whose hash differs.
    lines = [
        json.loads(line) for line in leader.server.log_text().splitlines()
        if "failed compaction hash check" in line
    ]
    assert lines, leader.server.log_text()[-3000:]
    assert lines[0]["level"] == "error"
    assert lines[0]["follower-peer-id"] == damaged.hex_id
    assert lines[0]["leader-hash"] != lines[0]["follower-hash"]
    with pytest.raises(AssertionError, match="etcdserver: corrupt cluster"):
        cluster.ctl("put", "k", "v", via=[leader])


def test_compact_hash_check_passes_when_members_agree(make_cluster: ClusterFactory) -> None:
    cluster = make_cluster("ketch", 3, COMPACT_CHECK)
    _settle(cluster)
    leader = cluster.leader()
    for _ in range(2):
        _compact(cluster)
        deadline = time.monotonic() + 30
        while leader.server.log_text().count("successfully checked hash on whole cluster") < _ + 1:
            assert time.monotonic() < deadline, leader.server.log_text()[-3000:]
            time.sleep(0.5)
    assert "failed compaction hash check" not in leader.server.log_text()
    for m in cluster.members.values():
        assert _alarms(cluster, m).strip() == ""
