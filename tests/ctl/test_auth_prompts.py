"""`user add` and `user passwd` asking for the password on a terminal
(etcdctl's default --interactive=true), through a pseudo-terminal as a
person types it: etcdctl 3.4 on etcd and ketchctl on ketch must show the
same screen (prompts, the newline after each hidden answer, the result or
the error) and exit with the same status."""

from __future__ import annotations

import os
import pty
import re
import select
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest
from ketch.testing import Member, member

from .conftest import ETCDCTL, TIMEOUT

# (arguments, the answers typed at each prompt, in order)
SESSIONS: list[tuple[list[str], list[bytes]]] = [
    (["user", "add", "alice"], [b"apw", b"apw"]),
    (["user", "add", "bob"], [b"bpw", b"other"]),  # the two answers differ
    (["user", "add", "carol"], [b""]),  # empty: refused after the first prompt
    (["user", "add", "alice"], [b"apw", b"apw"]),  # exists: asked, then refused by the server
    (["user", "passwd", "alice"], [b"new", b"new"]),
    (["user", "passwd", "alice"], [b"new", b"wen"]),
    (["user", "passwd", "nobody"], [b"x", b"x"]),
    (["user", "add", "dave", "--interactive"], [b"dpw", b"dpw"]),
]


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Member]]:
    with (
        member(server="etcd", data_dir=tmp_path_factory.mktemp("etcd")) as e,
        member(server="ketch", data_dir=tmp_path_factory.mktemp("ketch")) as k,
    ):
        yield {"etcdctl": e, "ketchctl": k}


def read_until(fd: int, want: bytes, seen: bytearray, deadline: float) -> None:
    """Reads the terminal into `seen` until it ends with `want`, or the command
    has closed its side (EOF), or the deadline passed."""
    while not seen.endswith(want) and time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.1)
        if not ready:
            continue
        try:
            chunk = os.read(fd, 4096)
        except OSError:  # EIO: every slave fd is closed
            return
        if not chunk:
            return
        seen += chunk


def on_terminal(
    tool: str, endpoint: str, args: list[str], answers: list[bytes]
) -> tuple[int, bytes, list[str]]:
    """Runs the tool with stdin and stdout on a pseudo-terminal, typing each
    answer after the prompt that asks for it. Returns the exit status, what the
    terminal showed, and stderr's lines without etcdctl's JSON log lines."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ETCD_", "ETCDCTL_"))}
    env["ETCDCTL_API"] = "3"
    cmd = [ETCDCTL] if tool == "etcdctl" else [sys.executable, "-m", "ketch.ctl"]
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [*cmd, "--endpoints", endpoint, *args],
        stdin=slave,
        stdout=slave,
        stderr=subprocess.PIPE,
        env=env,
        start_new_session=True,  # no controlling terminal but the one given
    )
    os.close(slave)
    seen = bytearray()
    deadline = time.monotonic() + TIMEOUT
    try:
        for answer in answers:
            read_until(master, b": ", seen, deadline)
            if proc.poll() is not None:
                break
            # Echo is off while a password is read: only what the tool writes shows.
            time.sleep(0.2)
            os.write(master, answer + b"\r")
            seen += b"|"  # where an answer went in
        rc = proc.wait(timeout=max(1.0, deadline - time.monotonic()))
        read_until(master, b"\x00never", seen, time.monotonic() + 1)
        err = proc.stderr.read() if proc.stderr else b""
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stderr:
            proc.stderr.close()
        os.close(master)
    lines = err.decode(errors="replace").splitlines()
    errors = [ln.replace("etcdctl", "ketchctl") for ln in lines if not ln.startswith('{"level"')]
    return rc, bytes(seen), errors


def test_the_password_prompts_look_and_exit_as_etcdctls(servers: dict[str, Member]) -> None:
    got: dict[str, list[tuple[int, bytes, list[str]]]] = {}
    for tool, server in servers.items():
        got[tool] = [on_terminal(tool, server.endpoint, a, typed) for a, typed in SESSIONS]
    for i, (want, have) in enumerate(zip(got["etcdctl"], got["ketchctl"], strict=True)):
        assert have == want, f"session {i}: {SESSIONS[i][0]}"
    # The script means something: it created, refused and changed.
    assert got["etcdctl"][0][0] == 0 and b"User alice created" in got["etcdctl"][0][1]
    assert got["etcdctl"][1][0] != 0 and any("different" in e for e in got["etcdctl"][1][2])
    assert re.search(rb"Password updated", got["etcdctl"][4][1])
