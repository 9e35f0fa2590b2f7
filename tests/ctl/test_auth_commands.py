"""ketchctl's auth, user and role commands against etcdctl 3.4, and ketch's
Auth service against etcd's: one script of commands (happy and unhappy) is
run three ways on fresh servers (etcdctl on etcd, etcdctl on ketch,
ketchctl on etcd) and every exit status, stdout and error line must agree."""

from __future__ import annotations

import re

import pytest
from ketch.testing import member

from .conftest import Outcome, normalize, run

ROOT = ["--user", "root:rootpw"]
ALICE = ["--user", "alice:apw"]

# (arguments, stdin). Output formats are exercised where etcdctl prints them.
SCRIPT: list[tuple[list[str], bytes | None]] = [
    (["auth", "enable"], None),  # no root user yet
    (["user", "add", "root", "--new-user-password", "rootpw"], None),
    (["user", "add", "root", "--new-user-password", "again"], None),  # exists
    (["user", "add", "alice:apw"], None),
    (["user", "add", "bob", "--interactive=false"], b"bobpw\n"),
    (["user", "add", "carol", "--no-password"], None),
    (["user", "add", ":pw"], None),
    (["user", "add"], None),
    (["role", "add", "r"], None),
    (["role", "add", "r"], None),  # exists
    (["role", "add", "w", "-w", "json"], None),
    (["role", "add", "f", "-w", "fields"], None),
    (["role", "grant-permission", "r", "readwrite", "foo", "--prefix"], None),
    (["role", "grant-permission", "r", "read", "k1"], None),
    (["role", "grant-permission", "r", "write", "a", "c"], None),
    (["role", "grant-permission", "w", "read", "z", "--from-key"], None),
    (["role", "grant-permission", "w", "bogus", "z"], None),
    (["role", "grant-permission", "w", "read", "z", "--from-key", "--prefix"], None),
    (["role", "grant-permission", "w", "read", "a", "b", "--prefix"], None),
    (["role", "grant-permission", "nope", "read", "z"], None),
    (["role", "get", "r"], None),
    (["role", "get", "w", "-w", "json"], None),
    (["role", "get", "r", "-w", "fields"], None),
    (["role", "get", "nope"], None),
    (["role", "list"], None),
    (["role", "list", "-w", "fields"], None),
    (["role", "list", "-w", "table"], None),
    (["user", "grant-role", "alice", "r"], None),
    (["user", "grant-role", "alice", "nope"], None),
    (["user", "grant-role", "nobody", "r"], None),
    (["user", "grant-role", "bob", "w", "-w", "fields"], None),
    (["user", "get", "alice"], None),
    (["user", "get", "alice", "--detail"], None),
    (["user", "get", "alice", "-w", "json"], None),
    (["user", "get", "nobody"], None),
    (["user", "list"], None),
    (["user", "list", "-w", "json"], None),
    (["user", "revoke-role", "bob", "w"], None),
    (["user", "revoke-role", "bob", "w"], None),  # not granted
    (["role", "revoke-permission", "r", "k1"], None),
    (["role", "revoke-permission", "r", "k1"], None),  # not granted
    (["role", "revoke-permission", "w", "z", "--from-key"], None),
    (["user", "passwd", "bob", "--interactive=false"], b"newpw\n"),
    (["user", "delete", "bob"], None),
    (["user", "delete", "bob"], None),
    (["role", "delete", "f"], None),
    (["auth", "enable"], None),  # root has no root role: etcdctl adds it
    (["auth", "enable"], None),  # no user: refused now
    ([*ROOT, "auth", "enable"], None),
    ([*ALICE, "put", "foo/1", "v"], None),
    ([*ALICE, "put", "bar", "v"], None),
    ([*ALICE, "get", "foo", "--prefix"], None),
    ([*ALICE, "get", "k1"], None),  # read revoked
    ([*ALICE, "del", "foo/1", "--prev-kv"], None),
    ([*ALICE, "user", "list"], None),
    ([*ALICE, "user", "get", "alice"], None),  # one's own
    ([*ALICE, "role", "get", "r"], None),  # one's own role
    ([*ALICE, "role", "get", "w"], None),
    (["--user", "alice:wrong", "get", "foo"], None),
    (["--user", "nobody:pw", "get", "foo"], None),
    (["--user", "carol:x", "get", "foo"], None),  # a no-password user
    (["get", "foo"], None),
    # (Compact by a non-root user: etcd 3.4 lets it through, 3.5 and ketch
    # refuse it; tests/e2e/test_auth_rpcs.py checks ketch's answer.)
    ([*ALICE, "endpoint", "hashkv"], None),
    ([*ROOT, "user", "delete", "root"], None),
    ([*ROOT, "user", "revoke-role", "root", "root"], None),
    ([*ROOT, "role", "delete", "root"], None),
    ([*ROOT, "user", "delete", "alice"], None),
    ([*ROOT, "auth", "disable"], None),
    (["auth", "disable"], None),
    (["user", "delete", "root"], None),
    (["user", "list"], None),
]


def ids(text: bytes) -> bytes:
    """Cluster and member IDs and terms are the server's own; the rest must match."""
    text = normalize(text)
    text = re.sub(rb'"(cluster_id|member_id|raft_term)":\d+', rb'"\1":N', text)
    return re.sub(rb'"(ClusterID|MemberID|RaftTerm)" : \d+', rb'"\1" : N', text)


def play(tool: str, server: str, tmp: str) -> list[Outcome]:
    outcomes = []
    with member(server=server, data_dir=tmp) as m:  # type: ignore[arg-type]  # "etcd" | "ketch"
        for args, stdin in SCRIPT:
            o = run(tool, m.endpoint, args, stdin)
            o.stdout = ids(o.stdout)
            o.errors = [e.replace(m.endpoint, "EP") for e in o.errors if not e.startswith("stty: ")]
            outcomes.append(o)
    return outcomes


@pytest.mark.timeout(600)
def test_the_auth_commands_print_and_refuse_as_etcdctl_on_etcd(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    want = play("etcdctl", "etcd", str(tmp_path_factory.mktemp("etcd")))
    server_side = play("etcdctl", "ketch", str(tmp_path_factory.mktemp("ketch")))
    client_side = play("ketchctl", "etcd", str(tmp_path_factory.mktemp("etcd2")))
    for (args, _), w, s, c in zip(SCRIPT, want, server_side, client_side, strict=True):
        assert (s.rc, s.stdout, s.errors) == (w.rc, w.stdout, w.errors), ("ketch server", args)
        assert (c.rc, c.stdout, c.errors) == (w.rc, w.stdout, w.errors), ("ketchctl", args)
