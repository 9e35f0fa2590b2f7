"""etcdctl's default output (printer_simple.go): keys and values as raw lines."""

from __future__ import annotations

from ..._pb import rpc_pb2
from ...client.results import (
    DeleteResult,
    GetResult,
    Header,
    KeepAliveResult,
    KeyValue,
    LeaseGrant,
    LeaseInfo,
    LeaseList,
    MemberList,
    PutResult,
    Status,
    TxnResult,
    WatchResponse,
)  # fmt: skip
from .base import (
    HashKV,
    Health,
    Output,
    Printer,
    SnapshotStatus,
    alarm_text,
    db_status_rows,
    endpoint_hashkv_rows,
    endpoint_status_rows,
    member_list_rows,
)


def hex_escaped(data: bytes) -> bytes:
    return "".join(f"\\x{b:02x}" for b in data).encode()


class SimplePrinter(Printer):
    name = "simple"

    def __init__(self, out: Output, is_hex: bool) -> None:
        super().__init__(out)
        self.is_hex = is_hex
        self.value_only = False

    def kv(self, kv: KeyValue) -> None:
        k, v = kv.key, kv.value
        if self.is_hex:
            k, v = hex_escaped(k), hex_escaped(v)
        if not self.value_only:
            self.out.line(k)
        self.out.line(v)

    def get(self, r: GetResult) -> None:
        for kv in r.kvs:
            self.kv(kv)

    def put(self, r: PutResult) -> None:
        self.out.line("OK")
        if r.prev_kv is not None:
            self.kv(r.prev_kv)

    def delete(self, r: DeleteResult) -> None:
        self.out.line(str(r.deleted))
        for kv in r.prev_kvs:
            self.kv(kv)

    def txn(self, r: TxnResult) -> None:
        self.out.line("SUCCESS" if r.succeeded else "FAILURE")
        for sub in r.responses:
            self.out.line()
            if isinstance(sub, DeleteResult):
                self.delete(sub)
            elif isinstance(sub, PutResult):
                self.put(sub)
            elif isinstance(sub, GetResult):
                self.get(sub)
            else:
                self.out.line(f"unexpected response {sub.raw}")

    def watch(self, r: WatchResponse) -> None:
        for e in r.events:
            self.out.line(e.type.value)
            if e.prev_kv is not None:
                self.kv(e.prev_kv)
            self.kv(e.kv)

    def grant(self, r: LeaseGrant) -> None:
        self.out.line(f"lease {r.id & (2**64 - 1):016x} granted with TTL({r.ttl}s)")

    def revoke(self, lease_id: int, r: Header, raw: object) -> None:
        self.out.line(f"lease {lease_id & (2**64 - 1):016x} revoked")

    def keep_alive(self, r: KeepAliveResult) -> None:
        self.out.line(f"lease {r.id & (2**64 - 1):016x} keepalived with TTL({r.ttl})")

    def time_to_live(self, r: LeaseInfo, keys: bool) -> None:
        lid = r.id & (2**64 - 1)
        if r.granted_ttl == 0 and r.ttl == -1:
            self.out.line(f"lease {lid:016x} already expired")
            return
        txt = f"lease {lid:016x} granted with TTL({r.granted_ttl}s), remaining({r.ttl}s)".encode()
        if keys:
            txt += b", attached keys([" + b" ".join(r.keys) + b"])"
        self.out.line(txt)

    def leases(self, r: LeaseList) -> None:
        self.out.line(f"found {len(r.ids)} leases")
        for i in r.ids:
            self.out.line(f"{i & (2**64 - 1):016x}")

    def member_list(self, r: MemberList) -> None:
        for row in member_list_rows(r)[1]:
            self.out.line(", ".join(row))

    def endpoint_health(self, hs: list[Health]) -> None:
        # etcdctl writes these to stderr.
        for h in hs:
            if not h.error:
                self.out.err(f"{h.endpoint} is healthy: successfully committed proposal: took = {h.took}\n")
            else:
                self.out.err(f"{h.endpoint} is unhealthy: failed to commit proposal: {h.error}\n")

    def endpoint_status(self, sts: list[tuple[str, Status]]) -> None:
        for row in endpoint_status_rows(sts)[1]:
            self.out.line(", ".join(row))

    def endpoint_hashkv(self, hs: list[tuple[str, HashKV]]) -> None:
        for row in endpoint_hashkv_rows(hs)[1]:
            self.out.line(", ".join(row))

    def db_status(self, s: SnapshotStatus) -> None:
        for row in db_status_rows(s)[1]:
            self.out.line(", ".join(row))

    def alarm(self, r: rpc_pb2.AlarmResponse) -> None:
        for a in r.alarms:
            self.out.line(alarm_text(a))

    def move_leader(self, leader: int, target: int, r: rpc_pb2.MoveLeaderResponse) -> None:
        self.out.line(f"Leadership transferred from {leader:x} to {target:x}")

    def member_add(self, r: MemberList) -> None:
        new_id = r.added.id if r.added is not None else 0
        self.out.line(f"Member {new_id:16x} added to cluster {r.header.cluster_id:16x}")

    def member_remove(self, member_id: int, r: MemberList) -> None:
        self.out.line(f"Member {member_id:16x} removed from cluster {r.header.cluster_id:16x}")

    def member_update(self, member_id: int, r: MemberList) -> None:
        self.out.line(f"Member {member_id:16x} updated in cluster {r.header.cluster_id:16x}")

    def member_promote(self, member_id: int, r: MemberList) -> None:
        self.out.line(f"Member {member_id:16x} promoted in cluster {r.header.cluster_id:16x}")
