"""--user and --password through etcdctl 3.4 and ketchctl: against an etcd with
auth enabled, and against servers without auth enabled (ketch and a plain etcd),
where both tools go on without a token."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from ketch.testing import Member, member

from .conftest import Outcome, normalize, run

USER_FORMS = [
    ["--user", "root:rootpw"],
    ["--user", "root", "--password", "rootpw"],
]


@pytest.fixture(scope="module")
def etcd_with_auth(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Member]:
    with member(server="etcd", data_dir=tmp_path_factory.mktemp("etcd-auth")) as m:
        for args in (["user", "add", "root:rootpw"], ["auth", "enable"]):
            assert run("etcdctl", m.endpoint, args).rc == 0
        yield m


def without_stty_noise(o: Outcome) -> Outcome:
    # etcdctl's password prompt runs stty, which complains when stdin is no terminal.
    o.errors = [e for e in o.errors if not e.startswith("stty: ")]
    return o


def same(endpoint: str, args: list[str], stdin: bytes | None = None) -> Outcome:
    want = without_stty_noise(run("etcdctl", endpoint, args, stdin))
    got = run("ketchctl", endpoint, args, stdin)
    want.stdout, got.stdout = normalize(want.stdout), normalize(got.stdout)
    assert (got.rc, got.stdout, got.errors) == (want.rc, want.stdout, want.errors), args
    return want


@pytest.mark.parametrize("user", USER_FORMS)
def test_a_user_on_etcd_with_auth(etcd_with_auth: Member, user: list[str]) -> None:
    e = etcd_with_auth.endpoint
    assert same(e, [*user, "put", "auth/k", "v"]).rc == 0
    assert same(e, [*user, "get", "auth/k", "-w", "json"]).stdout.startswith(b'{"header"')
    assert same(e, [*user, "get", "auth/k"]).stdout == b"auth/k\nv\n"


def test_refusals_on_etcd_with_auth(etcd_with_auth: Member) -> None:
    e = etcd_with_auth.endpoint
    wrong = same(e, ["--user", "root:wrong", "get", "auth/k"])
    assert (wrong.rc, wrong.errors) == (
        2,
        ["Error: etcdserver: authentication failed, invalid user ID or password"],
    )
    anonymous = same(e, ["get", "auth/k"])
    assert (anonymous.rc, anonymous.errors) == (1, ["Error: etcdserver: user name is empty"])
    # A bare user name asks for the password; an empty answer means no
    # authentication at all, so the call goes anonymous.
    asked = same(e, ["--user", "root", "get", "auth/k"], stdin=b"")
    assert asked.stdout == b"Password: \n" and asked.errors == anonymous.errors


def test_asked_password_is_read_from_stdin(etcd_with_auth: Member) -> None:
    o = same(etcd_with_auth.endpoint, ["--user", "root", "get", "auth/k"], stdin=b"rootpw\n")
    assert o.rc == 0 and o.stdout == b"Password: \nauth/k\nv\n"


@pytest.mark.parametrize("user", [*USER_FORMS, ["--user", "nobody:whatever"]])
def test_a_user_without_auth_enabled(server: Member, user: list[str]) -> None:
    # Authenticate answers "authentication is not enabled"; both tools carry on.
    assert same(server.endpoint, [*user, "put", "noauth/k", "v"]).rc == 0
    assert same(server.endpoint, [*user, "get", "noauth/k"]).stdout == b"noauth/k\nv\n"
