"""ketchctl's member add/remove/update/promote, with etcdctl 3.4's checks,
messages, exit codes and the ETCD_* lines `member add` prints for the new member."""

from __future__ import annotations

import re

from ..govalue import parse_uint
from .context import EXIT_BAD_ARGS, EXIT_ERROR, Ctl, CtlError
from .flags import ParsedArgs
from .gofmt import go_quote
from .printers.simple import SimplePrinter

_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:")


def check_peer_urls(urls: list[str]) -> None:
    """clientv3's fail-fast check (types.NewURLs) before MemberAdd and
    MemberUpdate, with its messages; url.Parse's own are covered for the
    usual mistakes (a bad port, no scheme)."""
    if not urls:
        raise CtlError(EXIT_ERROR, "no valid URLs given")
    for raw in urls:
        u = raw.strip()
        m = _SCHEME.match(u)
        if m is None:
            if ":" in u.split("/", 1)[0]:
                raise CtlError(EXIT_ERROR, f"parse {go_quote(u)}: first path segment in URL cannot contain colon")
            raise CtlError(EXIT_ERROR, f"URL scheme must be http, https, unix, or unixs: {u}")
        scheme, rest = m.group()[:-1].lower(), u[m.end():]
        if scheme not in ("http", "https", "unix", "unixs"):
            raise CtlError(EXIT_ERROR, f"URL scheme must be http, https, unix, or unixs: {u}")
        authority, slash, path = rest.removeprefix("//").partition("/")
        host = authority.rsplit("@", 1)[-1]
        port = host.rsplit("]", 1)[-1].rpartition(":")
        if port[1] and not port[2].isdigit() and port[2]:
            raise CtlError(EXIT_ERROR, f"parse {go_quote(u)}: invalid port {go_quote(':' + port[2])} after host")
        if not port[1]:
            raise CtlError(EXIT_ERROR, f'URL address does not have the form "host:port": {u}')
        if slash or path:
            raise CtlError(EXIT_ERROR, f"URL must not contain a path: {u}")


def member_id(p: ParsedArgs) -> int:
    if len(p.args) != 1:
        raise CtlError(EXIT_BAD_ARGS, "member ID is not provided")
    try:
        return parse_uint(p.args[0], 16)
    except ValueError as e:
        raise CtlError(EXIT_BAD_ARGS, f"bad member ID arg ({e}), expecting ID in Hex") from None


def cmd_member_add(p: ParsedArgs, ctl: Ctl) -> None:
    if not p.args:
        raise CtlError(EXIT_BAD_ARGS, "member name not provided")
    if len(p.args) > 1:
        hint = "".join(f", did you mean --peer-urls={a}" for a in p.args if a.lower().startswith("http"))
        raise CtlError(EXIT_BAD_ARGS, "too many arguments" + hint)
    name = p.args[0]
    if not p["peer-urls"]:
        raise CtlError(EXIT_BAD_ARGS, "member peer urls not provided")
    urls = p["peer-urls"].split(",")
    check_peer_urls(urls)
    resp = ctl.client().member_add(urls, is_learner=p["learner"])
    ctl.printer.member_add(resp)
    if not isinstance(ctl.printer, SimplePrinter):
        return
    # What the new member's etcd needs to join: the cluster as it will be, in
    # the member list's order, the new member under the name given here.
    new_id = resp.added.id if resp.added is not None else 0
    conf = [f"{name if m.id == new_id else m.name}={u}" for m in resp.members for u in m.peer_urls]
    ctl.out.line()
    ctl.out.line(f"ETCD_NAME={go_quote(name)}")
    ctl.out.line(f"ETCD_INITIAL_CLUSTER={go_quote(','.join(conf))}")
    ctl.out.line(f"ETCD_INITIAL_ADVERTISE_PEER_URLS={go_quote(p['peer-urls'])}")
    ctl.out.line('ETCD_INITIAL_CLUSTER_STATE="existing"')


def cmd_member_remove(p: ParsedArgs, ctl: Ctl) -> None:
    mid = member_id(p)
    ctl.printer.member_remove(mid, ctl.client().member_remove(mid))


def cmd_member_update(p: ParsedArgs, ctl: Ctl) -> None:
    mid = member_id(p)
    if not p["peer-urls"]:
        raise CtlError(EXIT_BAD_ARGS, "member peer urls not provided")
    urls = p["peer-urls"].split(",")
    check_peer_urls(urls)
    ctl.printer.member_update(mid, ctl.client().member_update(mid, urls))


def cmd_member_promote(p: ParsedArgs, ctl: Ctl) -> None:
    mid = member_id(p)
    ctl.printer.member_promote(mid, ctl.client().member_promote(mid))
