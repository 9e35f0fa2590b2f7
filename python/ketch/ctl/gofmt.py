"""Go's formatting, reproduced where etcdctl's output depends on it.

etcdctl prints with fmt (%q quoting, %v of slices and durations),
encoding/json (on gogo-protobuf structs: proto field names, omitempty, bytes
as base64, HTML-safe escaping) and go-humanize. Matching its output byte for
byte means matching those rules, which this module does, each in one function.
"""

from __future__ import annotations

import base64
import math
import re
from typing import Any

from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

from ..govalue import quote as go_quote

__all__ = [
    "go_duration",
    "go_json",
    "go_quote",
    "humanize_bytes",
    "pb_to_go",
]


_ESCAPES = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t",
            "<": "\\u003c", ">": "\\u003e", "&": "\\u0026",
            "\u2028": "\\u2028", "\u2029": "\\u2029"}  # fmt: skip


def _json_string(s: str) -> str:
    out = ['"']
    for ch in s:
        if ch in _ESCAPES:
            out.append(_ESCAPES[ch])
        elif ord(ch) < 0x20:
            out.append(f"\\u{ord(ch):04x}")
        elif 0xDC80 <= ord(ch) <= 0xDCFF:
            out.append("\\ufffd")  # Go replaces invalid UTF-8 with U+FFFD
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def go_json(value: Any) -> str:
    """encoding/json.Marshal of plain data: dicts keep their order, bytes are base64."""
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, (bytes, bytearray)):
        return '"' + base64.b64encode(value).decode() + '"'
    if isinstance(value, str):
        return _json_string(value)
    if isinstance(value, dict):
        return "{" + ",".join(f"{_json_string(k)}:{go_json(v)}" for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(go_json(v) for v in value) + "]"
    raise TypeError(f"cannot encode {type(value).__name__} as JSON")


def _camel(name: str) -> str:
    return "".join(part[:1].upper() + part[1:] for part in name.split("_"))


def pb_to_go(msg: Message) -> dict[str, Any]:
    """A gogo-protobuf struct as encoding/json sees it: proto field names,
    every field omitempty, enums as numbers, a oneof as {"Name": {"FieldName": ...}}."""
    out: dict[str, Any] = {}
    for fd in msg.DESCRIPTOR.fields:
        is_message = fd.type == FieldDescriptor.TYPE_MESSAGE
        oneof = fd.containing_oneof
        if oneof is not None:
            if msg.WhichOneof(oneof.name) == fd.name:
                chosen = _field_value(is_message, getattr(msg, fd.name))
                out[_camel(oneof.name)] = {_camel(fd.name): chosen}
            continue
        value = getattr(msg, fd.name)
        if fd.is_repeated:
            if len(value):
                out[fd.name] = [_field_value(is_message, v) for v in value]
        elif is_message:
            if msg.HasField(fd.name):
                out[fd.name] = pb_to_go(value)
        elif value:
            out[fd.name] = value
    return out


def _field_value(is_message: bool, value: Any) -> Any:
    if is_message:
        return pb_to_go(value)
    return value


def header_fields(msg: Message) -> dict[str, Any]:
    """An embedded *pb.ResponseHeader: its fields promoted into the outer object."""
    return pb_to_go(msg.header) if msg.HasField("header") else {}  # type: ignore[attr-defined]


# -- durations ---------------------------------------------------------------

_UNITS = {"ns": 1, "us": 1_000, "µs": 1_000, "μs": 1_000, "ms": 1_000_000,
          "s": 1_000_000_000, "m": 60_000_000_000, "h": 3_600_000_000_000}  # fmt: skip
_DURATION_PART = re.compile(r"([0-9]*(?:\.[0-9]*)?)(ns|us|µs|μs|ms|s|m|h)")


def _fmt_frac(v: int, prec: int) -> tuple[str, int]:
    digits = ""
    printed = False
    for _ in range(prec):
        d = v % 10
        printed = printed or d != 0
        if printed:
            digits = str(d) + digits
        v //= 10
    return (("." + digits) if printed else ""), v


def go_duration(seconds: float) -> str:
    """time.Duration.String, e.g. 1.097867ms, 988.895µs, 2m3.5s."""
    ns = round(seconds * 1e9)
    if ns == 0:
        return "0s"
    neg = ns < 0
    u = -ns if neg else ns
    if u < 1_000_000_000:
        if u < 1_000:
            s = f"{u}ns"
        elif u < 1_000_000:
            frac, whole = _fmt_frac(u, 3)
            s = f"{whole}{frac}µs"
        else:
            frac, whole = _fmt_frac(u, 6)
            s = f"{whole}{frac}ms"
    else:
        frac, whole = _fmt_frac(u, 9)
        secs = whole % 60
        mins = whole // 60
        s = f"{secs}{frac}s"
        if mins:
            s = f"{mins % 60}m" + s
            if mins // 60:
                s = f"{mins // 60}h" + s
    return ("-" if neg else "") + s


def humanize_bytes(n: int) -> str:
    """go-humanize's Bytes: SI units (kB = 1000 B), one decimal below 10."""
    sizes = ["B", "kB", "MB", "GB", "TB", "PB", "EB"]
    if n < 10:
        return f"{n} B"
    e = math.floor(math.log(n) / math.log(1000))
    val = math.floor(n / (1000**e) * 10 + 0.5) / 10
    fmt = "{:.0f} {}" if val >= 10 else "{:.1f} {}"
    return fmt.format(val, sizes[int(e)])
