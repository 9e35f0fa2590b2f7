"""A member whose disk fills up ends cleanly, as etcd's does.

ketch runs with its data dir on a small tmpfs and takes 64 KiB puts until a
write of the WAL or the backend fails with ENOSPC. Then: the put in flight
is answered UNAVAILABLE (not left to its deadline), the process says why in
one line and exits with status 1, and once the disk has room again a
restart serves every acknowledged write. Needs root (mount): skipped for
another user, failed (not skipped) if root cannot mount (tests/small_disk.py),
so CI, which runs as root, always runs it. (Each write and fsync site, EIO
included, is covered in Rust: rust/tests/faults.rs.)
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from ketch import Client, EtcdError
from ketch.client.errors import Unavailable

from ..small_disk import mount_tmpfs, small_tmpfs
from ..support import Server

DISK_MIB = 12


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    with small_tmpfs(tmp_path, DISK_MIB) as disk:
        yield disk


def test_full_disk_answers_unavailable_and_exits(make_server, small_disk: Path) -> None:
    server: Server = make_server("ketch", start=False)
    server.data_dir = small_disk / "data"
    server.start()
    acked: list[str] = []
    failure: EtcdError | None = None
    value = os.urandom(65536)
    with Client(server.endpoint, timeout=10) as c:
        for i in range(DISK_MIB * 32):
            key = f"k{i:04}"
            started = time.monotonic()
            try:
                c.put(key, value)
            except EtcdError as e:
                failure = e
                took = time.monotonic() - started
                break
            acked.append(key)
    assert failure is not None, "the disk never filled"
    assert isinstance(failure, Unavailable), repr(failure)
    assert took < 5, f"the failed put took {took:.1f}s: answered by its deadline, not the server"
    assert server.proc is not None
    rc = server.proc.wait(10)
    assert rc == 1, server.log_text()
    stopped = [line for line in server.log_text().splitlines() if "engine stopped" in line]
    assert len(stopped) == 1 and "No space left on device" in stopped[0], server.log_text()
    server.stop()
    # Room again: the member restarts from what is durable.
    mount_tmpfs(small_disk, DISK_MIB * 4, remount=True)
    server.start()
    with Client(server.endpoint) as c:
        for key in acked:
            assert c.get(key).count == 1, f"acknowledged {key} lost"
        c.put("after", "1")
