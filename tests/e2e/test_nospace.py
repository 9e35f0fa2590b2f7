"""NOSPACE, shape by shape, against etcd and ketch side by side.

While the alarm is active etcd's capped applier refuses Put, LeaseGrant and
a Txn with a put in either branch; deletes, Txns without puts, compaction,
defragment and reads go on. Each test runs once per server through ketch's
client (gRPC), so shapes etcdctl cannot send (a nested txn, a put in the
branch not taken) are covered too.
"""

from __future__ import annotations

import time

import pytest
from ketch import Client, EtcdError
from ketch._pb import rpc_pb2
from ketch.client.requests import Op
from ketch.client.sync import ALARM

from ..support import Server

NOSPACE = "etcdserver: mvcc: database space exceeded"
VALUE_64K = b"x" * 65536


def _activate(c: Client) -> None:
    me = c.status().header.member_id
    req = rpc_pb2.AlarmRequest(
        action=rpc_pb2.AlarmRequest.ACTIVATE, memberID=me, alarm=rpc_pb2.NOSPACE
    )
    c.call(ALARM, req, idempotent=False)


def _refused(call) -> bool:  # type: ignore[no-untyped-def]
    try:
        call()
    except EtcdError as e:
        assert NOSPACE in str(e), e
        return True
    return False


def _shapes(c: Client) -> dict[str, bool]:
    """Each shape under the alarm: True if refused with NOSPACE."""
    put_b = Op.put("b", "1")
    del_a = Op.delete("a")
    return {
        "put": _refused(lambda: c.put("b", "1")),
        "lease grant": _refused(lambda: c.grant(10)),
        "txn put in success": _refused(lambda: c.txn(success=[put_b])),
        "txn put in failure (not taken)": _refused(lambda: c.txn(success=[del_a], failure=[put_b])),
        "txn delete only": _refused(lambda: c.txn(success=[Op.delete("nothing")])),
        "txn read only": _refused(lambda: c.txn(success=[Op.get("a")])),
        "txn nested delete": _refused(lambda: c.txn(success=[Op.txn(success=[Op.delete("z")])])),
        "delete": _refused(lambda: c.delete("nothing")),
        "get": _refused(lambda: c.get("a")),
        "compact": _refused(lambda: c.compact(c.get("a").header.revision)),
        "defragment": _refused(lambda: c.defragment()),
    }


EXPECTED = {
    "put": True,
    "lease grant": True,
    "txn put in success": True,
    "txn put in failure (not taken)": True,
    "txn delete only": False,
    "txn read only": False,
    "txn nested delete": False,
    "delete": False,
    "get": False,
    "compact": False,
    "defragment": False,
}


@pytest.mark.parametrize("kind", ["etcd", "ketch"])
def test_nospace_alarm_shapes(make_server, kind: str) -> None:
    """The capped applier alone: the alarm raised by hand, room in the quota."""
    server: Server = make_server(kind)
    with Client(server.endpoint) as c:
        c.put("a", "1")
        _activate(c)
        assert _shapes(c) == EXPECTED
        # A put nested in a txn: etcd 3.4's capped applier counts puts of the
        # first level only and applies it; ketch refuses it like any put.
        nested = _refused(lambda: c.txn(success=[Op.txn(success=[Op.put("n", "1")])]))
        assert nested == (kind == "ketch")
        c.disarm(c.status().header.member_id, rpc_pb2.NOSPACE)
        c.put("b", "1")


@pytest.mark.parametrize("kind", ["etcd", "ketch"])
def test_quota_full_store_empties_through_txn(make_server, kind: str) -> None:
    """Filled to its quota with 64 KiB values, the store refuses puts and
    raises the alarm, and a delete-only txn (how Kubernetes deletes) still
    empties it."""
    server: Server = make_server(kind, ("--quota-backend-bytes", str(2 * 1024 * 1024)))
    with Client(server.endpoint) as c:
        held = 0
        for i in range(200):
            try:
                c.put(f"k{i:03}", VALUE_64K)
            except EtcdError as e:
                assert NOSPACE in str(e), e
                break
            held += 1
        else:
            pytest.fail("the quota never filled")
        assert held > 0
        deadline = time.monotonic() + 5
        while not c.alarms().alarms:
            assert time.monotonic() < deadline, "no NOSPACE alarm"
            time.sleep(0.05)
        shapes = _shapes(c)
        assert shapes == EXPECTED, shapes
        c.txn(success=[Op.delete("k", "l")])
        assert c.get("k", "l").count == 0
        rev = c.get("a").header.revision
        c.compact(rev)
        c.defragment()
        c.disarm(c.status().header.member_id, rpc_pb2.NOSPACE)
        c.put("after", VALUE_64K)
