"""Generate the blocking client (python/ketch/client/sync.py) from the asyncio one (aio.py).

    .venv/bin/python tools/unasync_client.py          write sync.py
    .venv/bin/python tools/unasync_client.py --check  exit 1 if sync.py is not what aio.py makes

The client is written once, as asyncio code over `_transport_async`; the
blocking face is the same code with the `async`/`await` words dropped, the
async protocol names turned into their blocking ones, and `_transport_async`
swapped for `_transport_sync` (httpcore's unasync approach). The rewrite is by
whole words, on the tokens below and nothing else, so a line of aio.py reads
the same in sync.py bar these words.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

CLIENT = Path(__file__).resolve().parents[1] / "python" / "ketch" / "client"
SOURCE = CLIENT / "aio.py"
TARGET = CLIENT / "sync.py"

# Whole-word replacements, applied in this order.
WORDS = {
    "AsyncClient": "Client",
    "AsyncWatch": "Watch",
    "AsyncKeepAlive": "KeepAlive",
    "AsyncLease": "Lease",
    "AsyncTxnBuilder": "TxnBuilder",
    "AsyncIterator": "Iterator",
    "StopAsyncIteration": "StopIteration",
    "__aenter__": "__enter__",
    "__aexit__": "__exit__",
    "__aiter__": "__iter__",
    "__anext__": "__next__",
    "_transport_async": "_transport_sync",
}
# The keywords: "async def" and "async with/for" lose "async ", "await " goes.
KEYWORDS = [(re.compile(r"\basync (def|with|for)\b"), r"\1"), (re.compile(r"\bawait "), "")]
HEADER = "# Generated from aio.py by tools/unasync_client.py: edit aio.py, then run that script.\n"


def unasync(source: str) -> str:
    text = source
    for pattern, replacement in KEYWORDS:
        text = pattern.sub(replacement, text)
    for word, replacement in WORDS.items():
        text = re.sub(rf"\b{word}\b", replacement, text)
    # `(await c.get(...)).value` in aio.py's examples reads `(c.get(...)).value`.
    text = re.sub(r"\((\w+\.\w+\([^()]*\))\)\.", r"\1.", text)
    # An async generator re-yields item by item; the blocking one can say `yield from`.
    text = re.sub(r"for (\w+) in (.+):\n(\s+)yield \1\n", r"yield from \2\n", text)
    text = re.sub(r"^(from \S+ import )(\w+(?:, \w+)+)$", _sorted_names, text, flags=re.MULTILINE)
    return HEADER + text


def _sorted_names(m: re.Match[str]) -> str:
    """isort's order for one `from x import a, b` line (a rename can unsort it)."""

    def kind(name: str) -> tuple[int, str]:
        return (0 if name.isupper() else 1 if name[0].isupper() else 2, name)

    return m.group(1) + ", ".join(sorted(m.group(2).split(", "), key=kind))


def main(argv: list[str]) -> int:
    wanted = unasync(SOURCE.read_text())
    if argv[1:] == ["--check"]:
        if TARGET.read_text() != wanted:
            print(
                f"{TARGET} is not what {SOURCE.name} generates: "
                "run .venv/bin/python tools/unasync_client.py",
                file=sys.stderr,
            )
            return 1
        return 0
    if argv[1:]:
        print(__doc__, file=sys.stderr)
        return 2
    TARGET.write_text(wanted)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
