"""etcdctl's four output formats (--write-out): simple, fields, json, table.

Each printer writes exactly what etcdctl 3.4's printer of the same name
writes. A command a format does not cover fails with etcdctl's message,
"<format> not supported as output format" (exit status 4).
"""

from __future__ import annotations

from .base import Health, Output, Printer, PrinterCrash, SnapshotStatus, UnsupportedFormat
from .fields import FieldsPrinter
from .json import JSONPrinter
from .simple import SimplePrinter
from .table import TablePrinter

__all__ = ["Health", "Output", "Printer", "PrinterCrash", "SnapshotStatus", "UnsupportedFormat", "make_printer"]


def make_printer(kind: str, out: Output, is_hex: bool) -> Printer | None:
    if kind == "simple":
        return SimplePrinter(out, is_hex)
    if kind == "fields":
        return FieldsPrinter(out)
    if kind == "json":
        return JSONPrinter(out)
    if kind == "table":
        return TablePrinter(out)
    return None
