"""member add/remove/update/promote and move-leader: etcdctl 3.4 and ketchctl
against a real 3-member cluster, of etcd and of ketch, print the same; and
the error cases on single members."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from ketch import testing
from ketch.client import Client, EtcdError
from ketch.testing import Member, free_port

from .conftest import Outcome, run


def wait_serving(members: list[Member]) -> None:
    """Until every member answers a linearizable read (so there is a leader)."""
    for m in members:
        m.wait_serving()


@pytest.fixture(scope="module", params=["etcd", "ketch"])
def cluster(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[list[Member]]:
    kind: testing.Server = request.param
    root = tmp_path_factory.mktemp(f"{kind}3")
    with testing.cluster(3, server=kind, data_dir=root) as members:
        if kind == "etcd":
            # etcd refuses to add a voting member ("unhealthy cluster") until every
            # voter has been connected to the others for HealthInterval (5 s).
            time.sleep(6)
        yield members


@pytest.fixture
def ep(cluster: list[Member]) -> str:
    return cluster[0].endpoint


def same(endpoint: str, args: list[str]) -> Outcome:
    want = run("etcdctl", endpoint, args)
    got = run("ketchctl", endpoint, args)
    assert (got.rc, got.stdout, got.errors) == (want.rc, want.stdout, want.errors), args
    return want


def new_member_id(out: bytes) -> str:
    m = re.search(rb"Member +([0-9a-f]+) added", out)
    if m is None:
        m = re.search(rb'"member":\{"ID":(\d+)', out)
        assert m is not None, out
        return f"{int(m.group(1)):x}"
    return m.group(1).decode()


def normalize_add(out: bytes, member_id: str) -> object:
    """An added member's ID differs from run to run, and so does its place in
    the member list (sorted by ID): take both out."""
    text = out.decode()
    text = text.replace(f"{int(member_id, 16):16x}", "NEWID").replace(
        str(int(member_id, 16)), '"NEWID"'
    )
    if text.startswith("{"):
        doc = json.loads(text)
        doc["members"].sort(key=lambda m: m["peerURLs"])
        doc["header"].pop("raft_term", None)
        return doc
    lines = text.splitlines()
    cluster = "ETCD_INITIAL_CLUSTER="
    return [sorted(ln[len(cluster):].strip('"').split(",")) if ln.startswith(cluster) else ln
            for ln in lines]  # fmt: skip


ERRORS = [
    ["member", "add"],
    ["member", "add", "a", "b", "http://127.0.0.1:1"],
    ["member", "add", "a"],
    ["member", "add", "a", "--peer-urls=http://127.0.0.1:x"],
    ["member", "add", "a", "--peer-urls=127.0.0.1:2"],
    ["member", "add", "a", "--peer-urls=localhost:2"],
    ["member", "add", "a", "--peer-urls=http://127.0.0.1"],
    ["member", "add", "a", "--peer-urls=http://127.0.0.1:5/path"],
    ["member", "add", "a", "--peer-urls=ftp://127.0.0.1:5"],
    ["member", "remove"],
    ["member", "remove", "zz"],
    ["member", "remove", "1234"],
    ["member", "update", "1234"],
    ["member", "update", "1234", "--peer-urls=http://127.0.0.1:5"],
    ["member", "promote"],
    ["member", "promote", "1234"],
    ["member", "promote", "-w", "json", "1234"],
]


def test_member_errors(ep: str, cluster: list[Member]) -> None:
    for args in ERRORS:
        o = same(ep, args)
        assert o.rc != 0 and o.errors[-1].startswith("Error: "), args
    with Client(ep) as c:
        voter = f"{c.member_list().members[0].id:x}"
    o = same(ep, ["member", "promote", voter])
    assert o.errors == ["Error: etcdserver: can only promote a learner member"]
    o = same(ep, ["member", "add", "dup", f"--peer-urls={cluster[1].peer_url}"])
    assert o.errors == ["Error: etcdserver: Peer URLs already exists"]


# What etcd 3.4 answers for a while after a membership change, to either tool.
TRANSIENT = ("Error: etcdserver: member not found", "Error: etcdserver: unhealthy cluster")


def add_when_accepted(tool: str, ep: str, args: list[str], peer_url: str) -> Outcome:
    """`member add`, again while etcd turns it away for a moment after the
    previous change (having removed whatever got added meanwhile)."""
    deadline = time.monotonic() + 20
    while True:
        o = run(tool, ep, args)
        if o.rc == 0 or not set(o.errors) & set(TRANSIENT) or time.monotonic() > deadline:
            return o
        with Client(ep) as c:
            for m in c.member_list().members:
                if peer_url in m.peer_urls:
                    c.member_remove(m.id)
        time.sleep(0.5)


@pytest.mark.parametrize("args", [[], ["--learner"], ["-w", "json"]])
def test_member_add_and_remove(ep: str, args: list[str]) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    outs = []
    for tool in ("etcdctl", "ketchctl"):
        added = add_when_accepted(
            tool, ep, ["member", "add", "newbie", f"--peer-urls={url}", *args], url
        )
        assert added.rc == 0 and not added.errors, (tool, added)
        mid = new_member_id(added.stdout)
        removed = run(tool, ep, ["member", "remove", mid, *(a for a in args if a != "--learner")])
        assert removed.rc == 0 and not removed.errors, removed
        outs.append((normalize_add(added.stdout, mid), normalize_add(removed.stdout, mid)))
    assert outs[1] == outs[0]
    if not args or args == ["--learner"]:
        assert outs[0][0][2] == 'ETCD_NAME="newbie"'  # type: ignore[index]


def test_member_update(ep: str) -> None:
    with Client(ep) as c:
        mid = c.member_add([f"http://127.0.0.1:{free_port()}"]).added.id  # type: ignore[union-attr]
        try:
            peer = f"--peer-urls=http://127.0.0.1:{free_port()}"
            for fmt in ("simple", "json", "fields", "table"):
                o = same(ep, ["member", "update", f"{mid:x}", peer, "-w", fmt])
                assert o.rc == (4 if fmt in ("fields", "table") else 0)
            assert o.errors == ["Error: table not supported as output format"]
        finally:
            c.member_remove(mid)


def start_learner(ep: str, root: Path, name: str, kind: testing.Server) -> tuple[Member, int]:
    """A learner that has joined and caught up: promotable."""
    existing = ("--initial-cluster-state", "existing")
    learner = Member(kind, root / name, free_port(), free_port(), name, existing)
    with Client(ep) as c:
        resp = c.member_add([learner.peer_url], is_learner=True)
        assert resp.added is not None
        learner.initial_cluster = ",".join(
            f"{m.name or name}={u}" for m in resp.members for u in m.peer_urls
        )
        learner.spawn()
        wait_serving_learner(learner)
    return learner, resp.added.id


def wait_serving_learner(m: Member, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    with Client(m.endpoint, timeout=1.0, dial_timeout=0.5) as c:
        while True:
            try:
                c.get("probe", serializable=True)  # a learner serves serializable reads only
                if c.status().raft_applied_index > 0:
                    return
            except EtcdError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"learner {m.name} did not catch up within {timeout}s")
            time.sleep(0.2)


def promote_when_synced(tool: str, ep: str, mid: int, args: list[str]) -> Outcome:
    """The leader says "not in sync" until the learner's log is close enough: retry that."""
    deadline = time.monotonic() + 20
    while True:
        o = run(tool, ep, ["member", "promote", f"{mid:x}", *args])
        if "in sync with leader" not in "\n".join(o.errors) or time.monotonic() > deadline:
            return o
        time.sleep(0.5)


@pytest.mark.parametrize("fmt", ["simple", "json"])
def test_member_promote(ep: str, cluster: list[Member], fmt: str, tmp_path: Path) -> None:
    outs = []
    for tool in ("etcdctl", "ketchctl"):
        learner, mid = start_learner(ep, tmp_path, f"{tool}-{fmt}", cluster[0].server)
        try:
            o = promote_when_synced(tool, ep, mid, ["-w", fmt])
            with Client(ep) as c:
                promoted = [m for m in c.member_list().members if m.id == mid]
            assert promoted and not promoted[0].is_learner, (tool, o)
            outs.append((o.rc, o.stdout.replace(f"{mid:16x}".encode(), b"ID")))
            if fmt == "json":  # clientv3's printerRPC has no MemberPromote: etcdctl panics
                assert o.rc == 2 and (tool == "etcdctl" or "3.4 panics here" in o.errors[0])
        finally:
            with Client(ep) as c:
                c.member_remove(mid)
            learner.stop()
            wait_serving(cluster)
    assert outs[1] == outs[0]


def test_move_leader(cluster: list[Member]) -> None:
    all_eps = ",".join(m.endpoint for m in cluster)

    def leader_and_follower() -> tuple[int, int, str]:
        """The leader's ID, and a follower's ID and endpoint."""
        with Client(all_eps) as c:
            sts = [(m.endpoint, c.status(m.endpoint)) for m in cluster]
        leader = sts[0][1].leader
        follower_ep, follower = next((e, s) for e, s in sts if s.header.member_id != leader)
        return leader, follower.header.member_id, follower_ep

    for tool in ("etcdctl", "ketchctl"):
        leader, target, follower_ep = leader_and_follower()
        # Given only a follower's endpoint, etcdctl does not look further.
        same(follower_ep, ["move-leader", f"{target:x}"])
        o = run(tool, all_eps, ["move-leader", f"{target:x}"])
        assert (o.rc, o.stdout, o.errors) == (
            0, f"Leadership transferred from {leader:x} to {target:x}\n".encode(), [])  # fmt: skip
        wait_serving(cluster)
    leader, target, _ = leader_and_follower()
    o = same(all_eps, ["move-leader", f"{target:x}", "-w", "fields"])
    assert o.errors == [
        "Error: fields not supported as output format"
    ]  # after the move, as etcdctl
    wait_serving(cluster)


# -- a single member -------------------------------------------------------


def test_member_errors_on_a_single_ketch(ketch_server: Member) -> None:
    """A one-member ketch refuses what etcd refuses, in etcd's words."""
    with ketch_server.client() as c:
        me = f"{c.member_list().members[0].id:x}"
    expected = {
        ("member", "remove", "1234"): "Error: etcdserver: member not found",
        ("member", "promote", me): "Error: etcdserver: can only promote a learner member",
        (
            "member",
            "update",
            "1234",
            "--peer-urls=http://127.0.0.1:5",
        ): "Error: etcdserver: member not found",
    }
    for args, error in expected.items():
        o = same(ketch_server.endpoint, list(args))
        assert o.rc != 0 and o.errors[-1] == error, args
