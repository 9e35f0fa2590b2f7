"""ketchctl's help and usage text against the real etcdctl 3.4's: `--help` of
ketchctl and of every command it has, the usage block cobra prints after an
unknown or malformed flag, and the one-line answer to a missing argument.
The only difference allowed is the program name (and the VERSION line of the
top-level help, which is ketch's own)."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest
from ketch import __version__
from ketch.ctl.commands import COMMANDS
from ketch.ctl.context import CommandSpec

from ..support import ETCDCTL, subprocess_env


def command_paths(node: CommandSpec = COMMANDS, prefix: str = "") -> list[str]:
    paths = []
    for name, child in (node.children or {}).items():
        path = f"{prefix}{name}"
        paths.append(path)
        paths += command_paths(child, path + " ")
    return paths


def outcome(tool: str, args: list[str]) -> tuple[int, str, str]:
    cmd = [ETCDCTL] if tool == "etcdctl" else [sys.executable, "-m", "ketch.ctl"]
    p = subprocess.run(
        [*cmd, *args], check=False, capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL,
        env=subprocess_env({"ETCDCTL_API": "3"}),
    )  # fmt: skip
    if tool == "etcdctl":
        return p.returncode, p.stdout, p.stderr
    # ketchctl's text with etcdctl's name and version, for comparing.
    out = p.stdout.replace("ketchctl", "etcdctl")
    out = re.sub(rf"(VERSION:\n\t){re.escape(__version__)}\n", "\\g<1>3.4.23\n", out)
    return p.returncode, out, p.stderr.replace("ketchctl", "etcdctl")


def same(args: list[str]) -> None:
    want = outcome("etcdctl", args)
    want = (want[0], re.sub(r"(VERSION:\n\t)3\.4\.\d+\n", "\\g<1>3.4.23\n", want[1]), want[2])
    assert outcome("ketchctl", args) == want, args


@pytest.mark.parametrize("path", ["", *command_paths()])
def test_help_is_etcdctls(path: str) -> None:
    same([*path.split(), "--help"])


@pytest.mark.parametrize(
    "args",
    [
        [],  # no command: the help, exit 0
        ["lease"],  # a group alone: its help
        ["--foo"],
        ["get", "--foo", "k"],
        ["get", "-x", "k"],
        ["get", "--rev=x", "k"],
        ["lease", "grant", "--ttl=3"],
        ["member", "--bogus"],
        ["put", "k", "--lease"],  # a flag without its value
    ],
)
def test_a_bad_flag_prints_etcdctls_usage(args: list[str]) -> None:
    same(args)


@pytest.mark.parametrize(
    "args",
    [["get"], ["put"], ["del"], ["lease", "grant"], ["lease", "revoke"], ["member", "remove"],
     ["watch"], ["lock"], ["elect"], ["compaction"], ["txn", "x"], ["snapshot", "save"]],
)  # fmt: skip
def test_a_missing_argument_is_etcdctls_one_line(args: list[str]) -> None:
    same(args)
