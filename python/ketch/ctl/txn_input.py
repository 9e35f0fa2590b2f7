"""Reading `txn`'s input: compares, then success ops, then failure ops, each
list ended by an empty line (etcdctl's txn_command.go format):

    mod("key1") > "0"
    val("key2") = "v"

    put key1 "new value"
    get key2

    del key1
"""

from __future__ import annotations

import re
from typing import IO

from ..client.requests import Compare, CompareTarget, Op

__all__ = ["TxnInputError", "argify", "parse_compare", "read_compares", "read_ops"]


class TxnInputError(Exception):
    """Malformed txn input; etcdctl exits with status 3 (ExitInvalidInput)."""


_QUOTED = re.compile(r'"((?:[^"\\]|\\.)*)"')


def unquote(body: str) -> str:
    """The value of a Go double-quoted string literal's body."""
    out, i = [], 0
    simple = {"n": "\n", "t": "\t", "r": "\r", "a": "\a", "b": "\b", "f": "\f", "v": "\v",
              "\\": "\\", '"': '"', "'": "'"}  # fmt: skip
    raw = bytearray()
    while i < len(body):
        c = body[i]
        if c != "\\":
            raw += c.encode()
            i += 1
            continue
        n = body[i + 1]
        if n in simple:
            raw += simple[n].encode()
            i += 2
        elif n == "x":
            raw.append(int(body[i + 2 : i + 4], 16))
            i += 4
        elif n == "u":
            raw += chr(int(body[i + 2 : i + 6], 16)).encode()
            i += 6
        elif n == "U":
            raw += chr(int(body[i + 2 : i + 10], 16)).encode()
            i += 10
        elif n in "01234567":
            raw.append(int(body[i + 1 : i + 4], 8))
            i += 4
        else:
            raise ValueError(f"invalid escape \\{n}")
    out.append(raw.decode("utf-8", "surrogateescape"))
    return "".join(out)


_ARG = re.compile(r"\"(?:[^\"\\]|\\.)*\"|'[^']*'|[^'\"\s]\S*[^'\"\s]?")


def argify(line: str) -> list[str]:
    """etcdctl's argify: split a line into words, honouring '...' and "..." quoting."""
    args = _ARG.findall(line)
    out = []
    for a in args:
        if a.startswith("'"):
            # etcdctl slices by len(args) here, not len(a): a known quirk we keep.
            out.append(a[1 : len(args) - 1])
        elif a.startswith('"'):
            try:
                out.append(unquote(a[1:-1]))
            except (ValueError, IndexError) as e:
                raise TxnInputError(str(e)) from None
        else:
            out.append(a)
    return out


_TARGETS = {
    "ver": Compare.version, "version": Compare.version,
    "c": Compare.create_revision, "create": Compare.create_revision,
    "m": Compare.mod_revision, "mod": Compare.mod_revision,
    "val": Compare.value, "value": Compare.value,
    "lease": Compare.lease,
}  # fmt: skip


def _scan_quoted(s: str, pos: int) -> tuple[str, int] | None:
    """fmt.Sscanf's %q: skip spaces, then one Go quoted string; None if there is none."""
    while pos < len(s) and s[pos] == " ":
        pos += 1
    if pos < len(s) and s[pos] == "`":
        end = s.find("`", pos + 1)
        return (s[pos + 1 : end], end + 1) if end > 0 else None
    m = _QUOTED.match(s, pos)
    if m is None:
        return None
    try:
        return unquote(m.group(1)), m.end()
    except (ValueError, IndexError):
        return None


def _scan(rest: str) -> tuple[int, str, str, str]:
    """fmt.Sscanf(rest, "%q) %s %q"): how many values it got, and them."""
    key = op = val = ""
    got = _scan_quoted(rest, 0)
    if got is None:
        return 0, key, op, val
    key, pos = got
    if not rest.startswith(")", pos):
        return 1, key, op, val
    pos += 1
    m = re.compile(r"\s+(\S+)").match(rest, pos)
    if m is None:
        return 1, key, op, val
    op, pos = m.group(1), m.end()
    got = _scan_quoted(rest, pos)
    if got is None:
        return 2, key, op, val
    return 3, key, op, got[0]


def parse_compare(line: str) -> Compare:
    target, paren, rest = line.partition("(")
    if not paren:
        raise TxnInputError(f"malformed comparison: {line}")
    n, key, op, val = _scan(rest)
    if n != 3:
        from .gofmt import go_quote

        raise TxnInputError(
            f"malformed comparison: {line}; got {target}({go_quote(key)}) {op} {go_quote(val)}"
        )
    make = _TARGETS.get(target)
    if make is None:
        raise TxnInputError(f"malformed comparison: {line} (unknown target {target})")
    ops = {"=": "__eq__", "==": "__eq__", "!=": "__ne__", ">": "__gt__", "<": "__lt__"}
    if op not in ops:
        raise TxnInputError(f"malformed comparison: {line} (unknown op {op})")
    lhs: CompareTarget = make(key.encode("utf-8", "surrogateescape"))
    if make is Compare.value:
        return getattr(lhs, ops[op])(val.encode("utf-8", "surrogateescape"))  # type: ignore[no-any-return]
    try:
        number = int(val)
    except ValueError:
        raise TxnInputError(f"invalid txn compare request: {line}") from None
    return getattr(lhs, ops[op])(number)  # type: ignore[no-any-return]


def _lines(stream: IO[str]) -> list[str]:
    out: list[str] = []
    while True:
        line = stream.readline()
        if not line.endswith("\n"):
            raise TxnInputError("EOF")
        line = line.strip()
        if not line:
            return out
        out.append(line)


def read_compares(stream: IO[str]) -> list[Compare]:
    return [parse_compare(line) for line in _lines(stream)]


def read_ops(stream: IO[str]) -> list[Op]:
    from .commands import op_from_words  # the same parsing as the get/put/del commands

    ops = []
    for line in _lines(stream):
        words = argify(line)
        if len(words) < 2:
            raise TxnInputError(f"invalid txn compare request: {line}")
        op = op_from_words(words)
        if op is None:
            raise TxnInputError(f"invalid txn request: {line}")
        ops.append(op)
    return ops
