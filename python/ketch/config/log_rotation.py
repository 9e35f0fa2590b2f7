"""etcd 3.5's --enable-log-rotation and --log-rotation-config-json, checked
as embed.setupLogRotation checks them, with its messages and Go's
encoding/json errors.

The JSON is decoded into lumberjack v2.0.0's Logger (the version etcd 3.5
links): `maxsize` (MB, 0 = 100), `maxage` (days), `maxbackups`, `localtime`
and `filename` (replaced by the --log-outputs path); keys match
case-insensitively and unknown keys, `compress` among them (that lumberjack
has no such field), are ignored, as Go's decoder does.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from .model import ConfigError

__all__ = ["INVALID_OUTPUT", "Rotation", "rotation"]

# embed.ErrLogRotationInvalidLogOutput, word for word.
INVALID_OUTPUT = (
    "--log-outputs requires a single file path when --log-rotate-config-json is defined"
)
_STREAMS = ("default", "stderr", "stdout")
_INT64 = (-(2**63), 2**63 - 1)


@dataclass(frozen=True)
class Rotation:
    max_size_mb: int = 100
    max_age_days: int = 0
    max_backups: int = 0
    local_time: bool = False

    def as_tuple(self) -> tuple[int, int, int, bool]:
        """What `_core.configure_logging` takes. lumberjack disables age and
        count limits that are not positive; a negative size becomes the default."""
        return (max(self.max_size_mb, 0), max(self.max_age_days, 0), max(self.max_backups, 0),
                self.local_time)  # fmt: skip


@dataclass(frozen=True)
class _Number:
    literal: str


def _go_char(c: str) -> str:
    # encoding/json's quoteChar.
    if c == "'":
        return "'\\''"
    if c == '"':
        return "'\"'"
    return "'" + json.dumps(c)[1:-1] + "'"


def _syntax_error(text: str, e: json.JSONDecodeError) -> str:
    if e.pos >= len(text.rstrip()) or e.msg.startswith("Unterminated"):
        return "unexpected end of JSON input"
    c = _go_char(text[e.pos])
    context = {
        "Expecting value": "looking for beginning of value",
        "Expecting property name enclosed in double quotes": "looking for beginning of object key string",
        "Expecting ':' delimiter": "after object key",
        "Expecting ',' delimiter": "after object key:value pair",
        "Extra data": "after top-level value",
    }.get(e.msg, "looking for beginning of value")
    if e.msg == "Expecting ',' delimiter" and _in_array(text, e.pos):
        context = "after array element"
    return f"invalid character {c} {context}"


def _in_array(text: str, pos: int) -> bool:
    depth: list[str] = []
    in_string = escaped = False
    for c in text[:pos]:
        if in_string:
            in_string = not (c == '"' and not escaped)
            escaped = c == "\\" and not escaped
            continue
        if c == '"':
            in_string = True
        elif c in "[{":
            depth.append(c)
        elif c in "]}" and depth:
            depth.pop()
    return bool(depth) and depth[-1] == "["


def _kind(v: Any) -> str:
    if isinstance(v, _Number):
        return "number " + v.literal
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, str):
        return "string"
    if isinstance(v, list):
        return "array"
    return "object"


def _reject_constant(name: str) -> Any:
    raise ValueError(name)  # Go's JSON has no NaN or Infinity


def _decode(text: str) -> Rotation:
    try:
        doc = json.loads(text, parse_int=_Number, parse_float=_Number, parse_constant=_reject_constant)
    except json.JSONDecodeError as e:
        raise ConfigError(f"improperly formatted log rotation config: {_syntax_error(text, e)}") from None
    except ValueError:
        first = next((i for i, c in enumerate(text) if c in "NI"), 0)
        raise ConfigError(
            "improperly formatted log rotation config: invalid character "
            f"{_go_char(text[first])} looking for beginning of value"
        ) from None
    if doc is None:
        return Rotation()
    if not isinstance(doc, dict):
        kind = _kind(doc).split(" ")[0]
        raise ConfigError(
            f"invalid log rotation config: json: cannot unmarshal {kind} into Go value of type "
            "embed.logRotationConfig"
        )
    fields: dict[str, Any] = {"maxsize": 100, "maxage": 0, "maxbackups": 0, "localtime": False}
    go_types = {"filename": "string", "maxsize": "int", "maxage": "int", "maxbackups": "int",
                "localtime": "bool"}  # fmt: skip
    first_error = ""
    for key, value in doc.items():
        name = key if key in go_types else next((f for f in go_types if f.lower() == key.lower()), None)
        if name is None or value is None:
            continue
        go_type = go_types[name]
        ok = (
            (go_type == "string" and isinstance(value, str))
            or (go_type == "bool" and isinstance(value, bool))
            or (go_type == "int" and isinstance(value, _Number) and _as_int64(value.literal) is not None)
        )
        if not ok:
            # Go goes on decoding and reports the first mismatch.
            first_error = first_error or (
                f"invalid log rotation config: json: cannot unmarshal {_kind(value)} into Go "
                f"struct field logRotationConfig.{name} of type {go_type}"
            )
            continue
        if name != "filename":
            fields[name] = _as_int64(value.literal) if isinstance(value, _Number) else value
    if first_error:
        raise ConfigError(first_error)
    return Rotation(fields["maxsize"], fields["maxage"], fields["maxbackups"], fields["localtime"])


def _as_int64(literal: str) -> int | None:
    try:
        n = int(literal)
    except ValueError:
        return None
    return n if _INT64[0] <= n <= _INT64[1] else None


def rotation(enabled: bool, outputs: tuple[str, ...], config_json: str) -> Rotation | None:
    """The rotation of the one file output, or None when rotation is off.
    ConfigError in etcd's words when the outputs or the JSON do not do."""
    if not enabled:
        return None
    files = sum(1 for o in outputs if o not in _STREAMS)
    # etcd: one stream alone, or more than one file (a stream beside one file is fine).
    if (len(outputs) == 1 and files == 0) or files > 1:
        raise ConfigError(INVALID_OUTPUT)
    return _decode(config_json)
