"""Clients with a user: against etcd with auth enabled (tokens, renewal) and
against servers without it (ketch, and etcd before `auth enable`), where
Authenticate says so and the client goes on without a token."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import pytest
from ketch._pb import rpc_pb2
from ketch.client import AsyncClient, AuthFailed, Client, EtcdError, InvalidArgument
from ketch.testing import Member, member

from ..support import etcdctl

AUTHENTICATE = "/etcdserverpb.Auth/Authenticate"


def authenticate(endpoint: str, name: str, password: str) -> rpc_pb2.AuthenticateResponse:
    with grpc.insecure_channel(endpoint) as ch:
        stub = ch.unary_unary(
            AUTHENTICATE,
            request_serializer=rpc_pb2.AuthenticateRequest.SerializeToString,
            response_deserializer=rpc_pb2.AuthenticateResponse.FromString,
        )
        return stub(rpc_pb2.AuthenticateRequest(name=name, password=password), timeout=5)  # type: ignore[no-any-return]


def enable_auth(m: Member) -> None:
    """User root with password "rootpw", then `auth enable`, through etcdctl."""
    for args in (["user", "add", "root:rootpw"], ["auth", "enable"]):
        rc, _, err = etcdctl(m.endpoint, *args)
        assert rc == 0, err


@pytest.fixture(scope="module")
def etcd_with_auth(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Member]:
    """An etcd of this module's own with user root (password "rootpw") and auth enabled."""
    with member(server="etcd", data_dir=tmp_path_factory.mktemp("etcd-auth")) as m:
        enable_auth(m)
        yield m


def test_authenticate_without_auth_enabled_is_refused_as_etcd_refuses_it(server: Member) -> None:
    with pytest.raises(grpc.RpcError) as e:
        authenticate(server.endpoint, "root", "whatever")
    assert e.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert e.value.details() == "etcdserver: authentication is not enabled"


def test_authenticate_with_garbage_bytes_is_a_decoding_error(ketch_server: Member) -> None:
    with grpc.insecure_channel(ketch_server.endpoint) as ch:
        stub = ch.unary_unary(AUTHENTICATE)
        with pytest.raises(grpc.RpcError) as e:
            stub(b"\x0a\xff", timeout=5)
    assert e.value.code() == grpc.StatusCode.INTERNAL
    assert "error unmarshalling request" in (e.value.details() or "")


def test_a_user_without_auth_enabled_works_without_a_token(
    server: Member, ns: str, connect: Callable[..., Client]
) -> None:
    with connect(server.endpoint, user="root", password="anything") as c:
        c.put(ns + "k", "v")
        assert c.get(ns + "k").kvs[0].value == b"v"
        assert c.metadata() == ()  # the server gave no token: calls carry none


def test_user_and_password_go_together(connect: Callable[..., Client]) -> None:
    with pytest.raises(ValueError, match="without password"):
        connect("127.0.0.1:1", user="root")
    with pytest.raises(ValueError, match="without user"):
        connect("127.0.0.1:1", password="pw")


def test_etcd_with_auth_serves_a_client_with_a_user(
    etcd_with_auth: Member, connect: Callable[..., Client], ns: str
) -> None:
    with (
        connect(etcd_with_auth.endpoint) as anonymous,
        pytest.raises(InvalidArgument, match="etcdserver: user name is empty"),
    ):
        anonymous.get("k")
    with connect(etcd_with_auth.endpoint, user="root", password="rootpw") as c:
        c.put(ns + "k", "v1")
        assert c.get(ns + "k").kvs[0].value == b"v1"
        assert [k for k, _ in c.metadata()] == ["token"]
        # Streams carry the token too.
        with c.watch(ns + "k", start_revision=1) as w:
            assert [e.kv.value for e in next(iter(w)).events] == [b"v1"]
        with c.lease(ttl=5) as lease:
            assert c.keep_alive_once(lease.id).ttl > 0


def test_a_wrong_password_is_auth_failed(etcd_with_auth: Member, connect: Callable[..., Client]) -> None:
    with (
        connect(etcd_with_auth.endpoint, user="root", password="wrong") as c,
        pytest.raises(AuthFailed) as e,
    ):
        c.get("auth/k")
    assert str(e.value) == "etcdserver: authentication failed, invalid user ID or password"


def test_a_token_lost_in_a_restart_is_renewed(tmp_path: Path, connect: Callable[..., Client]) -> None:
    # etcd's simple tokens live in the member's memory: a restart forgets
    # them, and the next call meets "invalid auth token".
    with member(server="etcd", data_dir=tmp_path) as m:
        enable_auth(m)
        with connect(m.endpoint, user="root", password="rootpw") as c:
            c.put("k", "before")
            token = c.metadata()
            m.stop()
            m.spawn()
            deadline = time.monotonic() + 20
            while True:
                try:
                    c.put("k", "after")  # a write: sent again only because it was refused
                    break
                except EtcdError as e:
                    assert not isinstance(e, AuthFailed), e
                    assert time.monotonic() < deadline, e
                    time.sleep(0.1)
            assert c.metadata() != token
            assert c.get("k").kvs[0].value == b"after"
            assert c.get("k").kvs[0].version == 2  # the write went in once


def test_async_client_with_a_user(etcd_with_auth: Member, server: Member) -> None:
    async def run(endpoint: str) -> bytes:
        async with AsyncClient(endpoint, user="root", password="rootpw") as c:
            await c.put("auth/async", "v")
            return (await c.get("auth/async")).kvs[0].value

    assert asyncio.run(run(etcd_with_auth.endpoint)) == b"v"
    assert asyncio.run(run(server.endpoint)) == b"v"  # no auth there: no token
