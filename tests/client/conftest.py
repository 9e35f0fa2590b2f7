"""Servers for the client tests: one etcd and one ketch per test module, each on
free loopback ports with its data in pytest's tmp dir, stopped by PID after."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from ketch.client import Client
from ketch.testing import Member, member


@pytest.fixture(scope="module")
def etcd_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Member]:
    with member(server="etcd", data_dir=tmp_path_factory.mktemp("etcd")) as m:
        yield m


@pytest.fixture(scope="module")
def ketch_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Member]:
    with member(server="ketch", data_dir=tmp_path_factory.mktemp("ketch")) as m:
        yield m


@pytest.fixture(scope="module", params=["etcd", "ketch"])
def server(request: pytest.FixtureRequest) -> Member:
    """Each test that uses it runs once against etcd and once against ketch."""
    return request.getfixturevalue(f"{request.param}_server")  # type: ignore[no-any-return]


@pytest.fixture
def client(server: Member) -> Iterator[Client]:
    with server.client() as c:
        yield c


@pytest.fixture
def ns(request: pytest.FixtureRequest) -> str:
    """A key prefix of this test's own, since a module shares its servers."""
    return request.node.name + "/"
