"""Isolate the leader: the minority serves nothing linearizable, healing loses nothing.

The leader is cut off from every other member in both directions (proxy.py
says why both). The majority elects a new leader and keeps serving the load;
the old leader, alone, must neither acknowledge a write nor answer a
linearizable read: with check-quorum it steps down once it has not heard a
quorum for an election timeout, and even before that a write cannot commit
and a read's ReadIndex cannot be confirmed by a quorum. After healing, every
member holds every acknowledged write and the whole history is linearizable.
"""

from __future__ import annotations

import math
import time

import grpc
import pytest

from ..linearizability.checker import UNKNOWN, Op
from ..wire import KV
from .conftest import KINDS, ClusterFactory
from .harness import ELECTION_MS
from .load import Load, assert_linearizable, assert_markers_kept, final_reads
from .proxy import UNKNOWN as UNKNOWN_MEMBER

PHASE = 1.5
MINORITY_TIMEOUT = 4 * ELECTION_MS / 1000  # long enough that a slow success would show


@pytest.mark.parametrize("size", [3, 5])
@pytest.mark.parametrize("kind", KINDS)
def test_isolated_leader_serves_nothing_and_healing_loses_nothing(
    make_cluster: ClusterFactory, kind: str, size: int
) -> None:
    c = make_cluster(kind, size)
    load = Load(lambda: [m.endpoint for m in c.running()], threads=4).start()
    probes: list[Op] = []  # the minority's ops, unknown: they may surface after healing
    try:
        time.sleep(PHASE)
        old = c.leader()
        # The cut is only two-way if the proxy knows who dialed each connection.
        unknown = [(src, dst) for src, dst, _ in c.network.links() if src == UNKNOWN_MEMBER]
        assert not unknown, f"peer connections from no known member: {unknown}"
        c.network.isolate([old.name])
        majority = [m for m in c.running() if m is not old]
        new = c.leader(among=majority)
        assert new is not old

        kv = KV(old.endpoint, own_connection=True)
        try:
            for key, kind_, arg in [
                (b"reg/0", "put", b"from-the-minority"),
                (b"reg/1", "get", None),
                (b"reg/2", "put", b"from-the-minority-later"),
            ]:
                call = time.monotonic()
                with pytest.raises(grpc.RpcError):
                    if kind_ == "put":
                        assert arg is not None
                        kv.put(key, arg, timeout=MINORITY_TIMEOUT)
                    else:
                        kv.get(key, timeout=MINORITY_TIMEOUT)
                probes.append(Op(-2 - len(probes), call, math.inf, key, kind_, arg, UNKNOWN))
        finally:
            kv.close()
        # Meanwhile the majority served the load.
        acked = load.acknowledged()
        time.sleep(PHASE)
        assert load.acknowledged() > acked, f"the majority served nothing: {load.errors[-3:]}"

        c.network.heal()
        time.sleep(PHASE)
    finally:
        load.stop()

    data = c.wait_converged()
    assert_markers_kept(load, data)
    history = load.ops + probes + final_reads(old.endpoint, client=-1)
    assert_linearizable(history, f"{kind} x{size}")
