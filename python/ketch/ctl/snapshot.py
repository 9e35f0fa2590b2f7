"""ketchctl snapshot status and restore, offline, with etcdctl 3.4's flags,
output and messages. Both read etcd's snapshot format (a bbolt file and its
SHA-256 trailer), so they take a snapshot saved from ketch or from a real
etcd; the reading and the restore itself are the engine's (ketch._core).

restore builds a ketch data dir (WAL + store) for one member of a new
cluster, as `etcdctl snapshot restore` builds an etcd one: the keys, their
revisions, leases, alarms and the auth store (users with their password
hashes and roles, roles with their key permissions, whether auth is on, the
auth revision) come over, so the restored member enforces the same users;
the membership is the one the flags name, with IDs derived from
--initial-cluster and --initial-cluster-token as the server derives them. The data dir defaults
to <name>.ketch (ketch's --data-dir default) where etcdctl's is <name>.etcd.
"""

from __future__ import annotations

import os

from .. import _core, membership
from ..govalue import parse_urls_map
from .context import EXIT_BAD_ARGS, EXIT_ERROR, Ctl, CtlError
from .flags import Flag, ParsedArgs
from .printers import SnapshotStatus

__all__ = ["RESTORE_FLAGS", "cmd_snapshot_restore", "cmd_snapshot_status", "restore_snapshot", "snapshot_status"]

DEFAULT_NAME = "default"
DEFAULT_PEER_URL = "http://localhost:2380"

RESTORE_FLAGS = [
    Flag("data-dir", "string", ""),
    Flag("wal-dir", "string", ""),
    Flag("initial-cluster", "string", f"{DEFAULT_NAME}={DEFAULT_PEER_URL}"),
    Flag("initial-cluster-token", "string", "etcd-cluster"),
    Flag("initial-advertise-peer-urls", "string", DEFAULT_PEER_URL),
    Flag("name", "string", DEFAULT_NAME),
    Flag("skip-hash-check", "bool", False),
]


def cmd_snapshot_status(p: ParsedArgs, ctl: Ctl) -> None:
    if len(p.args) != 1:
        raise CtlError(EXIT_BAD_ARGS, "snapshot status requires exactly one argument")
    path = p.args[0]
    if not os.path.exists(path):
        raise CtlError(EXIT_ERROR, f"stat {path}: no such file or directory")
    try:
        status = snapshot_status(path)
    except (ValueError, OSError) as e:
        raise CtlError(EXIT_ERROR, str(e)) from None
    ctl.printer.db_status(status)


def snapshot_status(path: str) -> SnapshotStatus:
    """etcdctl's Status of an etcd-format snapshot file; ValueError (one line)
    for a file that is not a sound bbolt file."""
    return SnapshotStatus(*_core.snapshot_status(path))


def restore_snapshot(
    path: str,
    data_dir: str,
    wal_dir: str | None,
    name: str,
    cluster: dict[str, tuple[str, ...]],
    token: str,
    skip_hash_check: bool,
) -> None:
    """A new data dir for member `name` of the new cluster `cluster` (name →
    peer URLs) from an etcd-format snapshot; ValueError (one line, nothing
    left behind) for a bad file or an existing data or WAL dir."""
    members = [(membership.member_id(urls, token), n, list(urls)) for n, urls in cluster.items()]
    me = next(m[0] for m in members if m[1] == name)
    cid = membership.cluster_id(m[0] for m in members)
    _core.snapshot_restore(path, data_dir, wal_dir, me, cid, members, skip_hash_check)


def _urls_differ(a: list[str], b: list[str]) -> str:
    """netutil.URLStringsEqual's error for lists that differ (no resolving:
    ketch does not look names up here)."""
    if len(a) != len(b):
        return f"len({_go_q(a)}) != len({_go_q(b)})"
    for x, y in zip(sorted(a), sorted(b), strict=True):
        if x != y:
            return f'resolved urls: "{x}" != "{y}"'
    return ""


def _go_q(v: list[str]) -> str:
    return "[" + " ".join(f'"{x}"' for x in v) + "]"


def _verify_bootstrap(name: str, cluster: dict[str, tuple[str, ...]], peer_urls: list[str]) -> None:
    """etcd's ServerConfig.VerifyBootstrap, which etcdctl's restore runs, in its
    order and words (as the server's own check in ketch.config)."""
    if name not in cluster:
        raise CtlError(EXIT_ERROR, f'couldn\'t find local name "{name}" in the initial cluster configuration')
    mine = cluster[name]
    missing = [f"{name}={u}" for u in mine if u not in peer_urls]
    if missing:
        raise CtlError(
            EXIT_ERROR,
            f"--initial-cluster has {','.join(missing)} but missing from "
            f"--initial-advertise-peer-urls={','.join(sorted(peer_urls))} ({_urls_differ(peer_urls, list(mine))})",
        )
    extra = [u for u in peer_urls if u not in mine]
    if extra:
        raise CtlError(
            EXIT_ERROR,
            f"--initial-advertise-peer-urls has {','.join(extra)} but missing from "
            f"--initial-cluster={','.join(f'{n}={u}' for n, urls in cluster.items() for u in urls)}",
        )
    all_urls = [u for urls in cluster.values() for u in urls]
    if len(set(all_urls)) != len(all_urls):
        listing = ",".join(f"{n}={u}" for n in sorted(cluster) for u in cluster[n])
        raise CtlError(EXIT_ERROR, f"initial cluster {listing} has duplicate url")


def cmd_snapshot_restore(p: ParsedArgs, ctl: Ctl) -> None:
    if len(p.args) != 1:
        raise CtlError(EXIT_BAD_ARGS, "snapshot restore requires exactly one argument")
    path = p.args[0]
    name = p["name"]
    data_dir = p["data-dir"] or f"{name}.ketch"
    wal_dir = p["wal-dir"] or None
    peer_urls = [u for u in p["initial-advertise-peer-urls"].split(",") if u]
    try:
        cluster = parse_urls_map(p["initial-cluster"])
    except ValueError as e:
        raise CtlError(EXIT_ERROR, str(e)) from None
    _verify_bootstrap(name, cluster, peer_urls)
    if os.path.exists(data_dir):
        raise CtlError(EXIT_ERROR, f'data-dir "{data_dir}" exists')
    if wal_dir is not None and os.path.exists(wal_dir):
        raise CtlError(EXIT_ERROR, f'wal-dir "{wal_dir}" exists')
    if not os.path.exists(path):
        raise CtlError(EXIT_ERROR, f"open {path}: no such file or directory")
    try:
        restore_snapshot(path, data_dir, wal_dir, name, cluster, p["initial-cluster-token"], bool(p["skip-hash-check"]))
    except (ValueError, OSError) as e:
        raise CtlError(EXIT_ERROR, str(e)) from None
