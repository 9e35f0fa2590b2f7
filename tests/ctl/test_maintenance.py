"""alarm, defrag, endpoint hashkv, move-leader and snapshot save: etcdctl 3.4
and ketchctl against the same single-member server (etcd, then ketch)."""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

import pytest
from ketch._pb import rpc_pb2
from ketch.client.sync import ALARM
from ketch.ctl.context import CtlError
from ketch.ctl.maintenance import ProgressBar, verify_checksum
from ketch.testing import Member

from .conftest import Outcome, run

FORMATS = ["simple", "json", "fields", "table"]


def same(server: Member, args: list[str]) -> Outcome:
    want = run("etcdctl", server.endpoint, args)
    got = run("ketchctl", server.endpoint, args)
    assert (got.rc, got.stdout, got.errors) == (want.rc, want.stdout, want.errors), args
    return want


def same_but_panic(server: Member, args: list[str]) -> None:
    """Where etcdctl 3.4 panics on a nil pointer (exit 2, Go's stack trace on
    stderr), ketchctl exits 2 with one line saying so."""
    want = run("etcdctl", server.endpoint, args)
    got = run("ketchctl", server.endpoint, args)
    assert want.rc == got.rc == 2 and want.stdout == got.stdout, args
    assert want.errors[0].startswith("panic: runtime error: invalid memory address")
    assert got.errors == [got.errors[0]] and "3.4 panics here" in got.errors[0]  # (run() renames etcdctl)


def activate_alarms(server: Member) -> None:
    """A NOSPACE alarm on the member and a CORRUPT one for a member that is
    not there: what `alarm list` and `alarm disarm` then show."""
    with server.client() as c:
        me = c.status().header.member_id
        for member_id, alarm in ((me, rpc_pb2.NOSPACE), (12345, rpc_pb2.CORRUPT)):
            req = rpc_pb2.AlarmRequest(action=rpc_pb2.AlarmRequest.ACTIVATE, memberID=member_id, alarm=alarm)
            c.call(ALARM, req, idempotent=False)


def sorted_lines(out: bytes) -> list[bytes]:
    # etcd keeps alarms in Go maps: their order changes from one call to the next.
    return sorted(out.splitlines())


def sorted_alarms(out: bytes) -> object:
    doc = json.loads(out)
    doc["alarms"] = sorted(doc.get("alarms", []), key=lambda a: (a["memberID"], a["alarm"]))
    return doc


def test_alarm_none(server: Member) -> None:
    for cmd in (["alarm", "list"], ["alarm", "disarm"]):
        for fmt in ("simple", "json", "table"):
            o = same(server, [*cmd, "-w", fmt])
            assert o.rc == (4 if fmt == "table" else 0)
        same_but_panic(server, [*cmd, "-w", "fields"])  # etcd's answer has no header
    same(server, ["alarm", "list", "extra"])
    same(server, ["alarm", "disarm", "extra"])


def test_alarm_list_and_disarm(server: Member) -> None:
    activate_alarms(server)
    try:
        a = run("etcdctl", server.endpoint, ["alarm", "list"])
        b = run("ketchctl", server.endpoint, ["alarm", "list"])
        assert a.rc == b.rc == 0 and sorted_lines(b.stdout) == sorted_lines(a.stdout)
        assert len(a.stdout.splitlines()) == 2 and b"alarm:NOSPACE \n" in b.stdout
        a = run("etcdctl", server.endpoint, ["alarm", "list", "-w", "json"])
        b = run("ketchctl", server.endpoint, ["alarm", "list", "-w", "json"])
        assert sorted_alarms(b.stdout) == sorted_alarms(a.stdout)
        # NOSPACE stops writes, with etcd's error, for both tools.
        same(server, ["put", "k", "v"])

        a = run("etcdctl", server.endpoint, ["alarm", "disarm", "-w", "json"])
        activate_alarms(server)
        b = run("ketchctl", server.endpoint, ["alarm", "disarm", "-w", "json"])
        assert a.rc == b.rc == 0 and sorted_alarms(b.stdout) == sorted_alarms(a.stdout)
        assert len(json.loads(b.stdout)["alarms"]) == 2
        assert same(server, ["alarm", "list"]).stdout == b""
    finally:
        with server.client() as c:
            for a_ in c.alarms().alarms:
                c.disarm(a_.memberID, a_.alarm)
    assert same(server, ["put", "k", "v"]).rc == 0


@pytest.mark.parametrize("fmt", FORMATS)
def test_hashkv_and_defrag(server: Member, fmt: str) -> None:
    with server.client() as c:
        c.put("hashkv/k", "v")
    for cluster in ([], ["--cluster"]):
        o = same(server, ["endpoint", "hashkv", *cluster, "-w", fmt])
        assert o.rc == 0 and o.stdout
        o = same(server, ["defrag", *cluster, "-w", fmt])
        assert o.stdout.startswith(b"Finished defragmenting etcd member[")
    o = same(server, ["endpoint", "hashkv", "--rev", "1000000", "-w", fmt])
    assert o.rc == 1 and o.errors[0].startswith("Failed to get the hash of endpoint ")


def test_move_leader_single_member(server: Member) -> None:
    for args in (["move-leader"], ["move-leader", "zz"], ["move-leader", "1", "2"],
                 ["move-leader", "1234"]):  # fmt: skip
        o = same(server, args)
        assert o.rc != 0 and o.errors[-1].startswith("Error: ")


def test_snapshot_save(server: Member, tmp_path: Path) -> None:
    path = str(tmp_path / "snap.db")
    want = run("etcdctl", server.endpoint, ["snapshot", "save", path])
    etcdctls = Path(path).read_bytes()
    got = run("ketchctl", server.endpoint, ["snapshot", "save", path])
    assert (got.rc, got.stdout, got.errors) == (want.rc, want.stdout, want.errors) == (
        0, f"Snapshot saved at {path}\n".encode(), [])  # fmt: skip
    data = Path(path).read_bytes()
    assert len(data) == len(etcdctls) and len(data) % 512 == 32
    assert hashlib.sha256(data[:-32]).digest() == data[-32:]
    assert not Path(path + ".part").exists()
    # (Not --command-timeout 1ms: etcdctl itself sometimes finishes a small snapshot within it.)
    for args in (["snapshot", "save"], ["snapshot", "save", "/nonexistent/dir/x.db"]):
        same(server, args)
    two = f"{server.endpoint},{server.endpoint}"
    a, b = run("etcdctl", two, ["snapshot", "save", path]), run("ketchctl", two, ["snapshot", "save", path])
    msg = f"Error: snapshot must be requested to one selected node, not multiple [{two.replace(',', ' ')}]"
    assert (a.rc, a.errors) == (b.rc, b.errors) == (5, [msg])


def test_snapshot_progress(server: Member) -> None:
    """The client reports (received, total) per chunk; ketchctl draws that as
    a bar on a terminal (a pipe gets etcdctl's output alone, as above)."""
    seen: list[tuple[int, int]] = []
    with server.client() as c:
        size = sum(len(b) for b in c.snapshot(progress=lambda got, total: seen.append((got, total))))
    assert seen and seen[-1] == (size, size)
    assert all(got <= total for got, total in seen)
    screen = io.StringIO()
    bar = ProgressBar(screen)
    bar.update(512, 2048)
    bar.update(2048, 2048)
    bar.done()
    drawn = screen.getvalue().split("\r")
    assert drawn[1].startswith("[#######        ") and " 25% " in drawn[1]
    assert drawn[2].startswith("[" + "#" * ProgressBar.WIDTH + "] 100% ")
    assert drawn[3] == "\x1b[K"


def test_snapshot_checksum(tmp_path: Path) -> None:
    db = b"\x01" * 4096
    good = tmp_path / "good"
    good.write_bytes(db + hashlib.sha256(db).digest())
    verify_checksum(str(good), 4096 + 32)

    bad = tmp_path / "bad"
    bad.write_bytes(db + bytes(32))
    with pytest.raises(CtlError) as e:
        verify_checksum(str(bad), 4096 + 32)
    assert e.value.code == 5
    assert e.value.message.startswith("expected sha256 [0 0 0 ") and ", got [" in e.value.message

    short = tmp_path / "short"
    short.write_bytes(db)
    with pytest.raises(CtlError, match=r"^sha256 checksum not found \[bytes: 4096\]$"):
        verify_checksum(str(short), 4096)
