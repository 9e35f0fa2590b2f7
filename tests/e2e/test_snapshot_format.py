"""Snapshots in etcd's format, both ways, against the real etcdctl and etcd:
ketch's snapshot restored by etcdctl serves in etcd, etcd's snapshot restored
by ketchctl serves in ketch, and both tools' `snapshot status` agree. Users,
roles and the auth flag come over too, and the restored server enforces them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ..conftest import ServerFactory
from ..support import Server, subprocess_env

ETCDCTL = "/usr/bin/etcdctl"
LEASE_TTL = 600


def ketchctl(*args: str, timeout: float = 120) -> tuple[int, str, str]:
    p = subprocess.run(
        [sys.executable, "-m", "ketch.ctl", *args], capture_output=True, timeout=timeout,
        env=subprocess_env({"ETCDCTL_API": "3"}), check=False, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    return p.returncode, p.stdout.decode(errors="replace"), p.stderr.decode(errors="replace")


def offline_etcdctl(*args: str, timeout: float = 120) -> tuple[int, str, str]:
    p = subprocess.run(
        [ETCDCTL, *args], capture_output=True, timeout=timeout,
        env=subprocess_env({"ETCDCTL_API": "3"}), check=False, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    return p.returncode, p.stdout.decode(errors="replace"), p.stderr.decode(errors="replace")


def ok(result: tuple[int, str, str]) -> str:
    rc, out, err = result
    assert rc == 0, err
    return out


def fill(server: Server) -> int:
    """Kubernetes-shaped keys with history (overwrites, a delete), a lease
    holding keys, and a big value; returns the lease ID."""
    for i in range(40):
        ok(server.etcdctl("put", f"/registry/pods/default/pod-{i:03d}", json.dumps({"kind": "Pod", "n": i})))
    ok(server.etcdctl("put", "/registry/pods/default/pod-000", "overwritten"))
    ok(server.etcdctl("del", "/registry/pods/default/pod-039"))
    lease = int(ok(server.etcdctl("lease", "grant", str(LEASE_TTL))).split()[1], 16)
    ok(server.etcdctl("put", "--lease", f"{lease:x}", "/registry/leases/kube-node-lease/node-a", "held"))
    ok(server.etcdctl("put", "/registry/configmaps/big", "x" * 50_000))
    return lease


def everything(server: Server) -> dict[str, object]:
    """What a user compares: every key with its revisions, the store revision."""
    out = json.loads(ok(server.etcdctl("get", "", "--prefix", "-w", "json")))
    kvs = [{k: kv.get(k) for k in ("key", "value", "create_revision", "mod_revision", "version", "lease")}
           for kv in out.get("kvs", [])]  # fmt: skip
    return {"revision": out["header"]["revision"], "kvs": kvs}


def ttl_of(server: Server, lease: int) -> int:
    out = json.loads(ok(server.etcdctl("lease", "timetolive", f"{lease:x}", "-w", "json")))
    return int(out["ttl"])


def status_json(tool: str, path: Path) -> dict[str, int]:
    run = ketchctl if tool == "ketchctl" else offline_etcdctl
    return json.loads(ok(run("snapshot", "status", str(path), "-w", "json")))


def restore_args(target: Server, path: Path) -> list[str]:
    return [
        "snapshot", "restore", str(path), "--name", "default", "--data-dir", str(target.data_dir),
        "--initial-cluster", f"default={target.peer_url}", "--initial-advertise-peer-urls", target.peer_url,
        "--initial-cluster-token", "restored",
    ]  # fmt: skip


@pytest.mark.timeout(240)
def test_ketch_snapshot_restored_by_etcdctl_serves_in_etcd(make_server: ServerFactory, tmp_path: Path) -> None:
    source = make_server("ketch")
    lease = fill(source)
    want = everything(source)
    snap = tmp_path / "ketch.db"
    ok(source.etcdctl("snapshot", "save", str(snap)))
    ttl_at_save = ttl_of(source, lease)

    assert status_json("etcdctl", snap) == status_json("ketchctl", snap)
    assert status_json("etcdctl", snap)["revision"] == want["revision"]
    for fmt in ("simple", "table", "fields"):
        assert ok(offline_etcdctl("snapshot", "status", str(snap), "-w", fmt)) == ok(
            ketchctl("snapshot", "status", str(snap), "-w", fmt)
        ), fmt

    target = make_server("etcd", start=False)
    ok(offline_etcdctl(*restore_args(target, snap)))
    target.start()
    assert everything(target) == want
    assert abs(ttl_of(target, lease) - ttl_at_save) <= 5
    members = json.loads(ok(target.etcdctl("member", "list", "-w", "json")))["members"]
    assert [(m["name"], m["peerURLs"]) for m in members] == [("default", [target.peer_url])]
    # It is a working etcd: it takes writes on top of the restored revision.
    ok(target.etcdctl("put", "after", "restore"))
    assert everything(target)["revision"] == want["revision"] + 1  # type: ignore[operator]


@pytest.mark.timeout(240)
def test_etcd_snapshot_restored_by_ketchctl_serves_in_ketch(make_server: ServerFactory, tmp_path: Path) -> None:
    source = make_server("etcd")
    lease = fill(source)
    ok(source.etcdctl("compaction", "3"))
    want = everything(source)
    snap = tmp_path / "etcd.db"
    ok(source.etcdctl("snapshot", "save", str(snap)))
    ttl_at_save = ttl_of(source, lease)

    assert status_json("etcdctl", snap) == status_json("ketchctl", snap)
    for fmt in ("simple", "table", "fields"):
        assert ok(offline_etcdctl("snapshot", "status", str(snap), "-w", fmt)) == ok(
            ketchctl("snapshot", "status", str(snap), "-w", fmt)
        ), fmt

    target = make_server("ketch", start=False)
    ok(ketchctl(*restore_args(target, snap)))
    target.start()
    assert everything(target) == want
    assert abs(ttl_of(target, lease) - ttl_at_save) <= 5
    members = json.loads(ok(target.etcdctl("member", "list", "-w", "json")))["members"]
    assert [(m["name"], m["peerURLs"]) for m in members] == [("default", [target.peer_url])]
    # The compaction came over: revision 2 is gone, 3 is readable.
    rc, _, err = target.etcdctl("get", "/registry/pods/default/pod-000", "--rev", "2")
    assert rc != 0 and "required revision has been compacted" in err
    ok(target.etcdctl("put", "after", "restore"))
    assert everything(target)["revision"] == want["revision"] + 1  # type: ignore[operator]
    # The lease still holds its key, and revoking it deletes the key.
    ok(target.etcdctl("lease", "revoke", f"{lease:x}"))
    assert ok(target.etcdctl("get", "/registry/leases/kube-node-lease/node-a")) == ""


@pytest.fixture
def good_snapshot(make_server: ServerFactory, tmp_path: Path) -> Path:
    source = make_server("ketch")
    fill(source)
    snap = tmp_path / "good.db"
    ok(source.etcdctl("snapshot", "save", str(snap)))
    source.stop()
    return snap


def refused(tmp_path: Path, snap: Path, *extra: str) -> str:
    """ketchctl's restore fails in one line and leaves no data dir; etcdctl's
    restore of the same file fails too."""
    data_dir = tmp_path / "restored"
    rc, out, err = ketchctl("snapshot", "restore", str(snap), "--data-dir", str(data_dir), *extra)
    assert rc != 0, out
    assert not data_dir.exists() and not (tmp_path / "restored.restoring").exists()
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("Error: "), err
    rc, _, _ = offline_etcdctl("snapshot", "restore", str(snap), "--data-dir", str(tmp_path / "etcd-restored"), *extra)
    assert rc != 0
    return lines[0]


def test_bad_snapshots_are_refused_and_leave_nothing(good_snapshot: Path, tmp_path: Path) -> None:
    data = good_snapshot.read_bytes()

    cut = tmp_path / "truncated.db"
    cut.write_bytes(data[: len(data) // 2])
    assert "snapshot missing hash" in refused(tmp_path, cut) or "sha256" in refused(tmp_path, cut)

    flipped = tmp_path / "flipped.db"
    b = bytearray(data)
    b[len(b) // 3] ^= 0x20
    flipped.write_bytes(bytes(b))
    assert refused(tmp_path, flipped).startswith("Error: expected sha256 [")

    trailer = tmp_path / "trailer.db"
    b = bytearray(data)
    b[-1] ^= 1
    trailer.write_bytes(bytes(b))
    assert refused(tmp_path, trailer).startswith("Error: expected sha256 [")

    not_bbolt = tmp_path / "not-bbolt.db"
    not_bbolt.write_bytes(os.urandom(8192))
    assert "snapshot missing hash" in refused(tmp_path, not_bbolt)
    assert "wrong magic" in refused(tmp_path, not_bbolt, "--skip-hash-check")

    rc, _, err = ketchctl("snapshot", "status", str(not_bbolt))
    assert rc != 0 and "wrong magic" in err and len(err.strip().splitlines()) == 1


def test_restore_into_an_existing_data_dir_is_refused(good_snapshot: Path, tmp_path: Path) -> None:
    existing = tmp_path / "existing"
    existing.mkdir()
    (existing / "keep").write_text("mine")
    rc, _, err = ketchctl("snapshot", "restore", str(good_snapshot), "--data-dir", str(existing))
    rc_etcd, _, err_etcd = offline_etcdctl("snapshot", "restore", str(good_snapshot), "--data-dir", str(existing))
    assert rc == rc_etcd == 1
    assert err.strip() == f'Error: data-dir "{existing}" exists'
    assert err.strip() in err_etcd
    assert sorted(p.name for p in existing.iterdir()) == ["keep"]


@pytest.mark.timeout(240)
def test_ketch_snapshot_restored_with_a_wal_dir_serves_in_ketch(make_server: ServerFactory, tmp_path: Path) -> None:
    source = make_server("ketch")
    lease = fill(source)
    want = everything(source)
    snap = tmp_path / "ketch.db"
    ok(source.etcdctl("snapshot", "save", str(snap)))
    source.stop()
    wal = tmp_path / "separate-wal"
    target = make_server("ketch", ["--wal-dir", str(wal)], start=False)
    ok(ketchctl(*restore_args(target, snap), "--wal-dir", str(wal)))
    assert any(wal.glob("*.wal"))
    target.start()
    assert everything(target) == want
    assert ttl_of(target, lease) > LEASE_TTL - 30
    # A restart comes back from the restored dirs as from any others.
    target.stop()
    target.start()
    assert everything(target) == want


ROOT = "root:rootpw"
APP = "app:apppw"


def with_auth(server: Server) -> None:
    """root, a user `app` whose role reads and writes /apps/ only, a key in
    and out of that prefix, then auth on: etcd's own steps, by etcdctl."""
    ok(server.etcdctl("put", "/apps/a", "in"))
    ok(server.etcdctl("put", "/other", "out"))
    for step in (
        ["user", "add", ROOT], ["user", "grant-role", "root", "root"],
        ["role", "add", "apps"], ["role", "grant-permission", "apps", "--prefix=true", "readwrite", "/apps/"],
        ["user", "add", APP], ["user", "grant-role", "app", "apps"],
        ["auth", "enable"],
    ):  # fmt: skip
        ok(server.etcdctl(*step))


def start_with_auth(server: Server, timeout: float = 60) -> None:
    """start, then wait for a read as root: the fixture's own readiness probe
    reads with no user, which a server with auth on refuses."""
    server.start(wait=False)
    assert server.proc is not None
    deadline = time.monotonic() + timeout
    while True:
        rc, _, err = server.etcdctl("--user", ROOT, "get", "ready-probe", timeout=5)
        if rc == 0:
            return
        assert server.proc.poll() is None, f"{server.kind} exited:\n{server.log_text()}"
        assert time.monotonic() < deadline, f"{server.kind} never answered root ({err.strip()}):\n{server.log_text()}"
        time.sleep(0.1)


def enforces_auth(server: Server) -> None:
    """What with_auth set up holds: no user is refused, `app` may only touch
    /apps/, root may do anything."""
    rc, _, err = server.etcdctl("get", "/apps/a")
    assert rc != 0 and "user name is empty" in err, err
    assert ok(server.etcdctl("--user", APP, "get", "/apps/a", "--print-value-only")) == "in\n"
    ok(server.etcdctl("--user", APP, "put", "/apps/b", "written"))
    for denied in (["get", "/other"], ["put", "/other", "x"], ["del", "/other"]):
        rc, _, err = server.etcdctl("--user", APP, *denied)
        assert rc != 0 and "permission denied" in err, (denied, err)
    rc, _, err = server.etcdctl("--user", "app:wrong", "get", "/apps/a")
    assert rc != 0 and "authentication failed" in err, err
    assert ok(server.etcdctl("--user", ROOT, "get", "/other", "--print-value-only")) == "out\n"
    assert ok(server.etcdctl("--user", ROOT, "user", "get", "app")).split() == ["User:", "app", "Roles:", "apps"]
    perms = ok(server.etcdctl("--user", ROOT, "role", "get", "apps"))
    assert "[/apps/, /apps0) (prefix /apps/)" in perms, perms


@pytest.mark.timeout(240)
def test_etcd_auth_restored_by_ketchctl_is_enforced_by_ketch(make_server: ServerFactory, tmp_path: Path) -> None:
    source = make_server("etcd")
    with_auth(source)
    snap = tmp_path / "etcd-auth.db"
    ok(source.etcdctl("--user", ROOT, "snapshot", "save", str(snap)))
    assert status_json("etcdctl", snap) == status_json("ketchctl", snap)

    target = make_server("ketch", start=False)
    ok(ketchctl(*restore_args(target, snap)))
    start_with_auth(target)
    enforces_auth(target)
    status = ok(ketchctl("--endpoints", target.endpoint, "--user", ROOT, "auth", "status"))
    assert status.splitlines()[0] == "Authentication Status: true", status


@pytest.mark.timeout(240)
def test_ketch_auth_restored_by_etcdctl_is_enforced_by_etcd(make_server: ServerFactory, tmp_path: Path) -> None:
    source = make_server("ketch")
    with_auth(source)
    snap = tmp_path / "ketch-auth.db"
    ok(source.etcdctl("--user", ROOT, "snapshot", "save", str(snap)))
    assert status_json("etcdctl", snap) == status_json("ketchctl", snap)

    target = make_server("etcd", start=False)
    ok(offline_etcdctl(*restore_args(target, snap)))
    start_with_auth(target)
    enforces_auth(target)
    # etcd 3.4 has no AuthStatus: the flag shows in that disabling it (root
    # only) lets a caller with no user in again.
    ok(target.etcdctl("--user", ROOT, "auth", "disable"))
    assert ok(target.etcdctl("get", "/other", "--print-value-only")) == "out\n"


@pytest.mark.timeout(240)
def test_ketch_auth_survives_its_own_snapshot_and_restore(make_server: ServerFactory, tmp_path: Path) -> None:
    source = make_server("ketch")
    with_auth(source)
    snap = tmp_path / "ketch-auth.db"
    ok(source.etcdctl("--user", ROOT, "snapshot", "save", str(snap)))
    source.stop()
    target = make_server("ketch", start=False)
    ok(ketchctl(*restore_args(target, snap)))
    start_with_auth(target)
    enforces_auth(target)
