"""lock and elect: etcdctl 3.4 and ketchctl against the same server (etcd,
then ketch), each tool waiting on the other's lock or leadership, since both
build them from the same keys."""

from __future__ import annotations

import os
import re
import select
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from ketch.testing import Member

from .conftest import ETCDCTL, run

TOOLS = {"etcdctl": [ETCDCTL], "ketchctl": [sys.executable, "-m", "ketch.ctl"]}
LEASE = re.compile(rb"/[0-9a-f]{1,16}\n")


@contextmanager
def started(tool: str, server: Member, args: list[str]) -> Iterator[subprocess.Popen[bytes]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ETCD_", "ETCDCTL_"))}
    env["ETCDCTL_API"] = "3"
    p = subprocess.Popen([*TOOLS[tool], "--endpoints", server.endpoint, *args],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)  # fmt: skip
    try:
        yield p
    finally:
        if p.poll() is None:
            os.kill(p.pid, signal.SIGKILL)
        p.wait()
        assert p.stdout is not None and p.stderr is not None
        p.stdout.close()
        p.stderr.close()


def read_lines(p: subprocess.Popen[bytes], n: int, timeout: float) -> bytes:
    """The next n lines of its stdout, or what came before the timeout."""
    assert p.stdout is not None
    out = b""
    deadline = time.monotonic() + timeout
    while out.count(b"\n") < n:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([p.stdout], [], [], left)[0]:
            break
        chunk = os.read(p.stdout.fileno(), 4096)
        if not chunk:
            break
        out += chunk
    return out


def stop(p: subprocess.Popen[bytes]) -> tuple[int, bytes]:
    os.kill(p.pid, signal.SIGTERM)
    _, err = p.communicate(timeout=15)
    return p.returncode, err


def test_errors(server: Member) -> None:
    for args in (["lock"], ["elect"], ["elect", "e"], ["elect", "-l", "e", "p"], ["elect", "e", "p", "q"],
                 ["lock", "l", "--", "no-such-command-here"], ["lock", "l", "--", "false"]):  # fmt: skip
        want = run("etcdctl", server.endpoint, args)
        got = run("ketchctl", server.endpoint, args)
        assert (got.rc, got.stdout, got.errors) == (want.rc, want.stdout, want.errors), args
        assert want.rc != 0


@pytest.mark.parametrize(("holder", "waiter"), [("etcdctl", "ketchctl"), ("ketchctl", "etcdctl")])
def test_lock_waits_for_the_other_tool(server: Member, holder: str, waiter: str) -> None:
    name = f"lock-{holder}"
    with started(holder, server, ["lock", name]) as h:
        held = read_lines(h, 2, 10)
        assert LEASE.sub(b"/ID\n", held) == f"{name}/ID\n\n".encode()  # the key, its empty value
        cmd = ["lock", name, "--", "sh", "-c", "echo $ETCD_LOCK_KEY $ETCD_LOCK_REV"]
        with started(waiter, server, cmd) as w:
            assert read_lines(w, 1, 1.5) == b""  # queued behind the holder
            assert stop(h) == (0, b"")  # a signal: unlock, exit 0
            line = read_lines(w, 1, 10)
            assert re.fullmatch(rb"lock-\w+/[0-9a-f]+ \d+\n", line), line
            assert w.wait(10) == 0


@pytest.mark.parametrize("fmt", ["simple", "json"])
def test_lock_output(server: Member, fmt: str) -> None:
    outs = []
    for tool in TOOLS:
        with started(tool, server, ["lock", f"out-{fmt}", "-w", fmt]) as p:
            out = read_lines(p, 2 if fmt == "simple" else 1, 10)  # simple: the key, its empty value
            assert stop(p) == (0, b"")
        out = re.sub(rb'"(revision|create_revision|mod_revision|lease)":\d+', rb'"\1":N', out)
        out = re.sub(rb'"key":"[^"]+"', b'"key":K', LEASE.sub(b"/ID\n", out))
        outs.append(out)
    assert outs[0] == outs[1] and outs[0]


def test_elect(server: Member) -> None:
    """An observer of each tool sees a campaigner of each tool lead in turn."""
    with started("etcdctl", server, ["elect", "-l", "el"]) as obs1, \
         started("ketchctl", server, ["elect", "-l", "el"]) as obs2:  # fmt: skip
        time.sleep(1)
        with started("etcdctl", server, ["elect", "el", "p1"]) as c1:
            assert LEASE.sub(b"/ID\n", read_lines(c1, 2, 10)) == b"el/ID\np1\n"
            with started("ketchctl", server, ["elect", "el", "p2"]) as c2:
                assert read_lines(c2, 1, 1.5) == b""  # not elected while p1 leads
                assert stop(c1) == (0, b"")  # resigns
                assert LEASE.sub(b"/ID\n", read_lines(c2, 2, 10)) == b"el/ID\np2\n"
                assert stop(c2) == (0, b"")
        seen = [LEASE.sub(b"/ID\n", read_lines(o, 4, 10)) for o in (obs1, obs2)]
        assert seen[0] == seen[1] == b"el/ID\np1\nel/ID\np2\n"
        assert stop(obs1)[0] == stop(obs2)[0] == 0
