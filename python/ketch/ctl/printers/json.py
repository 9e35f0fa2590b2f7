"""etcdctl's -w json (printer_json.go): Go's encoding/json of the response structs.

Wire responses print as gogo-protobuf structs (see gofmt.pb_to_go); clientv3's
own wrappers (leases, watch) are spelled out here as Go declares them.
"""

from __future__ import annotations

from typing import Any

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
)  # fmt: skip
from ..gofmt import go_json, header_fields, pb_to_go
from .base import HashKV, Health, Printer, SnapshotStatus


class JSONPrinter(Printer):
    name = "json"

    def emit(self, value: Any) -> None:
        self.out.line(go_json(value))

    def get(self, r: GetResult) -> None:
        self.emit(pb_to_go(r.raw))

    def put(self, r: PutResult) -> None:
        self.emit(pb_to_go(r.raw))

    def delete(self, r: DeleteResult) -> None:
        self.emit(pb_to_go(r.raw))

    def txn(self, r: TxnResult) -> None:
        self.emit(pb_to_go(r.raw))

    def watch(self, r: WatchResponse) -> None:
        # clientv3.WatchResponse: exported fields without json tags.
        events = [pb_to_go(e) for e in r.raw.events] or None
        self.emit({
            "Header": pb_to_go(r.raw.header), "Events": events,
            "CompactRevision": r.compact_revision, "Canceled": r.raw.canceled,
            "Created": r.raw.created,
        })  # fmt: skip

    def grant(self, r: LeaseGrant) -> None:
        self.emit({**header_fields(r.raw), "ID": r.id, "TTL": r.ttl, "Error": r.raw.error})

    def revoke(self, lease_id: int, r: Header, raw: object) -> None:
        self.emit(pb_to_go(raw))  # type: ignore[arg-type]

    def keep_alive(self, r: KeepAliveResult) -> None:
        self.emit({**header_fields(r.raw), "ID": r.id, "TTL": r.ttl})

    def time_to_live(self, r: LeaseInfo, keys: bool) -> None:
        self.emit({
            **header_fields(r.raw), "id": r.id, "ttl": r.ttl, "granted-ttl": r.granted_ttl,
            "keys": list(r.keys) or None,
        })  # fmt: skip

    def leases(self, r: LeaseList) -> None:
        self.emit({**header_fields(r.raw), "leases": [{"id": i} for i in r.ids]})

    def member_list(self, r: MemberList) -> None:
        self.emit(pb_to_go(r.raw))

    def endpoint_health(self, hs: list[Health]) -> None:
        out = []
        for h in hs:
            d: dict[str, Any] = {"endpoint": h.endpoint, "health": h.health, "took": h.took}
            if h.error:
                d["error"] = h.error
            out.append(d)
        self.emit(out)

    def endpoint_status(self, sts: list[tuple[str, Status]]) -> None:
        self.emit([{"Endpoint": ep, "Status": pb_to_go(s.raw)} for ep, s in sts])

    def endpoint_hashkv(self, hs: list[tuple[str, HashKV]]) -> None:
        self.emit([{"Endpoint": ep, "HashKV": pb_to_go(h)} for ep, h in hs])

    def alarm(self, r: rpc_pb2.AlarmResponse) -> None:
        self.emit(pb_to_go(r))

    def db_status(self, s: SnapshotStatus) -> None:
        self.emit({"hash": s.hash, "revision": s.revision, "totalKey": s.total_key, "totalSize": s.total_size})

    def move_leader(self, leader: int, target: int, r: rpc_pb2.MoveLeaderResponse) -> None:
        self.emit(pb_to_go(r))

    def member_add(self, r: MemberList) -> None:
        self.emit(pb_to_go(r.raw))

    def member_remove(self, member_id: int, r: MemberList) -> None:
        self.emit(pb_to_go(r.raw))

    def member_update(self, member_id: int, r: MemberList) -> None:
        self.emit(pb_to_go(r.raw))
