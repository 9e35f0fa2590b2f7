"""etcdctl's -w fields (printer_fields.go): one `"Name" : value` line per field."""

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
from ..gofmt import go_quote
from .base import HashKV, Health, Printer, SnapshotStatus


def _b(v: bool) -> str:
    return "true" if v else "false"


class FieldsPrinter(Printer):
    name = "fields"

    def kv(self, pfx: str, kv: KeyValue) -> None:
        o = self.out
        o.line(f'"{pfx}Key" : {go_quote(kv.key)}')
        o.line(f'"{pfx}CreateRevision" : {kv.create_revision}')
        o.line(f'"{pfx}ModRevision" : {kv.mod_revision}')
        o.line(f'"{pfx}Version" : {kv.version}')
        o.line(f'"{pfx}Value" : {go_quote(kv.value)}')
        o.line(f'"{pfx}Lease" : {kv.lease}')

    def hdr(self, h: Header) -> None:
        o = self.out
        o.line(f'"ClusterID" : {h.cluster_id}')
        o.line(f'"MemberID" : {h.member_id}')
        o.line(f'"Revision" : {h.revision}')
        o.line(f'"RaftTerm" : {h.raft_term}')

    def delete(self, r: DeleteResult) -> None:
        self.hdr(r.header)
        self.out.line(f'"Deleted" : {r.deleted}')
        for kv in r.prev_kvs:
            self.kv("Prev", kv)

    def get(self, r: GetResult) -> None:
        self.hdr(r.header)
        for kv in r.kvs:
            self.kv("", kv)
        self.out.line(f'"More" : {_b(r.more)}')
        self.out.line(f'"Count" : {r.count}')

    def put(self, r: PutResult) -> None:
        self.hdr(r.header)
        if r.prev_kv is not None:
            self.kv("Prev", r.prev_kv)

    def txn(self, r: TxnResult) -> None:
        self.hdr(r.header)
        self.out.line(f'"Succeeded" : {_b(r.succeeded)}')
        for sub in r.responses:
            if isinstance(sub, DeleteResult):
                self.delete(sub)
            elif isinstance(sub, PutResult):
                self.put(sub)
            elif isinstance(sub, GetResult):
                self.get(sub)
            else:
                self.out.line(f'"Unknown" : {go_quote(str(sub.raw))}')

    def watch(self, r: WatchResponse) -> None:
        self.hdr(r.header)
        for e in r.events:
            self.out.line(f'"Type" : {e.type.value}')
            if e.prev_kv is not None:
                self.kv("Prev", e.prev_kv)
            self.kv("", e.kv)

    def grant(self, r: LeaseGrant) -> None:
        self.hdr(r.header)
        self.out.line(f'"ID" : {r.id}')
        self.out.line(f'"TTL" : {r.ttl}')

    def revoke(self, lease_id: int, r: Header, raw: object) -> None:
        self.hdr(r)

    def keep_alive(self, r: KeepAliveResult) -> None:
        self.hdr(r.header)
        self.out.line(f'"ID" : {r.id}')
        self.out.line(f'"TTL" : {r.ttl}')

    def time_to_live(self, r: LeaseInfo, keys: bool) -> None:
        self.hdr(r.header)
        self.out.line(f'"ID" : {r.id}')
        self.out.line(f'"TTL" : {r.ttl}')
        self.out.line(f'"GrantedTTL" : {r.granted_ttl}')
        for k in r.keys:
            self.out.line(f'"Key" : {go_quote(k)}')

    def leases(self, r: LeaseList) -> None:
        self.hdr(r.header)
        for i in r.ids:
            self.out.line(f'"ID" : {i}')

    def member_list(self, r: MemberList) -> None:
        self.hdr(r.header)
        for m in r.members:
            self.out.line(f'"ID" : {m.id}')
            self.out.line(f'"Name" : {go_quote(m.name)}')
            for u in m.peer_urls:
                self.out.line(f'"PeerURL" : {go_quote(u)}')
            for u in m.client_urls:
                self.out.line(f'"ClientURL" : {go_quote(u)}')
            self.out.line(f'"IsLearner" : {_b(m.is_learner)}')
            self.out.line()

    def endpoint_health(self, hs: list[Health]) -> None:
        for h in hs:
            self.out.line(f'"Endpoint" : {go_quote(h.endpoint)}')
            self.out.line(f'"Health" : {_b(h.health)}')
            self.out.line(f'"Took" : {h.took}')
            self.out.line(f'"Error" : {h.error}')
            self.out.line()

    def endpoint_status(self, sts: list[tuple[str, Status]]) -> None:
        for ep, s in sts:
            self.hdr(s.header)
            self.out.line(f'"Version" : {go_quote(s.version)}')
            self.out.line(f'"DBSize" : {s.db_size}')
            self.out.line(f'"Leader" : {s.leader}')
            self.out.line(f'"IsLearner" : {_b(s.is_learner)}')
            self.out.line(f'"RaftIndex" : {s.raft_index}')
            self.out.line(f'"RaftTerm" : {s.raft_term}')
            self.out.line(f'"RaftAppliedIndex" : {s.raft_applied_index}')
            self.out.line(f'"Errors" : [{" ".join(s.errors)}]')
            self.out.line(f'"Endpoint" : {go_quote(ep)}')
            self.out.line()

    def db_status(self, s: SnapshotStatus) -> None:
        self.out.line(f'"Hash" : {s.hash}')
        self.out.line(f'"Revision" : {s.revision}')
        self.out.line(f'"Keys" : {s.total_key}')
        self.out.line(f'"Size" : {s.total_size}')

    def endpoint_hashkv(self, hs: list[tuple[str, HashKV]]) -> None:
        for ep, h in hs:
            self.hdr(Header.from_pb(h.header))
            self.out.line(f'"Endpoint" : {go_quote(ep)}')
            self.out.line(f'"Hash" : {h.hash}')
            self.out.line()

    def alarm(self, r: rpc_pb2.AlarmResponse) -> None:
        # etcd leaves the header out of alarm answers, and disarm's is made
        # client-side without one: etcdctl's p.hdr(nil) panics on it.
        if not r.HasField("header"):
            self._crash("an alarm response without a header")
        self.hdr(Header.from_pb(r.header))
        for a in r.alarms:
            self.out.line(f'"MemberID" : {a.memberID}')
            self.out.line(f'"AlarmType" : {rpc_pb2.AlarmType.Name(a.alarm)}')
            self.out.line()
