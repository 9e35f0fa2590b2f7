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
import unicodedata
from typing import Any

from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

__all__ = [
    "go_duration",
    "go_json",
    "go_quote",
    "humanize_bytes",
    "parse_duration",
    "parse_int",
    "parse_uint",
    "pb_to_go",
]


def _printable(ch: str) -> bool:
    # Go's unicode.IsPrint: letters, marks, numbers, punctuation, symbols and ASCII space.
    return ch == " " or unicodedata.category(ch)[0] in "LMNPS"


def go_quote(data: bytes | str) -> str:
    """fmt's %q of a string: double-quoted, Go escapes, invalid UTF-8 as \\xNN."""
    raw = data.encode("utf-8", "surrogateescape") if isinstance(data, str) else data
    out = ['"']
    text = raw.decode("utf-8", "surrogateescape")
    for ch in text:
        o = ord(ch)
        if 0xDC80 <= o <= 0xDCFF:  # an undecodable byte
            out.append(f"\\x{o - 0xDC00:02x}")
        elif ch == '"' or ch == "\\":
            out.append("\\" + ch)
        elif _printable(ch):
            out.append(ch)
        elif ch in "\a\b\f\n\r\t\v":
            out.append({"\a": "\\a", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r",
                        "\t": "\\t", "\v": "\\v"}[ch])  # fmt: skip
        elif o < 0x20 or o == 0x7F:
            out.append(f"\\x{o:02x}")
        elif o < 0x10000:
            out.append(f"\\u{o:04x}")
        else:
            out.append(f"\\U{o:08x}")
    out.append('"')
    return "".join(out)


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


def parse_duration(text: str) -> float:
    """time.ParseDuration, in seconds. Raises ValueError with Go's message."""
    s = text
    sign = 1
    if s[:1] in "+-" and s:
        sign = -1 if s[0] == "-" else 1
        s = s[1:]
    if s == "0":
        return 0.0
    if not s:
        raise ValueError(f"time: invalid duration {go_quote(text)}")
    total = 0.0
    pos = 0
    while pos < len(s):
        m = _DURATION_PART.match(s, pos)
        if m is None or m.group(1) in ("", "."):
            if m is None and re.match(r"[0-9.]+$", s[pos:]):
                raise ValueError(f"time: missing unit in duration {go_quote(text)}")
            raise ValueError(f"time: invalid duration {go_quote(text)}")
        total += float(m.group(1)) * _UNITS[m.group(2)]
        pos = m.end()
    return sign * total / 1e9


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


def parse_uint(text: str, base: int) -> int:
    """strconv.ParseUint(text, base, 64); raises ValueError with Go's message."""
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"[:base]
    if not text or any(c.lower() not in digits for c in text):
        raise ValueError(f"strconv.ParseUint: parsing {go_quote(text)}: invalid syntax")
    value = int(text, base)
    if value >= 1 << 64:
        raise ValueError(f"strconv.ParseUint: parsing {go_quote(text)}: value out of range")
    return value


def parse_int(text: str, base: int, bits: int = 64) -> int:
    """strconv.ParseInt; raises ValueError with Go's message."""
    fn = "strconv.ParseInt"
    body = text[1:] if text[:1] in "+-" else text
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"[:base]
    if not body or any(c.lower() not in digits for c in body):
        raise ValueError(f"{fn}: parsing {go_quote(text)}: invalid syntax")
    value = int(text, base)
    if not -(1 << (bits - 1)) <= value < (1 << (bits - 1)):
        raise ValueError(f"{fn}: parsing {go_quote(text)}: value out of range")
    return value
