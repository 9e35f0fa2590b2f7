"""Raw gRPC against etcd and ketch: what etcdctl cannot send."""

from __future__ import annotations

import json

import grpc
import pytest
from ketch import ETCD_VERSION

from ..support import Server

UNMARSHAL = "grpc: error unmarshalling request: "


def call(server: Server, method: str, request: bytes) -> tuple[grpc.StatusCode, str]:
    with grpc.insecure_channel(f"127.0.0.1:{server.client_port}") as channel:
        try:
            channel.unary_unary(method)(request, timeout=10)
        except grpc.RpcError as e:
            return e.code(), e.details() or ""
    return grpc.StatusCode.OK, ""


@pytest.mark.parametrize(
    ("method", "garbage"),
    [
        ("/etcdserverpb.KV/Put", b"\xff\xff"),
        ("/etcdserverpb.KV/Range", b"\x0a\x05ab"),
        ("/etcdserverpb.KV/Txn", b"\x12\x02\x08"),
    ],
)
def test_undecodable_request_is_internal_like_grpc_go(
    make_server, method: str, garbage: bytes
) -> None:
    etcd = make_server("etcd")
    ketch = make_server("ketch")
    want = call(etcd, method, garbage)
    got = call(ketch, method, garbage)
    assert want[0] == got[0] == grpc.StatusCode.INTERNAL
    # The decoder's own words after the prefix differ (gogo-protobuf vs prost).
    assert want[1].startswith(UNMARSHAL) and got[1].startswith(UNMARSHAL)


def test_methods_not_served_yet_are_unimplemented(ketch: Server) -> None:
    assert call(ketch, "/etcdserverpb.Maintenance/Downgrade", b"")[0] == grpc.StatusCode.UNIMPLEMENTED


@pytest.mark.parametrize(
    ("method", "status", "message"),
    [
        # etcd's MemberAdd checks the URLs first; MemberUpdate looks up ID 0.
        ("/etcdserverpb.Cluster/MemberAdd", grpc.StatusCode.INVALID_ARGUMENT, "etcdserver: given member URLs are invalid"),  # noqa: E501 -- etcd's message, quoted whole
        ("/etcdserverpb.Cluster/MemberUpdate", grpc.StatusCode.NOT_FOUND, "etcdserver: member not found"),
    ],
)  # fmt: skip
def test_empty_member_changes_get_etcds_error(
    make_server, method: str, status: grpc.StatusCode, message: str
) -> None:
    etcd = make_server("etcd")
    ketch = make_server("ketch")
    want = call(etcd, method, b"")
    assert want == (status, message)
    assert call(ketch, method, b"") == want


def test_served_methods_answer_an_empty_request(ketch: Server) -> None:
    for method in (
        "/etcdserverpb.KV/Range",
        "/etcdserverpb.KV/Txn",
        "/etcdserverpb.Maintenance/Status",
        "/etcdserverpb.Maintenance/Alarm",
        "/etcdserverpb.Maintenance/Hash",
        "/etcdserverpb.Maintenance/HashKV",
        "/etcdserverpb.Maintenance/Defragment",
        "/etcdserverpb.Cluster/MemberList",
    ):
        assert call(ketch, method, b"")[0] in (
            grpc.StatusCode.OK,
            grpc.StatusCode.INVALID_ARGUMENT,
        ), method
    assert call(ketch, "/etcdserverpb.KV/Put", b"") == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "etcdserver: key is not provided",
    )


def test_status_reports_the_etcd_version_ketch_implements(ketch: Server) -> None:
    """Clients gate features on Status.version, so it is etcd's API level, not ketch's own."""
    rc, out, err = ketch.etcdctl("endpoint", "status", "-w", "json")
    assert rc == 0, err
    assert json.loads(out)[0]["Status"]["version"] == ETCD_VERSION == "3.5.13"
