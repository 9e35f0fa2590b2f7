"""What every printer can be asked to print, and where it writes."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import BinaryIO

from ..._pb import rpc_pb2
from ...client.results import (
    DeleteResult,
    GetResult,
    Header,
    KeepAliveResult,
    LeaseGrant,
    LeaseInfo,
    LeaseList,
    MemberList,
    PutResult,
    Status,
    TxnResult,
    WatchResponse,
)

# A Maintenance.HashKV answer, as the wire has it (-w json prints all of it).
HashKV = rpc_pb2.HashKVResponse


class UnsupportedFormat(Exception):
    """etcdctl's printerUnsupported: this format does not print this command."""


class PrinterCrash(Exception):
    """Where etcdctl 3.4's printer dereferences a nil pointer and panics (exit
    status 2): ketchctl exits the same way, with a one-line reason instead of
    Go's stack trace."""


class Output:
    """stdout and stderr as bytes: etcdctl prints keys and values as raw bytes."""

    def __init__(self, stdout: BinaryIO | None = None, stderr: BinaryIO | None = None) -> None:
        self.stdout = stdout or sys.stdout.buffer
        self.stderr = stderr or sys.stderr.buffer

    def write(self, data: bytes | str) -> None:
        self.stdout.write(data.encode() if isinstance(data, str) else data)

    def line(self, data: bytes | str = b"") -> None:
        self.write(data)
        self.stdout.write(b"\n")

    def err(self, text: str) -> None:
        self.stderr.write(text.encode())
        self.stderr.flush()

    def flush(self) -> None:
        self.stdout.flush()


@dataclass
class Health:
    """One endpoint's health check (etcdctl's epHealth)."""

    endpoint: str
    health: bool
    took: str
    error: str = ""


@dataclass(frozen=True)
class SnapshotStatus:
    """What `snapshot status` prints (etcdctl's snapshot.Status)."""

    hash: int
    revision: int
    total_key: int
    total_size: int


class Printer:
    name = "printer"

    def __init__(self, out: Output) -> None:
        self.out = out

    def _unsupported(self) -> None:
        raise UnsupportedFormat(f"{self.name} not supported as output format")

    def _crash(self, what: str) -> None:
        raise PrinterCrash(f"cannot print {what} as {self.name}: etcdctl 3.4 panics here (nil pointer dereference)")

    def get(self, r: GetResult) -> None: self._unsupported()
    def put(self, r: PutResult) -> None: self._unsupported()
    def delete(self, r: DeleteResult) -> None: self._unsupported()
    def txn(self, r: TxnResult) -> None: self._unsupported()
    def watch(self, r: WatchResponse) -> None: self._unsupported()
    def grant(self, r: LeaseGrant) -> None: self._unsupported()
    def revoke(self, lease_id: int, r: Header, raw: object) -> None: self._unsupported()
    def keep_alive(self, r: KeepAliveResult) -> None: self._unsupported()
    def time_to_live(self, r: LeaseInfo, keys: bool) -> None: self._unsupported()
    def leases(self, r: LeaseList) -> None: self._unsupported()
    def member_list(self, r: MemberList) -> None: self._unsupported()
    def endpoint_health(self, hs: list[Health]) -> None: self._unsupported()
    def endpoint_status(self, sts: list[tuple[str, Status]]) -> None: self._unsupported()
    def endpoint_hashkv(self, hs: list[tuple[str, HashKV]]) -> None: self._unsupported()
    def alarm(self, r: rpc_pb2.AlarmResponse) -> None: self._unsupported()
    def db_status(self, s: SnapshotStatus) -> None: self._unsupported()
    def move_leader(self, leader: int, target: int, r: rpc_pb2.MoveLeaderResponse) -> None:
        self._unsupported()
    def member_add(self, r: MemberList) -> None: self._unsupported()
    def member_remove(self, member_id: int, r: MemberList) -> None: self._unsupported()
    def member_update(self, member_id: int, r: MemberList) -> None: self._unsupported()
    # clientv3's printerRPC has no MemberPromote: every format but simple calls a nil printer.
    def member_promote(self, member_id: int, r: MemberList) -> None: self._crash("member promote's response")


def member_list_rows(r: MemberList) -> tuple[list[str], list[list[str]]]:
    hdr = ["ID", "Status", "Name", "Peer Addrs", "Client Addrs", "Is Learner"]
    rows = [
        [f"{m.id:x}", "started" if m.name else "unstarted", m.name, ",".join(m.peer_urls),
         ",".join(m.client_urls), "true" if m.is_learner else "false"]
        for m in r.members
    ]  # fmt: skip
    return hdr, rows


def endpoint_health_rows(hs: list[Health]) -> tuple[list[str], list[list[str]]]:
    hdr = ["endpoint", "health", "took", "error"]
    return hdr, [[h.endpoint, "true" if h.health else "false", h.took, h.error] for h in hs]


def endpoint_status_rows(sts: list[tuple[str, Status]]) -> tuple[list[str], list[list[str]]]:
    from ..gofmt import humanize_bytes

    hdr = ["endpoint", "ID", "version", "db size", "is leader", "is learner", "raft term",
           "raft index", "raft applied index", "errors"]  # fmt: skip
    rows = [
        [ep, f"{s.header.member_id:x}", s.version, humanize_bytes(s.db_size),
         _b(s.leader == s.header.member_id), _b(s.is_learner), str(s.raft_term),
         str(s.raft_index), str(s.raft_applied_index), ", ".join(s.errors)]
        for ep, s in sts
    ]  # fmt: skip
    return hdr, rows


def endpoint_hashkv_rows(hs: list[tuple[str, HashKV]]) -> tuple[list[str], list[list[str]]]:
    return ["endpoint", "hash"], [[ep, str(h.hash)] for ep, h in hs]


def db_status_rows(s: SnapshotStatus) -> tuple[list[str], list[list[str]]]:
    """etcdctl's makeDBStatusTable."""
    from ..gofmt import humanize_bytes

    hdr = ["hash", "revision", "total keys", "total size"]
    return hdr, [[f"{s.hash:x}", str(s.revision), str(s.total_key), humanize_bytes(s.total_size)]]


def alarm_text(a: rpc_pb2.AlarmMember) -> str:
    """fmt's %+v of a *pb.AlarmMember: its proto compact text, zero fields left out."""
    out = f"memberID:{a.memberID} " if a.memberID else ""
    if a.alarm:
        out += f"alarm:{rpc_pb2.AlarmType.Name(a.alarm)} "
    return out


def _b(v: bool) -> str:
    return "true" if v else "false"
