"""etcdctl against etcd and against ketch: the same output, byte for byte.

Each test runs its steps on a fresh etcd and then on a fresh ketch (see
differential.py) and also checks a few things about etcd's own answers, so a
step that silently stopped exercising what it is named for would show.
"""

from __future__ import annotations

import json

from .differential import Outcome, Step, differential, step

SORT_TARGETS = ("KEY", "CREATE", "MODIFY", "VALUE", "VERSION")


def error_line(o: Outcome) -> str:
    """etcdctl's `Error: ...` line (stderr may also hold its client's JSON log line)."""
    return o.stderr.rstrip("\n").rsplit("\n", 1)[-1]


def _puts() -> list[Step]:
    # Revisions 2..9; foo ends at version 3, values chosen so every sort
    # target orders the keys differently.
    return [
        step("put", "foo", "m"),
        step("put", "foo1", "z"),
        step("put", "foo2", "a"),
        step("put", "fop", "k"),
        step("put", "a", "1"),
        step("put", "foo", "b"),
        step("put", "z", "26"),
        step("put", "foo", "c"),
    ]


def test_put_and_get(make_server) -> None:
    steps = [
        *_puts(),
        step("get", "foo"),
        step("get", "foo", "--prefix"),
        step("get", "foo", "--prefix", "--keys-only"),
        step("get", "foo", "--prefix", "--print-value-only"),
        step("get", "foo", "--rev", "2"),
        step("get", "foo", "--rev", "7"),
        step("get", "foo", "--prefix", "--rev", "3"),
        step("get", "foo", "--rev", "1"),
        step("get", "foo", "--prefix", "--limit", "2"),
        step("get", "", "--from-key"),
        step("get", "foo1", "--from-key", "--limit", "2"),
        step("get", "a", "foo2"),
        step("get", "missing"),
        *[
            step("get", "", "--from-key", f"--sort-by={target}", f"--order={order}")
            for target in SORT_TARGETS
            for order in ("ASCEND", "DESCEND")
        ],
        step(
            "get",
            "",
            "--prefix",
            "--sort-by=MODIFY",
            "--order=DESCEND",
            "--limit",
            "3",
            "--keys-only",
        ),
        step("get", "foo", "-w", "json"),
        step("get", "foo", "--prefix", "-w", "json", "--limit", "1"),
        step("get", "missing", "-w", "json"),
        step("get", "foo", "--prefix", "-w", "fields"),
        step("get", "foo", "-w", "simple"),
        step("get", "foo", "-w", "protobuf"),
        step("put", "foo", "d", "--prev-kv"),
        step("put", "foo", "e", "--prev-kv", "-w", "json"),
        step("put", "new", "--ignore-value", "-w", "json"),
    ]
    etcd = differential(make_server, steps)
    # What etcd answered is what the steps are meant to probe.
    assert etcd[8].stdout == "foo\nc\n"
    assert (
        json.loads(etcd[steps.index(step("get", "foo", "-w", "json"))].stdout)["kvs"][0]["version"]
        == 3
    )
    assert error_line(etcd[-1]) == "Error: etcdserver: key not found"


def test_delete(make_server) -> None:
    steps = [
        *[step("put", f"k{i}", f"v{i}") for i in range(1, 6)],
        step("put", "a", "1"),
        step("put", "b", "2"),
        step("del", "k1", "--prev-kv"),
        step("del", "k1"),
        step("del", "k", "--prefix", "--prev-kv", "-w", "json"),
        step("get", "", "--from-key"),
        step("put", "k6", "v6"),
        step("del", "b", "--from-key"),
        step("get", "", "--from-key", "-w", "json"),
        step("del", "missing", "-w", "fields"),
        step("del", "a", "c"),
        step("get", "", "--from-key"),
    ]
    etcd = differential(make_server, steps)
    assert etcd[7].stdout == "1\nk1\nv1\n"
    assert etcd[12].stdout.startswith("2\n")  # b and k6


TXN = """\
value("k") = "v1"
version("k") = "1"
create("k") = "2"
mod("k") > "1"

put k v2
get k
put other x

put k failed
get k

"""

TXN_FAILS = """\
value("k") = "nope"

put k never

del k --prev-kv
put k2 from-failure
get k --rev 2

"""

TXN_CMP = """\
mod("k2") < "100"
create("missing") = "0"
version("k2") != "5"
value("k2") > "a"

get k2

"""


def test_txn_interactive(make_server) -> None:
    steps = [
        step("put", "k", "v1"),
        step("txn", "-i", stdin=TXN),
        step("get", "k", "other"),
        step("txn", "-i", stdin=TXN),  # version is 2 now: the failure branch
        step("txn", "-i", stdin=TXN_FAILS),
        step("get", "", "--from-key", "-w", "json"),
        step("txn", "-i", "-w", "json", stdin=TXN_CMP),
        step("txn", stdin=TXN),  # non-interactive: reads the same from stdin
        step("txn", "-w", "fields", stdin=TXN_CMP),
    ]
    etcd = differential(make_server, steps)
    assert "SUCCESS" in etcd[1].stdout and "FAILURE" in etcd[3].stdout
    assert "FAILURE" in etcd[4].stdout


def test_compaction(make_server) -> None:
    steps = [
        *[step("put", "k", f"v{i}") for i in range(1, 6)],  # revisions 2..6
        step("compaction", "3"),
        step("get", "k", "--rev", "2"),
        step("get", "k", "--rev", "3"),
        step("get", "k", "--rev", "3", "-w", "json"),
        step("compaction", "--physical", "5"),
        step("get", "k", "--rev", "4"),
        step("get", "k", "--rev", "5"),
        step("get", "k"),
        step("compaction", "4"),
        step("compaction", "5"),
        step("compaction", "100"),
        step("get", "k", "--rev", "100"),
        step("get", "k", "--rev", "7"),
        step("txn", stdin="\n\nget k --rev 2\n\n\n"),
    ]
    etcd = differential(make_server, steps)
    assert error_line(etcd[6]) == "Error: etcdserver: mvcc: required revision has been compacted"
    assert error_line(etcd[17]) == "Error: etcdserver: mvcc: required revision is a future revision"


def test_compaction_on_a_fresh_store(make_server) -> None:
    steps = [
        step("compaction", "0"),  # etcd: nothing compacted yet, so 0 is still ahead
        step("compaction", "0"),
        step("compaction", "1"),
        step("compaction", "1"),
        step("put", "k", "v"),
        step("get", "k", "--rev", "0"),
        step("get", "k", "--rev", "1"),
    ]
    etcd = differential(make_server, steps)
    assert etcd[0].stdout == "compacted revision 0\n"
    assert error_line(etcd[1]) == "Error: etcdserver: mvcc: required revision has been compacted"


def test_member_list_and_endpoint(make_server) -> None:
    steps = [
        step("member", "list"),
        step("member", "list", "-w", "json"),
        step("member", "list", "-w", "table"),
        step("member", "list", "-w", "fields"),
        step("put", "a", "b"),
        step("endpoint", "status"),
        step("endpoint", "status", "-w", "json"),
        step("endpoint", "status", "-w", "table"),
        step("endpoint", "health"),
        step("endpoint", "health", "-w", "json"),
        step("endpoint", "status", "--cluster"),
        step("endpoint", "health", "--cluster"),
    ]
    etcd = differential(make_server, steps)
    status = json.loads(etcd[6].stdout)[0]["Status"]
    assert status["header"]["raft_term"] == 2 and status["header"]["revision"] == 2
    assert "started, default, http://127.0.0.1:" in etcd[0].stdout


def test_bad_input(make_server) -> None:
    big = b"x" * 1_600_000  # over --max-request-bytes (1.5 MiB), under gRPC's 2 MiB
    huge = b"x" * 2_200_000  # over the 2 MiB gRPC message limit
    too_many = "\n" + "".join(f"put k{i} v\n" for i in range(129)) + "\n\n"
    steps = [
        step("put", "", "v"),
        step("get", ""),
        step("del", ""),
        step("put", "k", stdin=big),
        step("put", "k", stdin=huge),
        step("put", "k", "v"),
        step("get", "k", "--rev", "3"),
        step("put", "missing", "--ignore-value"),
        step("put", "missing", "--ignore-lease"),
        step("put", "k", "--ignore-value"),
        step("get", "k"),
        step("put", "k", "v", "--lease", "1234"),
        step("txn", stdin="\nput d 1\nput d 2\n\n\n"),
        step("txn", stdin="\nput d 1\ndel d\n\n\n"),
        step("txn", stdin=too_many),
        step("txn", stdin='value("k") = "v"\n\nput k v2\n\nput k v3\nput k v4\n\n'),
        step("get", "k", "-w", "json"),
    ]
    etcd = differential(make_server, steps)
    assert error_line(etcd[0]) == "Error: etcdserver: key is not provided"
    assert error_line(etcd[3]) == "Error: etcdserver: request is too large"
    assert error_line(etcd[7]) == "Error: etcdserver: key not found"
    assert error_line(etcd[12]) == "Error: etcdserver: duplicate key given in txn request"


def test_request_limits(make_server) -> None:
    """A small --max-request-bytes puts the server's own gRPC limit below the client's."""
    limit = 100_000  # gRPC limit becomes 100_000 + 512 KiB
    steps = [
        step("put", "k", stdin=b"y" * 99_000),
        step("put", "k", stdin=b"y" * 101_000),
        step("put", "k", stdin=b"y" * 700_000),
        step("get", "k", "--print-value-only", "-w", "simple"),
    ]
    etcd = differential(make_server, steps, ["--max-request-bytes", str(limit)])
    assert etcd[0].rc == 0
    assert error_line(etcd[1]) == "Error: etcdserver: request is too large"
    assert "larger than max" in etcd[2].stderr
