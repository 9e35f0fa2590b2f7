"""The JSON gateway (grpc-gateway) on the client port: the same requests to
etcd and ketch over plain HTTP/1.1, the same status, content type and body.

Bodies are compared byte for byte after replacing what legitimately
differs between two servers: member and cluster IDs, lease IDs (etcd makes
them from its member ID and the clock), ports, and the few Status and Hash
fields that describe each server's own disk. One thing differs between the
Where the reference etcd (3.4, Debian's build on grpc-gateway 1.6) and etcd
3.5 (grpc-gateway 1.16) differ, ketch follows 3.5 and the test says so:
- the HTTP status of FailedPrecondition: 400 in 3.5 (grpc-gateway 1.16
  chose it on purpose), 412 in 3.4;
- a unary error body's key order: `{"error","code","message"}` in 3.5, where
  3.4 writes `{"error","message","code"}`. Error bodies are compared as JSON
  objects, and ketch's bytes are checked against 3.5's order;
- `/v3/maintenance/hashkv` is a 3.5 route (3.4's gateway answers 404);
- with auth disabled 3.5 ignores an `Authorization` token (3.4 refuses one
  it does not know with "invalid auth token");
- MemberUpdate keeps a learner a learner in 3.5 (3.4 lists it as a voter).
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import json
import re
import socket
import time
from collections.abc import Callable

import pytest

from ..cluster.conftest import make_cluster, network  # noqa: F401 (fixtures)
from ..cluster.harness import Cluster
from ..support import Server
from .test_grpc import call

ServerFactory = Callable[..., Server]


def b64(s: str | bytes) -> str:
    return base64.b64encode(s.encode() if isinstance(s, str) else s).decode()


class Answer:
    def __init__(self, status: int, content_type: str, body: bytes) -> None:
        self.status, self.content_type, self.body = status, content_type, body

    def json(self) -> dict:
        return json.loads(self.body)

    def __repr__(self) -> str:
        return f"Answer({self.status}, {self.content_type!r}, {self.body!r})"


def post(
    server: Server,
    path: str,
    body: bytes | str | dict | None,
    headers: dict[str, str] | None = None,
    method: str = "POST",
) -> Answer:
    if isinstance(body, dict):
        body = json.dumps(body)
    if isinstance(body, str):
        body = body.encode()
    conn = http.client.HTTPConnection("127.0.0.1", server.client_port, timeout=20)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return Answer(resp.status, resp.getheader("Content-Type", ""), resp.read())
    finally:
        conn.close()


IDS = re.compile(rb'"(cluster_id|member_id|ID|leader)":"\d+"')
PORTS = re.compile(rb"127\.0\.0\.1:\d+")
# What describes each server's own disk and build, not the request.
OWN = re.compile(
    rb'"(version|dbSize|dbSizeInUse|raftIndex|raftAppliedIndex|hash|compact_revision|hash_revision|blob|remaining_bytes)"'
    rb':("[^"]*"|\d+)'
)


def normal(body: bytes, own: bool = False) -> bytes:
    body = PORTS.sub(b"127.0.0.1:PORT", IDS.sub(rb'"\1":"ID"', body))
    return OWN.sub(rb'"\1":"X"', body) if own else body


def same(
    etcd: Server,
    ketch: Server,
    path: str,
    body: bytes | str | dict | None,
    *,
    own: bool = False,
    headers: dict[str, str] | None = None,
    method: str = "POST",
) -> Answer:
    """The same request to both; the same answer back. Returns etcd's."""
    want = post(etcd, path, body, headers, method)
    got = post(ketch, path, body, headers, method)
    assert (got.status, got.content_type) == (status_35(want), want.content_type), (
        path,
        body,
        want,
        got,
    )
    if want.status != 200 and want.content_type == "application/json":
        assert_same_error(want, got)
    else:
        assert normal(got.body, own) == normal(want.body, own), (path, body)
    return want


def status_35(answer: Answer) -> int:
    """etcd 3.5's HTTP status for the answer etcd 3.4 gave."""
    return 400 if answer.status == 412 else answer.status


def assert_same_error(want: Answer, got: Answer) -> None:
    assert got.json() == want.json(), (want, got)
    error = want.json()
    # etcd 3.5's layout (grpc-gateway 1.16's internal.Error), Go's escapes.
    message = json.dumps(error["message"], ensure_ascii=False, separators=(",", ":"))
    for c, e in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026")):
        message = message.replace(c, e)
    assert got.body == f'{{"error":{message},"code":{error["code"]},"message":{message}}}'.encode()


@pytest.fixture
def pair(make_server: ServerFactory) -> tuple[Server, Server]:
    flags = ("--max-request-bytes", "2048")
    return make_server("etcd", flags), make_server("ketch", flags)


def test_kv_routes(pair: tuple[Server, Server]) -> None:
    etcd, ketch = pair
    for i in range(3):
        same(etcd, ketch, "/v3/kv/put", {"key": b64(f"a/{i}"), "value": b64(f"v{i}")})
    same(etcd, ketch, "/v3/kv/put", {"key": b64("a/1"), "value": b64("new"), "prev_kv": True})
    same(etcd, ketch, "/v3/kv/range", {"key": b64("a/"), "range_end": b64("a0")})
    same(
        etcd,
        ketch,
        "/v3/kv/range",
        {
            "key": b64("a/"),
            "range_end": b64("a0"),
            "limit": 2,
            "sort_order": "DESCEND",
            "sort_target": "MOD",
        },
    )
    same(
        etcd, ketch, "/v3/kv/range", {"key": b64("a/"), "range_end": b64("a0"), "count_only": True}
    )
    same(
        etcd,
        ketch,
        "/v3/kv/range",
        {"key": b64("a/"), "range_end": b64("a0"), "keys_only": True, "revision": "3"},
    )
    same(etcd, ketch, "/v3/kv/range", {"key": b64("missing")})
    # Camel-case names, numbers as JSON numbers and an unknown field, as jsonpb takes them.
    same(
        etcd, ketch, "/v3/kv/range", {"key": b64("a/0"), "maxModRevision": 100, "no_such_field": 1}
    )
    same(
        etcd,
        ketch,
        "/v3/kv/txn",
        {
            "compare": [
                {"target": "VALUE", "result": "EQUAL", "key": b64("a/0"), "value": b64("v0")}
            ],
            "success": [
                {"request_put": {"key": b64("t"), "value": b64("yes")}},
                {"request_range": {"key": b64("t")}},
            ],
            "failure": [{"request_delete_range": {"key": b64("t")}}],
        },
    )
    same(
        etcd,
        ketch,
        "/v3/kv/txn",
        {
            "compare": [
                {"target": "MOD", "result": "GREATER", "key": b64("a/0"), "mod_revision": "100"}
            ],
            "success": [{"request_put": {"key": b64("t"), "value": b64("no")}}],
            "failure": [
                {
                    "request_txn": {
                        "success": [{"request_range": {"key": b64("a/"), "range_end": b64("a0")}}]
                    }
                }
            ],
        },
    )
    same(etcd, ketch, "/v3/kv/deleterange", {"key": b64("a/2"), "prev_kv": True})
    same(etcd, ketch, "/v3/kv/deleterange", {"key": b64("zz")})
    same(etcd, ketch, "/v3/kv/compaction", {"revision": "4", "physical": True})
    # Below the compacted revision: OutOfRange, 400.
    want = same(etcd, ketch, "/v3/kv/range", {"key": b64("a/0"), "revision": "2"})
    assert want.status == 400 and want.json()["code"] == 11, want
    same(etcd, ketch, "/v3/kv/compaction", {"revision": "3"})
    # Empty key: InvalidArgument.
    same(etcd, ketch, "/v3/kv/put", {"value": b64("x")})
    # null is a field not given, as jsonpb reads it.
    same(
        etcd, ketch, "/v3/kv/put", {"key": b64("n"), "value": None, "lease": None, "prev_kv": None}
    )
    # An empty body is an empty request.
    same(etcd, ketch, "/v3/kv/range", b"")


@pytest.mark.parametrize(
    "body",
    [
        b"x",
        b"{",
        b'{"key":',
        b'{"key" "Zm9v"}',
        b'{"key":"Zm9v",}',
        b"nope",
        b'{"key":tru}',
        b'{"key":-}',
        b'["Zm9v"]',
        b"42",
        b'"Zm9v"',
    ],
)
def test_bodies_that_are_not_json(pair: tuple[Server, Server], body: bytes) -> None:
    etcd, ketch = pair
    want = same(etcd, ketch, "/v3/kv/put", body)
    assert want.status == 400 and want.json()["code"] == 3, want


def test_what_the_gateway_itself_refuses(pair: tuple[Server, Server]) -> None:
    etcd, ketch = pair
    assert same(etcd, ketch, "/v3/kv/nothing", {}).status == 404
    assert same(etcd, ketch, "/v3/kv/range", None, method="GET").status == 405
    # A value over --max-request-bytes: etcd's "request is too large".
    want = same(etcd, ketch, "/v3/kv/put", {"key": b64("big"), "value": b64("x" * 4096)})
    assert want.status == 400 and "too large" in want.json()["message"], want
    # Over gRPC's receive limit (max-request-bytes + 512 KiB) too.
    want = same(etcd, ketch, "/v3/kv/put", {"key": b64("big"), "value": b64("x" * (600 * 1024))})
    assert want.status == 429, want


def test_lease_routes(pair: tuple[Server, Server]) -> None:
    etcd, ketch = pair
    same(etcd, ketch, "/v3/lease/grant", {"TTL": 60, "ID": 1000})
    same(etcd, ketch, "/v3/lease/grant", {"TTL": "30", "ID": "2000"})
    same(etcd, ketch, "/v3/lease/grant", {"TTL": 30, "ID": 2000})  # exists
    same(etcd, ketch, "/v3/kv/put", {"key": b64("leased"), "value": b64("v"), "lease": "1000"})
    same(
        etcd, ketch, "/v3/kv/put", {"key": b64("leased"), "value": b64("v"), "lease": "5"}
    )  # missing lease
    same(etcd, ketch, "/v3/lease/leases", {})
    timetolive = {"ID": "1000", "keys": True}
    want, got = (
        post(etcd, "/v3/lease/timetolive", timetolive),
        post(ketch, "/v3/lease/timetolive", timetolive),
    )
    # The remaining TTL counts down on each server's own clock.
    ttl = re.compile(rb'"TTL":"\d+"')
    assert ttl.sub(b"", normal(got.body)) == ttl.sub(b"", normal(want.body)), (want, got)
    assert 55 <= int(got.json()["TTL"]) <= 60, got
    same(etcd, ketch, "/v3/lease/timetolive", {"ID": "5"})
    keepalive = same(etcd, ketch, "/v3/lease/keepalive", {"ID": "2000"})
    assert keepalive.body.endswith(b"}\n") and keepalive.json()["result"]["TTL"] == "30", keepalive
    # Two renews in one body, answered in order; a missing lease's renew answers TTL 0.
    same(etcd, ketch, "/v3/lease/keepalive", '{"ID":"2000"} {"ID":"1000"}\n{"ID":"5"}')
    same(etcd, ketch, "/v3/lease/revoke", {"ID": "1000"})
    want = same(etcd, ketch, "/v3/lease/revoke", {"ID": "1000"})
    assert want.status == 404 and want.json()["code"] == 5, want
    same(etcd, ketch, "/v3/kv/range", {"key": b64("leased")})


def members(answer: Answer) -> tuple[int, bytes, list[bytes]]:
    """A member list: the rest of the answer, and its members in a stable
    order (each server's list is ordered by member ID, and their IDs differ)."""
    body = answer.json()
    # Compact, in the order it came: what re-encoding it gives.
    assert json.dumps(body, separators=(",", ":")).encode() == answer.body
    listed = sorted(
        normal(json.dumps(m, separators=(",", ":")).encode()) for m in body.get("members", [])
    )
    rest = {k: v for k, v in body.items() if k != "members"}
    return answer.status, normal(json.dumps(rest, separators=(",", ":")).encode()), listed


def same_members(etcd: Server, ketch: Server) -> None:
    assert members(post(ketch, "/v3/cluster/member/list", {})) == members(
        post(etcd, "/v3/cluster/member/list", {})
    )


def test_cluster_routes(pair: tuple[Server, Server]) -> None:
    etcd, ketch = pair
    same(etcd, ketch, "/v3/cluster/member/list", {})
    me = int(post(etcd, "/v3/cluster/member/list", {}).json()["members"][0]["ID"])
    ketch_me = int(post(ketch, "/v3/cluster/member/list", {}).json()["members"][0]["ID"])
    # A learner can be added and removed with one member (no quorum needed for it).
    added_etcd = post(
        etcd, "/v3/cluster/member/add", {"peerURLs": ["http://127.0.0.1:1"], "isLearner": True}
    )
    added_ketch = post(
        ketch, "/v3/cluster/member/add", {"peerURLs": ["http://127.0.0.1:1"], "isLearner": True}
    )
    assert added_ketch.status == added_etcd.status == 200, (added_etcd, added_ketch)
    assert members(added_ketch) == members(added_etcd)
    learner_etcd, learner_ketch = (
        added_etcd.json()["member"]["ID"],
        added_ketch.json()["member"]["ID"],
    )
    same_members(etcd, ketch)
    for server, learner in ((etcd, learner_etcd), (ketch, learner_ketch)):
        answer = post(
            server, "/v3/cluster/member/update", {"ID": learner, "peerURLs": ["http://127.0.0.1:2"]}
        )
        assert answer.status == 200, answer
    # etcd 3.5 keeps the learner a learner (3.4 drops isLearner here).
    want = members(post(etcd, "/v3/cluster/member/list", {}))
    got = members(post(ketch, "/v3/cluster/member/list", {}))
    learner = b'{"ID":"ID","peerURLs":["http://127.0.0.1:PORT"]}'
    assert learner in want[2]
    assert got == (
        want[0],
        want[1],
        sorted(
            b'{"ID":"ID","peerURLs":["http://127.0.0.1:PORT"],"isLearner":true}'
            if m == learner
            else m
            for m in want[2]
        ),
    )
    # A leader-only call: promoting a learner that has not caught up.
    want = post(etcd, "/v3/cluster/member/promote", {"ID": learner_etcd})
    got = post(ketch, "/v3/cluster/member/promote", {"ID": learner_ketch})
    assert (got.status, got.json()) == (status_35(want), want.json()), (want, got)
    # Promoting a voter, and a member that is not there.
    want = post(etcd, "/v3/cluster/member/promote", {"ID": str(me)})
    got = post(ketch, "/v3/cluster/member/promote", {"ID": str(ketch_me)})
    assert_same_error(want, got)
    same(etcd, ketch, "/v3/cluster/member/promote", {"ID": "12345"})
    same(
        etcd,
        ketch,
        "/v3/cluster/member/update",
        {"ID": "12345", "peerURLs": ["http://127.0.0.1:3"]},
    )
    for server, learner in ((etcd, learner_etcd), (ketch, learner_ketch)):
        assert post(server, "/v3/cluster/member/remove", {"ID": learner}).status == 200
    same(etcd, ketch, "/v3/cluster/member/remove", {"ID": "12345"})
    same(etcd, ketch, "/v3/cluster/member/add", {"peerURLs": ["not a url"]})
    same_members(etcd, ketch)


def test_maintenance_routes(pair: tuple[Server, Server]) -> None:
    etcd, ketch = pair
    same(etcd, ketch, "/v3/kv/put", {"key": b64("k"), "value": b64("v")})
    same(etcd, ketch, "/v3/maintenance/status", {}, own=True)
    same(etcd, ketch, "/v3/maintenance/alarm", {"action": "GET"})
    same(etcd, ketch, "/v3/maintenance/alarm", {"action": "DEACTIVATE", "alarm": "NOSPACE"})
    same(etcd, ketch, "/v3/maintenance/defragment", {})
    same(etcd, ketch, "/v3/maintenance/hash", {}, own=True)
    # 3.5's route (3.4's gateway has none): the HashKV answer, as etcd 3.5 writes it.
    hashkv = post(ketch, "/v3/maintenance/hashkv", {"revision": "0"})
    assert (hashkv.status, hashkv.content_type) == (200, "application/json"), hashkv
    assert normal(hashkv.body, own=True) == (
        b'{"header":{"cluster_id":"ID","member_id":"ID","revision":"2","raft_term":"2"},"hash":"X","compact_revision":"X"}'
    )
    assert post(ketch, "/v3/maintenance/hashkv", {"revision": "0"}).body == hashkv.body
    snapshots = [post(server, "/v3/maintenance/snapshot", {}) for server in (etcd, ketch)]
    last_two = []
    for answer in snapshots:
        assert (answer.status, answer.content_type) == (200, "application/json"), answer
        lines = answer.body.split(b"\n")
        assert lines[-1] == b"", "every result ends with a newline"
        results = [json.loads(line)["result"] for line in lines[:-1]]
        blobs = [base64.b64decode(r["blob"]) for r in results]
        # The last blob is the SHA-256 of all the others (etcdctl checks it on restore).
        assert hashlib.sha256(b"".join(blobs[:-1])).digest() == blobs[-1]
        assert [int(r.get("remaining_bytes", 0)) for r in results][-2:] == [0, 0]
        # Field names and order are SnapshotResponse's (how many blobs there
        # are depends on the size of each server's file).
        assert all(list(r) in (["remaining_bytes", "blob"], ["blob"]) for r in results), results
        last_two.append([normal(line, own=True) for line in lines[-3:-1]])
    assert last_two[0] == last_two[1] == [b'{"result":{"blob":"X"}}'] * 2


def test_auth_routes_answer_what_grpc_answers(pair: tuple[Server, Server]) -> None:
    """Auth is not enabled on either: Authenticate says so (ketch has no
    users yet; the other /v3/auth routes are routed to their gRPC methods)."""
    etcd, ketch = pair
    want = same(etcd, ketch, "/v3/auth/authenticate", {"name": "root", "password": "pass"})
    assert status_35(want) == 400 and "authentication is not enabled" in want.json()["message"], (
        want
    )
    # The token goes as gRPC metadata; with auth disabled etcd 3.5 does not
    # look at it (3.4 refuses it), so the put is answered as without one.
    put = {"key": b64("foo"), "value": b64("bar")}
    want = post(etcd, "/v3/kv/put", put)
    got = post(
        ketch,
        "/v3/kv/put",
        {"key": b64("foo"), "value": b64("baz")},
        headers={"Authorization": "sometoken"},
    )
    assert (got.status, normal(got.body)) == (want.status, normal(want.body))


def watch_lines(
    server: Server,
    body: bytes,
    until: Callable[[list[dict]], bool],
    then: Callable[[], None] | None = None,
    then_until: Callable[[list[dict]], bool] | None = None,
) -> tuple[int, str, list[bytes]]:
    """A watch stream's lines until `until` holds of what came; then runs
    `then` and reads on until `then_until` holds. The connection is closed
    after (etcd keeps the stream open)."""
    conn = http.client.HTTPConnection("127.0.0.1", server.client_port, timeout=20)
    try:
        conn.request("POST", "/v3/watch", body=body)
        resp = conn.getresponse()
        lines: list[bytes] = []
        deadline = time.monotonic() + 20
        for check, action in ((until, then), (then_until, None)):
            if check is None:
                break
            while not check([json.loads(line) for line in lines]):
                assert time.monotonic() < deadline, lines
                line = resp.readline()
                assert line.endswith(b"\n"), (line, lines)
                lines.append(line)
            if action is not None:
                action()
        return resp.status, resp.getheader("Content-Type", ""), lines
    finally:
        if conn.sock is not None:
            conn.sock.shutdown(socket.SHUT_RDWR)
        conn.close()


def by_watch(lines: list[bytes]) -> dict[str, list[bytes]]:
    """Each watch's responses in order (two watches' responses may interleave either way)."""
    out: dict[str, list[bytes]] = {}
    for line in lines:
        result = json.loads(line)["result"]
        out.setdefault(result.get("watch_id", "0"), []).append(normal(line))
    return out


def events(lines: list[dict], watch_id: str) -> int:
    return sum(
        len(r["result"].get("events", []))
        for r in lines
        if r["result"].get("watch_id", "0") == watch_id
    )


def test_watch_stream_with_events_and_a_cancel(pair: tuple[Server, Server]) -> None:
    etcd, ketch = pair
    streams = []
    for server in (etcd, ketch):
        for i in range(3):
            assert (
                post(server, "/v3/kv/put", {"key": b64(f"a/{i}"), "value": b64(f"v{i}")}).status
                == 200
            )
        post(server, "/v3/kv/deleterange", {"key": b64("a/0")})
        # Watch 7 replays a/ from revision 2; watch 9 is made and canceled at once.
        body = (
            json.dumps(
                {
                    "create_request": {
                        "key": b64("a/"),
                        "range_end": b64("a0"),
                        "start_revision": "2",
                        "watch_id": "7",
                        "prev_kv": True,
                    }
                }
            )
            + json.dumps({"create_request": {"key": b64("z"), "watch_id": "9"}})
            + "\n"
            + json.dumps({"cancel_request": {"watch_id": "9"}})
        ).encode()

        def replayed(lines: list[dict]) -> bool:
            canceled = any(
                r["result"].get("canceled") and r["result"].get("watch_id") == "9" for r in lines
            )
            return canceled and events(lines, "7") == 4

        def live_put(server: Server = server) -> None:
            assert (
                post(server, "/v3/kv/put", {"key": b64("a/9"), "value": b64("live")}).status == 200
            )

        streams.append(
            watch_lines(server, body, replayed, live_put, lambda lines: events(lines, "7") == 5)
        )
    (want_status, want_type, want), (got_status, got_type, got) = streams
    assert (got_status, got_type) == (want_status, want_type) == (200, "application/json")
    assert by_watch(got) == by_watch(want)


def test_watch_of_a_compacted_revision(pair: tuple[Server, Server]) -> None:
    etcd, ketch = pair
    streams = []
    for server in (etcd, ketch):
        for i in range(3):
            post(server, "/v3/kv/put", {"key": b64("k"), "value": b64(f"v{i}")})
        assert post(server, "/v3/kv/compaction", {"revision": "3"}).status == 200
        body = json.dumps({"create_request": {"key": b64("k"), "start_revision": "2"}}).encode()
        streams.append(
            watch_lines(server, body, lambda lines: any(r["result"].get("canceled") for r in lines))
        )
    assert streams[1][:2] == streams[0][:2]
    assert by_watch(streams[1][2]) == by_watch(streams[0][2])


def test_watch_request_that_is_not_json(pair: tuple[Server, Server]) -> None:
    etcd, ketch = pair
    # grpc-gateway passes the decoder's error on as it is: Unknown, 500.
    want = same(etcd, ketch, "/v3/watch", b'{"create_request": {"key": ')
    assert want.status == 500 and want.json()["code"] == 2, want


def test_the_examples_of_etcds_gateway_page(pair: tuple[Server, Server]) -> None:
    """etcd's Documentation/dev-guide/api_grpc_gateway.md, as its curl lines send them."""
    etcd, ketch = pair
    same(etcd, ketch, "/v3/kv/put", '{"key": "Zm9v", "value": "YmFy"}')
    same(etcd, ketch, "/v3/kv/range", '{"key": "Zm9v"}')
    # get all keys prefixed with "foo"
    same(etcd, ketch, "/v3/kv/range", '{"key": "Zm9v", "range_end": "Zm9w"}')
    # transactions, by create revision and by version
    same(
        etcd,
        ketch,
        "/v3/kv/txn",
        '{"compare":[{"target":"CREATE","key":"Zm9v","createRevision":"2"}],"success":[{"requestPut":{"key":"Zm9v",'
        '"value":"YmFy"}}]}',
    )
    same(
        etcd,
        ketch,
        "/v3/kv/txn",
        '{"compare":[{"version":"4","result":"EQUAL","target":"VERSION","key":"Zm9v"}],"success":[{"requestRange":'
        '{"key":"Zm9v"}}]}',
    )
    # watch: `curl -N http://localhost:2379/v3/watch -X POST -d '{"create_request": {"key":"Zm9v"} }' &` then a put
    streams = []
    for server in (etcd, ketch):

        def put(server: Server = server) -> None:
            post(server, "/v3/kv/put", '{"key": "Zm9v", "value": "YmFy"}')

        streams.append(
            watch_lines(
                server,
                b'{"create_request": {"key":"Zm9v"} }',
                lambda lines: len(lines) == 1,
                put,
                lambda lines: len(lines) == 2,
            )
        )
    assert streams[1][:2] == streams[0][:2]
    assert [normal(line) for line in streams[1][2]] == [normal(line) for line in streams[0][2]]
    # The page's note: /v3beta/ (etcd 3.3's prefix, deprecated) is taken as /v3/.
    same(etcd, ketch, "/v3beta/kv/range", '{"key": "Zm9v"}')
    # The page's authentication: with auth disabled, the same refusal from both.
    same(etcd, ketch, "/v3/auth/authenticate", '{"name": "root", "password": "pass"}')


def test_the_gateway_can_be_turned_off(make_server: ServerFactory) -> None:
    flags = ("--enable-grpc-gateway=false",)
    etcd, ketch = make_server("etcd", flags), make_server("ketch", flags)
    want = same(etcd, ketch, "/v3/kv/range", {"key": b64("foo")})
    assert want.status == 404, want
    # gRPC is still served.
    assert ketch.etcdctl("put", "foo", "bar")[0] == 0


def test_more_kv_and_maintenance_errors(pair: tuple[Server, Server]) -> None:
    etcd, ketch = pair
    # The same key twice in one txn.
    put = {"request_put": {"key": b64("d"), "value": b64("v")}}
    want = same(etcd, ketch, "/v3/kv/txn", {"success": [put, put]})
    assert want.status == 400, want
    # A future revision, and compacting past the head.
    same(etcd, ketch, "/v3/kv/range", {"key": b64("d"), "revision": "100"})
    same(etcd, ketch, "/v3/kv/compaction", {"revision": "100"})
    # Moving the leadership of a one-member cluster to a member that is not there.
    same(etcd, ketch, "/v3/maintenance/transfer-leadership", {"targetID": "12345"})


def test_lock_and_election_routes(pair: tuple[Server, Server]) -> None:
    etcd, ketch = pair
    for server in (etcd, ketch):
        post(server, "/v3/lease/grant", {"TTL": 60, "ID": 7000})
    lock = same(etcd, ketch, "/v3/lock/lock", {"name": b64("mylock"), "lease": "7000"})
    key = lock.json()["key"]
    # The key holds the lease ID in hex, which both servers were given.
    assert base64.b64decode(key) == b"mylock/1b58", lock
    same(etcd, ketch, "/v3/lock/unlock", {"key": key})
    campaign = same(
        etcd,
        ketch,
        "/v3/election/campaign",
        {"name": b64("e"), "lease": "7000", "value": b64("one")},
    )
    leader = campaign.json()["leader"]
    same(etcd, ketch, "/v3/election/proclaim", {"leader": leader, "value": b64("two")})
    same(etcd, ketch, "/v3/election/leader", {"name": b64("e")})
    same(etcd, ketch, "/v3/election/resign", {"leader": leader})
    same(etcd, ketch, "/v3/election/leader", {"name": b64("e")})


AUTH_ROUTES = {
    "enable": "AuthEnable",
    "disable": "AuthDisable",
    "status": "AuthStatus",
    "authenticate": "Authenticate",
    "user/add": "UserAdd",
    "user/get": "UserGet",
    "user/list": "UserList",
    "user/delete": "UserDelete",
    "user/changepw": "UserChangePassword",
    "user/grant": "UserGrantRole",
    "user/revoke": "UserRevokeRole",
    "role/add": "RoleAdd",
    "role/get": "RoleGet",
    "role/list": "RoleList",
    "role/delete": "RoleDelete",
    "role/grant": "RoleGrantPermission",
    "role/revoke": "RoleRevokePermission",
}


@pytest.mark.parametrize("route", sorted(AUTH_ROUTES))
def test_auth_routes_answer_as_their_grpc_method(ketch: Server, route: str) -> None:
    """Each /v3/auth route answers an empty request as ketch's gRPC method
    does (whatever ketch's Auth service answers, now or later)."""
    code, message = call(ketch, f"/etcdserverpb.Auth/{AUTH_ROUTES[route]}", b"")
    answer = post(ketch, f"/v3/auth/{route}", {})
    if code.name == "OK":
        assert answer.status == 200, answer
    else:
        assert (answer.json()["code"], answer.json()["message"]) == (code.value[0], message), answer


def comparable(answer: Answer) -> tuple[int, str, object]:
    """What must be the same from etcd 3.5 and ketch: an error as JSON (its
    key order is 3.4's in the reference), anything else as normalised bytes."""
    if answer.status != 200:
        return status_35(answer), answer.content_type, answer.json()
    return (
        answer.status,
        answer.content_type,
        re.sub(rb'"TTL":"59"', b'"TTL":"60"', normal(answer.body)),
    )


def test_leader_only_calls_through_a_follower(make_cluster: Callable[..., Cluster]) -> None:  # noqa: F811
    """LeaseTimeToLive, LeaseKeepAlive and MemberPromote asked of a
    follower's gateway are the leader's answers, as etcd's follower passes
    them on."""
    answers = []
    for kind in ("etcd", "ketch"):
        cluster = make_cluster(kind, 3)
        leader = cluster.leader()
        follower = next(m for m in cluster.running() if m is not leader).server
        got = [post(follower, "/v3/lease/grant", {"TTL": 60, "ID": 42})]
        got.append(post(follower, "/v3/lease/keepalive", {"ID": "42"}))
        got.append(post(follower, "/v3/lease/timetolive", {"ID": "42"}))
        got.append(post(follower, "/v3/lease/timetolive", {"ID": "43"}))
        got.append(post(follower, "/v3/cluster/member/promote", {"ID": "12345"}))
        answers.append([comparable(a) for a in got])
    assert answers[1] == answers[0]
