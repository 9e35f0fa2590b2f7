"""/metrics beside the real etcd: the same names, types, help and labels for
every metric issue #15 lists, counters that move with the requests that
move etcd's, --listen-metrics-urls, --metrics=extensive, and a scrape that
promtool reads without a complaint etcd's own scrape does not also draw."""

from __future__ import annotations

import shutil
import subprocess
import time
import urllib.error
import urllib.request

import pytest

from ..conftest import ServerFactory
from ..support import ETCDCTL, Server, free_port
from .metrics_text import LISTED, differences, parse, scrape, scrape_text

pytestmark = pytest.mark.timeout(120)


def _metrics_url_args() -> tuple[list[str], str]:
    url = f"http://127.0.0.1:{free_port()}"
    return ["--listen-metrics-urls", url, "--metrics", "extensive"], url


def _traffic(server: Server) -> None:
    """The same requests on both servers: puts, a get, a txn, a delete, a lease, a failing get."""
    for args in (
        ("put", "k1", "v1"),
        ("put", "k2", "v2"),
        ("get", "k1"),
        ("del", "k2"),
        ("lease", "grant", "60"),
    ):
        rc, _, err = server.etcdctl(*args)
        assert rc == 0, err
    rc, _, err = server.etcdctl("txn", stdin=b'mod("k1") > "0"\n\nput k3 v3\nget k1\n\nget k2\n\n')
    assert rc == 0, err


@pytest.fixture
def pair(make_server: ServerFactory) -> tuple[tuple[Server, str], tuple[Server, str]]:
    out = []
    for kind in ("etcd", "ketch"):
        args, url = _metrics_url_args()
        server = make_server(kind, args)
        _traffic(server)
        out.append((server, url))
    return out[0], out[1]


def test_every_listed_metric_has_etcds_name_type_help_and_labels(pair) -> None:
    (etcd, _), (ketch, _) = pair
    assert differences(scrape(etcd.client_url), scrape(ketch.client_url), LISTED) == []


def test_the_metrics_url_serves_metrics_and_health_only(pair) -> None:
    (_, etcd_metrics), (_, ketch_metrics) = pair
    for url in (etcd_metrics, ketch_metrics):
        assert "etcd_server_has_leader 1" in scrape_text(url)
        with urllib.request.urlopen(f"{url}/health", timeout=10) as r:
            assert r.status == 200
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(f"{url}/version", timeout=10)
        assert e.value.code == 404
    # The metrics URL's scrape is the client URL's.
    assert differences(scrape(etcd_metrics), scrape(ketch_metrics), LISTED) == []


def test_counters_move_as_etcds_do(pair) -> None:
    """After the same requests, the counters that count them agree."""
    (etcd, _), (ketch, _) = pair
    scrapes = {s.kind: scrape(s.client_url) for s in (etcd, ketch)}
    for name in (
        "etcd_mvcc_put_total",
        "etcd_mvcc_delete_total",
        "etcd_mvcc_txn_total",
        "etcd_debugging_lease_granted_total",
        "etcd_debugging_mvcc_keys_total",
        "etcd_server_has_leader",
        "etcd_server_is_leader",
        "etcd_server_leader_changes_seen_total",
        "etcd_server_quota_backend_bytes",
    ):
        assert scrapes["etcd"][name].value() == scrapes["ketch"][name].value(), name
    for kind, families in scrapes.items():
        handled = families["grpc_server_handled_total"]
        for method, count in (("Put", 2), ("DeleteRange", 1), ("Txn", 1), ("LeaseGrant", 1)):
            labels = {"grpc_method": method, "grpc_code": "OK", "grpc_type": "unary"}
            assert handled.value(**labels) >= count, (kind, method)
        started = families["grpc_server_started_total"]
        assert started.value(grpc_method="Txn", grpc_service="etcdserverpb.KV") == 1, kind
        # Every method has every code from the start, as go-grpc-prometheus initializes them.
        assert handled.value(grpc_method="Compact", grpc_code="Unavailable") == 0, kind
        fsync = families["etcd_disk_wal_fsync_duration_seconds"]
        fsyncs = [v for n, _, v in fsync.samples if n.endswith("_count")]
        assert fsyncs and fsyncs[0] > 0, kind
        sent = families["etcd_network_client_grpc_sent_bytes_total"].value()
        assert sent > 0, kind


def test_errors_are_counted_under_their_code(ketch: Server) -> None:
    before = scrape(ketch.client_url)["grpc_server_handled_total"]
    labels = {"grpc_method": "Range", "grpc_code": "InvalidArgument"}
    rc, _, _ = ketch.etcdctl("get", "")  # etcd: "key is not provided"
    assert rc != 0
    after = scrape(ketch.client_url)["grpc_server_handled_total"]
    assert after.value(**labels) == before.value(**labels) + 1


def test_a_watch_stream_is_counted_when_it_ends(ketch: Server) -> None:
    proc = subprocess.Popen(
        # From revision 1: the put below is seen however late etcdctl's watch starts.
        [*ketch_etcdctl(ketch), "watch", "w", "--rev", "1"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
    )
    try:
        rc, _, err = ketch.etcdctl("put", "w", "1")
        assert rc == 0, err
        assert proc.stdout is not None
        assert proc.stdout.readline() == b"PUT\n"
        families = scrape(ketch.client_url)
        labels = {"grpc_method": "Watch", "grpc_type": "bidi_stream"}
        assert families["grpc_server_started_total"].value(**labels) == 1
        assert families["grpc_server_msg_received_total"].value(**labels) == 1
        assert families["grpc_server_msg_sent_total"].value(**labels) >= 2  # created, then the event
        assert families["etcd_debugging_mvcc_watcher_total"].value() == 1
    finally:
        proc.kill()
        proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
    # The client went away: grpc-go counts the stream as Canceled.
    for _ in range(100):
        families = scrape(ketch.client_url)
        if families["grpc_server_handled_total"].value(grpc_method="Watch", grpc_code="Canceled") == 1:
            break
        time.sleep(0.05)  # until the server sees the stream end
    assert families["grpc_server_handled_total"].value(grpc_method="Watch", grpc_code="Canceled") == 1
    assert families["etcd_debugging_mvcc_watcher_total"].value() == 0


def ketch_etcdctl(server: Server) -> list[str]:
    return [ETCDCTL, "--endpoints", server.endpoint]


def test_handling_seconds_only_with_extensive_metrics(make_server: ServerFactory) -> None:
    for kind in ("etcd", "ketch"):
        basic = make_server(kind)
        assert "grpc_server_handling_seconds" not in scrape(basic.client_url), kind
        basic.stop()
    args, _ = _metrics_url_args()
    extensive = make_server("ketch", args)
    rc, _, err = extensive.etcdctl("put", "a", "b")
    assert rc == 0, err
    h = scrape(extensive.client_url)["grpc_server_handling_seconds"]
    assert h.kind == "histogram"
    counts = [v for n, ls, v in h.samples if n.endswith("_count") and ls["grpc_method"] == "Put"]
    assert counts == [1]


def _promtool_findings(text: str) -> tuple[int, set[str]]:
    promtool = shutil.which("promtool")
    assert promtool, "promtool is missing: install Debian's prometheus package (.ci/dev test does)"
    r = subprocess.run(
        [promtool, "check", "metrics"], input=text.encode(), capture_output=True, timeout=30, check=False
    )
    lines = {line.strip() for line in (r.stdout + r.stderr).decode().splitlines() if line.strip()}
    return r.returncode, lines


def test_promtool_finds_nothing_it_does_not_find_in_etcds_scrape(pair) -> None:
    (etcd, _), (ketch, _) = pair
    _, etcd_findings = _promtool_findings(scrape_text(etcd.client_url))
    rc, ketch_findings = _promtool_findings(scrape_text(ketch.client_url))
    # promtool's lint flags etcd's own gauge names ending in _total; nothing else.
    assert ketch_findings <= etcd_findings, ketch_findings - etcd_findings
    assert not any("error" in f for f in ketch_findings), ketch_findings
    # 3: lint findings only; 1 would be a scrape promtool cannot parse.
    assert rc in (0, 3)
    assert parse(scrape_text(ketch.client_url))["process_open_fds"].value() > 0


def _headers(url: str, method: str = "GET") -> tuple[int, list[tuple[str, str]]]:
    """Status and headers (Date and Content-Length left out: they differ by nature)."""
    request = urllib.request.Request(url, method=method, headers={"Origin": "http://a.example"})
    try:
        with urllib.request.urlopen(request, timeout=10) as r:
            status, headers = r.status, r.getheaders()
    except urllib.error.HTTPError as e:
        status, headers = e.code, list(e.headers.items())
    # Header names are case-insensitive; connection management differs by nature.
    skip = ("date", "content-length", "transfer-encoding", "connection")
    return status, [(k.lower(), v) for k, v in headers if k.lower() not in skip]


def test_health_answers_are_counted_as_etcds(pair) -> None:
    """Every /health answer counts in etcd_server_health_success (or _failures);
    both families are there from the start, under etcd's help and type."""
    (etcd, etcd_metrics), (ketch, ketch_metrics) = pair
    moved = {}
    for server, url in ((etcd, etcd_metrics), (ketch, ketch_metrics)):
        before = scrape(server.client_url)
        for base in (server.client_url, url, server.client_url):
            with urllib.request.urlopen(f"{base}/health", timeout=10) as r:
                assert r.status == 200
        after = scrape(server.client_url)
        moved[server.kind] = tuple(
            after[n].value() - before[n].value()
            for n in ("etcd_server_health_success", "etcd_server_health_failures")
        )
    assert moved == {"etcd": (3, 0), "ketch": (3, 0)}
    names = ("etcd_server_health_success", "etcd_server_health_failures")
    assert differences(scrape(etcd.client_url), scrape(ketch.client_url), names) == []


def test_cors_headers_on_the_client_port_only_as_etcd_answers(pair) -> None:
    """With no --cors, etcd allows every origin: its three CORS headers on
    every HTTP answer of the client port (sorted first, as Go writes them),
    OPTIONS answered 200 at once; none on a metrics URL."""
    (etcd, etcd_metrics), (ketch, ketch_metrics) = pair
    for path, method in (("/health", "GET"), ("/version", "GET"), ("/health", "OPTIONS"), ("/nothing", "GET")):
        e = _headers(f"{etcd.client_url}{path}", method)
        k = _headers(f"{ketch.client_url}{path}", method)
        assert e[0] == k[0], (path, method, e, k)
        cors = [h for h in e[1] if h[0].startswith("access-control")]
        assert len(cors) == 3, e
        assert [h for h in k[1] if h[0].startswith("access-control")] == cors, (path, method, k)
        assert k[1][:3] == cors, k
    for url in (etcd_metrics, ketch_metrics):
        status, headers = _headers(f"{url}/health")
        assert status == 200 and not [h for h in headers if h[0].startswith("access-control")], headers


def test_etcds_other_member_gauges_are_there(pair) -> None:
    """The gauges etcd's dashboards and kube-prometheus read beside the listed
    ones: the cluster version, learner state, etcd's own fd gauges, and the
    defragment's duration and in-flight gauge."""
    (etcd, _), (ketch, _) = pair
    e, k = scrape(etcd.client_url), scrape(ketch.client_url)
    names = (
        "etcd_cluster_version",
        "etcd_server_is_learner",
        "os_fd_used",
        "os_fd_limit",
        "etcd_disk_backend_defrag_duration_seconds",
        "etcd_disk_defrag_inflight",
    )
    assert differences(e, k, names) == []
    assert k["etcd_server_is_learner"].value() == e["etcd_server_is_learner"].value() == 0
    assert k["os_fd_used"].value() > 0 and k["os_fd_limit"].value() > 0


# etcd's debugging, lease, WAL and hash families beyond the list,
# which etcd's Grafana dashboard and runbooks also read.
DEBUGGING = (
    "etcd_debugging_auth_revision",
    "etcd_debugging_lease_renewed_total",
    "etcd_debugging_lease_revoked_total",
    "etcd_debugging_mvcc_compact_revision",
    "etcd_debugging_mvcc_current_revision",
    "etcd_debugging_mvcc_db_compaction_keys_total",
    "etcd_debugging_mvcc_db_total_size_in_bytes",
    "etcd_debugging_mvcc_delete_total",
    "etcd_debugging_mvcc_events_total",
    "etcd_debugging_mvcc_put_total",
    "etcd_debugging_mvcc_range_total",
    "etcd_debugging_mvcc_txn_total",
    "etcd_debugging_mvcc_watch_stream_total",
    "etcd_debugging_server_lease_expired_total",
    "etcd_disk_wal_write_bytes_total",
    "etcd_mvcc_hash_duration_seconds",
    "etcd_mvcc_hash_rev_duration_seconds",
)


def test_etcds_debugging_families_are_there_and_move_alike(pair) -> None:
    (etcd, _), (ketch, _) = pair
    for server in (etcd, ketch):
        for args in (("endpoint", "hashkv"), ("compact", "3")):
            rc, _, err = server.etcdctl(*args)
            assert rc == 0, err
        rc, _, err = server.etcdctl("lease", "grant", "1")
        assert rc == 0, err
    # The 1 s lease expires and its revoke is applied (etcd checks every 500 ms).
    deadline = time.monotonic() + 15
    while True:
        e, k = scrape(etcd.client_url), scrape(ketch.client_url)
        expired = [s["etcd_debugging_server_lease_expired_total"].value() for s in (e, k)]
        if expired == [1, 1] or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert differences(e, k, DEBUGGING) == []
    assert expired == [1, 1]
    same = (
        "etcd_debugging_mvcc_current_revision",
        "etcd_debugging_mvcc_compact_revision",
        "etcd_debugging_lease_revoked_total",
        "etcd_debugging_mvcc_put_total",
        "etcd_debugging_mvcc_delete_total",
        "etcd_debugging_mvcc_txn_total",
    )
    assert {n: k[n].value() for n in same} == {n: e[n].value() for n in same}
    assert k["etcd_debugging_mvcc_compact_revision"].value() == 3
    for n in ("etcd_debugging_mvcc_put_total", "etcd_debugging_mvcc_delete_total", "etcd_debugging_mvcc_txn_total"):
        assert k[n].value() == k[n.replace("_debugging", "")].value(), n
    assert k["etcd_disk_wal_write_bytes_total"].value() > 0
    assert k["etcd_debugging_mvcc_db_total_size_in_bytes"].value() == k["etcd_mvcc_db_total_size_in_bytes"].value()
    hashes = [v for n, _, v in k["etcd_mvcc_hash_rev_duration_seconds"].samples if n.endswith("_count")]
    assert hashes == [1]
