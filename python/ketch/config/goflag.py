"""Go's flag grammar, as etcd's command line is parsed (Go's flag.FlagSet.Parse):
`-name x`, `--name x`, `-name=x`; a bool flag takes no separate argument;
parsing stops at the first non-flag argument or at `--`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..govalue import quote
from .flags import FLAGS
from .model import ConfigError, HelpRequested

__all__ = ["parse_command_line"]


def parse_command_line(args: Sequence[str]) -> tuple[dict[str, Any], bool]:
    """Go's flag.FlagSet.Parse: the flags set (name -> value) and whether -version was given."""
    values: dict[str, Any] = {}
    i = 0
    while i < len(args):
        s = args[i]
        if len(s) < 2 or s[0] != "-":
            break
        minuses = 2 if s[1] == "-" else 1
        if minuses == 2 and len(s) == 2:  # "--" ends the flags
            i += 1
            break
        name = s[minuses:]
        if not name or name[0] in "-=":
            raise ConfigError(f"bad flag syntax: {s}", 2)
        i += 1
        name, has_value, value = name.partition("=")
        flag = FLAGS.get(name)
        if flag is None:
            if name in ("help", "h"):
                raise HelpRequested
            raise ConfigError(f"flag provided but not defined: -{name}", 2)
        if flag.kind.is_bool:
            try:
                values[name] = flag.kind.parse(value) if has_value else True
            except ValueError as e:
                raise ConfigError(
                    f"invalid boolean value {quote(value)} for -{name}: {e}", 2
                ) from None
            continue
        if not has_value:
            if i >= len(args):
                raise ConfigError(f"flag needs an argument: -{name}", 2)
            value = args[i]
            i += 1
        try:
            values[name] = flag.kind.parse(value)
        except ValueError as e:
            raise ConfigError(f"invalid value {quote(value)} for flag -{name}: {e}", 2) from None
    if i < len(args):
        raise ConfigError(
            f"error verifying flags, '{args[i]}' is not a valid flag. See 'ketch --help'."
        )
    return values, bool(values.pop("version", False))
