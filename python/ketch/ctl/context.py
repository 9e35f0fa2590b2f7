"""What every ketchctl command runs with: the parsed global flags, the
printer, a lazily made client, and etcdctl's exit codes and error texts."""

from __future__ import annotations

import getpass
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

from ..client import Client, EtcdError
from ..client.auth import split_user
from ..client.errors import ConnectionFailed, DeadlineExceeded
from .flags import Flag, ParsedArgs
from .printers import Output, Printer

# etcdctl's exit codes (ctlv3/command/error.go).
EXIT_SUCCESS = 0
EXIT_ERROR = 1
EXIT_BAD_CONNECTION = 2
EXIT_INVALID_INPUT = 3
EXIT_BAD_FEATURE = 4
EXIT_INTERRUPTED = 5
EXIT_IO = 6
EXIT_BAD_ARGS = 128


class CtlError(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def go_error_text(e: EtcdError) -> str:
    """What Go's clientv3 error prints as: etcd's own errors by their text, a
    connection that never came up as the command context's deadline, anything
    else as grpc-go's status error."""
    if isinstance(e, (ConnectionFailed, DeadlineExceeded)):
        return "context deadline exceeded"
    if e.code is None or e.message.startswith("etcdserver: "):
        return e.message
    name = "".join(p.capitalize() for p in e.code.name.split("_"))
    return f"rpc error: code = {name} desc = {e.message}"


@dataclass
class Ctl:
    globals: ParsedArgs
    out: Output
    printer: Printer
    _client: Client | None = None

    @property
    def endpoints(self) -> list[str]:
        return [e.strip() for e in self.globals["endpoints"]]

    def client(self, endpoints: list[str] | None = None) -> Client:
        if self._client is not None and endpoints is None:
            return self._client
        g = self.globals
        for name in ("cert", "key", "cacert"):
            if name in g.changed and not g[name]:
                raise CtlError(EXIT_BAD_ARGS, f"empty string is passed to --{name} option")
        user, password = self._credentials()
        try:
            c = Client(
                endpoints or self.endpoints,
                timeout=g["command-timeout"],
                dial_timeout=g["dial-timeout"],
                ca_cert=g["cacert"] or None,
                cert=g["cert"] or None,
                key=g["key"] or None,
                user=user,
                password=password,
            )
        except ValueError as e:
            raise CtlError(EXIT_BAD_ARGS, str(e)) from None
        if user is not None:
            # etcdctl authenticates while it dials, so a wrong password is a
            # failed connection (exit 2), whatever the command.
            try:
                c.connect(time.monotonic() + g["dial-timeout"] + g["command-timeout"])
            except EtcdError as e:
                c.close()
                raise CtlError(EXIT_BAD_CONNECTION, go_error_text(e)) from None
        if endpoints is None:
            self._client = c
        return c

    def _credentials(self) -> tuple[str | None, str | None]:
        """--user and --password as etcdctl reads them; a password neither gave
        is asked for. An empty password means no authentication (clientv3
        authenticates only with both), so the calls go anonymous."""
        g = self.globals
        if not g["user"]:
            return None, None
        user, password = split_user(g["user"], g["password"])
        if password is None:
            password = ask_password()
        return (user, password) if password else (None, None)

    def close(self) -> None:
        if self._client is not None:
            self._client.close()


def ask_password() -> str:
    """etcdctl's prompt: "Password: " on stdout, the answer unechoed on a
    terminal, a line of stdin otherwise (nothing at all: an empty password)."""
    if sys.stdin.isatty():
        return getpass.getpass("Password: ")
    sys.stdout.write("Password: ")
    sys.stdout.flush()
    line = sys.stdin.readline()
    sys.stdout.write("\n")
    return line.rstrip("\r\n")


Command = Callable[[ParsedArgs, Ctl], None]


@dataclass
class CommandSpec:
    name: str
    run: Command | None
    flags: list[Flag]
    usage: str
    children: dict[str, CommandSpec] | None = None




def cluster_endpoints(p: ParsedArgs, ctl: Ctl) -> list[str]:
    """--endpoints, or with --cluster every client URL in the member list."""
    if not p["cluster"]:
        return ctl.endpoints
    try:
        members = ctl.client().member_list()
    except EtcdError as e:
        raise CtlError(
            EXIT_ERROR,
            f"failed to fetch endpoints from etcd cluster member list: {go_error_text(e)}",
        ) from None
    return [u for m in members.members for u in m.client_urls]
