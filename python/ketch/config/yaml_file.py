"""`--config-file`: a YAML file with etcd's keys (nested sections flattened to
"section.key"), decoded as Go's YAML → JSON → encoding/json would."""

from __future__ import annotations

from typing import Any

from ..govalue import quote
from .flags import YAML_KEYS, YAML_SECTIONS
from .model import ConfigError

__all__ = ["from_yaml"]



_TYPE_WORDS = {
    "bool": "true or false", "string": "a string", "[]string": "a list of strings",
    "time.Duration": "a duration (integer nanoseconds)",
}  # fmt: skip


def from_yaml(path: str) -> dict[str, Any]:
    import yaml  # only when a config file is used

    def fail(msg: str) -> ConfigError:
        return ConfigError(f"error verifying flags, {path}: {msg}")

    try:
        with open(path, "rb") as f:
            doc = yaml.safe_load(f)
    except OSError as e:
        raise ConfigError(
            f"error verifying flags, open {path}: {e.strerror.lower() if e.strerror else e}"
        ) from None
    except yaml.YAMLError as e:
        raise fail(" ".join(str(e).split())) from None
    if doc is None:
        doc = {}
    if not isinstance(doc, dict):
        raise fail("the configuration must be a YAML mapping")
    # Flatten the nested sections into dotted keys.
    entries: dict[str, Any] = {}
    for key, v in doc.items():
        if key in YAML_SECTIONS and v is not None:
            if not isinstance(v, dict):
                raise fail(f"{key} must be a mapping")
            entries.update({f"{key}.{k}": x for k, x in v.items()})
        else:
            entries[str(key)] = v
    values: dict[str, Any] = {}
    # Unknown keys are ignored, as etcd's YAML decoding ignores them.
    for key, v in entries.items():
        flag = YAML_KEYS.get(key)
        if flag is None or v is None:
            continue
        try:
            values[flag.name] = flag.kind.from_yaml(v)
        except TypeError as e:
            words = _TYPE_WORDS.get(str(e), "an integer")
            raise fail(f"{key} must be {words}, not {v!r}") from None
        except ValueError as e:
            raise fail(f"invalid {key} {quote(str(v))}: {e}") from None
    return values

