"""Membership changes through the real etcdctl, under a concurrent load.

Grow by a learner that must catch up from a snapshot, then promote it; remove
members (a follower, then the leader); replace a member whose disk is gone.
Each runs with the load recording a history, and ends with every member
holding every acknowledged write and the history linearizable.
"""

from __future__ import annotations

import shutil
import subprocess
import threading
import time

import grpc
import pytest

from ..wire import KV
from .conftest import KINDS, ClusterFactory
from .harness import CATCH_UP_DEADLINE, Cluster, ClusterError, Member
from .load import Load, assert_linearizable, assert_markers_kept, final_reads

PHASE = 1.0
# etcd 3.4 snapshots every --snapshot-count applied entries and then compacts
# its Raft log to 5000 entries before the snapshot (snapshotCatchUpEntries,
# not a flag in 3.4). A member joining after more than 5000 + SNAPSHOT_COUNT
# entries cannot be sent the log from its start: the leader must send a
# snapshot. ketch gets the same flag and the same amount of history.
SNAPSHOT_COUNT = 100
BULK_ENTRIES = 5600
BULK_THREADS = 8


def bulk_write(c: Cluster, entries: int) -> None:
    """`entries` puts (each its own Raft entry) over a few keys, as fast as the cluster goes."""
    endpoint = c.leader().endpoint
    errors: list[BaseException] = []

    def writer(t: int) -> None:
        kv = KV(endpoint, own_connection=True)
        try:
            for n in range(t, entries, BULK_THREADS):
                kv.put(f"bulk/{n % 16}".encode(), f"{n}".encode(), timeout=10.0)
        except BaseException as e:  # reported below, whatever it was
            errors.append(e)
        finally:
            kv.close()

    threads = [threading.Thread(target=writer, args=(t,)) for t in range(BULK_THREADS)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert not errors, errors[0]


def until(deadline: float, what: str, attempt: object) -> None:
    """Call `attempt` until it does not raise ClusterError; fail with its last error at deadline."""
    assert callable(attempt)
    while True:
        try:
            attempt()
            return
        except ClusterError as e:
            if time.monotonic() > deadline:
                raise AssertionError(f"{what}: {e}") from None
            time.sleep(0.2)


def rejects_linearizable_ops(m: Member) -> list[str]:
    """What a put and a linearizable read through `m` fail with ("ok" if one succeeds)."""
    out = []
    kv = KV(m.endpoint, own_connection=True)
    try:
        for op in (
            lambda: kv.put(b"reg/0", b"via-learner", timeout=2.0),
            lambda: kv.get(b"reg/0", timeout=2.0),
        ):
            try:
                op()
                out.append("ok")
            except grpc.RpcError as e:
                out.append(f"{e.code().name}: {e.details()}")
    finally:
        kv.close()
    return out


@pytest.mark.parametrize("kind", KINDS)
def test_learner_catches_up_from_a_snapshot_and_is_promoted(
    make_cluster: ClusterFactory, kind: str
) -> None:
    c = make_cluster(kind, 3, extra_args=["--snapshot-count", str(SNAPSHOT_COUNT)])
    bulk_write(c, BULK_ENTRIES)
    load = Load(lambda: [m.endpoint for m in c.running() if m.name != "learner"], threads=3).start()
    try:
        time.sleep(PHASE)
        learner = c.add("learner", learner=True)
        assert c.member_list()[learner.id].get("isLearner") is True
        # A learner is no voter and serves no write nor linearizable read. The
        # text matters: etcd's Go client maps it to ErrGRPCNotSupportedForLearner.
        assert rejects_linearizable_ops(learner) == 2 * [
            "UNAVAILABLE: etcdserver: rpc not supported for learner"
        ]
        # It catches up from the snapshot while the load goes on; etcd refuses to
        # promote a learner that is not in sync with the leader yet, so retry.
        until(
            time.monotonic() + CATCH_UP_DEADLINE, "promote the learner", lambda: c.promote(learner)
        )
        assert c.member_list()[learner.id].get("isLearner", False) is False
        # It did get a snapshot: each server says so in its log.
        applied = {"etcd": "incoming snapshot", "ketch": "from the leader's snapshot"}[kind]
        assert applied in learner.server.log_text()
        time.sleep(PHASE)
    finally:
        load.stop()
    data = c.wait_converged()
    assert {f"bulk/{n}".encode() for n in range(16)} <= data.keys()
    assert_markers_kept(load, data)
    # Now a voter: it serves linearizable reads itself.
    assert_linearizable(load.ops + final_reads(learner.endpoint, client=-1), f"{kind} learner")


@pytest.mark.parametrize("kind", KINDS)
def test_remove_a_follower_then_the_leader(make_cluster: ClusterFactory, kind: str) -> None:
    c = make_cluster(kind, 3)
    load = Load(lambda: [m.endpoint for m in c.members.values() if m.running], threads=3).start()
    removed: list[Member] = []
    try:
        time.sleep(PHASE)
        leader = c.leader()
        follower = next(m for m in c.running() if m is not leader)
        c.remove(follower)
        removed.append(follower)
        assert follower.id not in c.member_list()
        time.sleep(PHASE)

        c.remove(leader)
        removed.append(leader)
        (last,) = c.members.values()
        assert c.leader(among=[last]) is last
        time.sleep(PHASE)
    finally:
        load.stop()
    assert list(c.member_list()) == [last.id]
    # A removed member learns it is out and exits, cleanly.
    for m in removed:
        assert m.server.proc is not None
        try:
            assert m.server.proc.wait(CATCH_UP_DEADLINE) == 0, m.server.log_text()[-2000:]
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"removed {m.name} still runs:\n{m.server.log_text()[-2000:]}"
            ) from None
    data = c.wait_converged([last])
    assert_markers_kept(load, data)
    assert_linearizable(load.ops + final_reads(last.endpoint, client=-1), f"{kind} remove")


@pytest.mark.parametrize("kind", KINDS)
def test_replace_a_member_that_lost_its_disk(make_cluster: ClusterFactory, kind: str) -> None:
    c = make_cluster(kind, 3)
    load = Load(lambda: [m.endpoint for m in c.running()], threads=3).start()
    try:
        time.sleep(PHASE)
        leader = c.leader()
        lost = next(m for m in c.running() if m is not leader)
        c.kill(lost)
        shutil.rmtree(lost.server.data_dir)
        time.sleep(PHASE)
        # An operator's procedure: remove the dead member, add an empty one on
        # the same name, address and ports, start it to join the existing cluster.
        replacement = c.replace(lost)
        assert replacement.id != 0 and replacement.id in c.member_list()
        time.sleep(PHASE)
    finally:
        load.stop()
    data = c.wait_converged()
    assert_markers_kept(load, data)
    assert_linearizable(load.ops + final_reads(replacement.endpoint, client=-1), f"{kind} replace")
