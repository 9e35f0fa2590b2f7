"""Fixtures that start real servers: etcd (the reference) and ketch."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest

from .support import Server, free_port

ServerFactory = Callable[..., Server]


@pytest.fixture
def make_server(tmp_path: Path) -> Iterator[ServerFactory]:
    """make_server(kind, extra_args=(), client_port=None, peer_port=None, start=True, ...) -> Server.

    Every server it made is stopped (SIGTERM, then SIGKILL) when the test ends.
    """
    made: list[Server] = []

    def make(
        kind: str,
        extra_args: Sequence[str] = (),
        *,
        client_port: int | None = None,
        peer_port: int | None = None,
        start: bool = True,
        **fields: object,
    ) -> Server:
        data_dir = tmp_path / f"{kind}-{len(made)}"
        data_dir.mkdir()
        server = Server(
            kind=kind,
            data_dir=data_dir / "data",
            client_port=client_port or free_port(),
            peer_port=peer_port or free_port(),
            extra_args=tuple(extra_args),
            **fields,  # type: ignore[arg-type]
        )
        made.append(server)
        if start:
            server.start()
        return server

    yield make
    for server in made:
        server.stop()


@pytest.fixture
def etcd(make_server: ServerFactory) -> Server:
    """A fresh, running single-member etcd."""
    return make_server("etcd")


@pytest.fixture
def ketch(make_server: ServerFactory) -> Server:
    """A fresh, running single-member ketch, started with the same flags as `etcd`."""
    return make_server("ketch")
