"""KV, txn, compaction and cluster calls: the same against etcd and ketch, from both faces."""

from __future__ import annotations

import pytest
from ketch import Client, Compacted, Compare, FutureRevision, InvalidArgument, Op
from ketch.testing import Member


def test_put_get_delete_with_options(client: Client, ns: str) -> None:
    first = client.put(ns + "a", "1")
    assert first.prev_kv is None and first.header.revision > 0
    again = client.put(ns + "a", b"2", prev_kv=True)
    assert again.prev_kv is not None and again.prev_kv.value == b"1"
    assert again.header.revision == first.header.revision + 1

    got = client.get(ns + "a")
    assert got.value == b"2" and got.count == 1 and got.kvs[0].version == 2
    missing = client.get(ns + "missing")  # not an error, as in etcd
    assert not missing and missing.value is None and missing.count == 0

    old = client.get(ns + "a", revision=first.header.revision)
    assert old.value == b"1"
    assert client.get(ns + "a", keys_only=True).kvs[0].value == b""
    assert client.get(ns + "a", count_only=True).kvs == ()

    client.put(ns + "b", "3")
    client.put(ns + "c", "0")
    rng = client.get(ns, prefix=True, sort_order="descend", sort_target="value")
    assert [kv.value for kv in rng.kvs] == [b"3", b"2", b"0"]
    assert client.get(ns + "a", ns + "c").count == 2
    limited = client.get(ns, prefix=True, limit=1)
    assert limited.more and limited.count == 3 and len(limited.kvs) == 1
    assert client.get(ns + "b", from_key=True).kvs[0].key == (ns + "b").encode()

    put = client.put(ns + "a", ignore_value=True, prev_kv=True)
    assert put.prev_kv is not None and client.get(ns + "a").value == b"2"

    deleted = client.delete(ns, prefix=True, prev_kv=True)
    assert deleted.deleted == 3 and {kv.key for kv in deleted.prev_kvs} == {
        (ns + k).encode() for k in "abc"
    }
    assert client.get(ns, prefix=True).count == 0


def test_errors_keep_etcds_meaning(client: Client, ns: str) -> None:
    rev = client.put(ns + "k", "v").header.revision
    with pytest.raises(FutureRevision, match="required revision is a future revision"):
        client.get(ns + "k", revision=rev + 1000)
    with pytest.raises(InvalidArgument, match="key is not provided"):
        client.put("", "v")
    client.compact(rev)
    with pytest.raises(Compacted) as e:
        client.get(ns + "k", revision=rev - 1)
    assert str(e.value) == "etcdserver: mvcc: required revision has been compacted"
    assert e.value.hint


def test_range_pages_at_one_revision(client: Client, ns: str) -> None:
    for i in range(7):
        client.put(f"{ns}{i:02}", str(i))
    seen = []
    for kv in client.range(ns, prefix=True, page_size=3):
        seen.append(kv.key)
        client.put(ns + "05", "changed")  # not seen: the pages are read at the first's revision
    assert seen == [f"{ns}{i:02}".encode() for i in range(7)]
    assert [kv.value for kv in client.range(ns + "05")] == [b"changed"]


def test_txn_compare_then_else(client: Client, ns: str) -> None:
    client.put(ns + "k", "v")
    ok = client.txn(
        [Compare.value(ns + "k") == "v", Compare.version(ns + "k") > 0,
         Compare.create_revision(ns + "new") == 0],
        [Op.put(ns + "k", "v2"), Op.get(ns + "k"), Op.delete(ns + "none")],
        [Op.get(ns + "k")],
    )  # fmt: skip
    assert ok.succeeded and len(ok.responses) == 3
    assert ok.responses[1].kvs[0].value == b"v2"  # type: ignore[union-attr]
    failed = (
        client.transaction()
        .if_(Compare.mod_revision(ns + "k") < 1)
        .then(Op.delete(ns + "k"))
        .else_(Op.get(ns, prefix=True))
        .commit()
    )
    assert not failed.succeeded and failed.responses[0].count == 1  # type: ignore[union-attr]
    with pytest.raises(InvalidArgument, match="duplicate key"):
        client.txn([], [Op.put(ns + "d", "1"), Op.put(ns + "d", "2")])


def test_member_list_and_status(client: Client, server: Member) -> None:
    members = client.member_list()
    assert len(members.members) == 1
    assert members.members[0].client_urls == (server.client_url,)
    status = client.status()
    assert status.is_leader and status.raft_term >= 1 and status.db_size > 0
    assert status.header.member_id == members.members[0].id
    assert client.status(server.client_url).header.member_id == status.header.member_id
