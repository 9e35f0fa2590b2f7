"""ketchctl's maintenance commands: alarm list/disarm, defrag, endpoint hashkv,
move-leader and snapshot save, with etcdctl 3.4's checks, messages and exit codes."""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from typing import TextIO

from .._pb import rpc_pb2
from ..client import EtcdError
from ..govalue import parse_uint
from .context import (
    EXIT_BAD_ARGS,
    EXIT_ERROR,
    EXIT_INTERRUPTED,
    Ctl,
    CtlError,
    cluster_endpoints,
    go_error_text,
)
from .flags import ParsedArgs
from .gofmt import humanize_bytes

SHA256_SIZE = 32


# -- alarm ---------------------------------------------------------------------


def cmd_alarm_list(p: ParsedArgs, ctl: Ctl) -> None:
    if p.args:
        raise CtlError(EXIT_BAD_ARGS, "alarm list command accepts no arguments")
    ctl.printer.alarm(ctl.client().alarms())


def cmd_alarm_disarm(p: ParsedArgs, ctl: Ctl) -> None:
    """clientv3's AlarmDisarm of every alarm: list them, deactivate each one,
    and answer with what was deactivated (a response made here, without a header)."""
    if p.args:
        raise CtlError(EXIT_BAD_ARGS, "alarm disarm command accepts no arguments")
    client = ctl.client()
    disarmed = rpc_pb2.AlarmResponse()
    for a in client.alarms().alarms:
        disarmed.alarms.extend(client.disarm(a.memberID, a.alarm).alarms)
    ctl.printer.alarm(disarmed)


# -- defrag, hashkv ------------------------------------------------------------


def cmd_defrag(p: ParsedArgs, ctl: Ctl) -> None:
    if p["data-dir"]:
        ctl.out.err(
            f"Failed to defragment etcd data[{p['data-dir']}] "
            "(ketchctl cannot open a data directory; defragment the running member instead)\n"
        )
        raise CtlError(EXIT_ERROR, "")
    failures = 0
    client = ctl.client()
    for ep in cluster_endpoints(p, ctl):
        try:
            client.defragment(ep)
        except EtcdError as e:
            ctl.out.err(f"Failed to defragment etcd member[{ep}] ({go_error_text(e)})\n")
            failures += 1
        else:
            ctl.out.line(f"Finished defragmenting etcd member[{ep}]")
            ctl.out.flush()
    if failures:
        raise CtlError(EXIT_ERROR, "")


def cmd_endpoint_hashkv(p: ParsedArgs, ctl: Ctl) -> None:
    client = ctl.client()
    hashes = []
    last_error = ""
    for ep in cluster_endpoints(p, ctl):
        try:
            hashes.append((ep, client.hash_kv(ep, p["rev"])))
        except EtcdError as e:
            last_error = go_error_text(e)
            ctl.out.err(f"Failed to get the hash of endpoint {ep} ({last_error})\n")
    ctl.printer.endpoint_hashkv(hashes)
    if last_error:
        raise CtlError(EXIT_ERROR, last_error)


# -- move-leader ---------------------------------------------------------------


def cmd_move_leader(p: ParsedArgs, ctl: Ctl) -> None:
    if len(p.args) != 1:
        raise CtlError(EXIT_BAD_ARGS, "move-leader command needs 1 argument")
    try:
        target = parse_uint(p.args[0], 16)
    except ValueError as e:
        raise CtlError(EXIT_BAD_ARGS, str(e)) from None
    client = ctl.client()
    # MoveLeader must go to the leader: find it among the endpoints given.
    leader_ep, leader_id = None, 0
    for ep in ctl.endpoints:
        try:
            status = client.status(ep)
        except EtcdError as e:
            raise CtlError(EXIT_ERROR, go_error_text(e)) from None
        if status.is_leader:
            leader_ep, leader_id = ep, status.leader
            break
    if leader_ep is None:
        raise CtlError(EXIT_BAD_ARGS, f"no leader endpoint given at [{' '.join(ctl.endpoints)}]")
    resp = client.move_leader(target, endpoint=leader_ep)
    ctl.printer.move_leader(leader_id, target, resp)


# -- snapshot ------------------------------------------------------------------


def _log(ctl: Ctl, msg: str, **fields: object) -> None:
    """One of the JSON log lines etcdctl's zap logger writes to stderr while saving."""
    ctl.out.err(json.dumps({"level": "info", "ts": time.time(), "caller": "ketchctl/snapshot",
                            "msg": msg, **fields}, separators=(",", ":")) + "\n")  # fmt: skip


def _go_errno(e: OSError) -> str:
    # Go spells errno texts in lower case: "no such file or directory".
    return (e.strerror or str(e)).lower()


def _go_bytes(b: bytes) -> str:
    """fmt's %v of a []byte."""
    return "[" + " ".join(str(x) for x in b) + "]"


def verify_checksum(path: str, size: int) -> None:
    """The stream ends with the SHA-256 of everything before it; etcd's backend
    is whole 512-byte pages, so only a size of 512*n + 32 carries one."""
    if size % 512 != SHA256_SIZE:
        raise CtlError(EXIT_INTERRUPTED, f"sha256 checksum not found [bytes: {size}]")
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        left = size - SHA256_SIZE
        while left:
            chunk = f.read(min(left, 1 << 20))
            digest.update(chunk)
            left -= len(chunk)
        trailer = f.read()
    if digest.digest() != trailer:
        raise CtlError(
            EXIT_INTERRUPTED,
            f"expected sha256 {_go_bytes(trailer)}, got {_go_bytes(digest.digest())}",
        )


class ProgressBar:
    """A one-line bar on a terminal for a long transfer (snapshot save). Only
    drawn when stderr is a terminal, so piped output stays etcdctl's."""

    WIDTH = 30
    EVERY_SECONDS = 0.1

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._drawn = 0.0

    def update(self, received: int, total: int) -> None:
        now = time.monotonic()
        if now - self._drawn < self.EVERY_SECONDS and received < total:
            return
        self._drawn = now
        share = received / total if total else 1.0
        filled = int(share * self.WIDTH)
        self._stream.write(
            f"\r[{'#' * filled}{' ' * (self.WIDTH - filled)}] {share:4.0%} "
            f"{humanize_bytes(received)} / {humanize_bytes(total)}"
        )
        self._stream.flush()

    def done(self) -> None:
        """Clears the bar's line."""
        self._stream.write("\r\x1b[K")
        self._stream.flush()


def cmd_snapshot_save(p: ParsedArgs, ctl: Ctl) -> None:
    if len(p.args) != 1:
        raise CtlError(EXIT_BAD_ARGS, "snapshot save expects one argument")
    path = p.args[0]
    endpoints = ctl.endpoints
    if len(endpoints) != 1:
        raise CtlError(
            EXIT_INTERRUPTED,
            f"snapshot must be requested to one selected node, not multiple [{' '.join(endpoints)}]",
        )
    client = ctl.client()
    # Without an explicit --command-timeout a snapshot may take as long as it takes.
    timeout = ctl.globals["command-timeout"] if "command-timeout" in ctl.globals.changed else None
    part = path + ".part"
    try:
        fd = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    except OSError as e:
        raise CtlError(EXIT_INTERRUPTED, f"could not open {part} (open {part}: {_go_errno(e)})") from None
    try:
        _log(ctl, "created temporary db file", path=part)
        started = time.monotonic()
        size = 0
        with os.fdopen(fd, "wb") as f:
            try:
                bar = ProgressBar(sys.stderr) if sys.stderr.isatty() else None
                chunks = client.snapshot(
                    endpoints[0], timeout=timeout, progress=bar.update if bar else None
                )
                _log(ctl, "fetching snapshot", endpoint=endpoints[0])
                for blob in chunks:
                    f.write(blob)
                    size += len(blob)
            except EtcdError as e:
                raise CtlError(EXIT_INTERRUPTED, go_error_text(e)) from None
            finally:
                if bar is not None:
                    bar.done()
            f.flush()
            os.fsync(f.fileno())
        verify_checksum(part, size)
        _log(ctl, "fetched snapshot", endpoint=endpoints[0], size=humanize_bytes(size),
             took=round(time.monotonic() - started, 9))  # fmt: skip
        try:
            os.rename(part, path)
        except OSError as e:
            raise CtlError(
                EXIT_INTERRUPTED,
                f"could not rename {part} to {path} (rename {part} {path}: {_go_errno(e)})",
            ) from None
        _log(ctl, "saved", path=path)
    finally:
        if os.path.exists(part):
            os.unlink(part)
    ctl.out.line(f"Snapshot saved at {path}")
