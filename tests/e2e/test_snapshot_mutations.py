"""The bbolt reader on snapshots written by the real etcd: random cuts and
byte flips of a real `etcdctl snapshot save` file are never restored with
the hash check on, never crash the reader with it off, and never leave a
data dir behind. (Rust's proptest does the same on ketch-written files.)"""

from __future__ import annotations

import hashlib
import random
from pathlib import Path

import pytest
from ketch.ctl.snapshot import restore_snapshot, snapshot_status

from ..conftest import ServerFactory
from ..support import Server

CASES = 300


def ok(result: tuple[int, str, str]) -> str:
    rc, out, err = result
    assert rc == 0, err
    return out


@pytest.fixture
def etcd_snapshot(make_server: ServerFactory, tmp_path: Path) -> bytes:
    server: Server = make_server("etcd")
    for i in range(200):
        ok(server.etcdctl("put", f"/registry/pods/ns-{i % 7}/pod-{i}", "p" * (i * 13 % 700)))
    lease = ok(server.etcdctl("lease", "grant", "300")).split()[1]
    ok(server.etcdctl("put", "--lease", lease, "/registry/leases/n", "x"))
    ok(server.etcdctl("put", "/registry/configmaps/big", "b" * 30_000))
    ok(server.etcdctl("del", "/registry/pods/ns-0", "--prefix"))
    path = tmp_path / "etcd.db"
    ok(server.etcdctl("snapshot", "save", str(path)))
    return path.read_bytes()


def restore(tmp_path: Path, data: bytes, skip: bool) -> bool:
    """True if the restore was accepted; a refusal must leave nothing."""
    snap = tmp_path / "case.db"
    snap.write_bytes(data)
    target = tmp_path / "restored"
    try:
        restore_snapshot(str(snap), str(target), None, "default",
                         {"default": ("http://127.0.0.1:2380",)}, "t", skip)  # fmt: skip
    except ValueError as e:
        assert "\n" not in str(e)
        assert not target.exists() and not (tmp_path / "restored.restoring").exists()
        return False
    return True


def test_the_real_etcd_snapshot_restores_and_its_mutations_do_not(etcd_snapshot: bytes, tmp_path: Path) -> None:
    import shutil

    assert restore(tmp_path, etcd_snapshot, skip=False)
    shutil.rmtree(tmp_path / "restored")
    body = etcd_snapshot[:-32]
    rng = random.Random(20261202)
    accepted_without_hash = 0
    for _ in range(CASES):
        data = bytearray(etcd_snapshot)
        if rng.random() < 0.3:
            del data[rng.randrange(len(data)):]
        else:
            for _ in range(rng.randint(1, 3)):
                # Half the flips in the first pages (metas, freelist, root), where the structure is.
                at = rng.randrange(4 * 4096 if rng.random() < 0.5 else len(data))
                data[at] ^= rng.randint(1, 255)
        if bytes(data) == etcd_snapshot:
            continue
        assert not restore(tmp_path, bytes(data), skip=False)
        # Without the hash, a flip in a value may pass; the structure is
        # still checked and nothing may crash.
        if restore(tmp_path, bytes(data), skip=True):
            accepted_without_hash += 1
            shutil.rmtree(tmp_path / "restored")
        status_path = tmp_path / "status.db"
        status_path.write_bytes(bytes(data))
        try:
            snapshot_status(str(status_path))
        except ValueError as e:
            assert "\n" not in str(e)
    # The trailer really is what was checked: the body alone, re-hashed, passes.
    assert restore(tmp_path, body + hashlib.sha256(body).digest(), skip=False)
    assert accepted_without_hash < CASES
