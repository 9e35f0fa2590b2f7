"""A fault-injecting TCP proxy for the peer links between cluster members.

Each member advertises a peer URL that points at its own proxy port here; the
proxy forwards every connection to the member's real peer listener. So every
peer connection, whichever member dials it, passes through the proxy of the
member it dials, and a `Network` can cut the links between members.

Why cuts are by (source member, destination member) and not just "blackhole
member X's inbound proxy": a member's inbound proxy only sees the connections
others dial to it, and which way Raft messages flow over a connection is the
transport's business. etcd's rafthttp streams are dialed by the *receiver*
(member A dials B's /raft/stream to read the messages B sends to A), and its
pipeline POSTs by the sender. Blackholing only B's inbound proxy would cut
B->A streams and A->B pipelines but leave A->B streams and B->A pipelines
flowing: B still hears the new leader, and after its stalled stream times out
B could reach the leader through a pipeline and serve linearizable reads — it
was never isolated. So the proxy finds out which member dialed each
connection (the process owning the client socket, from /proc) and freezes
exactly the connections between members that are cut from each other, in
both directions, for any transport design.

A cut link behaves like a network that drops every packet: open connections
stop forwarding (no FIN, no RST: the data sits in socket buffers and the
sender's timeouts must notice), new connections are accepted and held
without forwarding. Healing closes the frozen connections, as a long
partition's connections die in practice, so both sides reconnect afresh.

Linux only (it reads /proc). Everything listens on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import threading
from collections.abc import Coroutine, Iterable
from dataclasses import dataclass, field

HOST = "127.0.0.1"
UNKNOWN = "?"  # a connection from no known member (a member that just exited, a stray client)
CHUNK = 1 << 16
LOOPBACK = "0100007F"  # 127.0.0.1 as /proc/net/tcp prints it (host byte order)


def _proc_tree(pid: int) -> list[int]:
    """pid and all its descendants (ketch runs worker processes)."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        with contextlib.suppress(OSError):
            for task in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{task}/children") as f:
                    todo.extend(int(c) for c in f.read().split())
    return out


def _socket_inode(local_port: int, remote_port: int) -> int | None:
    """The inode of the loopback socket 127.0.0.1:local_port -> 127.0.0.1:remote_port.

    Looked up in tcp6 as well: gRPC (ketch's peer transport) dials from dual-stack
    sockets, listed there with v4-mapped addresses (::ffff:127.0.0.1, which
    /proc prints as 0000000000000000FFFF00000100007F)."""
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as f:
            next(f)
            for line in f:
                cols = line.split()
                local, remote = cols[1].split(":"), cols[2].split(":")
                if (
                    local[0].endswith(LOOPBACK)
                    and remote[0].endswith(LOOPBACK)
                    and int(local[1], 16) == local_port
                    and int(remote[1], 16) == remote_port
                ):
                    return int(cols[9])
    return None


def _owner(inode: int, pids: dict[str, int]) -> str:
    """The name of the member whose process tree holds socket `inode`."""
    target = f"socket:[{inode}]"
    for name, pid in pids.items():
        for p in _proc_tree(pid):
            with contextlib.suppress(OSError):
                for fd in os.listdir(f"/proc/{p}/fd"):
                    with contextlib.suppress(OSError):
                        if os.readlink(f"/proc/{p}/fd/{fd}") == target:
                            return name
    return UNKNOWN


@dataclass
class _Link:
    """One proxied connection: who dialed whom, and its two sockets."""

    source: str
    dest: str
    writers: list[asyncio.StreamWriter] = field(default_factory=list)
    pumps: list[asyncio.Task[None]] = field(default_factory=list)
    frozen: bool = False


class Network:
    """Proxies for every member's peer port, and the cuts between members.

    Runs an asyncio loop in a daemon thread; the methods are called from the
    test's thread and return once the change is in effect."""

    def __init__(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self._servers: dict[str, asyncio.Server] = {}
        self._targets: dict[str, int] = {}  # member name -> its real peer port
        self._pids: dict[str, int] = {}  # member name -> its process id, while it runs
        self._cut: set[frozenset[str]] = set()
        self._links: list[_Link] = []
        # Every accepted client socket until it is closed, and every task the
        # proxy started: close() ends exactly these. It must not cancel
        # asyncio's own accept tasks: one cancelled before its first step
        # never wraps its socket in a transport, and nothing closes it.
        self._accepted: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    def _call(self, coro: object) -> object:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(10)  # type: ignore[arg-type]

    def add(self, name: str, target_port: int) -> int:
        """A proxy for member `name` forwarding to `target_port`; the port to advertise.

        Adding a name again keeps its proxy port and forwards to the new target
        (a member replaced on the same advertised URL)."""

        async def listen() -> int:
            if name in self._servers:
                self._targets[name] = target_port
                return int(self._servers[name].sockets[0].getsockname()[1])
            server = await asyncio.start_server(
                lambda r, w: self._start_accept(name, r, w), HOST, 0, reuse_address=True
            )
            self._servers[name] = server
            self._targets[name] = target_port
            return int(server.sockets[0].getsockname()[1])

        port = self._call(listen())
        assert isinstance(port, int)
        return port

    def set_pid(self, name: str, pid: int | None) -> None:
        """Which process is member `name` now (None: not running)."""
        self._loop.call_soon_threadsafe(self._set_pid, name, pid)

    def _set_pid(self, name: str, pid: int | None) -> None:
        if pid is None:
            self._pids.pop(name, None)
        else:
            self._pids[name] = pid

    def isolate(self, names: Iterable[str]) -> None:
        """Cut every link between `names` and the other members."""
        inside = set(names)
        outside = set(self._targets) - inside
        self.cut({frozenset((a, b)) for a in inside for b in outside})

    def cut(self, pairs: set[frozenset[str]]) -> None:
        async def apply() -> None:
            self._cut |= pairs
            for link in self._links:
                if self._is_cut(link.source, link.dest):
                    self._freeze(link)

        self._call(apply())

    def heal(self) -> None:
        """Undo every cut; frozen connections are closed so both sides redial."""

        async def apply() -> None:
            self._cut.clear()
            for link in [x for x in self._links if x.frozen]:
                self._close(link)

        self._call(apply())

    def close(self) -> None:
        async def shutdown() -> None:
            for server in self._servers.values():
                server.close()
            # Connections accepted just before are still in asyncio's accept
            # tasks (members redial every 50 ms or so): let those reach
            # connection_made, where _start_accept records them.
            internal = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            internal = [t for t in internal if t not in self._tasks]
            if internal:
                await asyncio.wait(internal, timeout=5)
            for link in list(self._links):
                self._close(link)
            own = list(self._tasks)
            for task in own:
                task.cancel()
            await asyncio.gather(*own, return_exceptions=True)
            for link in list(self._links):
                self._close(link)
            for writer in list(self._accepted):
                writer.transport.abort()
            self._accepted.clear()
            # abort() closes its socket in a callback on the next loop turn:
            # let those run while the loop can, not after it has stopped.
            for _ in range(3):
                await asyncio.sleep(0)

        with contextlib.suppress(Exception):
            self._call(shutdown())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    def links(self) -> list[tuple[str, str, bool]]:
        """(source, dest, frozen) for every open proxied connection: for tests of the proxy."""

        async def snapshot() -> list[tuple[str, str, bool]]:
            return [(x.source, x.dest, x.frozen) for x in self._links]

        out = self._call(snapshot())
        assert isinstance(out, list)
        return out

    # -- on the loop --------------------------------------------------------

    def _start_accept(
        self, dest: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        # Runs inside connection_made. The task is the proxy's own, not
        # handed back to asyncio: asyncio's done callback for a returned
        # coroutine calls task.exception(), which raises (and is logged as
        # an error, the socket left open) when close() cancels the task.
        self._accepted.add(writer)
        self._spawn(self._accept(dest, reader, writer))

    def _spawn(self, coro: Coroutine[object, object, None]) -> asyncio.Task[None]:
        task = self._loop.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _is_cut(self, source: str, dest: str) -> bool:
        if source == UNKNOWN:  # when in doubt, a member with any cut hears nobody
            return any(dest in pair for pair in self._cut)
        return frozenset((source, dest)) in self._cut

    def _source_of(self, writer: asyncio.StreamWriter) -> str:
        client_port = writer.get_extra_info("peername")[1]
        proxy_port = writer.get_extra_info("sockname")[1]
        inode = _socket_inode(client_port, proxy_port)
        return UNKNOWN if inode is None else _owner(inode, self._pids)

    async def _accept(
        self, dest: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        link = _Link(self._source_of(writer), dest, [writer])
        self._links.append(link)
        if self._is_cut(link.source, dest):
            link.frozen = True  # held open, never forwarded, closed on heal
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(HOST, self._targets[dest])
        except OSError:
            self._close(link)  # the member is down: so is its proxy, in effect
            return
        except asyncio.CancelledError:
            self._close(link)  # the proxy is closing: no transport may outlive its loop
            raise
        link.writers.append(up_writer)
        if link.frozen:  # cut while connecting
            return
        up_writer.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        writer.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        link.pumps = [
            self._spawn(self._pump(link, reader, up_writer)),
            self._spawn(self._pump(link, up_reader, writer)),
        ]

    async def _pump(
        self, link: _Link, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        try:
            while data := await reader.read(CHUNK):
                writer.write(data)
                await writer.drain()
        except (OSError, asyncio.IncompleteReadError):
            pass
        except asyncio.CancelledError:  # frozen: stop forwarding, keep the sockets
            return
        if not link.frozen:
            self._close(link)  # one side closed: close the other

    def _freeze(self, link: _Link) -> None:
        link.frozen = True
        for task in link.pumps:
            task.cancel()

    def _close(self, link: _Link) -> None:
        for task in link.pumps:
            task.cancel()
        for w in link.writers:
            self._accepted.discard(w)
            with contextlib.suppress(Exception):
                w.transport.abort()
        with contextlib.suppress(ValueError):
            self._links.remove(link)
