"""etcdctl's -w table (printer_table.go), drawn as olekukonko/tablewriter draws it:
headers upper-cased and centred, cells right-aligned, cells over 30 columns wrapped at spaces."""

from __future__ import annotations

import unicodedata

from ...client.results import MemberList, Status
from .base import (
    HashKV,
    Health,
    Printer,
    SnapshotStatus,
    db_status_rows,
    endpoint_hashkv_rows,
    endpoint_health_rows,
    endpoint_status_rows,
    member_list_rows,
)

MAX_COL_WIDTH = 30


def display_width(s: str) -> int:
    return sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in s)


def title(name: str) -> str:
    chars = list(name)
    for i, c in enumerate(chars):
        if c == "_":
            chars[i] = " "
        elif c == ".":
            before = i != 0 and not (chars[i - 1].isdigit() or chars[i - 1] == " ")
            after = i != len(chars) - 1 and not (chars[i + 1].isdigit() or chars[i + 1] == " ")
            if before or after:
                chars[i] = " "
    out = "".join(chars).strip()
    if not out and name:
        out = " "
    return out.upper()


def wrap(s: str, limit: int = MAX_COL_WIDTH) -> list[str]:
    if display_width(s) <= limit:
        return [s]
    words = s.split()
    if not words:
        return [s]
    lines, cur = [], words[0]
    for w in words[1:]:
        if display_width(cur) + 1 + display_width(w) <= limit:
            cur += " " + w
        else:
            lines.append(cur)
            cur = w
    lines.append(cur)
    return lines


def render(header: list[str], rows: list[list[str]]) -> str:
    head = [wrap(title(h)) for h in header]
    body = [[wrap(c) for c in row] for row in rows]
    widths = [max(display_width(x) for x in h) for h in head]
    for row in body:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], *(display_width(x) for x in cell))
    sep = "+" + "+".join("-" * (w + 2) for w in widths) + "+\n"

    def centre(s: str, w: int) -> str:
        gap = w - display_width(s)
        left = gap // 2
        return " " * left + s + " " * (gap - left) if gap > 0 else s

    def right(s: str, w: int) -> str:
        gap = w - display_width(s)
        return " " * gap + s if gap > 0 else s

    out = [sep]
    for line in range(max(len(h) for h in head)):
        cells = [centre(h[line] if line < len(h) else "", widths[i]) for i, h in enumerate(head)]
        out.append("| " + " | ".join(cells) + " |\n")
    out.append(sep)
    for row in body:
        for line in range(max(len(c) for c in row)):
            cells = [right(c[line] if line < len(c) else "", widths[i]) for i, c in enumerate(row)]
            out.append("| " + " | ".join(cells) + " |\n")
    out.append(sep)
    return "".join(out)


class TablePrinter(Printer):
    name = "table"

    def member_list(self, r: MemberList) -> None:
        self.out.write(render(*member_list_rows(r)))

    def endpoint_health(self, hs: list[Health]) -> None:
        self.out.write(render(*endpoint_health_rows(hs)))

    def endpoint_status(self, sts: list[tuple[str, Status]]) -> None:
        self.out.write(render(*endpoint_status_rows(sts)))

    def endpoint_hashkv(self, hs: list[tuple[str, HashKV]]) -> None:
        self.out.write(render(*endpoint_hashkv_rows(hs)))

    def db_status(self, s: SnapshotStatus) -> None:
        self.out.write(render(*db_status_rows(s)))
