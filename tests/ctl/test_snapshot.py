"""snapshot status and restore: ketchctl and etcdctl 3.4 side by side, on
snapshots saved from both servers (the round trips through a server are in
tests/e2e/test_snapshot_format.py)."""

from __future__ import annotations

from pathlib import Path

from ketch.testing import Member

from .conftest import Outcome, run


def same(endpoint: str, args: list[str]) -> Outcome:
    want = run("etcdctl", endpoint, args)
    got = run("ketchctl", endpoint, args)
    assert (got.rc, got.stdout, got.errors) == (want.rc, want.stdout, want.errors), args
    return want


def saved(server: Member, tmp_path: Path) -> Path:
    for i in range(30):
        assert run("etcdctl", server.endpoint, ["put", f"/registry/secrets/s{i}", "v" * i]).rc == 0
    path = tmp_path / "snap.db"
    assert run("etcdctl", server.endpoint, ["snapshot", "save", str(path)]).rc == 0
    return path


def test_status_in_every_format(server: Member, tmp_path: Path) -> None:
    path = saved(server, tmp_path)
    for fmt in ("simple", "json", "table", "fields"):
        same(server.endpoint, ["snapshot", "status", str(path), "-w", fmt])


def test_status_errors(server: Member, tmp_path: Path) -> None:
    for args in (["snapshot", "status"], ["snapshot", "status", "a", "b"],
                 ["snapshot", "status", str(tmp_path / "missing.db")]):  # fmt: skip
        o = same(server.endpoint, args)
        assert o.rc != 0 and o.errors[-1].startswith("Error: ")


def test_restore_flag_errors(server: Member, tmp_path: Path) -> None:
    path = saved(server, tmp_path)
    target = str(tmp_path / "restored")
    for args in (
        ["snapshot", "restore"],
        ["snapshot", "restore", str(path), "--data-dir", target, "--name", "nobody"],
        ["snapshot", "restore", str(path), "--data-dir", target, "--initial-advertise-peer-urls", "http://127.0.0.1:9"],
        ["snapshot", "restore", str(path), "--data-dir", target, "--name", "a",
         "--initial-cluster", "a=http://127.0.0.1:9,b=http://127.0.0.1:9", "--initial-advertise-peer-urls", "http://127.0.0.1:9"],
        ["snapshot", "restore", str(tmp_path / "missing.db"), "--data-dir", target],
        ["snapshot", "restore", str(path), "--data-dir", str(tmp_path)],
    ):  # fmt: skip
        o = same(server.endpoint, args)
        assert o.rc != 0 and o.errors[-1].startswith("Error: "), args
        assert not Path(target).exists()


def test_restore_with_a_wal_dir(server: Member, tmp_path: Path) -> None:
    path = saved(server, tmp_path)
    data, wal = tmp_path / "data", tmp_path / "wal"
    o = run(
        "ketchctl", server.endpoint,
        ["snapshot", "restore", str(path), "--data-dir", str(data), "--wal-dir", str(wal)],
    )  # fmt: skip
    assert o.rc == 0, o.errors
    assert (data / "member" / "db.redb").is_file()
    assert any(wal.glob("*.wal")) and not (data / "member" / "wal").exists()
    again = same(server.endpoint, ["snapshot", "restore", str(path), "--data-dir", str(tmp_path / "other"),
                                   "--wal-dir", str(wal)])  # fmt: skip
    assert again.errors == [f'Error: wal-dir "{wal}" exists']
