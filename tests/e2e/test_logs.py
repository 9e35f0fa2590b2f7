"""Logs like etcd's (--logger zap, its default in 3.5): one JSON object per
line with level, ts, caller and msg first, then structured fields; the
start-up lines tools grep for in etcd's words; --log-outputs (several) and
--log-level. Compared with the real etcd's lines (etcd 3.4 needs
--logger zap; 3.5 defaults to it). Rust's records and Python's share the
writer: both kinds appear in one stream in one shape."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from ..conftest import ServerFactory
from ..support import make_tls_files

pytestmark = pytest.mark.timeout(120)

# etcd 3.4: milliseconds; etcd 3.5 (and ketch): "2006-01-02T15:04:05.999999Z0700".
TS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,6})?(Z|[+-]\d{4})$")
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


def test_compaction_and_health_lines_are_zap_json_with_etcds_fields(make_server: ServerFactory) -> None:
    """A run through the paths that printed plain text before (physical
    compaction, auto compaction, /health failing on an excluded check):
    every line of the process's output parses as a zap record, and the
    compaction lines carry etcd's messages and field names."""
    ketch = make_server("ketch", ["--auto-compaction-mode", "periodic", "--auto-compaction-retention", "1s"])
    from ketch import Client

    with Client([ketch.endpoint]) as c:
        for i in range(20):
            c.put(f"k{i}", "v")
        rev = c.status().header.revision
        c.compact(rev - 1, physical=True, timeout=30)
    with urllib.request.urlopen(f"{ketch.client_url}/readyz?exclude=nothing", timeout=10) as r:
        assert r.status == 200
    deadline = time.monotonic() + 30
    while "starting auto periodic compaction" not in ketch.log_text():
        assert time.monotonic() < deadline, ketch.log_text()
        time.sleep(0.2)
    ketch.stop()
    records = _records(ketch.log_text())  # every line, or it fails here
    finished = [r for r in records if r["msg"] == "finished scheduled compaction"]
    assert finished, ketch.log_text()
    assert {"compact-revision", "took", "current-db-size-bytes", "current-db-size"} <= set(finished[0])
    assert re.fullmatch(r"[\d.]+(ns|\u00b5s|ms|s)", str(finished[0]["took"])), finished[0]
    auto = next(r for r in records if r["msg"] == "starting auto periodic compaction")
    assert auto["level"] == "info" and auto["compact-period"] == "1s" and isinstance(auto["revision"], int)


def _ketch_flags_error(*args: str) -> tuple[int, str]:
    p = subprocess.run(
        [sys.executable, "-m", "ketch", *args], capture_output=True, timeout=60, check=False
    )
    return p.returncode, p.stderr.decode()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        # Checked first, rotation or not.
        (("--log-outputs", "default,a.log"), 'multi logoutput for "default" is not supported yet'),
        # embed.ErrLogRotationInvalidLogOutput: no file, or more than one.
        ((), "--log-outputs requires a single file path when --log-rotate-config-json is defined"),
        (("--log-outputs", "a.log,b.log"),
         "--log-outputs requires a single file path when --log-rotate-config-json is defined"),
        (("--log-outputs", "a.log", "--log-rotation-config-json", '{"maxsize": 1'),
         "improperly formatted log rotation config: unexpected end of JSON input"),
        (("--log-outputs", "a.log", "--log-rotation-config-json", "{maxsize: 1}"),
         "improperly formatted log rotation config: invalid character 'm' looking for beginning of object key string"),
        (("--log-outputs", "a.log", "--log-rotation-config-json", '{"maxsize": "1"}'),
         "invalid log rotation config: json: cannot unmarshal string into Go struct field "
         "logRotationConfig.maxsize of type int"),
        (("--log-outputs", "a.log", "--log-rotation-config-json", '{"MaxAge": 1.5}'),
         "invalid log rotation config: json: cannot unmarshal number 1.5 into Go struct field "
         "logRotationConfig.maxage of type int"),
    ],
)  # fmt: skip
def test_log_rotation_is_checked_with_etcds_messages(tmp_path: Path, args: tuple[str, ...], message: str) -> None:
    """etcd 3.5's setupLogRotation (etcd 3.4 has no such flag, so its words come from 3.5's source)."""
    rc, err = _ketch_flags_error("--data-dir", str(tmp_path / "d"), "--enable-log-rotation", *args)
    assert (rc, err) == (1, f"ketch: error verifying flags, {message}. See 'ketch --help'.\n")


def test_rotation_settings_are_only_checked_with_rotation_on(make_server: ServerFactory, tmp_path: Path) -> None:
    """Without --enable-log-rotation etcd reads neither the JSON nor the outputs for it."""
    ketch = make_server("ketch", ["--log-rotation-config-json", "{bad"])
    rc, _, err = ketch.etcdctl("put", "k", "v")
    assert rc == 0, err


def test_a_full_log_file_is_rotated_as_lumberjack_rotates_it(make_server: ServerFactory, tmp_path: Path) -> None:
    """A log file already at maxsize (1 MB) is renamed to <name>-<UTC time>.log
    at the first line and a new file holds the lines from then on; with
    maxbackups 1 only the newest backup stays. `compress` is accepted and,
    as in etcd 3.5 (lumberjack v2.0.0 has no such field), changes nothing."""
    logs = tmp_path / "logs"
    logs.mkdir()
    log = logs / "ketch.log"
    old = logs / "ketch-2020-01-01T00-00-00.000.log"
    old.write_text("an older backup\n")
    log.write_bytes(b"x" * (1024 * 1024 - 20))
    ketch = make_server(
        "ketch",
        ["--log-outputs", str(log), "--enable-log-rotation",
         "--log-rotation-config-json", '{"maxsize": 1, "maxbackups": 1, "compress": true}'],
        start=False,
    )  # fmt: skip
    ketch.start(wait=False)
    deadline = time.monotonic() + 20
    while "ready to serve client requests" not in log.read_text(errors="replace"):
        assert time.monotonic() < deadline, ketch.log_text()
        time.sleep(0.1)
    rc, _, err = ketch.etcdctl("put", "k", "v")
    assert rc == 0, err
    while old.exists():  # deleted in the background after the rotation
        assert time.monotonic() < deadline, sorted(p.name for p in logs.iterdir())
        time.sleep(0.1)
    ketch.stop()
    backups = sorted(p for p in logs.iterdir() if p != log)
    assert len(backups) == 1, backups
    assert re.fullmatch(r"ketch-\d{4}-\d\d-\d\dT\d\d-\d\d-\d\d\.\d{3}\.log", backups[0].name), backups
    assert backups[0].read_bytes() == b"x" * (1024 * 1024 - 20)
    assert "ready to serve client requests" in _by_msg(_records(log.read_text()))
    assert ketch.log_text() == ""  # the file only
    assert not any(p.suffix == ".gz" for p in logs.iterdir())
