"""Write docs/client.md: the guide (tools/client_docs_intro.md) and then an API
reference rendered from the client's docstrings and signatures.

    .venv/bin/python tools/client_docs.py          write docs/client.md
    .venv/bin/python tools/client_docs.py --check  exit 1 if it is not current

tests/client/test_docs.py runs this check, and runs every ```python block of
the guide against etcd and ketch.
"""

from __future__ import annotations

import inspect
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
INTRO = ROOT / "tools" / "client_docs_intro.md"
TARGET = ROOT / "docs" / "client.md"

# What the reference lists, in this order: (heading, names in ketch.client).
SECTIONS = [
    ("The client", ["Client", "TLSConfig"]),
    ("Watches, leases, transactions", ["Watch", "KeepAlive", "Lease", "TxnBuilder", "Compare", "Op"]),
    ("Client-side recipes", ["Session", "Mutex", "Election"]),
    (
        "Results",
        [
            "Header", "KeyValue", "GetResult", "PutResult", "DeleteResult", "TxnResult",
            "WatchResponse", "Event", "EventType", "LeaseGrant", "KeepAliveResult", "LeaseInfo",
            "LeaseList", "Member", "MemberList", "Status", "LockResult", "LeaderKey", "AuthStatus",
            "AuthToken", "NameList", "UserInfo", "RoleInfo", "Permission", "PermissionType",
        ],
    ),
    (
        "Errors",
        [
            "EtcdError", "Unavailable", "ConnectionFailed", "NoLeader", "LeaderChanged",
            "DeadlineExceeded", "Compacted", "FutureRevision", "LeaseNotFound", "LeaseExpired",
            "InvalidArgument", "TooManyOps", "DuplicateKey", "RequestTooLarge", "NoSpace",
            "PermissionDenied", "AuthFailed", "MemberNotFound", "Unimplemented", "WatchCanceled",
        ],
    ),
]  # fmt: skip


def _doc(obj: object) -> str:
    return inspect.cleandoc(obj.__doc__ or "").strip()


def _signature(obj: object) -> str:
    try:
        sig = str(inspect.signature(obj))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return "(...)"
    sig = re.sub(r"(: |-> )'([^']*)'", r"\1\2", sig)  # string annotations, unquoted
    return sig.replace("Ellipsis", "...").replace("(self, ", "(").replace("(self)", "()")


def _members(cls: type) -> list[tuple[str, object]]:
    """The public methods and properties a class defines itself or inherits from ketch."""
    seen: dict[str, object] = {}
    for klass in reversed(cls.__mro__):
        if not klass.__module__.startswith("ketch."):
            continue
        for name, value in vars(klass).items():
            if name.startswith("_") and name not in ("__enter__", "__iter__"):
                continue
            if callable(value) or isinstance(value, (property, classmethod, staticmethod)):
                seen[name] = value
    return sorted(seen.items(), key=lambda kv: list(vars(cls)).index(kv[0]) if kv[0] in vars(cls) else -1)


def _render(name: str, obj: object) -> list[str]:
    out = [f"### `{name}`", ""]
    if inspect.isclass(obj) and not issubclass(obj, BaseException):
        out += [f"`{name}{_signature(obj)}`", ""]
    if doc := _doc(obj):
        out += [doc, ""]
    if not inspect.isclass(obj) or issubclass(obj, BaseException):
        return out
    for member, value in _members(obj):
        if member in ("from_pb", "to_pb") or member.startswith("__"):
            continue
        if isinstance(value, property):
            line = f"- `{member}` (property)"
            doc = _doc(value.fget)
        else:
            func = value.__func__ if isinstance(value, (classmethod, staticmethod)) else value
            line = f"- `{member}{_signature(func)}`"
            doc = _doc(func)
        out.append(line + (f": {' '.join(doc.split())}" if doc else ""))
    out.append("")
    return out


def render() -> str:
    import ketch.client as api

    lines = [INTRO.read_text().rstrip(), "", "## API reference", ""]
    lines += [
        "Generated from the docstrings by tools/client_docs.py. Every method of `Client`",
        "exists on `AsyncClient` with the same arguments, results and exceptions, as a",
        "coroutine (`await c.get(...)`); iterators are async iterators (`async for`),",
        "`with` blocks are `async with`, and `Watch`, `KeepAlive`, `Lease`, `TxnBuilder`",
        "are `AsyncWatch`, `AsyncKeepAlive`, `AsyncLease`, `AsyncTxnBuilder`.",
        "",
    ]
    for heading, names in SECTIONS:
        lines += [f"## {heading}", ""]
        for name in names:
            lines += _render(name, getattr(api, name))
    return "\n".join(lines).rstrip() + "\n"


def main(argv: list[str]) -> int:
    wanted = render()
    if argv[1:] == ["--check"]:
        if not TARGET.exists() or TARGET.read_text() != wanted:
            print(f"{TARGET} is not current: run .venv/bin/python tools/client_docs.py", file=sys.stderr)
            return 1
        return 0
    TARGET.write_text(wanted)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
