"""Fixtures for multi-member clusters: `make_cluster(kind, size)` and its proxies."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

import pytest

from ..conftest import ServerFactory
from .harness import Cluster
from .proxy import Network

ClusterFactory = Callable[..., Cluster]
KINDS = ["etcd", "ketch"]


@pytest.fixture
def network() -> Iterator[Network]:
    net = Network()
    yield net
    net.close()


@pytest.fixture
def make_cluster(make_server: ServerFactory, network: Network) -> ClusterFactory:
    """make_cluster(kind, size, extra_args=()) -> a started Cluster.

    Its members are make_server's, stopped by PID when the test ends."""

    def make(kind: str, size: int, extra_args: Iterable[str] = ()) -> Cluster:
        return Cluster(kind, make_server, network, extra_args).start(size)

    return make
