"""etcd's accessController on the client port: `--cors` and `--host-whitelist`.

Each answer is compared with the real etcd's, started with the same lists:
the status, the headers (Date and Content-Length left out) and the body.
gRPC does not pass the controller in etcd (its h2 connections go straight
to the gRPC server), so a client dialing a host name not on the list still
works there.
"""

from __future__ import annotations

import http.client

import grpc
import pytest

from ..conftest import ServerFactory
from ..support import Server

ALLOWED = "http://a.example:8080"  # etcd 3.4 wants host:port in each --cors URL
LISTS = ("--cors", f"{ALLOWED},http://b.example:8080", "--host-whitelist", "127.0.0.1,localhost")


@pytest.fixture
def pair(make_server: ServerFactory) -> tuple[Server, Server]:
    return make_server("etcd", LISTS), make_server("ketch", LISTS)


def _ask(
    server: Server, method: str, path: str, headers: dict[str, str]
) -> tuple[int, list[tuple[str, str]], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", server.client_port, timeout=10)
    try:
        # skip_host: the Host header is the test's to choose.
        conn.putrequest(method, path, skip_host=True)
        for name, value in headers.items():
            conn.putheader(name, value)
        conn.endheaders()
        r = conn.getresponse()
        body = r.read()
    finally:
        conn.close()
    skip = ("date", "content-length", "transfer-encoding", "connection")
    return r.status, [(k.lower(), v) for k, v in r.getheaders() if k.lower() not in skip], body


def _same(pair: tuple[Server, Server], method: str, path: str, headers: dict[str, str]):
    """etcd's and ketch's answers, which must agree on the status and the
    CORS headers, and on everything for a refusal (the endpoints' own
    answers differ between etcd 3.4 and 3.5, which ketch follows)."""
    etcd, ketch = pair
    e, k = _ask(etcd, method, path, headers), _ask(ketch, method, path, headers)
    assert (e[0], _cors(e[1])) == (k[0], _cors(k[1])), (method, path, headers, e, k)
    if e[0] == 421:
        assert e == k, (method, path, headers, e, k)
    return e


def _cors(headers: list[tuple[str, str]]) -> dict[str, str]:
    return {k: v for k, v in headers if k.startswith("access-control")}


def test_a_listed_origin_gets_its_own_origin_back(pair) -> None:
    host = {"Host": f"127.0.0.1:{pair[0].client_port}"}
    status, headers, _ = _same(pair, "GET", "/health", {**host, "Origin": ALLOWED})
    assert status == 200
    assert _cors(headers) == {
        "access-control-allow-headers": "accept, content-type, authorization",
        "access-control-allow-methods": "POST, GET, OPTIONS, PUT, DELETE",
        "access-control-allow-origin": ALLOWED,
    }


def test_an_origin_not_listed_gets_no_cors_headers_and_options_still_200(pair) -> None:
    host = {"Host": "localhost"}
    for method, path in (("GET", "/health"), ("OPTIONS", "/health"), ("POST", "/v3/kv/range")):
        for origin in ({"Origin": "http://evil.example"}, {}):
            status, headers, _ = _same(pair, method, path, {**host, **origin})
            assert _cors(headers) == {}, (method, path, headers)
            if method == "OPTIONS":
                assert status == 200


def test_a_host_not_whitelisted_is_refused_with_421_and_etcds_text(pair) -> None:
    for host in ("evil.example", "evil.example:2379", "[::2]:2379", "127.0.0.2"):
        status, headers, body = _same(pair, "GET", "/health", {"Host": host, "Origin": ALLOWED})
        assert status == 421
        assert _cors(headers) == {}
        assert b"DNS Rebinding" in body and b"--host-whitelist" in body, body


def test_grpc_is_not_checked_against_the_host_whitelist(pair) -> None:
    """A gRPC call whose :authority is not on the list: etcd serves gRPC
    without the access controller, and so does ketch."""
    for server in pair:
        options = [("grpc.default_authority", "evil.example")]
        with grpc.insecure_channel(f"127.0.0.1:{server.client_port}", options=options) as channel:
            put = channel.unary_unary("/etcdserverpb.KV/Put")
            # PutRequest{key: "k", value: "v"}, encoded by hand.
            answer = put(b"\x0a\x01k\x12\x01v", timeout=10)
        assert answer.startswith(b"\x0a"), (server.kind, answer)  # a PutResponse with its header
