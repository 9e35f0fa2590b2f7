"""Servers and the two command lines for the differential tests."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from ketch.testing import Member, member

ETCDCTL = shutil.which("etcdctl") or "/usr/bin/etcdctl"
TIMEOUT = 30


@dataclass
class Outcome:
    rc: int
    stdout: bytes
    errors: list[str]  # stderr without etcdctl's client log lines (JSON, from zap)


def run(tool: str, endpoint: str, args: list[str], stdin: bytes | None = None,
        env: dict[str, str] | None = None) -> Outcome:  # fmt: skip
    base = {k: v for k, v in os.environ.items() if not k.startswith(("ETCD_", "ETCDCTL_"))}
    base["ETCDCTL_API"] = "3"
    base.update(env or {})
    cmd = [ETCDCTL] if tool == "etcdctl" else [sys.executable, "-m", "ketch.ctl"]
    p = subprocess.run(
        [*cmd, "--endpoints", endpoint, *args], input=stdin or b"", capture_output=True,
        timeout=TIMEOUT, env=base, check=False,  # the caller looks at the exit status
    )  # fmt: skip
    lines = p.stderr.decode(errors="replace").splitlines()
    errors = [ln.replace("etcdctl", "ketchctl") for ln in lines if not ln.startswith('{"level"')]
    return Outcome(p.returncode, p.stdout, errors)


def normalize(out: bytes) -> bytes:
    """For commands that write: the two tools run one after the other, so
    revisions (and took = durations) differ by design; everything else must not."""
    # A put of the same value still makes a new version at a new revision.
    out = re.sub(rb'"(revision|mod_revision|version)":\d+', rb'"\1":R', out)
    out = re.sub(rb'"(Prev)?(Revision|ModRevision|Version)" : \d+', rb'"\1\2" : R', out)
    out = re.sub(rb'took = [^\n]*', b"took = T", out)
    return re.sub(rb'"took":"[^"]*"', b'"took":"T"', out)


@pytest.fixture(scope="module")
def etcd_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Member]:
    with member(server="etcd", data_dir=tmp_path_factory.mktemp("etcd")) as m:
        yield m


@pytest.fixture(scope="module")
def ketch_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Member]:
    with member(server="ketch", data_dir=tmp_path_factory.mktemp("ketch")) as m:
        yield m


@pytest.fixture(scope="module", params=["etcd", "ketch"])
def server(request: pytest.FixtureRequest) -> Member:
    return request.getfixturevalue(f"{request.param}_server")  # type: ignore[no-any-return]
