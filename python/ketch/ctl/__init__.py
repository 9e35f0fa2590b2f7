"""ketchctl: etcdctl v3's command line, for ketch or any etcd-compatible server.

Same commands, flags, ETCDCTL_* environment variables, output formats
(byte for byte with etcdctl 3.4 for simple, json and fields; table drawn
the same way) and exit codes. See commands.py for what is covered.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Sequence

__all__ = ["main"]


def run(argv: Sequence[str]) -> int:
    from ..client import EtcdError
    from .commands import COMMANDS, NOT_YET
    from .context import (
        EXIT_BAD_CONNECTION,
        EXIT_BAD_FEATURE,
        EXIT_ERROR,
        CommandSpec,
        Ctl,
        CtlError,
        go_error_text,
    )
    from .flags import GLOBAL_FLAGS, FlagError, apply_env, parse_flags
    from .printers import Output, PrinterCrash, UnsupportedFormat, make_printer
    from .usage import help_text

    out = Output()
    global_names = {f"--{f.name}" for f in GLOBAL_FLAGS if f.kind != "bool"}
    global_shorts = {f"-{f.short}" for f in GLOBAL_FLAGS if f.short and f.kind != "bool"}

    # Find the command: the leading words that name commands, skipping flags
    # (and the values of flags that take one).
    node: CommandSpec = COMMANDS
    path_idx: list[int] = []
    path_nodes: list[CommandSpec] = []
    path_names: list[str] = []
    i = 0
    while i < len(argv) and node.children is not None:
        a = argv[i]
        if a == "--":
            break
        if a.startswith("-"):
            if (a in global_names or a in global_shorts) and "=" not in a:
                i += 1
            i += 1
            continue
        matches = [n for n in node.children if n == a] or [n for n in node.children if n.startswith(a)]
        if len(matches) != 1:
            if node is COMMANDS:
                if a in NOT_YET:
                    out.err(f"Error: {a} is not supported by ketchctl yet\n")
                    return EXIT_BAD_FEATURE
                # cobra says it, then etcdctl's main says it again.
                msg = f'Error: unknown command "{a}" for "ketchctl"\n'
                out.err(msg + "Run 'ketchctl --help' for usage.\n" + msg)
                return EXIT_ERROR
            break
        node = node.children[matches[0]]
        path_names.append(matches[0])
        path_nodes.append(node)
        path_idx.append(i)
        i += 1
    rest = [a for j, a in enumerate(argv) if j not in path_idx]

    # A group's flags (endpoint's --cluster) apply to its subcommands too.
    flags = list(GLOBAL_FLAGS) + [f for n in path_nodes for f in n.flags]
    try:
        parsed = parse_flags(rest, flags)
        apply_env(parsed, GLOBAL_FLAGS)
    except FlagError as e:
        # cobra: the error, then the command's usage (on stdout); then etcdctl's main again.
        out.err(f"Error: {e}\n")
        sys.stdout.write(help_text(" ".join(path_names)) or "")
        sys.stdout.flush()
        out.err(f"\nError: {e}\n")
        return EXIT_ERROR
    if node.run is None or parsed["help"]:
        sys.stdout.write(help_text(" ".join(path_names)) or "")
        return 0
    printer = make_printer(parsed["write-out"], out, parsed["hex"])
    if printer is None:
        out.err("Error: unsupported output format\n")
        return EXIT_BAD_FEATURE
    ctl = Ctl(parsed, out, printer)
    try:
        node.run(parsed, ctl)
        out.flush()
        return 0
    except UnsupportedFormat as e:
        out.flush()
        out.err(f"Error: {e}\n")
        return EXIT_BAD_FEATURE
    except PrinterCrash as e:
        out.flush()
        out.err(f"Error: {e}\n")
        return EXIT_BAD_CONNECTION  # 2: the status a Go panic exits with
    except CtlError as e:
        out.flush()
        if e.message:
            out.err(f"Error: {e.message}\n")
        return e.code
    except EtcdError as e:
        out.flush()
        out.err(f"Error: {go_error_text(e)}\n")
        return EXIT_ERROR
    finally:
        ctl.close()


def main(argv: Sequence[str] | None = None) -> None:
    """The `ketchctl` console script."""
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        code = run(args)
    except KeyboardInterrupt:
        code = 128 + signal.SIGINT
    except BrokenPipeError:
        # The reader went away (e.g. `ketchctl watch ... | head`): nothing left to say.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    # Leave without interpreter finalization, as etcdctl (a Go program) does.
    # grpc-python's daemon threads (a stream's request consumer, the channel's
    # poller) can deadlock finalization: about one `lease keep-alive --once`
    # in a hundred hung after printing its answer. Everything ketchctl owes
    # the user is written and flushed by now.
    os._exit(code)
