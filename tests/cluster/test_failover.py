"""kill -9 the leader under a concurrent load: a new leader serves, the old one catches up.

Run against etcd to prove the test, and against ketch.
"""

from __future__ import annotations

import time

import pytest

from .conftest import KINDS, ClusterFactory
from .harness import ELECTION_DEADLINE, Cluster, Member
from .load import Load, assert_linearizable, assert_markers_kept, final_reads

PHASE = 1.5  # seconds of load in each phase: before the kill, after it, after the restart


def wait_serving(c: Cluster, m: Member, deadline: float) -> None:
    """Until a write through `m` is acknowledged, or fail at `deadline` (monotonic)."""
    import grpc

    from ..wire import KV

    kv = KV(m.endpoint, own_connection=True)
    try:
        while True:
            try:
                kv.put(b"serving-probe", m.name.encode(), timeout=1.0)
                return
            except grpc.RpcError as e:
                if time.monotonic() > deadline:
                    raise AssertionError(
                        f"{c.kind}: {m.name} serves no write by the deadline: {e.code()} {e.details()}"
                    ) from None
                time.sleep(0.05)
    finally:
        kv.close()


@pytest.mark.parametrize("size", [3, 5])
@pytest.mark.parametrize("kind", KINDS)
def test_leader_killed_under_load(make_cluster: ClusterFactory, kind: str, size: int) -> None:
    c = make_cluster(kind, size)
    load = Load(lambda: [m.endpoint for m in c.running()], threads=4).start()
    try:
        time.sleep(PHASE)
        old = c.leader()
        c.kill(old)
        killed = time.monotonic()
        survivors = c.running()
        new = c.leader(among=survivors)
        assert new is not old
        wait_serving(c, new, deadline=killed + ELECTION_DEADLINE)
        acked_at_failover = load.acknowledged()
        time.sleep(PHASE)
        assert load.acknowledged() > acked_at_failover, (
            f"no op completed after the failover: {load.errors[-3:]}"
        )

        c.restart(old)
        time.sleep(PHASE)
    finally:
        load.stop()

    # The restarted member caught up: it holds what the others hold.
    data = c.wait_converged()
    assert c.status([old])[old.name].leader == c.leader().id
    assert_markers_kept(load, data)
    assert_linearizable(load.ops + final_reads(old.endpoint, client=-1), f"{kind} x{size}")
