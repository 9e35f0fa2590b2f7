"""Write python/ketch/ctl/help_text.py: etcdctl 3.4's help for every command, as data.

    .venv/bin/python tools/ctl_help_capture.py      (needs etcdctl 3.4 on PATH)

ketchctl prints etcdctl's help and usage text apart from the program name
(tests/ctl/test_usage.py compares the two). The text is etcdctl's interface,
like its error messages, so it is taken from etcdctl itself: each command's
`--help` with its tab runs folded to one tab (ketch.ctl.usage lays the
columns out again as Go's tabwriter does), the global options kept once, and
the version line left as a `{version}` field.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TARGET = ROOT / "python" / "ketch" / "ctl" / "help_text.py"
GLOBAL_HEADER = "GLOBAL OPTIONS:\n"


def etcdctl_help(path: list[str]) -> str:
    env = {**os.environ, "ETCDCTL_API": "3"}
    out = subprocess.run(
        ["etcdctl", *path, "--help"], check=True, capture_output=True, text=True, env=env, timeout=30
    )
    return out.stdout


def fold(text: str) -> str:
    """One tab after each cell's text; a line's leading tabs (empty cells) stay."""
    return re.sub(r"(?<=[^\t\n])\t+", "\t", text)


def commands(top: str) -> list[str]:
    section = top.split("COMMANDS:\n", 1)[1].split("\n\n", 1)[0]
    return [line.split("\t")[1] for line in section.splitlines()]


def main() -> None:
    top = etcdctl_help([])
    names = commands(top)
    paths = ["", *sorted({n.split(" ")[0] for n in names if " " in n}), *names]
    folded = {}
    for path in paths:
        text = fold(etcdctl_help(path.split()) if path else top)
        folded[path] = re.sub(r"(VERSION:\n\t)3\.4\.\d+", r"\1{version}", text)
    # Most commands end with the same global options; those that add their
    # group's flags to them (endpoint's --cluster) keep their own.
    blocks = [t.partition(GLOBAL_HEADER)[2] for t in folded.values() if GLOBAL_HEADER in t]
    common = max(set(blocks), key=blocks.count)
    global_block = GLOBAL_HEADER + common
    texts = {
        path: text.removesuffix(global_block) if text.endswith(global_block) else text
        for path, text in folded.items()
    }
    def literal(text: str, indent: str) -> str:
        parts = [repr(line) for line in text.splitlines(keepends=True)]
        return "(\n" + "".join(f"{indent}    {p}\n" for p in parts) + f"{indent})"

    lines = [
        '"""etcdctl 3.4\'s help text, by command (written by tools/ctl_help_capture.py: do not edit).',
        "",
        "Tab runs are folded to one tab; ketch.ctl.usage lays the columns out again.",
        '"""',
        "",
        "# ruff: noqa: E501 -- etcdctl's text, one source line per line of it",
        "# fmt: off",
        f"GLOBAL_OPTIONS = {literal(global_block, '')}",
        "",
        "HELP = {",
        *(f"    {path!r}: {literal(text, '    ')}," for path, text in texts.items()),
        "}",
        "",
    ]
    TARGET.write_text("\n".join(lines))


if __name__ == "__main__":
    main()
