"""The WAL's crash promises, seen from the `ketch` process.

A torn tail (the end of the last record never reached the disk) is cut off
on start and the member serves everything before it. A record damaged in the
middle of the log stops start-up with one line naming the file and offset,
and changes nothing on disk. The WAL's record framing is written down at the
top of rust/src/wal/mod.rs; this test walks it to aim at whole records.
"""

from __future__ import annotations

import struct
import subprocess
from pathlib import Path

from ..support import Server, subprocess_env
from ..wire import KV

ENTRY = 2  # record type of a Raft entry


def records(segment: bytes) -> list[tuple[int, int, int]]:
    """(offset, type, payload length) of every record, by the framing in wal/mod.rs."""
    out = []
    offset = 0
    while offset + 12 <= len(segment):
        length, _crc, kind = struct.unpack_from("<IIB", segment, offset)
        if kind == 0:
            break
        out.append((offset, kind, length))
        offset += (12 + length + 7) // 8 * 8
    return out


def the_segment(server: Server) -> Path:
    segments = sorted((server.data_dir / "member" / "wal").glob("*.wal"))
    assert len(segments) == 1, segments
    return segments[0]


def write_keys(server: Server, count: int) -> None:
    kv = KV(f"127.0.0.1:{server.client_port}")
    try:
        for i in range(count):
            kv.put(f"key{i:03}".encode(), f"value{i}".encode())
    finally:
        kv.close()


def keys(server: Server) -> dict[bytes, bytes]:
    kv = KV(f"127.0.0.1:{server.client_port}")
    try:
        return {item.key: item.value for item in kv.range_all()[1]}
    finally:
        kv.close()


def test_torn_tail_is_cut_and_the_rest_served(make_server) -> None:
    server = make_server("ketch")
    write_keys(server, 20)
    server.kill()  # the store's last commits may be only in the WAL now
    segment = the_segment(server)
    data = segment.read_bytes()
    last_offset, _kind, length = records(data)[-1]
    # Keep the last record's header and half its payload: a write the disk
    # never finished.
    segment.write_bytes(data[: last_offset + 12 + length // 2])
    server.start()
    got = keys(server)
    # Only the torn record can be missing; it was the last put's entry or a
    # later hard state, so at most the last key is gone.
    assert all(got[f"key{i:03}".encode()] == f"value{i}".encode() for i in range(19))
    assert len(got) in (19, 20)
    write_keys(server, 1)  # and it takes writes again


def test_corrupt_record_stops_start_up_naming_file_and_offset(make_server) -> None:
    server = make_server("ketch")
    write_keys(server, 20)
    assert server.stop() == 0
    segment = the_segment(server)
    data = bytearray(segment.read_bytes())
    entries = [r for r in records(bytes(data)) if r[1] == ENTRY]
    offset, _kind, length = entries[len(entries) // 2]  # valid records follow it
    data[offset + 12 + length // 2] ^= 0xFF
    segment.write_bytes(bytes(data))
    p = subprocess.run(
        server.argv(),
        capture_output=True,
        timeout=30,
        env=subprocess_env(),
        check=False,
    )
    assert p.returncode == 1
    errors = [line for line in p.stderr.decode().splitlines() if "wal: corrupt record" in line]
    assert len(errors) == 1, p.stderr.decode()
    assert str(segment) in errors[0] and f"offset {offset}" in errors[0]
    assert segment.read_bytes() == bytes(data), "start-up changed the damaged log"
