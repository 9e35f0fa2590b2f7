"""gRPC worker processes (--grpc-workers): one member, several gRPC processes."""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

from ..support import Server
from ..wire import KV

WORKERS = 3


def children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(c) for c in path.read_text().split()] if path.exists() else []


def cpu_ticks(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie has exited; only its parent has not reaped it yet.
    return "State:\tZ" not in Path(f"/proc/{pid}/status").read_text()


def wait_until(predicate, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


def put_over_fresh_connections(server: Server, count: int, prefix: str) -> None:
    """`count` connections, 20 puts each: the kernel spreads connections across workers."""
    for i in range(count):
        kv = KV(f"127.0.0.1:{server.client_port}", own_connection=True)
        try:
            for j in range(20):
                kv.put(f"{prefix}{i:03}/{j:02}".encode(), b"v")
        finally:
            kv.close()


def count_keys(server: Server, prefix: str) -> int:
    kv = KV(f"127.0.0.1:{server.client_port}")
    try:
        return sum(1 for item in kv.range_all()[1] if item.key.startswith(prefix.encode()))
    finally:
        kv.close()


def test_workers_share_the_port_and_the_engine(make_server) -> None:
    server = make_server("ketch", ["--grpc-workers", str(WORKERS)])
    assert server.proc is not None
    workers = children(server.proc.pid)
    assert len(workers) == WORKERS - 1
    before = {pid: cpu_ticks(pid) for pid in [server.proc.pid, *workers]}
    put_over_fresh_connections(server, 30, "w/")
    # Every write, whichever process took it, is in the one engine.
    assert count_keys(server, "w/") == 30 * 20
    busy = [pid for pid, ticks in before.items() if cpu_ticks(pid) > ticks]
    assert len(busy) >= 2, "requests were not spread over several gRPC processes"


def established_sockets(pid: int, port: int) -> int:
    """TCP connections to local `port` that process `pid` holds open."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            f = line.split()
            local_port = int(f[1].rsplit(":", 1)[1], 16)
            if local_port == port and f[3] == "01" and f[9] in inodes:  # 01: ESTABLISHED
                count += 1
    return count


def test_clients_connecting_while_it_starts_reach_every_process(make_server) -> None:
    # A gRPC connection stays with the listener that accepted it, and clients
    # that wait for a restarting member all connect the moment it listens.
    # The workers listen before the member does, so those first connections
    # are spread too; otherwise they would all stay on the member process.
    server = make_server("ketch", ["--grpc-workers", str(WORKERS)], start=False)
    server.start(wait=False)
    conns: list[socket.socket] = []
    try:
        deadline = time.monotonic() + 30
        while len(conns) < 30:
            assert time.monotonic() < deadline, "the client port never accepted 30 connections"
            try:
                conns.append(socket.create_connection(("127.0.0.1", server.client_port), 1))
                time.sleep(0.01)  # 30 over a third of a second, as clients retrying would
            except OSError:
                time.sleep(0.01)  # not listening yet
        server.wait_ready()
        assert server.proc is not None
        processes = [server.proc.pid, *children(server.proc.pid)]
        held = {pid: established_sockets(pid, server.client_port) for pid in processes}
        assert len(held) == WORKERS, held
        # 30 connections hashed over 3 listeners: fewer than 3 on one is ~0.2%.
        assert all(n >= 3 for n in held.values()), held
    finally:
        for c in conns:
            c.close()


def test_workers_exit_with_a_killed_member_and_the_port_is_free_again(make_server) -> None:
    server = make_server("ketch", ["--grpc-workers", str(WORKERS)])
    assert server.proc is not None
    workers = children(server.proc.pid)
    assert len(workers) == WORKERS - 1
    put_over_fresh_connections(server, 3, "k/")
    server.kill()  # SIGKILL: no chance to stop its workers
    # Each worker sees its engine socket close and exits by itself.
    assert wait_until(lambda: not any(alive(w) for w in workers)), "orphaned workers"
    server.start()  # same port, same data dir
    assert count_keys(server, "k/") == 3 * 20


def test_sigterm_stops_member_and_workers(make_server) -> None:
    server = make_server("ketch", ["--grpc-workers", str(WORKERS)])
    assert server.proc is not None
    workers = children(server.proc.pid)
    put_over_fresh_connections(server, 3, "t/")
    assert server.stop() == 0  # SIGTERM; the member waits for its workers before exiting
    assert not any(alive(w) for w in workers)
    server.start()
    assert count_keys(server, "t/") == 3 * 20
