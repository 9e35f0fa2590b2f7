"""Distributed locks and leader election over any etcd v3 server, built from
leases, transactions and watches the way etcd's clientv3/concurrency builds
them, so that ketch's and etcd's Go clients interoperate on the same keys.

    with Session(client, ttl=10) as s:
        with Mutex(s, "jobs/lock"):            # held until the block ends
            ...
        e = Election(s, "leader")
        e.campaign(b"me")                       # returns once elected
        e.resign()

A waiter puts a key `<prefix>/<lease id in hex>` under its session's lease;
the key with the lowest create revision owns the lock (or leads). Each waiter
watches only the key created just before its own, so a release wakes one.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING

from .._pb import kv_pb2, rpc_pb2
from .errors import EtcdError
from .requests import Bytes, Compare, Op, to_bytes
from .results import EventType, GetResult, Header, KeyValue

if TYPE_CHECKING:
    from typing_extensions import Self

    from .sync import Client, KeepAlive

__all__ = ["Election", "Mutex", "Session"]

DEFAULT_TTL = 60  # clientv3/concurrency's defaultSessionTTL


class Session:
    """A lease kept alive in the background; what a Mutex or an Election holds
    lasts as long as it does. Closing it revokes the lease (and so releases
    every lock and leadership held through it)."""

    def __init__(self, client: Client, *, ttl: int = DEFAULT_TTL) -> None:
        self.client = client
        self.lease_id = client.grant(ttl).id
        self._keeper: KeepAlive = client.keep_alive(self.lease_id)

    @property
    def alive(self) -> bool:
        return self._keeper.alive

    def close(self) -> None:
        self._keeper.close()
        with contextlib.suppress(EtcdError):  # expired, or the server is gone: it ends anyway
            self.client.revoke(self.lease_id)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _wait_deleted(client: Client, key: bytes, revision: int) -> None:
    with client.watch(key, start_revision=revision) as w:
        for resp in w:
            if any(e.type is EventType.DELETE for e in resp.events):
                return
    raise EtcdError("lost watcher waiting for delete")


def _wait_deletes(client: Client, prefix: bytes, max_create_revision: int) -> Header:
    """Until no key under `prefix` was created at or before `max_create_revision`."""
    while True:
        resp = client.get(prefix, prefix=True, sort_target="create", sort_order="descend",
                          limit=1, max_create_revision=max_create_revision)  # fmt: skip
        if not resp.kvs:
            return resp.header
        _wait_deleted(client, resp.kvs[0].key, resp.header.revision)


def _first_created(prefix: bytes) -> Op:
    return Op.get(prefix, prefix=True, sort_target="create", sort_order="ascend", limit=1)


class Mutex:
    """etcd's concurrency.Mutex: a lock named by a key prefix."""

    def __init__(self, session: Session, name: Bytes) -> None:
        self.session = session
        self.prefix = to_bytes(name) + b"/"
        self.key = self.prefix + f"{session.lease_id:x}".encode()
        self.revision = -1
        self.header: Header | None = None  # of the answer that made this the owner

    def lock(self) -> None:
        """Wait until this session owns the lock."""
        client = self.session.client
        lease = self.session.lease_id
        resp = client.txn(
            [Compare.create_revision(self.key) == 0],
            [Op.put(self.key, b"", lease=lease), _first_created(self.prefix)],
            [Op.get(self.key), _first_created(self.prefix)],
        )
        self.revision = resp.header.revision
        if not resp.succeeded:  # this session queued (or held it) already
            self.revision = _kvs(resp.responses[0])[0].create_revision
        owner = _kvs(resp.responses[1])
        if not owner or owner[0].create_revision == self.revision:
            self.header = resp.header
            return
        try:
            self.header = _wait_deletes(client, self.prefix, self.revision - 1)
        except BaseException:
            self.unlock()  # leave the queue: nobody should wait behind a waiter that left
            raise

    def unlock(self) -> None:
        self.session.client.delete(self.key)
        self.revision = -1

    def __enter__(self) -> Self:
        self.lock()
        return self

    def __exit__(self, *exc: object) -> None:
        self.unlock()


def _kvs(sub: object) -> tuple[KeyValue, ...]:
    assert isinstance(sub, GetResult)
    return sub.kvs


class Election:
    """etcd's concurrency.Election: one leader at a time per name, with a value
    (its proposal) that observers see."""

    def __init__(self, session: Session, name: Bytes) -> None:
        self.session = session
        self.prefix = to_bytes(name) + b"/"
        self.key = b""
        self.revision = -1
        self.header: Header | None = None

    def campaign(self, value: Bytes) -> None:
        """Wait until elected; the leader's key then holds `value`."""
        client = self.session.client
        key = self.prefix + f"{self.session.lease_id:x}".encode()
        resp = client.txn(
            [Compare.create_revision(key) == 0],
            [Op.put(key, value, lease=self.session.lease_id)],
            [Op.get(key)],
        )
        self.key, self.revision = key, resp.header.revision
        if not resp.succeeded:
            kv = _kvs(resp.responses[0])[0]
            self.revision = kv.create_revision
            if kv.value != to_bytes(value):
                self.proclaim(value)
        try:
            _wait_deletes(client, self.prefix, self.revision - 1)
        except BaseException:
            self.resign()
            raise
        self.header = resp.header

    def proclaim(self, value: Bytes) -> None:
        """Change the leader's value, if this session still leads."""
        resp = self.session.client.txn(
            [Compare.create_revision(self.key) == self.revision],
            [Op.put(self.key, value, lease=self.session.lease_id)],
        )
        if not resp.succeeded:
            raise EtcdError("election: not leader")

    def resign(self) -> None:
        if not self.key:
            return
        self.session.client.txn(
            [Compare.create_revision(self.key) == self.revision], [Op.delete(self.key)]
        )
        self.key = b""

    def observe(self) -> Iterator[GetResult]:
        """The leader's key and value, each time leadership or the leader's
        value changes, as etcd's Election.Observe shapes them: a range answer
        with the one key."""
        client = self.session.client
        while True:
            first = client.get(self.prefix, prefix=True, sort_target="create", sort_order="ascend", limit=1)
            last = first.raw
            if not first.kvs:
                # Nobody leads: wait for the first put under the prefix.
                with client.watch(self.prefix, prefix=True, start_revision=first.header.revision) as w:
                    wr, ev = next((r.raw, e) for r in w for e in r.raw.events if e.type == kv_pb2.Event.PUT)
                last = rpc_pb2.RangeResponse(header=wr.header, kvs=[ev.kv])
                last.header.revision = ev.kv.mod_revision
            yield GetResult.from_pb(last)
            leader = last.kvs[0]
            with client.watch(leader.key, start_revision=last.header.revision + 1) as w:
                for r in w:
                    for e in r.raw.events:
                        if e.type == kv_pb2.Event.DELETE:
                            break
                        update = rpc_pb2.RangeResponse()
                        update.CopyFrom(last)
                        update.header.CopyFrom(r.raw.header)
                        del update.kvs[:]
                        update.kvs.append(e.kv)
                        yield GetResult.from_pb(update)
                    else:
                        continue
                    break
