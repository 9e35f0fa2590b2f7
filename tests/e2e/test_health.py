"""/health, /livez and /readyz beside the real etcd, in each state a single
member can be in: healthy, and NOSPACE (a small --quota-backend-bytes
filled, as test_nospace does). Where etcd 3.4 (the reference binary here)
and 3.5 differ, ketch answers as 3.5: /health's body has a "reason" field,
and /livez and /readyz (3.5.11+) exist. The no-leader and read-timeout
states need a cluster: tests/cluster/test_health.py."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request

import pytest
from ketch import Client, EtcdError

from ..conftest import ServerFactory
from ..support import Server

pytestmark = pytest.mark.timeout(120)

VALUE_64K = b"x" * 65536


def get(url: str, method: str = "GET") -> tuple[int, str, str]:
    """(status, content type, body)."""
    req = urllib.request.Request(url, method=method)
    try:
        with urllib.request.urlopen(req, timeout=15) as r:
            return r.status, r.headers.get("Content-Type", ""), r.read().decode()
    except urllib.error.HTTPError as e:
        body = e.read().decode()
        ctype = e.headers.get("Content-Type", "")
        e.close()
        return e.code, ctype, body


def health(server: Server, query: str = "") -> tuple[int, dict[str, str]]:
    status, _, body = get(f"{server.client_url}/health{query}")
    return status, json.loads(body)


def test_healthy(make_server: ServerFactory) -> None:
    etcd, ketch = make_server("etcd"), make_server("ketch")
    for query in ("", "?serializable=true", "?exclude=NOSPACE"):
        e_status, e_body = health(etcd, query)
        k_status, k_body = health(ketch, query)
        assert (e_status, e_body["health"]) == (k_status, k_body["health"]) == (200, "true")
        assert k_body == {"health": "true", "reason": ""}
    # Only GET, in Go's words.
    assert get(f"{etcd.client_url}/health", "POST")[::2] == get(f"{ketch.client_url}/health", "POST")[::2]
    assert get(f"{ketch.client_url}/health", "POST")[::2] == (405, "Method Not Allowed\n")


def test_livez_and_readyz_when_healthy(ketch: Server) -> None:
    """etcd 3.5's output: "ok" alone, the checks with ?verbose, ?exclude= leaves one out."""
    base = ketch.client_url
    assert get(f"{base}/livez") == (200, "text/plain; charset=utf-8", "ok\n")
    assert get(f"{base}/livez?verbose")[2] == "[+]serializable_read ok\nok\n"
    assert get(f"{base}/readyz")[::2] == (200, "ok\n")
    assert get(f"{base}/readyz?verbose")[2] == (
        "[+]data_corruption ok\n[+]serializable_read ok\n[+]linearizable_read ok\n[+]non_learner ok\nok\n"
    )
    assert get(f"{base}/readyz?verbose&exclude=linearizable_read&exclude=no_such_check")[2] == (
        "[+]data_corruption ok\n[+]serializable_read ok\n[+]non_learner ok\nok\n"
    )
    assert get(f"{base}/readyz/non_learner?verbose")[::2] == (200, "[+]non_learner ok\nok\n")
    assert get(f"{base}/readyz/nothing")[0] == 404
    assert get(f"{base}/livez", "POST")[::2] == (405, "Method Not Allowed\n")


def _fill_to_nospace(server: Server) -> None:
    with Client(server.endpoint) as c:
        for i in range(200):
            try:
                c.put(f"k{i:03}", VALUE_64K)
            except EtcdError as e:
                assert "database space exceeded" in str(e), e
                break
        else:
            pytest.fail("the quota never filled")
        deadline = time.monotonic() + 5
        while not c.alarms().alarms:
            assert time.monotonic() < deadline, "no NOSPACE alarm"
            time.sleep(0.05)


def test_nospace(make_server: ServerFactory) -> None:
    quota = ("--quota-backend-bytes", str(2 * 1024 * 1024))
    etcd, ketch = make_server("etcd", quota), make_server("ketch", quota)
    for server in (etcd, ketch):
        _fill_to_nospace(server)
    for query, want in (("", 503), ("?exclude=NOSPACE", 200), ("?exclude=CORRUPT", 503)):
        e_status, e_body = health(etcd, query)
        k_status, k_body = health(ketch, query)
        assert (e_status, e_body["health"]) == (k_status, k_body["health"]), query
        assert k_status == want, query
    assert health(ketch) == (503, {"health": "false", "reason": "ALARM NOSPACE"})
    _, ctype, body = get(f"{ketch.client_url}/health")
    # Go's http.Error: text/plain and a newline after the JSON.
    assert (ctype, body) == ("text/plain; charset=utf-8", '{"health":"false","reason":"ALARM NOSPACE"}\n')
    # NOSPACE is not data corruption: /readyz and /livez stay ok.
    assert get(f"{ketch.client_url}/readyz?verbose")[::2] == (
        200,
        "[+]data_corruption ok\n[+]serializable_read ok\n[+]linearizable_read ok\n[+]non_learner ok\nok\n",
    )
    assert get(f"{ketch.client_url}/livez")[0] == 200
