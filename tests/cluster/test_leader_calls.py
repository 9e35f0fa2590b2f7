"""Calls only the leader can answer, sent to a follower: LeaseKeepAlive,
LeaseTimeToLive and MemberPromote. etcd's follower passes them on to its
leader; ketch's front door sends them to the leader's client URL. Either
way the client sees what the leader answered."""

from __future__ import annotations

import re

import pytest

from ..support import etcdctl
from .conftest import KINDS, ClusterFactory


@pytest.mark.parametrize("kind", KINDS)
def test_lease_calls_through_a_follower(make_cluster: ClusterFactory, kind: str) -> None:
    cluster = make_cluster(kind, 3)
    leader = cluster.leader()
    follower = next(m for m in cluster.running() if m is not leader)
    via = [follower]
    out = cluster.ctl("lease", "grant", "60", via=via)
    m = re.fullmatch(r"lease ([0-9a-f]+) granted with TTL\(60s\)\n", out)
    assert m, out
    lease = m.group(1)
    assert cluster.ctl("put", "k", "v", "--lease", lease, via=via) == "OK\n"
    # A keep-alive stream of several renews, each answered by the leader.
    out = cluster.ctl("lease", "keep-alive", "--once", lease, via=via)
    assert out == f"lease {lease} keepalived with TTL(60)\n"
    out = cluster.ctl("lease", "timetolive", lease, "--keys", via=via)
    assert re.fullmatch(
        rf"lease {lease} granted with TTL\(60s\), remaining\(5\ds\), attached keys\(\[k\]\)\n", out
    ), out
    # Unknown leases: the leader's answers, relayed as they are.
    out = cluster.ctl("lease", "timetolive", "1234", via=via)
    assert out == "lease 0000000000001234 already expired\n"
    rc, out, err = etcdctl(follower.endpoint, "lease", "keep-alive", "--once", "1234")
    assert (rc, out, err) == (2, "", "Error: etcdserver: requested lease not found\n")


@pytest.mark.parametrize("kind", KINDS)
def test_promote_through_a_follower(make_cluster: ClusterFactory, kind: str) -> None:
    cluster = make_cluster(kind, 3)
    learner = cluster.add("d", learner=True)
    cluster.refresh_ids()
    leader = cluster.leader()
    follower = next(m for m in cluster.running() if m is not leader and m is not learner)
    cluster.ctl("put", "before-promote", "x", via=[follower])
    cluster.wait_converged()  # the learner is in sync, so the leader may promote it
    out = cluster.reconfigure("promote", learner.hex_id, via=[follower])
    # etcdctl pads the ID to 16 columns with spaces (Go's %16x).
    assert out.startswith(f"Member {learner.id:16x} promoted in cluster "), out
    assert cluster.member_list()[learner.id].get("isLearner", False) is False
