"""ketch.membership against IDs real etcd produced (see tests/e2e/test_cli.py for a live check)."""

from __future__ import annotations

from ketch import membership


def test_etcd_default_member() -> None:
    # `etcd` with no flags: member 8e9e05c52164694d in cluster cdf818194e3a8c32.
    member = membership.member_id(["http://localhost:2380"], "etcd-cluster")
    assert f"{member:x}" == "8e9e05c52164694d"
    assert f"{membership.cluster_id([member]):x}" == "cdf818194e3a8c32"


def test_peer_url_order_does_not_matter() -> None:
    a = membership.member_id(["http://b:1", "http://a:1"], "t")
    assert a == membership.member_id(["http://a:1", "http://b:1"], "t")
    assert a != membership.member_id(["http://a:1", "http://b:1"], "u")


def test_member_add_mixes_in_the_time() -> None:
    urls = ["http://a:1"]
    assert membership.member_id(urls, "t", now=1700000000) != membership.member_id(urls, "t")


def test_cluster_id_sorts_members() -> None:
    assert membership.cluster_id([3, 1, 2]) == membership.cluster_id([1, 2, 3])
