"""The partitioning proxy on its own: forwarding, attribution, cut, heal.

The test process plays member "a" (its sockets are found in its own /proc
fd table) and an echo server plays member "b"'s peer listener.
"""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Iterator

import pytest

from .proxy import UNKNOWN, Network


@pytest.fixture
def echo_port() -> Iterator[int]:
    listener = socket.create_server(("127.0.0.1", 0))
    conns: list[socket.socket] = []

    def serve() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            conns.append(conn)
            threading.Thread(target=echo, args=(conn,), daemon=True).start()

    def echo(conn: socket.socket) -> None:
        try:
            while data := conn.recv(4096):
                conn.sendall(data)
        except OSError:
            pass

    threading.Thread(target=serve, daemon=True).start()
    yield int(listener.getsockname()[1])
    listener.close()
    for conn in conns:
        conn.close()


@pytest.fixture
def net() -> Iterator[Network]:
    n = Network()
    yield n
    n.close()


def dial(port: int) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port), timeout=2.0)
    s.settimeout(0.5)
    return s


def echoes(s: socket.socket, data: bytes = b"ping") -> bool:
    s.sendall(data)
    try:
        return s.recv(4096) == data
    except TimeoutError:
        return False


def closed(s: socket.socket) -> bool:
    """The peer closed s (FIN, or RST if data was left unread in the proxy's socket)."""
    try:
        return s.recv(4096) == b""
    except ConnectionResetError:
        return True


def test_forwards_and_knows_who_dialed(net: Network, echo_port: int) -> None:
    port_b = net.add("b", echo_port)
    net.set_pid("a", os.getpid())
    with dial(port_b) as s:
        assert echoes(s)
        assert net.links() == [("a", "b", False)]
    assert net.add("b", echo_port) == port_b  # adding again keeps the advertised port


def test_knows_who_dialed_from_a_dual_stack_socket(net: Network, echo_port: int) -> None:
    """As gRPC dials: an IPv6 socket to the v4-mapped address, listed in /proc/net/tcp6."""
    port_b = net.add("b", echo_port)
    net.set_pid("a", os.getpid())
    with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
        s.settimeout(2.0)
        s.connect(("::ffff:127.0.0.1", port_b))
        assert echoes(s)
        assert net.links() == [("a", "b", False)]


def test_a_connection_from_no_member_is_unknown_and_still_forwarded(
    net: Network, echo_port: int
) -> None:
    port_b = net.add("b", echo_port)
    with dial(port_b) as s:
        assert echoes(s)
        assert net.links() == [(UNKNOWN, "b", False)]


def test_cut_freezes_open_and_new_connections_and_heal_closes_them(
    net: Network, echo_port: int
) -> None:
    port_b = net.add("b", echo_port)
    net.add("a", echo_port)  # a's own proxy: isolate() cuts between known members
    net.set_pid("a", os.getpid())
    with dial(port_b) as before:
        assert echoes(before)
        net.isolate(["b"])
        assert not echoes(before)  # open connection: nothing comes back, no reset either
        with dial(port_b) as during:  # accepted, but held
            assert not echoes(during)
            assert sorted(net.links()) == [("a", "b", True), ("a", "b", True)]
            net.heal()
            assert closed(before)  # so the member redials
    with dial(port_b) as after:
        assert echoes(after)
