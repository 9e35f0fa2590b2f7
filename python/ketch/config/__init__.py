"""ketch's configuration: etcd's flags, ETCD_* variables and YAML config file.

Three sources, as etcd reads them (etcdmain/config.go, embed/config.go):

1. Command-line flags, parsed the way Go's `flag` package does: `-name x`,
   `--name x`, `-name=x`; a bool flag takes no separate argument
   (`-client-cert-auth` or `-client-cert-auth=false`); parsing stops at the
   first non-flag argument or at `--`.
2. For every flag not given on the command line, the variable `ETCD_<FLAG>`
   (upper case, dashes as underscores), when set and non-empty.
3. `--config-file` (or `ETCD_CONFIG_FILE`): a YAML file with etcd's keys. When
   one is given, etcd ignores every other flag and variable; so does ketch.

Every flag is in one table (`flags.GROUPS`): its Go kind, etcd's default, the
Config field it sets, and, for a flag ketch accepts without doing what etcd
does, the reason, which becomes the one warning line in `Config.warnings`.

Where etcd exits 2 (a flag it cannot parse) ketch exits 2 with the same one
line on stderr; where etcd exits 1 (flags that parse but do not make a valid
configuration) ketch exits 1. Either way `ConfigError` carries the line, and
nothing has touched the data dir yet.

One difference: etcd refuses to start when a flag and its ETCD_* variable are
both set ("conflicting environment variable ... is shadowed"); ketch lets the
flag win and notes the shadowed variable in `Config.warnings`.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping, Sequence

from .environment import from_environment
from .flags import FLAGS
from .goflag import parse_command_line
from .model import (
    DEFAULT_QUOTA_BACKEND_BYTES,
    Config,
    ConfigError,
    HelpRequested,
    VersionRequested,
)
from .usage import USAGE, markdown_table
from .validate import check_initial_cluster, compaction_retention, validate
from .yaml_file import from_yaml

__all__ = [
    "DEFAULT_QUOTA_BACKEND_BYTES",
    "USAGE",
    "Config",
    "ConfigError",
    "HelpRequested",
    "VersionRequested",
    "check_initial_cluster",
    "compaction_retention",
    "markdown_table",
    "parse",
]

_FIELDS = {f.name for f in dataclasses.fields(Config)}
for _f in FLAGS.values():  # the table and the dataclass must agree
    assert not _f.field or _f.field in _FIELDS, _f.name


def parse(args: Sequence[str], environ: Mapping[str, str] | None = None) -> Config:
    """Build the Config from the command line and environment, as etcd would.

    Raises ConfigError (message and exit code), HelpRequested or VersionRequested.
    """
    env = os.environ if environ is None else environ
    given, version = parse_command_line(args)
    if version:
        raise VersionRequested
    warnings: list[str] = []
    config_file = given.get("config-file") or env.get("ETCD_CONFIG_FILE", "")
    if config_file:
        values = from_yaml(config_file)
        values["config-file"] = config_file
    else:
        values = from_environment(given, env, warnings)
    cfg = validate(values)
    # One line per flag set that does not do in ketch what it does in etcd,
    # and the cautions of flags that do.
    warnings += [FLAGS[n].warning() for n, v in values.items() if FLAGS[n].warns(v)]
    warnings += [FLAGS[n].notice for n, v in values.items() if FLAGS[n].notices(v)]
    return dataclasses.replace(cfg, warnings=tuple(warnings))

