"""The ETCD_* environment: for every flag not given on the command line, the
variable ETCD_<FLAG> (upper case, dashes as underscores), when set and non-empty."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..govalue import env_key, quote
from .flags import FLAGS
from .model import ConfigError

__all__ = ["from_environment"]


def from_environment(
    given: dict[str, Any], env: Mapping[str, str], warnings: list[str]
) -> dict[str, Any]:
    values = dict(given)
    for name, flag in FLAGS.items():
        key = env_key(name)
        raw = env.get(key, "")
        if not raw or name in ("version", "config-file"):
            continue
        if name in given:
            warnings.append(
                f"environment variable {key} is shadowed by the command-line flag --{name}"
            )
            continue
        try:
            values[name] = flag.kind.parse(raw)
        except ValueError as e:
            raise ConfigError(
                f"error verifying flags, invalid value {quote(raw)} for {key}: {e}. See 'ketch --help'."
            ) from None
    return values

