"""Differential testing: the same etcdctl commands against etcd and against ketch.

Both servers start fresh with the same flags and the same ports (one after
the other), so revisions, member and cluster IDs, raft terms and endpoint
URLs all line up and the outputs can be compared byte for byte. `normalize`
blanks the few fields that must differ, each with the reason.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from ..support import Server, free_port


@dataclass(frozen=True)
class Step:
    """One etcdctl invocation: its arguments and what to feed its stdin."""

    args: tuple[str, ...]
    stdin: bytes | None = None

    def __str__(self) -> str:
        shown = " ".join(repr(a) if (not a or " " in a) else a for a in self.args)
        if self.stdin is not None:
            shown += (
                f" < ({len(self.stdin)} bytes)" if len(self.stdin) > 200 else f" <<< {self.stdin!r}"
            )
        return f"etcdctl {shown}"


def step(*args: str, stdin: bytes | str | None = None) -> Step:
    if isinstance(stdin, str):
        stdin = stdin.encode()
    return Step(tuple(args), stdin)


@dataclass(frozen=True)
class Outcome:
    rc: int
    stdout: str
    stderr: str


# Fields that legitimately differ between etcd and ketch, and why:
_NORMALIZERS: list[tuple[re.Pattern[str], str]] = [
    # Server version: etcd says 3.4.x, ketch says its own version.
    (re.compile(r'("version":)"[^"]*"'), r'\1"<version>"'),
    # Database size: bbolt and redb lay out pages differently.
    (re.compile(r'("dbSize(?:InUse)?":)\d+'), r"\1<n>"),
    # Raft log index: etcd appends entries of its own at start (conf change,
    # member attributes, cluster version) that ketch's log need not have.
    (re.compile(r'("raft(?:Applied)?Index":)\d+'), r"\1<n>"),
    # etcdctl's own client log line on a failed call: its clock and its
    # random client ID (the gRPC code and message in it are compared).
    (re.compile(r'"ts":"[^"]*"'), '"ts":"<ts>"'),
    (re.compile(r"endpoint://client-[0-9a-f-]+/"), "endpoint://client-<id>/"),
    # Latency of the health probe.
    (re.compile(r"took = [0-9.]+[a-zµ]+"), "took = <t>"),
    (re.compile(r'("took":)"[^"]*"'), r'\1"<t>"'),
]

# `endpoint status` in simple and table form: version, db size, raft index,
# raft applied index are columns 3, 4, 8 and 9 (same reasons as above).
_STATUS_COLUMNS = (2, 3, 7, 8)


def normalize(step: Step, out: str) -> str:
    for pattern, repl in _NORMALIZERS:
        out = pattern.sub(repl, out)
    if step.args[:2] == ("endpoint", "status") and "json" not in step.args:
        lines = []
        for line in out.splitlines(keepends=True):
            if line.startswith("|") and "://" in line:  # table row
                cells = line.split("|")
                for c in _STATUS_COLUMNS:
                    cells[c + 1] = " <x> "
                line = "|".join(cells)
            elif "://" in line and ", " in line:  # simple row
                cells = line.rstrip("\n").split(", ")
                for c in _STATUS_COLUMNS:
                    cells[c] = "<x>"
                line = ", ".join(cells) + "\n"
            lines.append(line)
        out = "".join(lines)
        # Table borders are sized to the widest cell, which we just replaced.
        out = re.sub(r"^\+[-+]+\+$", "+<border>+", out, flags=re.MULTILINE)
        out = re.sub(r" {2,}", " ", out)
    return out


def run_steps(server: Server, steps: Sequence[Step]) -> list[Outcome]:
    return [Outcome(*server.etcdctl(*s.args, stdin=s.stdin)) for s in steps]


def differential(
    make_server: Callable[..., Server],
    steps: Sequence[Step],
    extra_args: Sequence[str] = (),
    **server_fields: object,
) -> list[Outcome]:
    """Run steps on a fresh etcd, then on a fresh ketch; fail listing every step that differs.

    Returns etcd's outcomes, as printed, so a test can check what etcd itself did.
    """
    client_port, peer_port = free_port(), free_port()
    outcomes = {}
    for kind in ("etcd", "ketch"):
        server = make_server(
            kind, extra_args, client_port=client_port, peer_port=peer_port, **server_fields
        )
        outcomes[kind] = run_steps(server, steps)
        server.stop()
    want, got = outcomes["etcd"], outcomes["ketch"]
    report = []
    for s, w, g in zip(steps, want, got, strict=True):
        w = Outcome(w.rc, normalize(s, w.stdout), normalize(s, w.stderr))
        g = Outcome(g.rc, normalize(s, g.stdout), normalize(s, g.stderr))
        if w != g:
            report.append(
                f"\n$ {s}\n--- etcd (exit {w.rc})\n{w.stdout}{w.stderr}--- ketch (exit {g.rc})\n{g.stdout}{g.stderr}"
            )
    assert not report, f"{len(report)} of {len(steps)} steps differ:" + "".join(report)
    return want
