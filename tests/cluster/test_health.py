"""A 3-member cluster beside a 3-member etcd: the peer metrics under etcd's
names; /health, /readyz, /livez and etcd_server_has_leader when a member
loses its leader (2 of 3 stopped); and etcd's own alert rules (the etcd
mixin's etcdNoLeader, etcdHighNumberOfLeaderChanges, etcdHighFsyncDurations)
run by `promtool test rules` over series scraped from ketch, firing when the
member has lost its leader and after leader changes."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from ..e2e.metrics_text import LISTED, LISTED_PEER, Family, differences, scrape
from ..e2e.test_health import get
from .conftest import ClusterFactory
from .harness import Cluster, Member

pytestmark = pytest.mark.timeout(240)


def _has_leader(m: Member) -> float:
    return scrape(m.server.client_url)["etcd_server_has_leader"].value()


def _lose_leader(cluster: Cluster) -> Member:
    """Stops two of the three members; the one left, once it knows it has no leader."""
    survivor, *others = cluster.members.values()
    for m in others:
        cluster.kill(m)
    deadline = time.monotonic() + 30
    while _has_leader(survivor) != 0:
        assert time.monotonic() < deadline, "the survivor kept its leader"
        time.sleep(0.1)
    return survivor


def test_peer_metrics_have_etcds_names(make_cluster: ClusterFactory) -> None:
    etcd, ketch = make_cluster("etcd", 3), make_cluster("ketch", 3)
    for c in (etcd, ketch):
        c.ctl("put", "k", "v")
    etcd_url = next(iter(etcd.members.values())).server.client_url
    # etcd observes its probes' round trip every 30 s (rafthttp's statusMonitoringInterval).
    deadline = time.monotonic() + 60
    while "etcd_network_peer_round_trip_time_seconds" not in (e := scrape(etcd_url)):
        assert time.monotonic() < deadline, "etcd never reported a peer round trip"
        time.sleep(1)
    # The leader talks to every follower (followers only to it).
    me = ketch.leader()
    k = scrape(me.server.client_url)
    basic = tuple(n for n in LISTED if n != "grpc_server_handling_seconds")  # --metrics=extensive only
    assert differences(e, k, basic + LISTED_PEER + ("etcd_network_active_peers",)) == []
    # One series per other member, by hex ID, as rafthttp labels them.
    others = {m.hex_id for m in ketch.members.values() if m is not me}
    assert {ls["To"] for _, ls, _ in k["etcd_network_peer_sent_bytes_total"].samples} == others
    assert {ls["From"] for _, ls, _ in k["etcd_network_peer_received_bytes_total"].samples} == others
    assert all(v > 0 for _, _, v in k["etcd_network_peer_sent_bytes_total"].samples)
    # Its prober has observed a round trip to each (the first at 5 s, as etcd's).
    _wait_round_trips(me, others)


@pytest.mark.parametrize("kind", ["etcd", "ketch"])
def test_health_without_a_leader(make_cluster: ClusterFactory, kind: str) -> None:
    cluster = make_cluster(kind, 3)
    m = next(iter(cluster.members.values()))
    assert get(f"{m.server.client_url}/health")[0] == 200
    survivor = _lose_leader(cluster)
    url = survivor.server.client_url
    status, _, body = get(f"{url}/health")
    assert status == 503
    assert json.loads(body)["health"] == "false"
    if kind == "etcd":
        return  # etcd 3.4 has no reason, no ?serializable, no /readyz: the rest is 3.5's
    assert body == '{"health":"false","reason":"RAFT NO LEADER"}\n'
    # A serializable read needs no leader: healthy for that probe.
    assert get(f"{url}/health?serializable=true")[::2] == (200, '{"health":"true","reason":""}')
    assert get(f"{url}/livez")[::2] == (200, "ok\n")
    # The linearizable read waits for a leader until etcd's request timeout.
    status, _, body = get(f"{url}/readyz")
    assert status == 503
    lines = body.splitlines()
    assert lines[:2] == ["[+]data_corruption ok", "[+]serializable_read ok"]
    assert lines[2] == "[-]linearizable_read failed: etcdserver: request timed out", lines
    assert lines[3:] == ["[+]non_learner ok", ""]  # http.Error adds a newline to the report's own
    assert get(f"{url}/readyz?exclude=linearizable_read")[::2] == (200, "ok\n")


# The etcd mixin's rules (contrib/mixin/alerts/alerts.libsonnet), with its
# default etcd_selector (job=~".*etcd.*") and instance label.
RULES = """\
groups:
- name: etcd
  rules:
  - alert: etcdNoLeader
    expr: etcd_server_has_leader{job=~".*etcd.*"} == 0
    for: 1m
    labels: {severity: critical}
  - alert: etcdHighNumberOfLeaderChanges
    expr: >-
      increase((max without (instance) (etcd_server_leader_changes_seen_total{job=~".*etcd.*"})
      or 0*absent(etcd_server_leader_changes_seen_total{job=~".*etcd.*"}))[15m:1m]) >= 4
    for: 5m
    labels: {severity: warning}
  - alert: etcdHighFsyncDurations
    expr: histogram_quantile(0.99, rate(etcd_disk_wal_fsync_duration_seconds_bucket{job=~".*etcd.*"}[5m])) > 0.5
    for: 10m
    labels: {severity: warning}
"""


def _values(points: list[float], repeat: int = 1) -> str:
    """promtool's series notation: one value a minute, each `repeat` times."""
    return " ".join(f"{v:g}" for v in points for _ in range(repeat))


def _fsync_series(instance: str, scrapes: list[dict[str, Family]]) -> list[dict[str, str]]:
    """The WAL fsync buckets of one member, scrape by scrape (one a minute)."""
    out = []
    first = scrapes[0]["etcd_disk_wal_fsync_duration_seconds"]
    for name, labels, _ in first.samples:
        if not name.endswith("_bucket"):
            continue
        le = labels["le"]
        points = [
            next(v for n, ls, v in s["etcd_disk_wal_fsync_duration_seconds"].samples if n == name and ls["le"] == le)
            for s in scrapes
        ]
        out.append({
            "series": f'etcd_disk_wal_fsync_duration_seconds_bucket{{job="etcd",instance="{instance}",le="{le}"}}',
            "values": _values(points),
        })
    return out


def test_etcd_alert_rules_fire_on_ketchs_series(make_cluster: ClusterFactory, tmp_path: Path) -> None:
    promtool = shutil.which("promtool")
    assert promtool, "promtool is missing: install Debian's prometheus package (.ci/dev test does)"
    cluster = make_cluster("ketch", 3)
    watched = next(iter(cluster.members.values()))
    # Leader changes: the leadership moved four times, a scrape after each.
    changes = [scrape(watched.server.client_url)]
    for _ in range(4):
        leader = cluster.leader()
        target = next(m for m in cluster.members.values() if m is not leader)
        cluster.ctl("move-leader", target.hex_id, via=[leader])
        deadline = time.monotonic() + 20
        while cluster.leader() is not target:
            assert time.monotonic() < deadline
            time.sleep(0.1)
        cluster.ctl("put", "k", "v")
        changes.append(scrape(watched.server.client_url))
    counts = [s["etcd_server_leader_changes_seen_total"].value() for s in changes]
    assert counts[-1] - counts[0] >= 4, counts
    healthy = scrape(watched.server.client_url)
    survivor = _lose_leader(cluster)
    lost = scrape(survivor.server.client_url)
    assert healthy["etcd_server_has_leader"].value() == 1
    assert lost["etcd_server_has_leader"].value() == 0

    def series(name: str, instance: str, values: str) -> dict[str, str]:
        return {"series": f'{name}{{job="etcd",instance="{instance}"}}', "values": values}

    has_leader = [healthy["etcd_server_has_leader"].value()] * 2 + [lost["etcd_server_has_leader"].value()] * 4
    test = {
        "rule_files": ["rules.yml"],
        "evaluation_interval": "1m",
        "tests": [{
            "interval": "1m",
            "input_series": [
                # The member's has_leader: scraped healthy for 2 minutes, then as it lost its leader.
                series("etcd_server_has_leader", survivor.name, _values(has_leader)),
                # Its leader-change counter, one scrape a minute, then steady for 10 minutes.
                series("etcd_server_leader_changes_seen_total", survivor.name,
                       _values(counts) + " " + _values([counts[-1]], 10)),
                *_fsync_series(survivor.name, [changes[0], changes[-1], lost]),
            ],
            "alert_rule_test": [
                {"eval_time": "1m", "alertname": "etcdNoLeader", "exp_alerts": []},
                {"eval_time": "4m", "alertname": "etcdNoLeader", "exp_alerts": [{
                    "exp_labels": {"severity": "critical", "job": "etcd", "instance": survivor.name},
                }]},
                {"eval_time": "1m", "alertname": "etcdHighNumberOfLeaderChanges", "exp_alerts": []},
                {"eval_time": "10m", "alertname": "etcdHighNumberOfLeaderChanges", "exp_alerts": [{
                    "exp_labels": {"severity": "warning", "job": "etcd"},
                }]},
                # ketch's fsyncs take milliseconds here: no fsync alert.
                {"eval_time": "2m", "alertname": "etcdHighFsyncDurations", "exp_alerts": []},
            ],
        }],
    }  # fmt: skip
    (tmp_path / "rules.yml").write_text(RULES)
    # JSON is YAML: promtool reads it as is.
    (tmp_path / "test.yml").write_text(json.dumps(test, indent=1))
    r = subprocess.run(
        [promtool, "test", "rules", "test.yml"], cwd=tmp_path, capture_output=True, timeout=60, check=False
    )
    assert r.returncode == 0, (r.stdout + r.stderr).decode()
    # And the rules really look: a member that kept its leader would not fire.
    test["tests"][0]["input_series"][0]["values"] = _values([1.0] * 6)  # type: ignore[index]
    (tmp_path / "test.yml").write_text(json.dumps(test, indent=1))
    r = subprocess.run(
        [promtool, "test", "rules", "test.yml"], cwd=tmp_path, capture_output=True, timeout=60, check=False
    )
    assert r.returncode != 0 and b"etcdNoLeader" in r.stdout + r.stderr


def _round_trips_measured(m: Member) -> set[str]:
    """The peers (hex IDs) whose round trip this member has observed at least once."""
    family = scrape(m.server.client_url).get("etcd_network_peer_round_trip_time_seconds")
    if family is None:
        return set()
    name = "etcd_network_peer_round_trip_time_seconds_count"
    return {ls["To"] for n, ls, v in family.samples if n == name and v > 0}


def _wait_round_trips(m: Member, others: set[str], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while (measured := _round_trips_measured(m)) != others:
        assert time.monotonic() < deadline, (m.hex_id, measured, others)
        time.sleep(0.5)


@pytest.mark.parametrize("kind", ["etcd", "ketch"])
def test_every_member_measures_its_round_trip_to_every_peer(make_cluster: ClusterFactory, kind: str) -> None:
    """etcd's rafthttp prober runs on every member for every peer, followers
    included (a follower's round trip to the other follower too); its first
    observation comes 5 s after the peer is added."""
    cluster = make_cluster(kind, 3)
    members = list(cluster.members.values())
    for m in members:
        _wait_round_trips(m, {o.hex_id for o in members if o is not m})
