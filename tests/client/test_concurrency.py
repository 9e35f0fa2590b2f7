"""Session, Mutex and Election (ketch.client.concurrency) against etcd and ketch."""

from __future__ import annotations

import threading
import time

from ketch import Client
from ketch.client.concurrency import Election, Mutex, Session
from ketch.testing import Member


def test_mutex_excludes_and_hands_over_in_order(server: Member, ns: str) -> None:
    order: list[str] = []
    with server.client() as c1, server.client() as c2, Session(c1, ttl=5) as s1, Session(c2, ttl=5) as s2:
        first = Mutex(s1, ns + "lock")
        first.lock()
        assert c1.get(first.key).kvs[0].lease == s1.lease_id

        def second() -> None:
            with Mutex(s2, ns + "lock"):
                order.append("second")

        t = threading.Thread(target=second)
        t.start()
        time.sleep(0.5)
        order.append("first")  # the second is still waiting
        first.unlock()
        t.join(10)
        assert order == ["first", "second"]
        assert c1.get(ns + "lock/", prefix=True).count == 0


def test_closing_the_session_releases_the_lock(server: Member, ns: str) -> None:
    with server.client() as c:
        s = Session(c, ttl=5)
        Mutex(s, ns + "lock").lock()
        s.close()  # revokes the lease, with the lock key
        with Session(c, ttl=5) as s2, Mutex(s2, ns + "lock") as m:
            assert m.header is not None


def test_election(client: Client, server: Member, ns: str) -> None:
    with server.client() as other, Session(client, ttl=5) as s1, Session(other, ttl=5) as s2:
        leader = Election(s1, ns + "e")
        leader.campaign(b"one")
        seen = Election(s2, ns + "e").observe()
        assert next(seen).kvs[0].value == b"one"
        leader.proclaim(b"uno")
        assert next(seen).kvs[0].value == b"uno"

        follower = Election(s2, ns + "e")
        t = threading.Thread(target=follower.campaign, args=(b"two",))
        t.start()
        time.sleep(0.3)
        assert t.is_alive()  # waits while "one" leads
        leader.resign()
        t.join(10)
        assert next(seen).kvs[0].value == b"two"
        follower.resign()
        seen.close()  # ends its watch
