"""ketchctl lock and elect: etcdctl's concurrency recipes, done client-side
over leases, transactions and watches (ketch.client.concurrency), with
etcdctl 3.4's messages, output and exit codes.

Both hold on until SIGINT or SIGTERM, then let go (unlock, resign) and exit 0,
as etcdctl does; a signal while still waiting ends with "context canceled".
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from ..client.concurrency import Election, Mutex, Session
from .context import EXIT_BAD_ARGS, EXIT_ERROR, Ctl, CtlError
from .flags import ParsedArgs


class _Interrupted(Exception):
    """SIGINT or SIGTERM arrived (etcdctl cancels its context then)."""


class _SignalGate:
    """SIGINT/SIGTERM, as etcdctl's context cancel: `got` is set by the first
    one, which also raises _Interrupted if it comes inside `interruptible()`
    (to break out of a blocking wait). Elsewhere it is only noted, so that
    printing or releasing is never cut off half-way."""

    def __init__(self) -> None:
        self.got = threading.Event()
        self._raise = False

    def _handler(self, signum: int, frame: object) -> None:
        if not self.got.is_set():
            self.got.set()
            if self._raise:
                self._raise = False
                raise _Interrupted

    @contextmanager
    def interruptible(self) -> Iterator[None]:
        if self.got.is_set():
            raise _Interrupted
        self._raise = True
        try:
            yield
        finally:
            self._raise = False


@contextmanager
def _signals() -> Iterator[_SignalGate]:
    gate = _SignalGate()
    old = {s: signal.signal(s, gate._handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield gate
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def _hold(session: Session, got: threading.Event) -> bool:
    """Until a signal (True) or the session's lease is gone (False)."""
    while session.alive and not got.is_set():
        got.wait(0.2)
    return got.is_set()


def _run_command(argv: list[str], env: dict[str, str]) -> None:
    """The exec-command, with etcdctl's words if it cannot start or fails."""
    if shutil.which(argv[0]) is None and os.sep not in argv[0]:
        raise CtlError(EXIT_ERROR, f'exec: "{argv[0]}": executable file not found in $PATH')
    try:
        rc = subprocess.call(argv, env={**env, **os.environ})
    except OSError as e:
        raise CtlError(EXIT_ERROR, f"fork/exec {argv[0]}: {(e.strerror or str(e)).lower()}") from None
    if rc != 0:
        status = f"signal: {signal.Signals(-rc).name}" if rc < 0 else f"exit status {rc}"
        raise CtlError(EXIT_ERROR, status)


def cmd_lock(p: ParsedArgs, ctl: Ctl) -> None:
    if not p.args:
        raise CtlError(EXIT_BAD_ARGS, "lock takes a lock name argument and an optional command to execute")
    client = ctl.client()
    session = Session(client, ttl=p["ttl"])
    mutex = Mutex(session, p.args[0])
    with _signals() as gate:
        try:
            with gate.interruptible():
                mutex.lock()
        except _Interrupted:
            raise CtlError(EXIT_ERROR, "context canceled") from None
        if len(p.args) > 1:
            ctl.out.flush()
            header = mutex.header
            env = {"ETCD_LOCK_KEY": mutex.key.decode(errors="surrogateescape"),
                   "ETCD_LOCK_REV": str(header.revision if header else 0)}  # fmt: skip
            try:
                _run_command(p.args[1:], env)
            finally:
                mutex.unlock()
            return
        held = client.get(mutex.key)
        if not held.kvs:
            raise CtlError(EXIT_ERROR, "lock lost on init")
        ctl.printer.get(held)
        ctl.out.flush()
        if _hold(session, gate.got):
            mutex.unlock()
            return
    raise CtlError(EXIT_ERROR, "session expired")


def cmd_elect(p: ParsedArgs, ctl: Ctl) -> None:
    if len(p.args) not in (1, 2):
        raise CtlError(
            EXIT_BAD_ARGS, "elect takes one election name argument and an optional proposal argument"
        )
    if len(p.args) == 1 and not p["listen"]:
        raise CtlError(EXIT_BAD_ARGS, "no proposal argument but -l not set")
    if len(p.args) == 2 and p["listen"]:
        raise CtlError(EXIT_BAD_ARGS, "proposal given but -l is set")
    client = ctl.client()
    session = Session(client)
    election = Election(session, p.args[0])
    with _signals() as gate:
        if len(p.args) == 1:
            try:
                with gate.interruptible():
                    for leader in election.observe():
                        ctl.printer.get(leader)
                        ctl.out.flush()
            except _Interrupted:
                return
            raise CtlError(EXIT_ERROR, "elect: observer lost")
        try:
            with gate.interruptible():
                election.campaign(p.args[1].encode(errors="surrogateescape"))
        except _Interrupted:
            raise CtlError(EXIT_ERROR, "context canceled") from None
        ctl.printer.get(client.get(election.key))
        ctl.out.flush()
        if not _hold(session, gate.got):
            raise CtlError(EXIT_ERROR, "elect: session expired")
        election.resign()
