"""etcd's flags that change how a cluster behaves, next to etcd: Raft's
election flags, and --force-new-cluster, etcd's disaster-recovery step (the
one surviving member of a lost cluster restarts from its data alone)."""

from __future__ import annotations

import json

import pytest

from .conftest import KINDS, ClusterFactory


@pytest.mark.parametrize("kind", KINDS)
def test_a_survivor_restarts_alone_with_its_data(make_cluster: ClusterFactory, kind: str) -> None:
    c = make_cluster(kind, 3)
    c.ctl("put", "k", "before")
    # --force-new-cluster drops every log entry past the commit index the
    # survivor has on disk. A follower learns that an entry is committed one
    # message later, and etcd writes a commit-only change to its WAL without
    # syncing, so a SIGKILL can lose it and, with it, the last put. A second
    # put carries the first one's commit index into a synced WAL record.
    c.ctl("put", "fence", "x")
    c.wait_converged()  # the survivor has applied both (a majority answered)
    survivor, *lost = c.members.values()
    cluster_id = _cluster_id(c.ctl("endpoint", "status", "-w", "json", via=[survivor]))
    for m in lost:
        c.kill(m)
    c.kill(survivor)

    survivor.server.args = [*survivor.server.args, "--force-new-cluster"]
    c.restart(survivor)
    assert list(c.member_list()) == [survivor.id]
    assert c.ctl("get", "k", "--print-value-only") == "before\n"
    c.ctl("put", "k", "after")
    assert _cluster_id(c.ctl("endpoint", "status", "-w", "json")) == cluster_id

    # Started again without the flag, it stays the cluster's only member.
    c.kill(survivor)
    survivor.server.args = [a for a in survivor.server.args if a != "--force-new-cluster"]
    c.restart(survivor)
    assert list(c.member_list()) == [survivor.id]
    assert c.ctl("get", "k", "--print-value-only") == "after\n"


def _cluster_id(status_json: str) -> int:
    return int(json.loads(status_json)[0]["Status"]["header"]["cluster_id"])


@pytest.mark.parametrize("kind", KINDS)
def test_election_flags_off(make_cluster: ClusterFactory, kind: str) -> None:
    """Without pre-vote and the initial tick advance a cluster still elects a
    leader, and elects a new one when the leader goes."""
    c = make_cluster(kind, 3, ["--pre-vote=false", "--initial-election-tick-advance=false"])
    leader = c.leader()
    c.ctl("put", "k", "v")
    c.kill(leader)
    assert c.leader() != leader
    c.ctl("put", "k", "w")
