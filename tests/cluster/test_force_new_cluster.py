"""--force-new-cluster, etcd's disaster-recovery step: the one surviving member
of a lost cluster restarts from its data as a one-member cluster, as etcd's."""

from __future__ import annotations

import json

import pytest

from .conftest import KINDS, ClusterFactory


@pytest.mark.parametrize("kind", KINDS)
def test_a_survivor_restarts_alone_with_its_data(make_cluster: ClusterFactory, kind: str) -> None:
    c = make_cluster(kind, 3)
    c.ctl("put", "k", "before")
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
