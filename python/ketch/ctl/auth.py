"""ketchctl's auth, user and role commands, with etcdctl 3.4's arguments,
messages, output in every -w format and exit codes (ctlv3/command/
auth_command.go, user_command.go, role_command.go and their printers).
`auth status` is etcdctl 3.5's (3.4 has none).

The calls go straight to the Auth service through the client's generic
`call`, with the request and response messages generated from rust/proto.
"""

from __future__ import annotations

import os
import sys
import termios
from collections.abc import Callable
from typing import Any, TypeVar

from google.protobuf.message import Message

from .._pb import auth_pb2, rpc_pb2
from ..client import EtcdError
from .context import EXIT_BAD_ARGS, EXIT_ERROR, Ctl, CtlError, go_error_text
from .flags import Flag, ParsedArgs
from .gofmt import go_json, go_quote, pb_to_go

M = TypeVar("M", bound=Message)

_AUTH = "/etcdserverpb.Auth/"
ROOT_ROLE_NOT_EXIST = "etcdserver: root user does not have root role"


def _call(ctl: Ctl, method: str, request: Message, response: type[M]) -> M:
    try:
        return ctl.client().call((_AUTH + method, response.FromString), request, idempotent=False)
    except EtcdError as e:
        raise CtlError(EXIT_ERROR, go_error_text(e)) from None


def _prefix_end(key: bytes) -> bytes:
    """clientv3.GetPrefixRangeEnd."""
    end = bytearray(key)
    while end:
        if end[-1] < 0xFF:
            end[-1] += 1
            return bytes(end)
        end.pop()
    return b"\x00"


# -- output ---------------------------------------------------------------------
# etcdctl prints the auth responses in simple, json and (some of them)
# fields; table and the rest say the format is not supported, after the call.


def _emit(
    ctl: Ctl, resp: Message, simple: Callable[[], None], fields: Callable[[], None] | None = None
) -> None:
    kind = ctl.printer.name
    if kind == "simple":
        simple()
    elif kind == "json":
        ctl.out.line(go_json(pb_to_go(resp)))
    elif kind == "fields" and fields is not None:
        fields()
    else:
        ctl.printer._unsupported()


def _hdr(ctl: Ctl, resp: Any) -> Callable[[], None]:
    def show() -> None:
        h = resp.header
        ctl.out.line(f'"ClusterID" : {h.cluster_id}')
        ctl.out.line(f'"MemberID" : {h.member_id}')
        ctl.out.line(f'"Revision" : {h.revision}')
        ctl.out.line(f'"RaftTerm" : {h.raft_term}')

    return show


def _text(b: bytes) -> str:
    return b.decode("utf-8", "replace")


def _role_get_simple(ctl: Ctl, role: str, resp: rpc_pb2.AuthRoleGetResponse) -> None:
    out = ctl.out
    out.line(f"Role {role}")

    def show(kinds: tuple[int, ...]) -> None:
        for p in resp.perm:
            if p.permType not in kinds:
                continue
            if not p.range_end:
                out.line(f"\t{_text(p.key)}")
                continue
            line = (
                f"\t[{_text(p.key)}, <open ended>"
                if p.range_end == b"\x00"
                else f"\t[{_text(p.key)}, {_text(p.range_end)})"
            )
            if _prefix_end(p.key) == p.range_end:
                line += f" (prefix {_text(p.key)})"
            out.line(line)

    out.line("KV Read:")
    show((auth_pb2.Permission.READ, auth_pb2.Permission.READWRITE))
    out.line("KV Write:")
    show((auth_pb2.Permission.WRITE, auth_pb2.Permission.READWRITE))


def _role_get(ctl: Ctl, role: str, resp: rpc_pb2.AuthRoleGetResponse) -> None:
    def fields() -> None:
        _hdr(ctl, resp)()
        for p in resp.perm:
            # Go's Println between its two operands: a second space.
            ctl.out.line(f'"PermType" :  {auth_pb2.Permission.Type.Name(p.permType)}')
            ctl.out.line(f'"Key" : {go_quote(p.key)}')
            ctl.out.line(f'"RangeEnd" : {go_quote(p.range_end)}')

    _emit(ctl, resp, lambda: _role_get_simple(ctl, role, resp), fields)


# -- auth -----------------------------------------------------------------------


def cmd_auth_enable(p: ParsedArgs, ctl: Ctl) -> None:
    if p.args:
        raise CtlError(EXIT_BAD_ARGS, "auth enable command does not accept any arguments")
    # etcdctl makes the root role and grants it to root when only that is missing.
    while True:
        try:
            ctl.client().call(
                (_AUTH + "AuthEnable", rpc_pb2.AuthEnableResponse.FromString),
                rpc_pb2.AuthEnableRequest(),
                idempotent=False,
            )
            break
        except EtcdError as e:
            if e.message != ROOT_ROLE_NOT_EXIST:
                raise CtlError(EXIT_ERROR, go_error_text(e)) from None
        _call(ctl, "RoleAdd", rpc_pb2.AuthRoleAddRequest(name="root"), rpc_pb2.AuthRoleAddResponse)
        _call(
            ctl,
            "UserGrantRole",
            rpc_pb2.AuthUserGrantRoleRequest(user="root", role="root"),
            rpc_pb2.AuthUserGrantRoleResponse,
        )
    ctl.out.line("Authentication Enabled")


def cmd_auth_disable(p: ParsedArgs, ctl: Ctl) -> None:
    if p.args:
        raise CtlError(EXIT_BAD_ARGS, "auth disable command does not accept any arguments")
    _call(ctl, "AuthDisable", rpc_pb2.AuthDisableRequest(), rpc_pb2.AuthDisableResponse)
    ctl.out.line("Authentication Disabled")


def cmd_auth_status(p: ParsedArgs, ctl: Ctl) -> None:
    if p.args:
        raise CtlError(EXIT_BAD_ARGS, "auth status command does not accept any arguments")
    resp = _call(ctl, "AuthStatus", rpc_pb2.AuthStatusRequest(), rpc_pb2.AuthStatusResponse)

    def simple() -> None:
        ctl.out.line(f"Authentication Status: {'true' if resp.enabled else 'false'}")
        ctl.out.line(f"AuthRevision: {resp.authRevision}")

    def fields() -> None:
        _hdr(ctl, resp)()
        ctl.out.line(f'"Enabled" : {"true" if resp.enabled else "false"}')
        ctl.out.line(f'"AuthRevision" : {resp.authRevision}')

    _emit(ctl, resp, simple, fields)


# -- user -----------------------------------------------------------------------


def _scan_word() -> str:
    """Go's fmt.Scanf("%s"): the first whitespace-separated word of stdin."""
    line = sys.stdin.readline()
    words = line.split()
    return words[0] if words else ""


def _ask(prompt: str) -> str:
    """speakeasy.Ask, as etcdctl 3.4 asks: the prompt on stdout, the answer
    read from stdin with the terminal's echo off (when stdin is one), then a
    newline on stdout where the hidden answer would have ended the line."""
    sys.stdout.write(prompt)
    sys.stdout.flush()
    fd = sys.stdin.fileno()
    saved = termios.tcgetattr(fd) if os.isatty(fd) else None
    try:
        if saved is not None:
            quiet = list(saved)
            quiet[3] &= ~termios.ECHO  # lflag
            termios.tcsetattr(fd, termios.TCSAFLUSH, quiet)
        line = sys.stdin.readline()
    finally:
        if saved is not None:
            termios.tcsetattr(fd, termios.TCSAFLUSH, saved)
    sys.stdout.write("\n")
    sys.stdout.flush()
    return line.rstrip("\r\n")


def _read_password_interactive(name: str) -> str:
    """etcdctl's readPasswordInteractive: asked twice, must match, not empty."""
    first = _ask(f"Password of {name}: ")
    if not first:
        raise CtlError(EXIT_BAD_ARGS, "empty password")
    second = _ask(f"Type password of {name} again for confirmation: ")
    if first != second:
        raise CtlError(EXIT_BAD_ARGS, "given passwords are different")
    return first


def cmd_user_add(p: ParsedArgs, ctl: Ctl) -> None:
    if len(p.args) != 1:
        raise CtlError(EXIT_BAD_ARGS, "user add command requires user name as its argument")
    arg = p.args[0]
    password = ""
    no_password = bool(p["no-password"])
    if no_password:
        user = arg
    elif p["new-user-password"]:
        user, password = arg, p["new-user-password"]
    elif ":" in arg:
        user, password = arg.split(":", 1)
        if not user:
            raise CtlError(EXIT_BAD_ARGS, "empty user name is not allowed")
    else:
        user = arg
        password = _read_password_interactive(arg) if p["interactive"] else _scan_word()
    req = rpc_pb2.AuthUserAddRequest(
        name=user, password=password, options=auth_pb2.UserAddOptions(no_password=no_password)
    )
    resp = _call(ctl, "UserAdd", req, rpc_pb2.AuthUserAddResponse)
    _emit(ctl, resp, lambda: ctl.out.line(f"User {user} created"), _hdr(ctl, resp))


def cmd_user_delete(p: ParsedArgs, ctl: Ctl) -> None:
    if len(p.args) != 1:
        raise CtlError(EXIT_BAD_ARGS, "user delete command requires user name as its argument")
    name = p.args[0]
    resp = _call(
        ctl, "UserDelete", rpc_pb2.AuthUserDeleteRequest(name=name), rpc_pb2.AuthUserDeleteResponse
    )
    _emit(ctl, resp, lambda: ctl.out.line(f"User {name} deleted"), _hdr(ctl, resp))


def cmd_user_get(p: ParsedArgs, ctl: Ctl) -> None:
    if len(p.args) != 1:
        raise CtlError(EXIT_BAD_ARGS, "user get command requires user name as its argument")
    name = p.args[0]
    resp = _call(ctl, "UserGet", rpc_pb2.AuthUserGetRequest(name=name), rpc_pb2.AuthUserGetResponse)
    if p["detail"]:
        ctl.out.line(f"User: {name}")
        for role in resp.roles:
            ctl.out.line()
            role_resp = _call(
                ctl, "RoleGet", rpc_pb2.AuthRoleGetRequest(role=role), rpc_pb2.AuthRoleGetResponse
            )
            _role_get(ctl, role, role_resp)
        return

    def simple() -> None:
        ctl.out.line(f"User: {name}")
        ctl.out.line("Roles:" + "".join(f" {r}" for r in resp.roles))

    _emit(ctl, resp, simple)


def cmd_user_list(p: ParsedArgs, ctl: Ctl) -> None:
    if p.args:
        raise CtlError(EXIT_BAD_ARGS, "user list command requires no arguments")
    resp = _call(ctl, "UserList", rpc_pb2.AuthUserListRequest(), rpc_pb2.AuthUserListResponse)

    def simple() -> None:
        for u in resp.users:
            ctl.out.line(u)

    _emit(ctl, resp, simple)


def cmd_user_passwd(p: ParsedArgs, ctl: Ctl) -> None:
    if len(p.args) != 1:
        raise CtlError(EXIT_BAD_ARGS, "user passwd command requires user name as its argument")
    name = p.args[0]
    password = _read_password_interactive(name) if p["interactive"] else _scan_word()
    req = rpc_pb2.AuthUserChangePasswordRequest(name=name, password=password)
    resp = _call(ctl, "UserChangePassword", req, rpc_pb2.AuthUserChangePasswordResponse)
    _emit(ctl, resp, lambda: ctl.out.line("Password updated"), _hdr(ctl, resp))


def cmd_user_grant_role(p: ParsedArgs, ctl: Ctl) -> None:
    if len(p.args) != 2:
        raise CtlError(
            EXIT_BAD_ARGS, "user grant command requires user name and role name as its argument"
        )
    user, role = p.args
    req = rpc_pb2.AuthUserGrantRoleRequest(user=user, role=role)
    resp = _call(ctl, "UserGrantRole", req, rpc_pb2.AuthUserGrantRoleResponse)
    _emit(
        ctl, resp, lambda: ctl.out.line(f"Role {role} is granted to user {user}"), _hdr(ctl, resp)
    )


def cmd_user_revoke_role(p: ParsedArgs, ctl: Ctl) -> None:
    if len(p.args) != 2:
        raise CtlError(
            EXIT_BAD_ARGS, "user revoke-role requires user name and role name as its argument"
        )
    user, role = p.args
    req = rpc_pb2.AuthUserRevokeRoleRequest(name=user, role=role)
    resp = _call(ctl, "UserRevokeRole", req, rpc_pb2.AuthUserRevokeRoleResponse)
    _emit(
        ctl, resp, lambda: ctl.out.line(f"Role {role} is revoked from user {user}"), _hdr(ctl, resp)
    )


# -- role -----------------------------------------------------------------------


def cmd_role_add(p: ParsedArgs, ctl: Ctl) -> None:
    if len(p.args) != 1:
        raise CtlError(EXIT_BAD_ARGS, "role add command requires role name as its argument")
    role = p.args[0]
    resp = _call(ctl, "RoleAdd", rpc_pb2.AuthRoleAddRequest(name=role), rpc_pb2.AuthRoleAddResponse)
    _emit(ctl, resp, lambda: ctl.out.line(f"Role {role} created"), _hdr(ctl, resp))


def cmd_role_delete(p: ParsedArgs, ctl: Ctl) -> None:
    if len(p.args) != 1:
        raise CtlError(EXIT_BAD_ARGS, "role delete command requires role name as its argument")
    role = p.args[0]
    resp = _call(
        ctl, "RoleDelete", rpc_pb2.AuthRoleDeleteRequest(role=role), rpc_pb2.AuthRoleDeleteResponse
    )
    _emit(ctl, resp, lambda: ctl.out.line(f"Role {role} deleted"), _hdr(ctl, resp))


def cmd_role_get(p: ParsedArgs, ctl: Ctl) -> None:
    if len(p.args) != 1:
        raise CtlError(EXIT_BAD_ARGS, "role get command requires role name as its argument")
    role = p.args[0]
    _role_get(
        ctl,
        role,
        _call(ctl, "RoleGet", rpc_pb2.AuthRoleGetRequest(role=role), rpc_pb2.AuthRoleGetResponse),
    )


def cmd_role_list(p: ParsedArgs, ctl: Ctl) -> None:
    if p.args:
        raise CtlError(EXIT_BAD_ARGS, "role list command requires no arguments")
    resp = _call(ctl, "RoleList", rpc_pb2.AuthRoleListRequest(), rpc_pb2.AuthRoleListResponse)

    def fields() -> None:
        _hdr(ctl, resp)()
        ctl.out.line('"Roles" :' + "".join(f" {go_quote(r)}" for r in resp.roles))

    def simple() -> None:
        for r in resp.roles:
            ctl.out.line(r)

    _emit(ctl, resp, simple, fields)


def _perm_range(p: ParsedArgs, args: list[str]) -> tuple[bytes, bytes]:
    """etcdctl's permRange and rangeEndFromPermFlags."""
    prefix, from_key = bool(p["prefix"]), bool(p["from-key"])
    key = args[0].encode()
    if not key:
        if prefix and from_key:
            raise CtlError(EXIT_BAD_ARGS, "--from-key and --prefix flags are mutually exclusive")
        # The empty key stands for the whole key space: ["\x00", ...).
        return b"\x00", b"\x00" if prefix or from_key else b""
    if len(args) == 1:
        if prefix:
            if from_key:
                raise CtlError(
                    EXIT_BAD_ARGS, "--from-key and --prefix flags are mutually exclusive"
                )
            return key, _prefix_end(key)
        return key, b"\x00" if from_key else b""
    if prefix:
        raise CtlError(EXIT_BAD_ARGS, "unexpected endkey argument with --prefix flag")
    if from_key:
        raise CtlError(EXIT_BAD_ARGS, "unexpected endkey argument with --from-key flag")
    return key, args[1].encode()


_PERM_TYPES = {
    "READ": auth_pb2.Permission.READ,
    "WRITE": auth_pb2.Permission.WRITE,
    "READWRITE": auth_pb2.Permission.READWRITE,
}


def cmd_role_grant_permission(p: ParsedArgs, ctl: Ctl) -> None:
    if len(p.args) < 3:
        raise CtlError(
            EXIT_BAD_ARGS,
            "role grant command requires role name, permission type, and key [endkey] as its argument",
        )
    role, kind = p.args[0], p.args[1]
    perm_type = _PERM_TYPES.get(kind.upper())
    if perm_type is None:
        raise CtlError(EXIT_BAD_ARGS, f"invalid permission type: {kind}")
    key, end = _perm_range(p, p.args[2:])
    req = rpc_pb2.AuthRoleGrantPermissionRequest(
        name=role, perm=auth_pb2.Permission(permType=perm_type, key=key, range_end=end)
    )
    resp = _call(ctl, "RoleGrantPermission", req, rpc_pb2.AuthRoleGrantPermissionResponse)
    _emit(ctl, resp, lambda: ctl.out.line(f"Role {role} updated"), _hdr(ctl, resp))


def cmd_role_revoke_permission(p: ParsedArgs, ctl: Ctl) -> None:
    if len(p.args) < 2:
        raise CtlError(
            EXIT_BAD_ARGS,
            "role revoke-permission command requires role name and key [endkey] as its argument",
        )
    role = p.args[0]
    key, end = _perm_range(p, p.args[1:])
    req = rpc_pb2.AuthRoleRevokePermissionRequest(role=role, key=key, range_end=end)
    resp = _call(ctl, "RoleRevokePermission", req, rpc_pb2.AuthRoleRevokePermissionResponse)
    shown_key = p.args[1]

    def simple() -> None:
        if not end:
            ctl.out.line(f"Permission of key {shown_key} is revoked from role {role}")
        elif end != b"\x00":
            ctl.out.line(
                f"Permission of range [{shown_key}, {_text(end)}) is revoked from role {role}"
            )
        else:
            ctl.out.line(
                f"Permission of range [{shown_key}, <open ended> is revoked from role {role}"
            )

    _emit(ctl, resp, simple, _hdr(ctl, resp))


# -- the command tree (registered in commands.py) -------------------------------


def command_groups(spec: Callable[..., Any], group: Callable[..., Any]) -> list[Any]:
    """The auth, user and role groups, built with commands.py's constructors."""
    interactive = Flag("interactive", "bool", True)
    perm_flags = [Flag("prefix", "bool", False), Flag("from-key", "bool", False)]
    return [
        group("auth", "auth <enable or disable>", [
            spec("enable", cmd_auth_enable, [], "enable"),
            spec("disable", cmd_auth_disable, [], "disable"),
            spec("status", cmd_auth_status, [], "status"),
        ]),
        group("user", "user <subcommand>", [
            spec("add", cmd_user_add,
                 [interactive, Flag("new-user-password", "string", ""), Flag("no-password", "bool", False)],
                 "add <user name or user:password> [options]"),
            spec("delete", cmd_user_delete, [], "delete <user name>"),
            spec("get", cmd_user_get, [Flag("detail", "bool", False)], "get <user name> [options]"),
            spec("list", cmd_user_list, [], "list"),
            spec("passwd", cmd_user_passwd, [interactive], "passwd <user name> [options]"),
            spec("grant-role", cmd_user_grant_role, [], "grant-role <user name> <role name>"),
            spec("revoke-role", cmd_user_revoke_role, [], "revoke-role <user name> <role name>"),
        ]),
        group("role", "role <subcommand>", [
            spec("add", cmd_role_add, [], "add <role name>"),
            spec("delete", cmd_role_delete, [], "delete <role name>"),
            spec("get", cmd_role_get, [], "get <role name>"),
            spec("list", cmd_role_list, [], "list"),
            spec("grant-permission", cmd_role_grant_permission, perm_flags,
                 "grant-permission [options] <role name> <permission type> <key> [endkey]"),
            spec("revoke-permission", cmd_role_revoke_permission, perm_flags,
                 "revoke-permission <role name> <key> [endkey]"),
        ]),
    ]  # fmt: skip
