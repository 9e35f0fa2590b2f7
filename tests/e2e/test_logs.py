"""Logs like etcd's (--logger zap, its default in 3.5): one JSON object per
line with level, ts, caller and msg first, then structured fields; the
start-up lines tools grep for in etcd's words; --log-outputs (several) and
--log-level. Compared with the real etcd's lines (etcd 3.4 needs
--logger zap; 3.5 defaults to it). Rust's records and Python's share the
writer: both kinds appear in one stream in one shape."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest

from ..conftest import ServerFactory
from ..support import make_tls_files

pytestmark = pytest.mark.timeout(120)

TS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
CALLER = re.compile(r"^[\w./-]+\.\w+:\d+$")


def _records(text: str) -> list[dict[str, object]]:
    lines = [line for line in text.splitlines() if line.strip()]
    records = [json.loads(line) for line in lines]
    for line, r in zip(lines, records, strict=True):
        assert list(r)[:4] == ["level", "ts", "caller", "msg"], line
        assert r["level"] in ("debug", "info", "warn", "error", "panic", "fatal"), line
        assert TS.match(str(r["ts"])), line
        assert CALLER.match(str(r["caller"])), line
    return records


def _by_msg(records: list[dict[str, object]]) -> dict[str, dict[str, object]]:
    return {str(r["msg"]): r for r in records}


def test_every_line_is_zap_json_with_etcds_start_up_lines(make_server: ServerFactory) -> None:
    etcd = make_server("etcd", ["--logger", "zap"], start=False)
    etcd.start(wait=False)
    ketch = make_server("ketch")
    deadline = time.monotonic() + 20
    while "serving client traffic insecurely" not in etcd.log_text():
        assert time.monotonic() < deadline, etcd.log_text()
        time.sleep(0.05)
    e = _by_msg(_records(etcd.log_text()))
    k = _by_msg(_records(ketch.log_text()))
    for msg in (
        "serving client traffic insecurely; this is strongly discouraged!",
        "serving peer traffic",
        "published local member to cluster through raft",
    ):
        assert msg in e and msg in k, msg
        # The fields tools read are there under etcd's names.
        shared = {"address", "local-member-id", "cluster-id", "local-member-attributes"}
        assert set(e[msg]) & shared <= set(k[msg]), (msg, e[msg], k[msg])
    assert k["serving client traffic insecurely; this is strongly discouraged!"]["address"] == (
        f"127.0.0.1:{ketch.client_port}"
    )
    assert k["published local member to cluster through raft"]["local-member-attributes"] == (
        f"{{Name:default ClientURLs:[{ketch.client_url}]}}"
    )
    assert "ready to serve client requests" in k


def test_log_outputs_and_level(make_server: ServerFactory, tmp_path: Path) -> None:
    a, b = tmp_path / "a.log", tmp_path / "b.log"
    ketch = make_server("ketch", ["--log-outputs", f"{a},{b}", "--log-level", "warn"], start=False)
    ketch.start(wait=False)
    # Nothing at info level, and nothing on stderr: the files only.
    deadline = time.monotonic() + 20
    while True:
        rc, _, err = ketch.etcdctl("put", "k", "v", timeout=5)
        if rc == 0 or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert rc == 0, err
    ketch.stop()
    assert a.read_text() == b.read_text()
    assert all(r["level"] != "info" for r in _records(a.read_text()))
    assert ketch.log_text() == ""


def test_rust_and_python_records_share_the_writer(make_server: ServerFactory, tmp_path: Path) -> None:
    """A Rust warning (an unknown --cipher-suites name, from rust/src/server/tls.rs)
    and Python's start-up lines in one file, each a zap line."""
    (tmp_path / "tls").mkdir()
    tls = make_tls_files(tmp_path / "tls")
    out = tmp_path / "out.log"
    ketch = make_server(
        "ketch",
        [
            "--cert-file", str(tls.server_cert), "--key-file", str(tls.server_key),
            "--cipher-suites", "TLS_ECDHE_RSA_WITH_3DES_EDE_CBC_SHA,TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
            "--log-outputs", str(out),
        ],
        scheme="https", client_tls=(tls.ca, None, None), start=False,
    )  # fmt: skip
    ketch.start(wait=False)
    deadline = time.monotonic() + 20
    while "ready to serve client requests" not in (out.read_text() if out.exists() else ""):
        assert time.monotonic() < deadline, out.read_text() if out.exists() else ketch.log_text()
        time.sleep(0.05)
    records = _records(out.read_text())
    callers = {str(r["caller"]).split("/")[0] for r in records}
    assert "ketch" in callers and "server" in callers, callers
    assert any("cipher-suites" in str(r["msg"]) and r["level"] == "warn" for r in records)
    assert "serving client traffic securely" in _by_msg(records)
