"""Command-line parsing with cobra/pflag's rules, as etcdctl parses its arguments.

Flags may come before or after the command and its arguments; `--name=value`
and `--name value` both work; a bool flag takes `--name` or `--name=false`;
`--` ends the flags; commands match by unique prefix (etcdctl enables
cobra's prefix matching). Global flags also come from ETCDCTL_<NAME>
environment variables when not given on the command line.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ..govalue import parse_bool, parse_duration, parse_int

__all__ = ["GLOBAL_FLAGS", "Flag", "FlagError", "ParsedArgs", "parse_flags"]


class FlagError(Exception):
    """A malformed command line; cobra prints `Error: <message>` and exits 1."""


@dataclass(frozen=True)
class Flag:
    name: str
    kind: str  # "bool", "string", "int", "duration", "strings"
    default: Any
    short: str | None = None


GLOBAL_FLAGS = [
    Flag("endpoints", "strings", ["127.0.0.1:2379"]),
    Flag("debug", "bool", False),
    Flag("write-out", "string", "simple", "w"),
    Flag("hex", "bool", False),
    Flag("dial-timeout", "duration", 2.0),
    Flag("command-timeout", "duration", 5.0),
    Flag("keepalive-time", "duration", 2.0),
    Flag("keepalive-timeout", "duration", 6.0),
    Flag("insecure-transport", "bool", True),
    Flag("insecure-discovery", "bool", True),
    Flag("insecure-skip-tls-verify", "bool", False),
    Flag("cert", "string", ""),
    Flag("key", "string", ""),
    Flag("cacert", "string", ""),
    Flag("user", "string", ""),
    Flag("password", "string", ""),
    Flag("discovery-srv", "string", "", "d"),
    Flag("discovery-srv-name", "string", ""),
    Flag("help", "bool", False, "h"),
]


@dataclass
class ParsedArgs:
    values: dict[str, Any]
    args: list[str]
    changed: set[str] = field(default_factory=set)

    def __getitem__(self, name: str) -> Any:
        return self.values[name]


def _convert(flag: Flag, text: str, current: Any, changed: bool) -> Any:
    try:
        if flag.kind == "bool":
            return parse_bool(text)
        if flag.kind == "int":
            return parse_int(text, 0)  # pflag's int: strconv.ParseInt(s, 0, 64)
        if flag.kind == "duration":
            return parse_duration(text)
        if flag.kind == "strings":
            items = [s for s in text.split(",")] if text else []
            return (list(current) if changed else []) + items
        return text
    except ValueError as e:
        raise FlagError(f'invalid argument "{text}" for "--{flag.name}" flag: {e}') from None


def parse_flags(argv: Sequence[str], flags: Sequence[Flag]) -> ParsedArgs:
    by_name = {f.name: f for f in flags}
    by_short = {f.short: f for f in flags if f.short}
    values = {f.name: f.default for f in flags}
    changed: set[str] = set()
    args: list[str] = []
    i = 0
    argv = list(argv)
    while i < len(argv):
        a = argv[i]
        i += 1
        if a == "--":
            args.extend(argv[i:])
            break
        if a.startswith("--") and len(a) > 2:
            name, eq, value = a[2:].partition("=")
            flag = by_name.get(name)
            if flag is None:
                raise FlagError(f"unknown flag: --{name}")
            if not eq:
                if flag.kind == "bool":
                    value = "true"
                elif i < len(argv):
                    value = argv[i]
                    i += 1
                else:
                    raise FlagError(f"flag needs an argument: --{name}")
            values[name] = _convert(flag, value, values[name], name in changed)
            changed.add(name)
        elif a.startswith("-") and len(a) > 1:
            shorts = a[1:]
            while shorts:
                c, shorts = shorts[0], shorts[1:]
                flag = by_short.get(c)
                if flag is None:
                    raise FlagError(f"unknown shorthand flag: '{c}' in {a}")
                if flag.kind == "bool":
                    value = "true"
                    if shorts.startswith("="):
                        value, shorts = shorts[1:], ""
                else:
                    shorts = shorts.removeprefix("=")
                    if shorts:
                        value, shorts = shorts, ""
                    elif i < len(argv):
                        value = argv[i]
                        i += 1
                    else:
                        raise FlagError(f"flag needs an argument: '{c}' in -{c}")
                values[flag.name] = _convert(flag, value, values[flag.name], flag.name in changed)
                changed.add(flag.name)
        else:
            args.append(a)
    return ParsedArgs(values, args, changed)


def apply_env(parsed: ParsedArgs, flags: Sequence[Flag]) -> None:
    """etcd's flags.SetPflagsFromEnv: ETCDCTL_DIAL_TIMEOUT sets --dial-timeout unless given."""
    for flag in flags:
        key = "ETCDCTL_" + flag.name.upper().replace("-", "_")
        if flag.name in parsed.changed or key not in os.environ:
            continue
        text = os.environ[key]
        try:
            parsed.values[flag.name] = _convert(flag, text, flag.default, False)
        except FlagError:
            raise FlagError(
                f'invalid value "{text}" for {key}: {flag.kind} expected'
            ) from None
        parsed.changed.add(flag.name)
