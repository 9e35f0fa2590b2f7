"""ketchctl's help and usage text: etcdctl 3.4's, apart from the program name.

etcdctl prints its help through a Go text/tabwriter (minimum width 0, tab
width 8, padding 1, padded with tabs); `help_text.py` keeps each command's
text with one tab between cells, and `tabwrite` lays the columns out again
the same way: a column's cells, over consecutive lines that all have it,
are padded with tabs to the widest cell plus one, rounded up to a multiple
of 8.
"""

from __future__ import annotations

from .. import __version__
from .help_text import GLOBAL_OPTIONS, HELP

__all__ = ["help_text", "tabwrite"]

TAB_WIDTH = 8
PROGRAM = "ketchctl"


def tabwrite(text: str) -> str:
    """Go's tabwriter.NewWriter(w, 0, 8, 1, '\\t', 0) over `text`."""
    rows = [line.split("\t") for line in text.split("\n")]
    widths: list[list[int]] = [[0] * (len(r) - 1) for r in rows]

    def layout(column: int, start: int, end: int) -> None:
        line = start
        while line < end:
            if len(rows[line]) - 1 <= column:  # no tab-terminated cell in this column
                line += 1
                continue
            block_end = line
            while block_end < end and len(rows[block_end]) - 1 > column:
                block_end += 1
            width = max(len(rows[i][column]) for i in range(line, block_end)) + 1
            width = -(-width // TAB_WIDTH) * TAB_WIDTH
            for i in range(line, block_end):
                widths[i][column] = width
            layout(column + 1, line, block_end)
            line = block_end

    layout(0, 0, len(rows))
    out = []
    for row, row_widths in zip(rows, widths, strict=True):
        cells = [
            cell + "\t" * -(-(width - len(cell)) // TAB_WIDTH)
            for cell, width in zip(row, row_widths, strict=False)
        ]
        out.append("".join(cells) + row[-1])
    return "\n".join(out)


def help_text(path: str) -> str | None:
    """What `ketchctl <path> --help` prints ("" for ketchctl itself). A
    command etcdctl 3.4 does not have (etcd 3.5's `auth status`) gets its
    group's help, as etcdctl 3.4 prints it for that command line."""
    while path not in HELP and path:
        path = path.rsplit(" ", 1)[0] if " " in path else ""
    text = HELP.get(path)
    if text is None:
        return None
    text = text.replace("{version}", __version__)
    if path and "GLOBAL OPTIONS:" not in text:  # kept once for the commands that share them
        text += GLOBAL_OPTIONS
    return tabwrite(text).replace("etcdctl", PROGRAM)
