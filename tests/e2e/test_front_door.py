"""The client port as the engine serves it: one process, gRPC and HTTP on
one listener, and grpc-go's answers for what etcd does not serve."""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request

import grpc
import pytest

from ..support import Server
from .test_grpc import call


def children(pid: int) -> list[int]:
    """Processes whose parent is pid (read from /proc)."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.append(int(entry))
    return out


def test_one_process_serves_every_client(ketch: Server) -> None:
    assert ketch.proc is not None
    assert children(ketch.proc.pid) == []
    # With many connections, all of them are this process's.
    for i in range(8):
        assert ketch.etcdctl("put", f"k{i}", "v")[0] == 0


@pytest.mark.parametrize(
    "method",
    ["/etcdserverpb.KV/NoSuchMethod", "/no.such.Service/Method", "/etcdserverpb.Nope/Range"],
)
def test_unknown_methods_get_grpc_gos_answer(make_server, method: str) -> None:
    etcd = make_server("etcd")
    ketch = make_server("ketch")
    want = call(etcd, method, b"")
    assert want[0] == grpc.StatusCode.UNIMPLEMENTED
    assert call(ketch, method, b"") == want


def test_oversized_request_gets_grpc_gos_answer(make_server) -> None:
    """One byte over max-request-bytes + 512 KiB (etcd's gRPC receive limit)."""
    limit = ("--max-request-bytes", "1024")
    etcd, ketch = make_server("etcd", limit), make_server("ketch", limit)
    big = b"\x0a" + b"\x80\x80\x20" + b"k" * (512 * 1024 + 1024 + 1)  # a key of that many bytes
    want = call(etcd, "/etcdserverpb.KV/Put", big)
    assert want[0] == grpc.StatusCode.RESOURCE_EXHAUSTED, want
    assert call(ketch, "/etcdserverpb.KV/Put", big) == want


def _get(url: str) -> tuple[int, dict[str, str]]:
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def test_health_and_version_over_http_beside_grpc(ketch: Server) -> None:
    base = f"http://127.0.0.1:{ketch.client_port}"
    assert _get(f"{base}/health") == (200, {"health": "true", "reason": ""})
    status, version = _get(f"{base}/version")
    assert status == 200 and set(version) == {"etcdserver", "etcdcluster"}
    # gRPC on the same listener keeps working after HTTP/1.1 connections.
    assert ketch.etcdctl("put", "k", "v") == (0, "OK\n", "")
