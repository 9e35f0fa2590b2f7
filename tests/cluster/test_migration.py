"""Migration both ways on three members, as README's procedure runs it:
a real etcd cluster's snapshot restored with ketchctl into a three-member
ketch, then that ketch's snapshot restored with etcdctl into a three-member
etcd. Kubernetes-shaped keys under /registry, with live leases."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from ..conftest import ServerFactory
from ..support import subprocess_env
from .harness import TOKEN, Cluster
from .proxy import Network

ETCDCTL = "/usr/bin/etcdctl"
LEASE_TTL = 900


def offline(tool: str, *args: str) -> str:
    cmd = [ETCDCTL] if tool == "etcdctl" else [sys.executable, "-m", "ketch.ctl"]
    p = subprocess.run(
        [*cmd, *args], capture_output=True, timeout=180, env=subprocess_env({"ETCDCTL_API": "3"}),
        check=False, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert p.returncode == 0, p.stderr.decode(errors="replace")
    return p.stdout.decode()


def fill(c: Cluster) -> list[int]:
    """What a kube-apiserver leaves: objects under /registry, some rewritten
    or deleted, node leases and events held by leases."""
    leases = []
    for node in range(3):
        out = c.ctl("lease", "grant", str(LEASE_TTL))
        lease = int(out.split()[1], 16)
        leases.append(lease)
        c.ctl("put", "--lease", f"{lease:x}", f"/registry/leases/kube-node-lease/node-{node}", f"renewed-{node}")
        c.ctl("put", "--lease", f"{lease:x}", f"/registry/events/default/node-{node}.start", "Started")
    for ns in ("default", "kube-system"):
        for i in range(25):
            pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": f"pod-{i}", "namespace": ns}}
            c.ctl("put", f"/registry/pods/{ns}/pod-{i}", json.dumps(pod))
    c.ctl("put", "/registry/pods/default/pod-0", json.dumps({"kind": "Pod", "status": "Running"}))
    c.ctl("del", "/registry/pods/kube-system/pod-24")
    c.ctl("put", "/registry/configmaps/kube-system/kubeadm-config", "c" * 20_000)
    return leases


def view(c: Cluster) -> tuple[object, ...]:
    """`get "" --prefix -w json` as a user compares it, and the leases."""
    out = json.loads(c.ctl("get", "", "--prefix", "-w", "json"))
    kvs = [{k: kv.get(k) for k in ("key", "value", "create_revision", "mod_revision", "version", "lease")}
           for kv in out["kvs"]]  # fmt: skip
    leases = sorted(int(x["id"]) for x in json.loads(c.ctl("lease", "list", "-w", "json"))["leases"] or [])
    return out["header"]["revision"], kvs, leases


def ttls(c: Cluster, leases: list[int]) -> list[int]:
    return [int(json.loads(c.ctl("lease", "timetolive", f"{x:x}", "-w", "json"))["ttl"]) for x in leases]


def restored_cluster(kind: str, make_server: ServerFactory, network: Network, snap: Path, prefix: str) -> Cluster:
    """Three new members of `kind`, each restored from `snap` by its own
    tool with the new cluster's flags, then started together."""
    c = Cluster(kind, make_server, network)
    new = [c._new_member(f"{prefix}{i}") for i in range(3)]
    for m in new:
        c._configure(m, new, "new")
        c.members[m.name] = m
    initial = ",".join(f"{m.name}={m.peer_url}" for m in new)
    tool = "ketchctl" if kind == "ketch" else "etcdctl"
    for m in new:
        offline(
            tool, "snapshot", "restore", str(snap), "--name", m.name, "--data-dir", str(m.server.data_dir),
            "--initial-cluster", initial, "--initial-cluster-token", TOKEN,
            "--initial-advertise-peer-urls", m.peer_url,
        )  # fmt: skip
    for m in new:
        c.spawn(m)
    for m in new:
        m.server.wait_ready()
    c.refresh_ids()
    return c


@pytest.mark.timeout(600)
def test_etcd_to_ketch_and_back_on_three_members(
    make_cluster, make_server: ServerFactory, network: Network, tmp_path: Path
) -> None:
    etcd = make_cluster("etcd", 3)
    leases = fill(etcd)
    want = view(etcd)

    # etcd → ketch: a snapshot from one member, restored into each new member.
    from_etcd = tmp_path / "from-etcd.db"
    etcd.ctl("snapshot", "save", str(from_etcd), via=[etcd.members["m0"]])
    ttl_at_save = ttls(etcd, leases)
    assert offline("etcdctl", "snapshot", "status", str(from_etcd), "-w", "json") == offline(
        "ketchctl", "snapshot", "status", str(from_etcd), "-w", "json"
    )
    ketch = restored_cluster("ketch", make_server, network, from_etcd, "k")
    assert view(ketch) == want
    for before, after in zip(ttl_at_save, ttls(ketch, leases), strict=True):
        assert abs(before - after) <= 10, (ttl_at_save, ttls(ketch, leases))
    members = ketch.member_list()
    assert sorted(str(m["name"]) for m in members.values()) == ["k0", "k1", "k2"]
    assert len(ketch.wait_converged()) == len(want[1])  # type: ignore[arg-type]

    # The ketch cluster works as itself before going back.
    ketch.ctl("put", "/registry/namespaces/migrated", "ketch")
    want_back = view(ketch)

    # ketch → etcd.
    from_ketch = tmp_path / "from-ketch.db"
    ketch.ctl("snapshot", "save", str(from_ketch), via=[ketch.members["k1"]])
    ttl_at_save = ttls(ketch, leases)
    assert offline("etcdctl", "snapshot", "status", str(from_ketch), "-w", "json") == offline(
        "ketchctl", "snapshot", "status", str(from_ketch), "-w", "json"
    )
    back = restored_cluster("etcd", make_server, network, from_ketch, "e")
    assert view(back) == want_back
    for before, after in zip(ttl_at_save, ttls(back, leases), strict=True):
        assert abs(before - after) <= 10, (ttl_at_save, ttls(back, leases))
    assert sorted(str(m["name"]) for m in back.member_list().values()) == ["e0", "e1", "e2"]
    back.ctl("put", "/registry/namespaces/back", "etcd")
    assert len(back.wait_converged()) == len(want_back[1]) + 1  # type: ignore[arg-type]
