"""ketchctl's commands: etcdctl v3's command tree, flags, checks, messages and exit codes.

Each command function takes the parsed command line and a `Ctl` (the global
flags, the printer and a lazily made client) and either prints its result
or raises CtlError with etcdctl's message and exit code.
"""

from __future__ import annotations

import concurrent.futures
import os
import sys
import time
from typing import Any

import grpc

from .._pb import rpc_pb2
from ..client import EtcdError
from ..client.methods import LEASE_REVOKE
from ..client.requests import Op
from ..client.results import Header
from ..govalue import parse_int
from . import auth, concurrency, maintenance, members, snapshot
from .context import (
    EXIT_BAD_ARGS,
    EXIT_BAD_CONNECTION,
    EXIT_BAD_FEATURE,
    EXIT_ERROR,
    EXIT_INTERRUPTED,
    EXIT_INVALID_INPUT,
    CommandSpec,
    Ctl,
    CtlError,
    cluster_endpoints,
    go_error_text,
)
from .flags import Flag, FlagError, ParsedArgs, parse_flags
from .gofmt import go_duration
from .printers import Health
from .printers.simple import SimplePrinter


def _b(key: str) -> bytes:
    return os.fsencode(key)


# -- get / put / del: parsing shared with txn's op lines ---------------------

GET_FLAGS = [
    Flag("consistency", "string", "l"), Flag("order", "string", ""), Flag("sort-by", "string", ""),
    Flag("limit", "int", 0), Flag("prefix", "bool", False), Flag("from-key", "bool", False),
    Flag("rev", "int", 0), Flag("keys-only", "bool", False),
    Flag("print-value-only", "bool", False),
]  # fmt: skip
PUT_FLAGS = [
    Flag("lease", "string", "0"), Flag("prev-kv", "bool", False),
    Flag("ignore-value", "bool", False), Flag("ignore-lease", "bool", False),
]  # fmt: skip
DEL_FLAGS = [
    Flag("prefix", "bool", False), Flag("prev-kv", "bool", False), Flag("from-key", "bool", False),
]  # fmt: skip


def get_options(p: ParsedArgs) -> tuple[bytes, dict[str, Any]]:
    args = p.args
    if not args:
        raise CtlError(EXIT_BAD_ARGS, "get command needs one argument as key and an optional argument as range_end")
    if p["prefix"] and p["from-key"]:
        raise CtlError(EXIT_BAD_ARGS, "`--prefix` and `--from-key` cannot be set at the same time, choose one")
    opts: dict[str, Any] = {}
    if p["consistency"] == "s":
        opts["serializable"] = True
    elif p["consistency"] != "l":
        raise CtlError(EXIT_BAD_FEATURE, f'unknown consistency flag "{p["consistency"]}"')
    key = _b(args[0])
    if len(args) > 1:
        if p["prefix"] or p["from-key"]:
            raise CtlError(EXIT_BAD_ARGS, "too many arguments, only accept one argument when `--prefix` or `--from-key` is set")  # noqa: E501 -- etcd's message, quoted whole
        opts["range_end"] = _b(args[1])
    opts["limit"] = p["limit"]
    if p["rev"] > 0:
        opts["revision"] = p["rev"]
    order = {"ASCEND": "ascend", "DESCEND": "descend", "": "none"}.get(p["order"].upper())
    if order is None:
        raise CtlError(EXIT_BAD_FEATURE, f"bad sort order {p['order']}")
    target = {"CREATE": "create", "KEY": "key", "MODIFY": "mod", "VALUE": "value",
              "VERSION": "version", "": "key"}.get(p["sort-by"].upper())  # fmt: skip
    if target is None:
        raise CtlError(EXIT_BAD_FEATURE, f"bad sort target {p['sort-by']}")
    if target == "key" and order == "ascend":
        order = "none"  # clientv3.WithSort: keys already come ascending
    opts["sort_order"], opts["sort_target"] = order, target
    if p["prefix"]:
        if not key:
            key, opts["from_key"] = b"\0", True
        else:
            opts["prefix"] = True
    if p["from-key"]:
        key = key or b"\0"
        opts["from_key"] = True
    if p["keys-only"]:
        opts["keys_only"] = True
    return key, opts


def put_options(p: ParsedArgs, stdin: Any = None) -> tuple[bytes, bytes, dict[str, Any]]:
    args = p.args
    need = "put command needs 1 argument and input from stdin or 2 arguments"
    if not args:
        raise CtlError(EXIT_BAD_ARGS, need)
    if p["ignore-value"] and len(args) > 1:
        raise CtlError(EXIT_BAD_ARGS, "put command needs only 1 argument when 'ignore-value' is set")
    value = b""
    if not p["ignore-value"]:
        if len(args) > 1:
            value = _b(args[1])
        else:
            data = (stdin or sys.stdin.buffer).read()
            if not data:
                raise CtlError(EXIT_BAD_ARGS, need)
            value = data
    try:
        lease = parse_int(p["lease"], 16)
    except ValueError as e:
        raise CtlError(EXIT_BAD_ARGS, f"bad lease ID ({e}), expecting ID in Hex") from None
    opts = {"lease": lease, "prev_kv": p["prev-kv"], "ignore_value": p["ignore-value"],
            "ignore_lease": p["ignore-lease"]}  # fmt: skip
    return _b(args[0]), value, opts


def del_options(p: ParsedArgs) -> tuple[bytes, dict[str, Any]]:
    args = p.args
    if not args or len(args) > 2:
        raise CtlError(EXIT_BAD_ARGS, "del command needs one argument as key and an optional argument as range_end")
    if p["prefix"] and p["from-key"]:
        raise CtlError(EXIT_BAD_ARGS, "`--prefix` and `--from-key` cannot be set at the same time, choose one")
    key = _b(args[0])
    opts: dict[str, Any] = {}
    if len(args) > 1:
        if p["prefix"] or p["from-key"]:
            raise CtlError(EXIT_BAD_ARGS, "too many arguments, only accept one argument when `--prefix` or `--from-key` is set")  # noqa: E501 -- etcd's message, quoted whole
        opts["range_end"] = _b(args[1])
    if p["prefix"]:
        if not key:
            key, opts["from_key"] = b"\0", True
        else:
            opts["prefix"] = True
    if p["prev-kv"]:
        opts["prev_kv"] = True
    if p["from-key"]:
        key = key or b"\0"
        opts["from_key"] = True
    return key, opts


def op_from_words(words: list[str]) -> Op | None:
    """One txn operation line ("put k v", "get k --prefix", "del k"), or None if malformed."""
    table = {"put": PUT_FLAGS, "get": GET_FLAGS, "del": DEL_FLAGS}
    matches = [n for n in table if n.startswith(words[0])]
    if len(matches) != 1:
        return None
    name = matches[0]
    try:
        p = parse_flags(words[1:], table[name])
        if name == "put":
            key, value, popts = put_options(p)
            return Op.put(key, value, **popts)
        if name == "get":
            key, gopts = get_options(p)
            end = gopts.pop("range_end", None)
            return Op.get(key, end, **gopts)
        key, dopts = del_options(p)
        end = dopts.pop("range_end", None)
        return Op.delete(key, end, **dopts)
    except FlagError:
        return None


def cmd_get(p: ParsedArgs, ctl: Ctl) -> None:
    key, opts = get_options(p)
    end = opts.pop("range_end", None)
    resp = ctl.client().get(key, end, **opts)
    if p["print-value-only"]:
        if not isinstance(ctl.printer, SimplePrinter):
            raise CtlError(EXIT_BAD_ARGS, "print-value-only is only for `--write-out=simple`")
        ctl.printer.value_only = True
    ctl.printer.get(resp)


def cmd_put(p: ParsedArgs, ctl: Ctl) -> None:
    key, value, opts = put_options(p)
    ctl.printer.put(ctl.client().put(key, value, **opts))


def cmd_del(p: ParsedArgs, ctl: Ctl) -> None:
    key, opts = del_options(p)
    end = opts.pop("range_end", None)
    ctl.printer.delete(ctl.client().delete(key, end, **opts))


def cmd_txn(p: ParsedArgs, ctl: Ctl) -> None:
    from .txn_input import TxnInputError, read_compares, read_ops

    if p.args:
        raise CtlError(EXIT_BAD_ARGS, "txn command does not accept argument")
    client = ctl.client()
    interactive = p["interactive"]

    def prompt(text: str) -> None:
        if interactive:
            ctl.out.line(text)
            ctl.out.flush()

    try:
        prompt("compares:")
        compares = read_compares(sys.stdin)
        prompt("success requests (get, put, del):")
        success = read_ops(sys.stdin)
        prompt("failure requests (get, put, del):")
        failure = read_ops(sys.stdin)
    except TxnInputError as e:
        raise CtlError(EXIT_INVALID_INPUT, str(e)) from None
    ctl.printer.txn(client.txn(compares, success, failure, timeout=None))


def cmd_compaction(p: ParsedArgs, ctl: Ctl) -> None:
    if len(p.args) != 1:
        raise CtlError(EXIT_BAD_ARGS, "compaction command needs 1 argument")
    try:
        rev = parse_int(p.args[0], 10)
    except ValueError as e:
        raise CtlError(EXIT_ERROR, str(e)) from None
    ctl.client().compact(rev, physical=p["physical"])
    ctl.out.line(f"compacted revision {rev}")


def cmd_watch(p: ParsedArgs, ctl: Ctl) -> None:
    env_key = os.environ.get("ETCDCTL_WATCH_KEY", "")
    env_range = os.environ.get("ETCDCTL_WATCH_RANGE_END", "")
    if not env_key and env_range:
        raise CtlError(EXIT_BAD_ARGS, f'ETCDCTL_WATCH_KEY is empty but got ETCDCTL_WATCH_RANGE_END="{env_range}"')
    if p["interactive"]:
        _watch_interactive(ctl, env_key, env_range)
        return
    args = list(p.args)
    if env_key and args:
        raise CtlError(EXIT_BAD_ARGS, "bad number of arguments (found conflicting environment key)")
    if env_key:
        args = [env_key] + ([env_range] if env_range else [])
    if not args:
        raise CtlError(EXIT_BAD_ARGS, "bad number of arguments")
    try:
        watch = _start_watch(ctl, args, p["prefix"], p["rev"], p["prev-kv"])
    except EtcdError as e:
        # etcdctl's watch channel closes with the error: the same two lines.
        ctl.out.err(f"watch was canceled ({go_error_text(e)})\n")
    else:
        _print_watch(ctl, watch)
    raise CtlError(EXIT_INTERRUPTED, "watch is canceled by the server")


def _start_watch(ctl: Ctl, args: list[str], prefix: bool, rev: int, prev_kv: bool) -> Any:
    if len(args) == 2 and prefix:
        raise CtlError(EXIT_BAD_ARGS, "`range_end` and `--prefix` are mutually exclusive")
    key = _b(args[0])
    end = _b(args[1]) if len(args) == 2 else None
    opts: dict[str, Any] = {"start_revision": rev, "prev_kv": prev_kv}
    if prefix:
        if key:
            opts["prefix"] = True
        else:
            key, opts["from_key"] = b"\0", True
    return ctl.client().watch(key, end, **opts)


def _print_watch(ctl: Ctl, watch: Any) -> None:
    try:
        for resp in watch:
            ctl.printer.watch(resp)
            ctl.out.flush()
    except EtcdError as e:
        ctl.out.err(f"watch was canceled ({go_error_text(e)})\n")


def _watch_interactive(ctl: Ctl, env_key: str, env_range: str) -> None:
    import threading

    from .txn_input import argify

    ctl.client()
    watch_flags = [Flag("prefix", "bool", False), Flag("rev", "int", 0),
                   Flag("prev-kv", "bool", False), Flag("interactive", "bool", False, "i")]  # fmt: skip
    lock = threading.Lock()
    while True:
        line = sys.stdin.readline()
        if not line:
            raise CtlError(EXIT_INVALID_INPUT, "Error reading watch request line: EOF")
        line = line.removesuffix("\n")
        words = argify(line)
        if not words:
            ctl.out.err(f"Invalid command: {line} (watch and progress supported)\n")
            continue
        if words[0] == "watch":
            try:
                wp = parse_flags(words[1:], watch_flags)
            except FlagError as e:
                raise CtlError(EXIT_BAD_ARGS, str(e)) from None
            args = wp.args if not env_key else [env_key, *([env_range] if env_range else [])]
            if not args:
                ctl.out.err(f"Invalid command {line} (command type or key is not provided)\n")
                continue
            try:
                w = _start_watch(ctl, args, wp["prefix"], wp["rev"], wp["prev-kv"])
            except CtlError as e:
                ctl.out.err(f"Invalid command {line} ({e.message})\n")
                continue

            def pump(w: Any = w) -> None:
                for resp in w:
                    with lock:
                        ctl.printer.watch(resp)
                        ctl.out.flush()

            threading.Thread(target=pump, daemon=True).start()
        elif words[0] == "progress":
            continue  # progress requests need the watch stream's RequestProgress: not sent
        else:
            ctl.out.err(f"Invalid command {line} (only support watch)\n")


# -- lease ---------------------------------------------------------------------


def lease_id(arg: str) -> int:
    try:
        return parse_int(arg, 16)
    except ValueError as e:
        raise CtlError(EXIT_BAD_ARGS, f"bad lease ID arg ({e}), expecting ID in Hex") from None


def cmd_lease_grant(p: ParsedArgs, ctl: Ctl) -> None:
    if len(p.args) != 1:
        raise CtlError(EXIT_BAD_ARGS, "lease grant command needs TTL argument")
    try:
        ttl = parse_int(p.args[0], 10)
    except ValueError as e:
        raise CtlError(EXIT_BAD_ARGS, f"bad TTL ({e})") from None
    try:
        resp = ctl.client().grant(ttl)
    except EtcdError as e:
        raise CtlError(EXIT_ERROR, f"failed to grant lease ({go_error_text(e)})") from None
    ctl.printer.grant(resp)


def cmd_lease_revoke(p: ParsedArgs, ctl: Ctl) -> None:
    if len(p.args) != 1:
        raise CtlError(EXIT_BAD_ARGS, "lease revoke command needs 1 argument")
    lid = lease_id(p.args[0])
    client = ctl.client()
    try:
        # Through the raw call: -w json prints the whole wire response.
        resp = client.call(LEASE_REVOKE, rpc_pb2.LeaseRevokeRequest(ID=lid), idempotent=False)
    except EtcdError as e:
        raise CtlError(EXIT_ERROR, f"failed to revoke lease ({go_error_text(e)})") from None
    ctl.printer.revoke(lid, Header.from_pb(resp.header), resp)


def cmd_lease_timetolive(p: ParsedArgs, ctl: Ctl) -> None:
    if len(p.args) != 1:
        raise CtlError(EXIT_BAD_ARGS, "lease timetolive command needs lease ID as argument")
    lid = lease_id(p.args[0])
    try:
        resp = ctl.client().time_to_live(lid, keys=p["keys"], timeout=None)
    except EtcdError as e:
        raise CtlError(EXIT_BAD_CONNECTION, go_error_text(e)) from None
    ctl.printer.time_to_live(resp, p["keys"])


def cmd_lease_list(p: ParsedArgs, ctl: Ctl) -> None:
    try:
        resp = ctl.client().leases(timeout=None)
    except EtcdError as e:
        raise CtlError(EXIT_BAD_CONNECTION, go_error_text(e)) from None
    ctl.printer.leases(resp)


def cmd_lease_keep_alive(p: ParsedArgs, ctl: Ctl) -> None:
    if len(p.args) != 1:
        raise CtlError(EXIT_BAD_ARGS, "lease keep-alive command needs lease ID as argument")
    lid = lease_id(p.args[0])
    client = ctl.client()
    try:
        if p["once"]:
            ctl.printer.keep_alive(client.keep_alive_once(lid, timeout=None))
            return
        with client.keep_alive(lid) as renewals:
            for resp in renewals:
                ctl.printer.keep_alive(resp)
                ctl.out.flush()
    except EtcdError as e:
        if p["once"]:
            raise CtlError(EXIT_BAD_CONNECTION, go_error_text(e)) from None
    if isinstance(ctl.printer, SimplePrinter):
        ctl.out.line(f"lease {lid & (2**64 - 1):016x} expired or revoked.")


# -- member, endpoint ----------------------------------------------------------


def cmd_member_list(p: ParsedArgs, ctl: Ctl) -> None:
    ctl.printer.member_list(ctl.client().member_list())


def cmd_endpoint_health(p: ParsedArgs, ctl: Ctl) -> None:
    endpoints = cluster_endpoints(p, ctl)

    def check(ep: str) -> Health:
        try:
            c = ctl.client([ep])
        except CtlError as e:
            return Health(ep, False, "", e.message)
        with c:
            start = time.monotonic()
            try:
                c.get("health")
                err = ""
            except EtcdError as e:
                err = "" if e.code == grpc.StatusCode.PERMISSION_DENIED else go_error_text(e)
            took = go_duration(time.monotonic() - start)
        return Health(ep, not err, took, err)

    results: list[Health] = []
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, len(endpoints))) as pool:
        for fut in concurrent.futures.as_completed([pool.submit(check, ep) for ep in endpoints]):
            results.append(fut.result())
    ctl.printer.endpoint_health(results)
    if any(h.error for h in results):
        raise CtlError(EXIT_ERROR, "unhealthy cluster")


def cmd_endpoint_status(p: ParsedArgs, ctl: Ctl) -> None:
    endpoints = cluster_endpoints(p, ctl)
    client = ctl.client()
    statuses = []
    failed = False
    for ep in endpoints:
        try:
            statuses.append((ep, client.status(ep)))
        except EtcdError as e:
            failed = True
            ctl.out.err(f"Failed to get the status of endpoint {ep} ({go_error_text(e)})\n")
    ctl.printer.endpoint_status(statuses)
    if failed:
        raise CtlError(EXIT_ERROR, "")


def cmd_version(p: ParsedArgs, ctl: Ctl) -> None:
    from .. import __version__

    ctl.out.line(f"ketchctl version: {__version__}")
    ctl.out.line("API version: 3.4")


def _group(name: str, usage: str, children: list[CommandSpec], flags: list[Flag] | None = None) -> CommandSpec:
    return CommandSpec(name, None, flags or [], usage, {c.name: c for c in children})


COMMANDS = _group("ketchctl", "", [
    CommandSpec("get", cmd_get, GET_FLAGS, "get [options] <key> [range_end]"),
    CommandSpec("put", cmd_put, PUT_FLAGS, "put [options] <key> <value> (<value> can also be given from stdin)"),
    CommandSpec("del", cmd_del, DEL_FLAGS, "del [options] <key> [range_end]"),
    CommandSpec("txn", cmd_txn, [Flag("interactive", "bool", False, "i")], "txn [options]"),
    CommandSpec("compaction", cmd_compaction, [Flag("physical", "bool", False)], "compaction [options] <revision>"),
    CommandSpec("watch", cmd_watch, [
        Flag("interactive", "bool", False, "i"), Flag("prefix", "bool", False),
        Flag("rev", "int", 0), Flag("prev-kv", "bool", False),
    ], "watch [options] [key or prefix] [range_end] [--] [exec-command arg1 arg2 ...]"),
    _group("lease", "lease <subcommand>", [
        CommandSpec("grant", cmd_lease_grant, [], "grant <ttl>"),
        CommandSpec("revoke", cmd_lease_revoke, [], "revoke <leaseID>"),
        CommandSpec(
            "timetolive", cmd_lease_timetolive, [Flag("keys", "bool", False)], "timetolive <leaseID> [options]"
        ),
        CommandSpec("list", cmd_lease_list, [], "list"),
        CommandSpec(
            "keep-alive", cmd_lease_keep_alive, [Flag("once", "bool", False)], "keep-alive [options] <leaseID>"
        ),
    ]),
    _group("member", "member <subcommand>", [
        CommandSpec("add", members.cmd_member_add,
                    [Flag("peer-urls", "string", ""), Flag("learner", "bool", False)],
                    "add <memberName> [options]"),
        CommandSpec("remove", members.cmd_member_remove, [], "remove <memberID>"),
        CommandSpec("update", members.cmd_member_update, [Flag("peer-urls", "string", "")],
                    "update <memberID> [options]"),
        CommandSpec("list", cmd_member_list, [], "list"),
        CommandSpec("promote", members.cmd_member_promote, [], "promote <memberID>"),
    ]),
    _group("endpoint", "endpoint <subcommand>", [
        CommandSpec("health", cmd_endpoint_health, [], "health"),
        CommandSpec("status", cmd_endpoint_status, [], "status"),
        CommandSpec("hashkv", maintenance.cmd_endpoint_hashkv, [Flag("rev", "int", 0)], "hashkv"),
    ], flags=[Flag("cluster", "bool", False)]),
    _group("alarm", "alarm <subcommand>", [
        CommandSpec("disarm", maintenance.cmd_alarm_disarm, [], "disarm"),
        CommandSpec("list", maintenance.cmd_alarm_list, [], "list"),
    ]),
    CommandSpec("defrag", maintenance.cmd_defrag,
                [Flag("cluster", "bool", False), Flag("data-dir", "string", "")], "defrag"),
    CommandSpec("move-leader", maintenance.cmd_move_leader, [], "move-leader <transferee-member-id>"),
    _group("snapshot", "snapshot <subcommand>", [
        CommandSpec("save", maintenance.cmd_snapshot_save, [], "save <filename>"),
        CommandSpec("restore", snapshot.cmd_snapshot_restore, snapshot.RESTORE_FLAGS, "restore <filename> [options]"),
        CommandSpec("status", snapshot.cmd_snapshot_status, [], "status <filename>"),
    ]),
    CommandSpec("lock", concurrency.cmd_lock, [Flag("ttl", "int", 10)],
                "lock <lockname> [exec-command arg1 arg2 ...]"),
    CommandSpec("elect", concurrency.cmd_elect, [Flag("listen", "bool", False, "l")],
                "elect <election-name> [proposal]"),
    CommandSpec("version", cmd_version, [], "version"),
    *auth.command_groups(CommandSpec, _group),
])  # fmt: skip

# etcdctl commands ketchctl does not have yet: named, so the error says so.
NOT_YET = ("make-mirror", "migrate", "check")
