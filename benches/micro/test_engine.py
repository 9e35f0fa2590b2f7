"""Engine microbenchmarks through the binding (pytest-benchmark).

They find a slowdown at its layer: WAL group commit (puts with 1, 16 and 256
in flight), MVCC put, and Range over 1, 100 and 10,000 keys, all through
`ketch._core.Engine` with no gRPC in the way. Not part of the test suite:

    .venv/bin/pip install pytest-benchmark
    .venv/bin/python -m pytest benches/micro -p no:cacheprovider --benchmark-columns=mean,ops,rounds

Each benchmark reports the time of one *batch* (see the test's docstring).
"""

from __future__ import annotations

import select
from collections.abc import Iterator
from pathlib import Path

import pytest
from ketch import _core

MEMBER_ID = 0x8E9E05C52164694D
CLUSTER_ID = 0xCDF818194E3A8C32


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


def _bytes_field(number: int, value: bytes) -> bytes:
    return _varint(number << 3 | 2) + _varint(len(value)) + value


def put_request(key: bytes, value: bytes) -> bytes:
    return _bytes_field(1, key) + _bytes_field(2, value)


def range_request(key: bytes, range_end: bytes = b"", serializable: bool = False) -> bytes:
    body = _bytes_field(1, key)
    if range_end:
        body += _bytes_field(2, range_end)
    if serializable:
        body += _varint(7 << 3) + b"\x01"
    return body


class Driver:
    """Submits requests and waits for their answers, as the server's bridge does."""

    def __init__(self, engine: _core.Engine) -> None:
        self.engine = engine
        self.fd = engine.completion_fd()
        self.token = 0

    def run(self, method: int, requests: list[bytes]) -> None:
        """Submit all, then wait until every one is answered (errors fail the benchmark)."""
        waiting = len(requests)
        for req in requests:
            self.token += 1
            self.engine.submit(method, req, self.token)
        while waiting:
            select.select([self.fd], [], [], 5)
            for _token, error, payload in self.engine.drain():
                assert error is None, payload
                waiting -= 1


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[_core.Engine]:
    e = _core.Engine(
        str(tmp_path / "data"),
        name="bench",
        member_id=MEMBER_ID,
        cluster_id=CLUSTER_ID,
        peer_urls=["http://127.0.0.1:2380"],
        client_urls=["http://127.0.0.1:2379"],
        max_request_bytes=1572864,
        quota_backend_bytes=0,
        max_txn_ops=128,
        version="3.5.0",
    )
    yield e
    e.close()


VALUE = b"v" * 256


@pytest.mark.parametrize("in_flight", [1, 16, 256])
def test_put_group_commit(benchmark, engine: _core.Engine, in_flight: int) -> None:
    """One batch = `in_flight` puts submitted together, all fsynced and applied.

    Per-put cost is the batch time / in_flight; with group commit it falls
    as in_flight grows, since one fsync covers the batch."""
    driver = Driver(engine)
    counter = iter(range(10**9))

    def batch() -> None:
        driver.run(_core.KV_PUT, [put_request(b"k%08d" % next(counter), VALUE) for _ in range(in_flight)])

    benchmark(batch)
    stats = engine.stats()
    benchmark.extra_info["fsyncs_per_put"] = stats["wal_fsyncs"] / max(stats["revision"] - 1, 1)


@pytest.mark.parametrize("keys", [1, 100, 10_000])
@pytest.mark.parametrize("serializable", [True, False], ids=["serializable", "linearizable"])
def test_range(benchmark, engine: _core.Engine, keys: int, serializable: bool) -> None:
    """One batch = one Range returning `keys` keys of 256-byte values."""
    driver = Driver(engine)
    for start in range(0, keys, 1000):
        driver.run(_core.KV_PUT, [put_request(b"r/%08d" % i, VALUE) for i in range(start, min(keys, start + 1000))])
    req = range_request(b"r/", b"r0", serializable)
    benchmark(driver.run, _core.KV_RANGE, [req])
