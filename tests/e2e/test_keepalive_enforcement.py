"""--grpc-keepalive-min-time as grpc-go's server enforces it (etcd passes it
as keepalive.EnforcementPolicy{MinTime, PermitWithoutStream: false}): a
client that pings too often gets GOAWAY ENHANCE_YOUR_CALM with debug data
"too_many_pings" and the connection closes. A raw HTTP/2 client speaks to
etcd and to ketch, frame by frame, and both must answer alike."""

from __future__ import annotations

import socket
import struct
import time

import pytest
from ketch.testing import member

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
SETTINGS, PING, GOAWAY = 0x4, 0x6, 0x7
ACK = 0x1
ENHANCE_YOUR_CALM = 0xB


def frame(kind: int, flags: int, payload: bytes, stream: int = 0) -> bytes:
    return struct.pack(">I", len(payload))[1:] + bytes([kind, flags]) + struct.pack(">I", stream) + payload


def read_frame(sock: socket.socket) -> tuple[int, int, bytes] | None:
    """(type, flags, payload), or None once the server closed the connection."""

    def exactly(n: int) -> bytes | None:
        data = b""
        while len(data) < n:
            chunk = sock.recv(n - len(data))
            if not chunk:
                return None
            data += chunk
        return data

    head = exactly(9)
    if head is None:
        return None
    length = int.from_bytes(head[:3], "big")
    payload = exactly(length) if length else b""
    return (head[3], head[4], payload) if payload is not None else None


def ping_fast(port: int, pings: int, every: float) -> tuple[int, tuple[int, bytes] | None, bool]:
    """Pings `pings` times, `every` seconds apart, with no stream open.
    Returns the acks received, the GOAWAY's (code, debug data) if one came,
    and whether the server then closed the connection."""
    acks, goaway = 0, None
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(PREFACE + frame(SETTINGS, 0, b""))
        for i in range(pings):
            sock.sendall(frame(PING, 0, struct.pack(">Q", i)))
            deadline = time.monotonic() + every
            # Read what the server says until the next ping is due.
            while (left := deadline - time.monotonic()) > 0:
                sock.settimeout(left)
                try:
                    got = read_frame(sock)
                except TimeoutError:
                    break
                if got is None:
                    return acks, goaway, True
                kind, flags, payload = got
                if kind == SETTINGS and not flags & ACK:
                    sock.sendall(frame(SETTINGS, ACK, b""))
                elif kind == PING and flags & ACK:
                    acks += 1
                elif kind == GOAWAY:
                    code = int.from_bytes(payload[4:8], "big")
                    goaway = (code, payload[8:])
        sock.settimeout(5)
        try:
            closed = read_frame(sock) is None
        except (TimeoutError, ConnectionResetError):
            closed = False
    return acks, goaway, closed


@pytest.mark.parametrize("min_time", [None, "1s"])
def test_a_client_pinging_too_often_is_told_to_calm_down_as_etcd_tells_it(
    min_time: str | None, tmp_path_factory: pytest.TempPathFactory
) -> None:
    extra = ["--grpc-keepalive-min-time", min_time] if min_time else []
    seen = {}
    for server in ("etcd", "ketch"):
        with member(server=server, data_dir=tmp_path_factory.mktemp(server), extra_args=extra) as m:
            port = int(m.endpoint.rsplit(":", 1)[1])
            seen[server] = ping_fast(port, pings=6, every=0.2)
    assert seen["ketch"] == seen["etcd"]
    acks, goaway, closed = seen["etcd"]
    assert goaway == (ENHANCE_YOUR_CALM, b"too_many_pings") and closed, seen
    assert 0 < acks < 6
