"""Watch and lease through the client, against the real etcd and against ketch."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import pytest
from ketch import AsyncClient, Client, Compacted, LeaseNotFound
from ketch.client import EventType
from ketch.testing import Member


def test_watch_events_prev_kv_and_start_revision(server: Member, connect: Callable[..., Client]) -> None:
    with connect(server.endpoint) as c:
        start = c.put("w/a", "0").header.revision
        with c.watch("w/", prefix=True, prev_kv=True) as w:
            c.put("w/a", "1")
            c.delete("w/a")
            put = w.get(timeout=5).events[0]
            delete = w.get(timeout=5).events[0]
        assert put.type is EventType.PUT and put.kv.value == b"1"
        assert put.prev_kv is not None and put.prev_kv.value == b"0"
        assert delete.type is EventType.DELETE and delete.kv.key == b"w/a"
        # From a past revision: the history since then, in order.
        with c.watch("w/a", start_revision=start) as w:
            values = [e.kv.value for e in w.get(timeout=5).events]
        assert values[:2] == [b"0", b"1"]


def test_watch_resumes_after_the_server_restarts(server: Member, connect: Callable[..., Client]) -> None:
    with connect(server.endpoint, timeout=10) as c:
        with c.watch("resume") as w:
            c.put("resume", "before")
            assert w.get(timeout=5).events[0].kv.value == b"before"
            server.restart()  # same port, same data: the stream breaks
            c.put("resume", "after1")
            c.put("resume", "after2")
            got = [e.kv.value for e in w.get(timeout=15).events]
            while len(got) < 2:
                got += [e.kv.value for e in w.get(timeout=5).events]
        assert got == [b"after1", b"after2"]  # nothing lost, nothing repeated
        assert w.reconnects >= 1


def test_watch_from_a_compacted_revision_raises_compacted(server: Member, connect: Callable[..., Client]) -> None:
    with connect(server.endpoint) as c:
        first = c.put("cw", "1").header.revision
        rev = c.put("cw", "2").header.revision
        c.compact(rev)
        # etcd accepts the watch, then cancels it with the compaction revision.
        with c.watch("cw", start_revision=first) as w, pytest.raises(Compacted) as e:
            w.get(timeout=5)
        assert e.value.compact_revision == rev


def test_lease_context_manager_keeps_alive_then_revokes(server: Member, connect: Callable[..., Client]) -> None:
    with connect(server.endpoint) as c:
        with c.lease(ttl=2) as lease:
            c.put("leased", "v", lease=lease.id)
            time.sleep(2.5)  # past the TTL: only the keep-alive keeps the key
            info = lease.time_to_live(keys=True)
            assert lease.alive and info.ttl > 0 and info.keys == (b"leased",)
            assert lease.id in c.leases().ids
        assert c.get("leased").count == 0  # revoked with the block
        assert c.time_to_live(lease.id).expired
        with pytest.raises(LeaseNotFound):
            c.keep_alive_once(lease.id)
        with pytest.raises(LeaseNotFound, match="requested lease not found"):
            c.revoke(lease.id)
        g = c.grant(30)
        assert c.keep_alive_once(g.id).ttl == 30


def test_async_watch_and_lease(server: Member) -> None:
    async def run() -> None:
        async with AsyncClient(server.endpoint) as c:
            async with await c.watch("aw", prefix=True) as w:
                await c.put("aw1", "x")
                resp = await w.get(timeout=5)
                assert resp.events[0].kv.key == b"aw1"
            async with c.lease(2) as lease:
                await c.put("aleased", "v", lease=lease.id)
                await asyncio.sleep(2.5)
                assert lease.alive and (await lease.time_to_live()).ttl > 0
            assert (await c.get("aleased")).count == 0
            with pytest.raises(LeaseNotFound):
                await c.keep_alive_once(lease.id)

    asyncio.run(run())
