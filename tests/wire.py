"""A tiny etcd KV client for the load and crash tests.

Hand-rolled protobuf for the few fields the tests need (etcd's rpc.proto and
kv.proto numbers), over grpcio with raw bytes, so a test can drive thousands
of writes without spawning etcdctl per write. Test code only.
"""

from __future__ import annotations

from dataclasses import dataclass

import grpc


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _field_bytes(num: int, data: bytes) -> bytes:
    return _varint(num << 3 | 2) + _varint(len(data)) + data


def decode(buf: bytes) -> dict[int, list[int | bytes]]:
    """Field number -> values (ints for varints, bytes for length-delimited)."""
    fields: dict[int, list[int | bytes]] = {}
    i = 0
    while i < len(buf):
        key, i = _read_varint(buf, i)
        num, wire = key >> 3, key & 7
        value: int | bytes
        if wire == 0:
            value, i = _read_varint(buf, i)
        elif wire == 2:
            n, i = _read_varint(buf, i)
            value, i = buf[i : i + n], i + n
        elif wire == 1:
            value, i = int.from_bytes(buf[i : i + 8], "little"), i + 8
        elif wire == 5:
            value, i = int.from_bytes(buf[i : i + 4], "little"), i + 4
        else:
            raise ValueError(f"wire type {wire}")
        fields.setdefault(num, []).append(value)
    return fields


def _read_varint(buf: bytes, i: int) -> tuple[int, int]:
    n = shift = 0
    while True:
        b = buf[i]
        i += 1
        n |= (b & 0x7F) << shift
        if b < 0x80:
            return n, i
        shift += 7


def _int(fields: dict[int, list[int | bytes]], num: int) -> int:
    v = fields.get(num, [0])[-1]
    assert isinstance(v, int)
    return v


def _bytes(fields: dict[int, list[int | bytes]], num: int) -> bytes:
    v = fields.get(num, [b""])[-1]
    assert isinstance(v, bytes)
    return v


@dataclass(frozen=True)
class KeyValue:
    key: bytes
    create_revision: int
    mod_revision: int
    version: int
    value: bytes


class KV:
    """etcdserverpb.KV Put and Range over one channel."""

    def __init__(self, target: str, own_connection: bool = False) -> None:
        """own_connection: never share a TCP connection with other channels to target."""
        options = [("grpc.max_receive_message_length", 1 << 30)]
        if own_connection:
            options.append(("grpc.use_local_subchannel_pool", 1))
        self.channel = grpc.insecure_channel(target, options=options)
        self._put: grpc.UnaryUnaryMultiCallable[bytes, bytes] = self.channel.unary_unary(
            "/etcdserverpb.KV/Put"
        )
        self._range: grpc.UnaryUnaryMultiCallable[bytes, bytes] = self.channel.unary_unary(
            "/etcdserverpb.KV/Range"
        )
        self._txn: grpc.UnaryUnaryMultiCallable[bytes, bytes] = self.channel.unary_unary(
            "/etcdserverpb.KV/Txn"
        )

    def close(self) -> None:
        self.channel.close()

    def put(self, key: bytes, value: bytes, timeout: float = 5.0) -> int:
        """Put and return the revision from the response header."""
        resp = decode(self._put(_field_bytes(1, key) + _field_bytes(2, value), timeout=timeout))
        header = decode(_bytes(resp, 1))
        return _int(header, 3)

    def range_all(self, timeout: float = 30.0) -> tuple[int, list[KeyValue]]:
        """Every key (key "\\0", range_end "\\0"): (header revision, kvs)."""
        resp = decode(self._range(_field_bytes(1, b"\0") + _field_bytes(2, b"\0"), timeout=timeout))
        header = decode(_bytes(resp, 1))
        kvs = []
        for raw in resp.get(2, []):
            assert isinstance(raw, bytes)
            f = decode(raw)
            kvs.append(KeyValue(_bytes(f, 1), _int(f, 2), _int(f, 3), _int(f, 4), _bytes(f, 5)))
        return _int(header, 3), kvs

    def get(self, key: bytes, timeout: float = 5.0) -> bytes | None:
        """One key's value, None if absent (a linearizable Range)."""
        resp = decode(self._range(_field_bytes(1, key), timeout=timeout))
        kvs = resp.get(2, [])
        if not kvs:
            return None
        raw = kvs[0]
        assert isinstance(raw, bytes)
        return _bytes(decode(raw), 5)

    def cas(self, key: bytes, expected: bytes, new: bytes, timeout: float = 5.0) -> bool:
        """Txn: if key's value == expected then put new; whether it succeeded."""
        # Compare{result EQUAL (0), target VALUE (3), key, value}; RequestOp{request_put}.
        compare = (
            _varint(2 << 3 | 0) + _varint(3) + _field_bytes(3, key) + _field_bytes(7, expected)
        )
        then_put = _field_bytes(2, _field_bytes(1, key) + _field_bytes(2, new))
        resp = decode(
            self._txn(_field_bytes(1, compare) + _field_bytes(2, then_put), timeout=timeout)
        )
        return bool(_int(resp, 2))
