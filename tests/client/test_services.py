"""The typed calls of the Auth, Lock and Election services, through both faces.

Auth runs against etcd and ketch. The reference etcd is 3.4, which has no
AuthStatus (etcd 3.5 added it): there the call gets etcd 3.4's answer,
Unimplemented; ketch answers it as 3.5 does.
Lock and Election run against etcd and ketch, which both serve v3lock and
v3election.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator

import pytest
from ketch.client import (
    AuthFailed,
    AuthStatus,
    Client,
    DeadlineExceeded,
    EtcdError,
    Permission,
    PermissionDenied,
    PermissionType,
    Unimplemented,
)
from ketch.testing import Member, member


@pytest.fixture(params=["etcd", "ketch"])
def auth_server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Member]:
    """A server of this test's own (auth changes outlive a test)."""
    with member(server=request.param, data_dir=tmp_path_factory.mktemp("auth")) as m:
        yield m


def auth_status(c: Client, server: Member) -> AuthStatus | None:
    """AuthStatus, or None from etcd 3.4, which answers it Unimplemented."""
    if server.server != "etcd":
        return c.auth_status()
    with pytest.raises(Unimplemented, match="unknown method AuthStatus"):
        c.auth_status()
    return None


def test_every_auth_call(auth_server: Member, connect: Callable[..., Client]) -> None:
    with connect(auth_server.endpoint) as c:
        status = auth_status(c, auth_server)
        assert status is None or status.enabled is False
        c.user_add("root", "rootpw")
        c.user_grant_role("root", "root")
        c.role_add("reader")
        c.role_grant_permission("reader", "app/", prefix=True, type="read")
        c.role_grant_permission("reader", "one", type=PermissionType.WRITE)
        c.user_add("alice", "alicepw")
        c.user_grant_role("alice", "reader")
        c.put("app/x", "1")
        c.auth_enable()
        with pytest.raises(EtcdError, match="user name is empty"):
            c.get("app/x")

    with connect(auth_server.endpoint, user="root", password="rootpw") as root:
        status = auth_status(root, auth_server)
        assert status is None or (status.enabled and status.auth_revision > 0)
        assert root.user_list().names == ("alice", "root")
        assert root.role_list().names == ("reader",)  # root is built in, not listed
        assert root.user_get("alice").roles == ("reader",)
        perms = root.role_get("reader").permissions
        assert perms == (
            Permission(PermissionType.READ, b"app/", b"app0"),
            Permission(PermissionType.WRITE, b"one", b""),
        )
        assert root.authenticate("alice", "alicepw").token
        with pytest.raises(AuthFailed):
            root.authenticate("alice", "wrong")

    with connect(auth_server.endpoint, user="alice", password="alicepw") as alice:
        assert alice.get("app/x").value == b"1"
        with pytest.raises(PermissionDenied):
            alice.put("app/x", "2")

    with connect(auth_server.endpoint, user="root", password="rootpw") as root:
        root.user_change_password("alice", "newpw")
        root.role_revoke_permission("reader", "one")
        assert len(root.role_get("reader").permissions) == 1
        root.user_revoke_role("alice", "reader")
        assert root.user_get("alice").roles == ()
        root.role_delete("reader")
        root.user_delete("alice")
        assert root.user_list().names == ("root",)
        with pytest.raises(EtcdError, match="user name not found"):
            root.user_get("alice")
        with pytest.raises(EtcdError, match="role name not found"):
            root.role_get("reader")
        root.auth_disable()
        status = auth_status(root, auth_server)
        assert status is None or status.enabled is False
    with connect(auth_server.endpoint) as c:
        assert c.get("app/x").value == b"1"  # no user needed any more


def test_lock_is_exclusive_until_unlocked(server: Member, connect: Callable[..., Client], ns: str) -> None:
    with connect(server.endpoint) as c:
        lease = c.grant(30).id
        other = c.grant(30).id
        held = c.lock(ns + "l", lease)
        assert held.key.startswith((ns + "l/").encode()) and held.header.revision > 0
        with pytest.raises(DeadlineExceeded):
            c.lock(ns + "l", other, timeout=0.5)  # waits while the first holds it
        # The waiter that timed out may leave its key (named after its lease)
        # queued until the lease goes (etcd 3.4 does, at times): revoke it.
        c.revoke(other)
        c.unlock(held.key)
        third = c.grant(30).id
        second = c.lock(ns + "l", third)
        assert second.key != held.key
        c.unlock(second.key)
        for lid in (lease, third):
            c.revoke(lid)


def test_election_campaign_proclaim_observe_resign(
    server: Member, connect: Callable[..., Client], ns: str
) -> None:
    name = ns + "e"
    with connect(server.endpoint) as c:
        lease = c.grant(30).id
        with pytest.raises(EtcdError, match="election: no leader"):
            c.leader(name)
        won = c.campaign(name, lease, "first")
        assert won.name == name.encode() and won.lease == lease and won.rev > 0
        assert c.leader(name).value == b"first"
        seen: list[bytes] = []
        observer_ready = threading.Event()

        def observe() -> None:
            with connect(server.endpoint) as o:
                for kv in o.observe(name, timeout=10):
                    seen.append(kv.value)
                    observer_ready.set()
                    if kv.value == b"second":
                        return

        t = threading.Thread(target=observe)
        t.start()
        assert observer_ready.wait(10)
        c.proclaim(won, "second")
        t.join(10)
        assert seen == [b"first", b"second"]
        c.resign(won)
        with pytest.raises(EtcdError, match="election: no leader"):
            c.leader(name)
        c.revoke(lease)
