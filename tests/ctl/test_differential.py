"""The same command through etcdctl 3.4 and through ketchctl, against the same
server (etcd, then ketch): stdout byte for byte, the exit status, and the
`Error: ...` lines must agree."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time

import pytest
from ketch.testing import Member

from .conftest import ETCDCTL, Outcome, normalize, run

FORMATS = ["simple", "json", "fields"]

READS = [
    ["get", "d/a"],
    ["get", "d/", "--prefix"],
    ["get", "d/", "--prefix", "--limit", "2"],
    ["get", "d/b", "--from-key", "--keys-only"],
    ["get", "", "--prefix", "--keys-only"],
    ["get", "d/", "--prefix", "--sort-by", "VALUE", "--order", "DESCEND"],
    ["get", "d/", "--prefix", "--sort-by", "version", "--consistency", "s"],
    ["get", "d/", "--prefix", "--print-value-only"],
    ["get", "d/bin", "--hex"],
    ["get", "d/quote"],
    ["get", "nothing-here"],
    ["member", "list"],
    ["endpoint", "status"],
    ["endpoint", "status", "--cluster"],
    ["lease", "timetolive", "1234"],
]

ERRORS = [
    ["get"],
    ["get", "k", "--prefix", "--from-key"],
    ["get", "k", "--order", "sideways"],
    ["get", "k", "--rev", "100000"],
    ["get", "k", "-w", "table"],
    ["get", "k", "-w", "yaml"],
    ["get", "k", "--print-value-only", "-w", "json"],
    ["put"],
    ["put", "k", "v", "--lease", "zz"],
    ["put", "k", "v", "--ignore-value"],
    ["put", "", "v"],
    ["del"],
    ["compaction"],
    ["compaction", "x"],
    ["txn", "arg"],
    ["lease", "grant"],
    ["lease", "grant", "ten"],
    ["lease", "revoke", "zz"],
    ["lease", "keep-alive"],
    ["bogus"],
]


@pytest.fixture(scope="module")
def seeded(server: Member) -> Member:
    with server.client() as c:
        for k, v in [("a", "1"), ("b", "3"), ("c", "2"), ("b", "33"), ("quote", 'x"\ty\u00e9\x01')]:
            c.put("d/" + k, v)
        c.put("d/bin", b"\x00\xff")
    return server


def same(server: Member, args: list[str], stdin: bytes | None = None, writes: bool = False) -> Outcome:
    want = run("etcdctl", server.endpoint, args, stdin)
    got = run("ketchctl", server.endpoint, args, stdin)
    if writes:
        want.stdout, got.stdout = normalize(want.stdout), normalize(got.stdout)
    assert (got.rc, got.stdout, got.errors) == (want.rc, want.stdout, want.errors), args
    return want


@pytest.mark.parametrize("fmt", FORMATS)
def test_reads(seeded: Member, fmt: str) -> None:
    outcomes = [same(seeded, [*args, "-w", fmt]) for args in READS]
    failed = [args for args, o in zip(READS, outcomes, strict=True) if o.rc != 0]
    # --print-value-only is for the simple format only: etcdctl exits 128 for the others.
    expected = [] if fmt == "simple" else [["get", "d/", "--prefix", "--print-value-only"]]
    assert failed == expected
    assert outcomes[1].stdout


def test_tables(seeded: Member) -> None:
    # Only member list and endpoint * print tables; the rest exit 4.
    for args in (["member", "list"], ["endpoint", "status"], ["endpoint", "status", "--cluster"]):
        assert same(seeded, [*args, "-w", "table"]).stdout.startswith(b"+-")
    assert same(seeded, ["get", "d/a", "-w", "table"]).rc == 4


def test_errors(seeded: Member) -> None:
    for args in ERRORS:
        o = same(seeded, args)
        assert o.rc != 0 and o.errors and o.errors[-1].startswith("Error: "), args


def test_unknown_flag(seeded: Member) -> None:
    # Both print the command's usage text too (tests/ctl/test_usage.py compares more of it).
    want = run("etcdctl", seeded.endpoint, ["get", "k", "--bogus"])
    got = run("ketchctl", seeded.endpoint, ["get", "k", "--bogus"])
    assert got.rc == want.rc == 1 and got.errors[-1] == want.errors[-1] == "Error: unknown flag: --bogus"
    assert got.stdout.replace(b"ketchctl", b"etcdctl") == want.stdout


def test_compacted_revision_error(seeded: Member) -> None:
    with seeded.client() as c:
        rev = c.put("d/compact", "x").header.revision
        c.compact(rev)
    o = same(seeded, ["get", "d/a", "--rev", str(rev - 1)])
    assert o.errors == ["Error: etcdserver: mvcc: required revision has been compacted"]


@pytest.mark.parametrize("fmt", FORMATS)
def test_writes(seeded: Member, fmt: str) -> None:
    w = ["-w", fmt]
    # Each write leaves the state the second tool's run expects (same prev values).
    same(seeded, ["put", "w/k", "v", *w], writes=True)
    same(seeded, ["put", "w/k", "v", "--prev-kv", *w], writes=True)
    same(seeded, ["put", "w/k", "--ignore-value", "--prev-kv", *w], writes=True)
    same(seeded, ["put", "w/stdin", *w], stdin=b"from stdin\n", writes=True)
    same(seeded, ["put", "--", "w/dash", "-v", *w], writes=True)
    same(seeded, ["del", "w/none", "--prev-kv", *w], writes=True)
    same(seeded, ["del", "w/none", "--prefix", *w], writes=True)
    txn = b'val("w/k") = "v"\nmod("w/k") > "0"\n\nget w/k\nput w/k v\n\nget w/none\n\n'
    same(seeded, ["txn", *w], stdin=txn, writes=True)
    same(seeded, ["txn", "-i", *w], stdin=txn, writes=True)
    failing = b'ver("w/none") > "0"\n\nput w/k v\n\nget w/ --prefix --keys-only\ndel w/none\n\n'
    o = same(seeded, ["txn", *w], stdin=failing, writes=True)
    assert o.rc == 0 and (fmt != "simple" or o.stdout.startswith(b"FAILURE\n"))


def test_txn_input_errors(seeded: Member) -> None:
    for stdin in [b"", b'bogus("k") = "v"\n\n\n\n', b'val("k") = v\n\n\n\n', b"\nput\n\n\n",
                  b"\nfoo k v\n\n\n", b'\n\n']:  # fmt: skip
        o = same(seeded, ["txn"], stdin=stdin)
        assert o.rc == 3, stdin


def test_compaction(seeded: Member) -> None:
    with seeded.client() as c:
        rev = c.put("c/k", "1").header.revision
    a = run("etcdctl", seeded.endpoint, ["compaction", str(rev - 1)])
    b = run("ketchctl", seeded.endpoint, ["compaction", str(rev)])
    assert (a.rc, a.stdout) == (0, f"compacted revision {rev - 1}\n".encode())
    assert (b.rc, b.stdout) == (0, f"compacted revision {rev}\n".encode())
    same(seeded, ["compaction", str(rev - 1)])  # now behind the compaction: the same error


@pytest.mark.parametrize("fmt", ["simple", "json", "fields", "table"])
def test_endpoint_health(seeded: Member, fmt: str) -> None:
    took = re.compile(r"\d+(\.\d+)?(ns|µs|ms|s)")

    def table(out: bytes) -> str:  # the took column's width follows the duration's
        return re.sub(r"-+", "-", re.sub(r" +", " ", took.sub("T", out.decode())))

    for args in (["endpoint", "health"], ["endpoint", "health", "--cluster"]):
        want = run("etcdctl", seeded.endpoint, [*args, "-w", fmt])
        got = run("ketchctl", seeded.endpoint, [*args, "-w", fmt])
        norm = [took.sub("T", ln) for ln in want.errors], [took.sub("T", ln) for ln in got.errors]
        assert got.rc == want.rc == 0
        assert norm[1] == norm[0]
        assert table(got.stdout) == table(want.stdout)


def test_unreachable_endpoint(tmp_path: object) -> None:
    from ketch.testing import free_port

    dead = f"127.0.0.1:{free_port()}"
    for args in (["get", "k"], ["put", "k", "v"]):
        want = run("etcdctl", dead, [*args, "--command-timeout", "1s", "--dial-timeout", "1s"])
        got = run("ketchctl", dead, [*args, "--command-timeout", "1s", "--dial-timeout", "1s"])
        assert (got.rc, got.stdout, got.errors) == (want.rc, want.stdout, want.errors)
        assert want.errors == ["Error: context deadline exceeded"]


def test_environment_variables(seeded: Member) -> None:
    env = {"ETCDCTL_WRITE_OUT": "json", "ETCDCTL_DIAL_TIMEOUT": "3s"}
    a = run("etcdctl", seeded.endpoint, ["get", "d/a"], env=env)
    b = run("ketchctl", seeded.endpoint, ["get", "d/a"], env=env)
    assert b.stdout == a.stdout and a.stdout.startswith(b'{"header"')


# -- watch and lease: the real etcd (ketch has neither yet) ---------------------


def _watch_both(server: Member, args: list[str], actions: list[list[str]]) -> tuple[bytes, bytes]:
    env = {"ETCDCTL_API": "3"}
    procs = [
        subprocess.Popen([ETCDCTL, "--endpoints", server.endpoint, "watch", *args],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env),
        subprocess.Popen([sys.executable, "-m", "ketch.ctl", "--endpoints", server.endpoint,
                          "watch", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env),
    ]  # fmt: skip
    time.sleep(1.5)  # both watches established
    with server.client() as c:
        for a in actions:
            if a[0] == "put":
                c.put(a[1], a[2])
            else:
                c.delete(a[1])
    time.sleep(1.0)
    outs = []
    for p in procs:
        p.send_signal(signal.SIGTERM)
        out, _ = p.communicate(timeout=10)
        outs.append(out)
    return outs[0], outs[1]


@pytest.mark.parametrize("fmt", FORMATS)
def test_watch(server: Member, fmt: str) -> None:
    acts = [["put", f"wt{fmt}/a", "1"], ["put", f"wt{fmt}/b", "2"], ["del", f"wt{fmt}/a"]]
    want, got = _watch_both(server, [f"wt{fmt}/", "--prefix", "--prev-kv", "-w", fmt], acts)
    assert got == want and want.count(b"\n") >= 3


def test_watch_errors(server: Member) -> None:
    same(server, ["watch"])
    same(server, ["watch", "a", "b", "--prefix"])


@pytest.mark.parametrize("fmt", FORMATS)
def test_lease(server: Member, fmt: str) -> None:
    w = ["-w", fmt]
    with server.client() as c:
        lease = c.grant(600)
        c.put(f"lk{fmt}", "v", lease=lease.id)
    lid = f"{lease.id:x}"
    same(server, ["lease", "timetolive", lid, "--keys", *w])
    same(server, ["lease", "list", *w])
    same(server, ["lease", "keep-alive", "--once", lid, *w])
    same(server, ["lease", "timetolive", "ffff", *w])
    same(server, ["lease", "revoke", "ffff", *w])
    same(server, ["lease", "keep-alive", "--once", "ffff", *w])
    ids = []
    for tool in ("etcdctl", "ketchctl"):
        o = run(tool, server.endpoint, ["lease", "grant", "60", *w])
        ids.append(re.search(rb"\d{10,}|[0-9a-f]{16}", o.stdout).group())  # type: ignore[union-attr]
        assert o.rc == 0
    want = run("etcdctl", server.endpoint, ["lease", "grant", "60", *w])
    got = run("ketchctl", server.endpoint, ["lease", "grant", "60", *w])
    pattern = rb"\d{10,}|[0-9a-f]{16}"
    assert normalize(re.sub(pattern, b"ID", got.stdout)) == normalize(re.sub(pattern, b"ID", want.stdout))
    for lease_hex in [lid]:
        a = run("etcdctl", server.endpoint, ["lease", "revoke", lease_hex, *w])
        b = run("ketchctl", server.endpoint, ["lease", "revoke", lease_hex, *w])
        assert a.rc == 0 and b.rc == 1  # the second finds it revoked: etcd's error, as etcdctl says it
        assert b.errors == ["Error: failed to revoke lease (etcdserver: requested lease not found)"]


def test_lease_keep_alive_stream(server: Member) -> None:
    with server.client() as c:
        lid = f"{c.grant(3).id:x}"
    outs = []
    for cmd in ([ETCDCTL], [sys.executable, "-m", "ketch.ctl"]):
        p = subprocess.Popen([*cmd, "--endpoints", server.endpoint, "lease", "keep-alive", lid],
                             stdout=subprocess.PIPE, env={"ETCDCTL_API": "3"})  # fmt: skip
        time.sleep(1.5)
        p.send_signal(signal.SIGTERM)
        outs.append(p.communicate(timeout=10)[0])
    line = f"lease {int(lid, 16):016x} keepalived with TTL(3)\n".encode()
    assert outs[0].startswith(line) and outs[1].startswith(line)
    assert set(outs[1].splitlines()) == {line.rstrip()}
