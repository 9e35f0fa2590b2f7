"""Servers and clients for the client tests: one etcd and one ketch per test
module, each on free loopback ports with its data in pytest's tmp dir,
stopped by PID after; and each test that takes `connect` or `client` runs
against both faces of the client (`Client`, and `AsyncClient` driven through
tests/client/faces.py), so a test runs four times: two servers, two faces."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from ketch.client import Client
from ketch.testing import Member, member

from .faces import FACES, connector


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


@pytest.fixture(params=FACES)
def face(request: pytest.FixtureRequest) -> str:
    """"sync" or "async": which face of the client the test drives."""
    return request.param  # type: ignore[no-any-return]


@pytest.fixture
def connect(face: str) -> Callable[..., Client]:
    """Client's constructor, for the face under test: `with connect(endpoint) as c:`."""
    return connector(face)


@pytest.fixture
def client(server: Member, connect: Callable[..., Client]) -> Iterator[Client]:
    with connect(server.endpoint) as c:
        yield c


@pytest.fixture
def ns(request: pytest.FixtureRequest) -> str:
    """A key prefix of this test's own, since a module shares its servers."""
    return request.node.name + "/"
