"""Go's values as etcd's and etcdctl's command lines parse them: strconv's
integers and booleans, time's durations, URL lists, with Go's error texts.
The server's flags (ketch.config) and ketchctl's (ketch.ctl.flags) both parse
through here, so a bad value reads the same as in etcd and etcdctl.

Each kind turns a flag's text into a value or raises ValueError whose text is
what Go prints after "invalid value "x" for flag -name: ". Go's flag package
says only "parse error" / "value out of range" for its built-in kinds (bool,
int, uint, duration); etcd's own kinds (`flags.Uint32Value`, URL lists,
`SelectiveStringValue`) print their error as it is.

A kind also knows how Go's YAML decoding (YAML → JSON → encoding/json) takes
the value from a `--config-file`, and how `--help` shows a default.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Any
from urllib.parse import urlsplit

UINT32_MAX = 2**32 - 1
UINT64_MAX = 2**64 - 1
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


class Kind:
    """One Go value type: text → value, YAML value → value, value → help text."""

    is_bool = False
    go_type = "string"  # the Go type named in a YAML type error

    def parse(self, s: str) -> Any:
        return s

    def from_yaml(self, v: Any) -> Any:
        if not isinstance(v, str):
            raise TypeError(self.go_type)
        return self.parse(v)

    def show(self, v: Any) -> str:
        return str(v)


class Str(Kind):
    pass


class Ignored(Kind):
    """etcd's flags.IgnoredFlag: a bool-like flag whose value, whatever it is, is dropped."""

    is_bool = True

    def parse(self, s: str) -> str:
        return s

    def show(self, v: Any) -> str:
        return ""


class Bool(Kind):
    is_bool = True
    go_type = "bool"

    def parse(self, s: str) -> bool:
        try:
            return parse_bool(s)
        except ValueError as e:
            raise flag_package_error(e) from None

    def from_yaml(self, v: Any) -> bool:
        if not isinstance(v, bool):
            raise TypeError(self.go_type)
        return v

    def show(self, v: Any) -> str:
        return "true" if v else "false"


def _int_syntax(text: str, base: int) -> int | None:
    """The value strconv would read, or None for a syntax error. Base 0 takes
    0x, 0o, 0b and 0-led octal prefixes and underscores between digits."""
    body = text[1:] if text[:1] in "+-" else text
    if base == 0:
        if body[:1] == "0" and len(body) > 1 and body[1:2].isdigit():
            text = text.replace("0", "0o", 1)
        try:
            return int(text, 0)
        except ValueError:
            return None
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"[:base]
    if not body or any(c.lower() not in digits for c in body):
        return None
    return int(text, base)


def parse_int(text: str, base: int = 0, bits: int = 64) -> int:
    """strconv.ParseInt; raises ValueError with Go's message."""
    value = _int_syntax(text, base)
    if value is None:
        raise ValueError(f"strconv.ParseInt: parsing {quote(text)}: invalid syntax")
    if not -(1 << (bits - 1)) <= value < (1 << (bits - 1)):
        raise ValueError(f"strconv.ParseInt: parsing {quote(text)}: value out of range")
    return value


def parse_uint(text: str, base: int = 0, bits: int = 64) -> int:
    """strconv.ParseUint; raises ValueError with Go's message."""
    value = None if text[:1] in "+-" else _int_syntax(text, base)
    if value is None:
        raise ValueError(f"strconv.ParseUint: parsing {quote(text)}: invalid syntax")
    if value >= 1 << bits:
        raise ValueError(f"strconv.ParseUint: parsing {quote(text)}: value out of range")
    return value


def parse_bool(text: str) -> bool:
    """strconv.ParseBool; raises ValueError with Go's message."""
    if text in ("1", "t", "T", "TRUE", "true", "True"):
        return True
    if text in ("0", "f", "F", "FALSE", "false", "False"):
        return False
    raise ValueError(f"strconv.ParseBool: parsing {quote(text)}: invalid syntax")


def flag_package_error(err: ValueError) -> ValueError:
    """What Go's flag package says of a bool, int, uint or duration it could not
    parse: only "parse error" or "value out of range" (etcd's own kinds print
    strconv's error whole)."""
    return ValueError("value out of range" if str(err).endswith("value out of range") else "parse error")


class Int(Kind):
    """Go's int/int64 (signed) or uint/uint64 (unsigned) flags."""

    def __init__(self, lo: int, hi: int, go_type: str) -> None:
        self.lo, self.hi, self.go_type = lo, hi, go_type

    def parse(self, s: str) -> int:
        bits = self.hi.bit_length()
        try:
            return parse_uint(s, 0, bits) if self.lo == 0 else parse_int(s, 0, bits + 1)
        except ValueError as e:
            raise flag_package_error(e) from None

    def from_yaml(self, v: Any) -> int:
        if isinstance(v, bool) or not isinstance(v, int):
            raise TypeError(self.go_type)
        if not self.lo <= v <= self.hi:
            raise TypeError(self.go_type)
        return v


UINT = Int(0, UINT64_MAX, "uint")
UINT64 = Int(0, UINT64_MAX, "uint64")
INT = Int(INT64_MIN, INT64_MAX, "int")
INT64 = Int(INT64_MIN, INT64_MAX, "int64")


class Uint32(Int):
    """etcd's flags.Uint32Value: strconv.ParseUint(s, 0, 32), its error printed whole."""

    def __init__(self) -> None:
        super().__init__(0, UINT32_MAX, "uint32")

    def parse(self, s: str) -> int:
        return parse_uint(s, 0, 32)

    def show(self, v: Any) -> str:
        return "math.MaxUint32" if v == UINT32_MAX else str(v)


_DURATION_UNITS = {"ns": 1, "us": 1_000, "\u00b5s": 1_000, "\u03bcs": 1_000, "ms": 1_000_000,
                   "s": 1_000_000_000, "m": 60_000_000_000, "h": 3_600_000_000_000}  # fmt: skip
_DURATION_PART = re.compile(r"([0-9]*(?:\.[0-9]*)?)(ns|us|\u00b5s|\u03bcs|ms|s|m|h)")


def parse_duration(text: str) -> float:
    """time.ParseDuration ("10m", "1h30m", "250ms", "0"), in seconds; raises
    ValueError with Go's message."""
    s, sign = text, 1
    if s[:1] in "+-" and s:
        sign = -1 if s[0] == "-" else 1
        s = s[1:]
    if s == "0":
        return 0.0
    if not s:
        raise ValueError(f"time: invalid duration {quote(text)}")
    total, pos = 0.0, 0
    while pos < len(s):
        m = _DURATION_PART.match(s, pos)
        if m is None or m.group(1) in ("", "."):
            if m is None and re.match(r"[0-9.]+$", s[pos:]):
                raise ValueError(f"time: missing unit in duration {quote(text)}")
            raise ValueError(f"time: invalid duration {quote(text)}")
        total += float(m.group(1)) * _DURATION_UNITS[m.group(2)]
        pos = m.end()
    return sign * total / 1e9


def format_duration(seconds: float) -> str:
    """Go's Duration.String for the round values defaults have ("10m0s", "100ms", "2h0m0s")."""
    if seconds == 0:
        return "0s"
    if seconds < 1:
        ms = seconds * 1000
        return f"{ms:g}ms" if ms >= 1 else f"{seconds * 1e6:g}\u00b5s"
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    if h:
        return f"{int(h)}h{int(m)}m{s:g}s"
    if m:
        return f"{int(m)}m{s:g}s"
    return f"{s:g}s"


class Duration(Kind):
    """time.Duration, in seconds here. In YAML etcd decodes it as integer nanoseconds;
    ketch also takes Go's duration text there."""

    go_type = "time.Duration"

    def parse(self, s: str) -> float:
        try:
            return parse_duration(s)
        except ValueError as e:
            raise flag_package_error(e) from None

    def from_yaml(self, v: Any) -> float:
        if isinstance(v, int) and not isinstance(v, bool):
            return v / 1e9
        if isinstance(v, str):
            return self.parse(v)
        raise TypeError(self.go_type)

    def show(self, v: Any) -> str:
        return format_duration(v)


class Choice(Kind):
    """etcd's flags.SelectiveStringValue."""

    def __init__(self, *valid: str) -> None:
        self.valid = valid

    def parse(self, s: str) -> str:
        if s not in self.valid:
            raise ValueError("invalid value")
        return s


class Strings(Kind):
    """etcd's flags.StringsValue / UniqueStringsValue: comma-separated, kept in order
    (unique ones sorted, as UniqueStringsValue's String())."""

    go_type = "[]string"

    def __init__(self, unique: bool = False) -> None:
        self.unique = unique

    def parse(self, s: str) -> tuple[str, ...]:
        items = [x for x in s.split(",") if x] if self.unique else s.split(",")
        if self.unique:
            return tuple(sorted(set(items)))
        return tuple(items) if s else ()

    def from_yaml(self, v: Any) -> tuple[str, ...]:
        if isinstance(v, list) and all(isinstance(x, str) for x in v):
            return tuple(sorted(set(v))) if self.unique else tuple(v)
        if isinstance(v, str) and self.unique:  # host-whitelist is a comma list in YAML
            return self.parse(v)
        raise TypeError(self.go_type)

    def show(self, v: Any) -> str:
        return ",".join(v)


def parse_urls(s: str, exception: str = "") -> tuple[str, ...]:
    """etcd's types.NewURLs behind flags.UniqueURLsWithExceptions: comma-separated
    http(s)/unix(s) URLs with host:port and no path, unique; `exception` ("*" for
    --cors) is taken as it is."""
    out = []
    for raw in s.split(","):
        u = raw.strip()
        if not u:
            continue
        if exception and u == exception:
            out.append(u)
            continue
        parts = urlsplit(u)
        if parts.scheme not in ("http", "https", "unix", "unixs"):
            raise ValueError(f"URL scheme must be http, https, unix, or unixs: {u}")
        if not has_host_port(parts.netloc):
            raise ValueError(f'URL address does not have the form "host:port": {u}')
        if parts.path:
            raise ValueError(f"URL must not contain a path: {u}")
        out.append(u)
    return tuple(dict.fromkeys(out))


class URLs(Kind):
    def __init__(self, exception: str = "") -> None:
        self.exception = exception

    def parse(self, s: str) -> tuple[str, ...]:
        return parse_urls(s, self.exception)

    def show(self, v: Any) -> str:
        return ",".join(v)


def has_host_port(netloc: str) -> bool:
    host, sep, _ = netloc.rpartition(":")
    if not sep:
        return False
    if host.startswith("["):
        return host.endswith("]")
    return ":" not in host


def split_host_port(netloc: str) -> tuple[str, str]:
    host, _, port = netloc.rpartition(":")
    return host.strip("[]"), port


def _printable(ch: str) -> bool:
    # Go's unicode.IsPrint: letters, marks, numbers, punctuation, symbols and ASCII space.
    return ch == " " or unicodedata.category(ch)[0] in "LMNPS"


def quote(data: bytes | str) -> str:
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


def env_key(flag: str) -> str:
    """flags.FlagToEnv("ETCD", name): ETCD_ and the name upper-cased, dashes as underscores."""
    return "ETCD_" + flag.upper().replace("-", "_")


def parse_urls_map(s: str) -> dict[str, tuple[str, ...]]:
    """etcd's types.NewURLsMap: "name=url,name=url,..." to name -> URLs."""
    members: dict[str, list[str]] = {}
    for item in s.split(","):
        if not item:
            continue
        name, sep, u = item.partition("=")
        if not sep:
            continue  # etcd's parser skips an entry with no "="
        members.setdefault(name, []).append(u)
    out: dict[str, tuple[str, ...]] = {}
    for name, urls in members.items():
        out[name] = parse_urls(",".join(urls))
    if not out:
        raise ValueError("initial cluster unset and no discovery URL found")
    return out
