"""`ketch`: the server's command line (etcd's flags; see ketch.config)."""

from __future__ import annotations

import logging
import platform
import sys
from collections.abc import Sequence

from . import ETCD_VERSION, __version__
from .config import USAGE, ConfigError, HelpRequested, VersionRequested, parse

__all__ = ["main"]

ETCD_API_VERSION = ETCD_VERSION.rsplit(".", 1)[0]


def version_text() -> str:
    """etcd's --version lines (version, Git SHA, runtime, OS/Arch) for ketch.

    The revision is the native module's (rust/build.rs embeds it): loading
    _core is cheap, and it is the part of the install that was built.
    """
    from . import _core

    return (
        f"ketch Version: {__version__}\n"
        f"etcd API Version: {ETCD_API_VERSION}\n"
        f"Git SHA: {_core.GIT_SHA}\n"
        f"Python Version: {platform.python_version()}\n"
        f"OS/Arch: {sys.platform}/{platform.machine()}\n"
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the configuration, then serve until SIGTERM/SIGINT. Exits the process."""
    args = sys.argv[1:] if argv is None else list(argv)
    try:
        cfg = parse(args)
    except HelpRequested:
        sys.stdout.write(USAGE)
        sys.exit(0)
    except VersionRequested:
        sys.stdout.write(version_text())
        sys.exit(0)
    except ConfigError as e:
        print(f"ketch: {e}", file=sys.stderr)
        sys.exit(e.exit_code)

    # Imported only now: --help, --version and flag errors need no grpc
    # (and only --version loads the native module, for its revision).
    from .server import ServeError, configure_logging, run

    try:
        configure_logging(cfg)
    except OSError as e:
        print(f"ketch: cannot open a --log-outputs file: {e}", file=sys.stderr)
        sys.exit(1)
    log = logging.getLogger("ketch")
    if cfg.config_file:
        log.info(
            "loaded server configuration from %r; other command line flags and "
            "environment variables are ignored",
            cfg.config_file,
        )
    for warning in cfg.warnings:
        log.warning("%s", warning)
    try:
        code = run(cfg)
    except ServeError as e:
        print(f"ketch: {e}", file=sys.stderr)
        sys.exit(1)
    sys.exit(code)
