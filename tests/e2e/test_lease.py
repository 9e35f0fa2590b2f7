"""Leases end to end: etcdctl's lease commands against etcd and ketch, expiry,
restart, and the keep-alive stream.

Lease IDs that etcd picks come from its request-ID generator (member ID and
clock), so the differential test grants its lease through raw gRPC with a
chosen ID and blanks only the ID of the one lease etcdctl grants itself.
"""

from __future__ import annotations

import json
import re
import subprocess
import time

import grpc

from ..support import ETCDCTL, Server, free_port, subprocess_env
from ..wire import KV, _varint, decode
from .differential import Outcome, Step, normalize, step

LEASE = 0x2A


def _int_fields(**fields: int) -> bytes:
    """A message of varint fields given as f<number>=value."""
    return b"".join(_varint(int(k[1:]) << 3) + _varint(v) for k, v in fields.items())


def grpc_call(server: Server, method: str, request: bytes) -> tuple[grpc.StatusCode, str, bytes]:
    """(code, details, response bytes) of one unary call."""
    with grpc.insecure_channel(f"127.0.0.1:{server.client_port}") as channel:
        try:
            resp = channel.unary_unary(method)(request, timeout=10)
        except grpc.RpcError as e:
            return e.code(), e.details() or "", b""
    return grpc.StatusCode.OK, "", resp


def grant(server: Server, lease_id: int, ttl: int) -> tuple[grpc.StatusCode, str, dict]:
    code, details, resp = grpc_call(
        server, "/etcdserverpb.Lease/LeaseGrant", _int_fields(f1=ttl, f2=lease_id)
    )
    return code, details, decode(resp)


# Remaining seconds depend on when etcdctl's call lands after the grant
# (process start-up, load); etcd truncates, so 59 and 58 are both right.
_REMAINING = re.compile(r"remaining\(\d+s\)")
# The one lease etcdctl grants: its ID is etcd's request-ID generator's.
_GRANTED = re.compile(r"lease [0-9a-f]{16} granted with")


def test_lease_commands_match_etcd(make_server) -> None:
    lease = f"{LEASE:x}"
    steps = [
        step("lease", "list"),
        step("put", "--lease", lease, "held", "v"),
        step("put", "--lease", lease, "moved", "v"),
        step("put", "moved", "v2"),  # overwrite without the lease: detached
        step("get", "held", "-w", "json"),
        step("lease", "timetolive", lease),
        step("lease", "timetolive", lease, "--keys"),
        step("lease", "keep-alive", "--once", lease),
        step("put", "--lease", "ff", "k", "v"),
        step("lease", "revoke", "ff"),
        step("lease", "timetolive", "ff"),
        step("lease", "keep-alive", "--once", "ff"),
        step("lease", "revoke", lease),
        step("get", "", "--prefix", "-w", "json"),
        step("lease", "timetolive", lease, "--keys"),
        step("lease", "list"),
        step("lease", "grant", "1"),  # raised to the 2 s minimum
    ]
    client_port, peer_port = free_port(), free_port()
    outcomes: dict[str, list[Outcome]] = {}
    raw: dict[str, list[tuple[grpc.StatusCode, str]]] = {}
    for kind in ("etcd", "ketch"):
        server = make_server(kind, client_port=client_port, peer_port=peer_port)
        code, details, resp = grant(server, LEASE, 60)
        assert code == grpc.StatusCode.OK, details
        assert (resp[2], resp[3]) == ([LEASE], [60])
        raw[kind] = [
            grant(server, LEASE, 60)[:2],  # the ID is taken
            grant(server, 7, 9_000_000_001)[:2],  # above MaxLeaseTTL
            grpc_call(server, "/etcdserverpb.Lease/LeaseRevoke", _int_fields(f1=8))[:2],
        ]
        outcomes[kind] = [Outcome(*server.etcdctl(*s.args)) for s in steps]
        server.stop()

    assert raw["etcd"] == raw["ketch"] == [
        (grpc.StatusCode.FAILED_PRECONDITION, "etcdserver: lease already exists"),
        (grpc.StatusCode.OUT_OF_RANGE, "etcdserver: too large lease TTL"),
        (grpc.StatusCode.NOT_FOUND, "etcdserver: requested lease not found"),
    ]
    def blank(s: Step, o: Outcome) -> Outcome:
        out = _REMAINING.sub("remaining(<n>s)", normalize(s, o.stdout))
        return Outcome(o.rc, _GRANTED.sub("lease <id> granted with", out), normalize(s, o.stderr))

    report = []
    for s, w, g in zip(steps, outcomes["etcd"], outcomes["ketch"], strict=True):
        w, g = blank(s, w), blank(s, g)
        if w != g:
            report.append(f"\n$ {s}\n--- etcd\n{w}\n--- ketch\n{g}")
    assert not report, "".join(report)
    # What etcd said is what each step is there to probe.
    etcd = outcomes["etcd"]
    assert etcd[0].stdout == "found 1 leases\n000000000000002a\n"
    assert json.loads(etcd[4].stdout)["kvs"][0]["lease"] == LEASE
    assert etcd[6].stdout.endswith("attached keys([held])\n")
    assert etcd[7].stdout == "lease 000000000000002a keepalived with TTL(60)\n"
    assert etcd[8].stderr.endswith("Error: etcdserver: requested lease not found\n")
    assert etcd[9].stderr.endswith(
        "Error: failed to revoke lease (etcdserver: requested lease not found)\n"
    )
    assert etcd[10].stdout == "lease 00000000000000ff already expired\n"
    assert [kv["key"] for kv in json.loads(etcd[13].stdout)["kvs"]] == ["bW92ZWQ="]  # "moved"
    assert etcd[15].stdout == "found 0 leases\n"
    assert etcd[16].stdout.endswith("granted with TTL(2s)\n")


def _lease_id(out: str) -> str:
    m = re.match(r"lease ([0-9a-f]{16}) granted", out)
    assert m, out
    return m.group(1)


def _keys(kv: KV) -> list[bytes]:
    return [k.key for k in kv.range_all()[1]]


def test_expiry_deletes_all_keys_in_one_revision(ketch: Server) -> None:
    granted = time.monotonic()
    rc, out, err = ketch.etcdctl("lease", "grant", "2")
    assert rc == 0, err
    lease = _lease_id(out)
    for k in ("a", "b", "c"):
        assert ketch.etcdctl("put", "--lease", lease, k, "v")[0] == 0
    kv = KV(f"127.0.0.1:{ketch.client_port}")
    try:
        before, kvs = kv.range_all()
        assert [k.key for k in kvs] == [b"a", b"b", b"c"]
        while _keys(kv):
            assert time.monotonic() - granted < 3.0, "keys outlived their 2 s lease by a second"
            time.sleep(0.02)
        assert time.monotonic() - granted >= 2.0
        after, _ = kv.range_all()
    finally:
        kv.close()
    # One revision for all three deletes: the keys are there at `before`, gone at `before + 1`.
    assert after == before + 1
    rc, out, _ = ketch.etcdctl("get", "", "--prefix", "--rev", str(before), "--keys-only")
    assert out.split() == ["a", "b", "c"]
    assert ketch.etcdctl("get", "", "--prefix", "--rev", str(after), "--keys-only")[1] == ""
    assert ketch.etcdctl("lease", "timetolive", lease)[1] == f"lease {lease} already expired\n"


def test_restart_keeps_leases_and_keys(make_server) -> None:
    ketch = make_server("ketch")
    long = _lease_id(ketch.etcdctl("lease", "grant", "60")[1])
    short = _lease_id(ketch.etcdctl("lease", "grant", "2")[1])
    for key, lease in (("long", long), ("s1", short), ("s2", short)):
        assert ketch.etcdctl("put", "--lease", lease, key, "v")[0] == 0
    ketch.kill()
    ketch.start()
    restarted = time.monotonic()
    rc, out, err = ketch.etcdctl("lease", "timetolive", long, "--keys")
    assert rc == 0, err
    assert out.startswith(f"lease {long} granted with TTL(60s), remaining(")
    assert out.endswith("attached keys([long])\n")
    assert sorted(ketch.etcdctl("lease", "list")[1].split()[3:]) == sorted([long, short])
    assert ketch.etcdctl("get", "s1", "--print-value-only")[1] == "v\n"
    # A restarted leader gives the short lease its full TTL again (plus one
    # election timeout, as etcd's Promote), then it expires.
    kv = KV(f"127.0.0.1:{ketch.client_port}")
    try:
        while _keys(kv) != [b"long"]:
            assert time.monotonic() - restarted < 5.0, "the short lease never expired"
            time.sleep(0.05)
    finally:
        kv.close()
    assert time.monotonic() - restarted >= 1.5
    assert ketch.etcdctl("lease", "list")[1] == f"found 1 leases\n{long}\n"


def test_keep_alive_stream_keeps_a_short_lease(ketch: Server) -> None:
    lease = _lease_id(ketch.etcdctl("lease", "grant", "2")[1])
    assert ketch.etcdctl("put", "--lease", lease, "held", "v")[0] == 0
    cmd = [ETCDCTL, "--endpoints", ketch.endpoint, "lease", "keep-alive", lease]
    proc = subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=subprocess_env({"ETCDCTL_API": "3"}),
    )
    try:
        time.sleep(5)
        assert ketch.etcdctl("get", "held", "--print-value-only")[1] == "v\n"
    finally:
        proc.terminate()
        out, err = proc.communicate(timeout=10)
    lines = out.decode().splitlines()
    # etcdctl renews every TTL/3: more than one renewal in 5 s, every one answered TTL(2).
    assert len(lines) >= 5, (out, err)
    assert set(lines) == {f"lease {lease} keepalived with TTL(2)"}, (out, err)
    # With the stream gone, the lease runs out.
    stopped = time.monotonic()
    while ketch.etcdctl("get", "held", "--print-value-only")[1]:
        assert time.monotonic() - stopped < 4.0, "the lease outlived its keep-alives"
        time.sleep(0.1)
