"""Go's flag values, as etcd's command line parses them.

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

    def parse(self, s: str) -> bool:  # strconv.ParseBool
        if s in ("1", "t", "T", "TRUE", "true", "True"):
            return True
        if s in ("0", "f", "F", "FALSE", "false", "False"):
            return False
        raise ValueError("parse error")

    def from_yaml(self, v: Any) -> bool:
        if not isinstance(v, bool):
            raise TypeError(self.go_type)
        return v

    def show(self, v: Any) -> str:
        return "true" if v else "false"


def go_int(s: str) -> int:
    """strconv.ParseInt/ParseUint with base 0: 0x, 0o, 0b prefixes, 0-led octal, underscores."""
    body = s.lstrip("+-")
    if body[:1] == "0" and len(body) > 1 and body[1:2].isdigit():
        s = s.replace("0", "0o", 1)
    try:
        return int(s, 0)
    except ValueError:
        raise ValueError("parse error") from None


class Int(Kind):
    """Go's int/int64 (signed) or uint/uint64 (unsigned) flags."""

    def __init__(self, lo: int, hi: int, go_type: str) -> None:
        self.lo, self.hi, self.go_type = lo, hi, go_type

    def parse(self, s: str) -> int:
        if self.lo == 0 and s.startswith(("-", "+")):
            raise ValueError("parse error")
        v = go_int(s)
        if not self.lo <= v <= self.hi:
            raise ValueError("value out of range")
        return v

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
        try:
            v = super().parse(s)
        except ValueError as e:
            what = "invalid syntax" if str(e) == "parse error" else "value out of range"
            raise ValueError(f'strconv.ParseUint: parsing "{s}": {what}') from None
        return v

    def show(self, v: Any) -> str:
        return "math.MaxUint32" if v == UINT32_MAX else str(v)


_DURATION_UNITS = {
    "ns": 1e-9, "us": 1e-6, "\u00b5s": 1e-6, "\u03bcs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0,
}  # fmt: skip
_DURATION_PART = re.compile(r"(\d+\.?\d*|\.\d+)(ns|us|\u00b5s|\u03bcs|ms|s|m|h)")


def parse_duration(s: str) -> float:
    """Go's time.ParseDuration ("10m", "1h30m", "250ms", "0"), in seconds."""
    body = s[1:] if s[:1] in "+-" else s
    if body == "0":
        return 0.0
    if not body:
        raise ValueError("parse error")
    pos, total = 0, 0.0
    while pos < len(body):
        m = _DURATION_PART.match(body, pos)
        if m is None:
            raise ValueError("parse error")  # Go's flag package for a bad duration
        total += float(m.group(1)) * _DURATION_UNITS[m.group(2)]
        pos = m.end()
    return -total if s.startswith("-") else total


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
        return parse_duration(s)

    def from_yaml(self, v: Any) -> float:
        if isinstance(v, int) and not isinstance(v, bool):
            return v / 1e9
        if isinstance(v, str):
            return parse_duration(v)
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


def quote(s: str) -> str:
    """Go's %q for the strings flags carry."""
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def env_key(flag: str) -> str:
    """flags.FlagToEnv("ETCD", name): ETCD_ and the name upper-cased, dashes as underscores."""
    return "ETCD_" + flag.upper().replace("-", "_")
