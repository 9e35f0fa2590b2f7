"""ketch.testing: the context manager and the pytest fixtures it registers."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from ketch import Client
from ketch.testing import Member, Server, ServerStartError, cluster, member


def test_member_starts_a_server_and_stops_it_by_pid() -> None:
    with member() as m:
        pid = m.pid
        assert pid is not None and m.data_dir.exists()
        with m.client() as c:
            assert c.put("k", "v").header.revision == 2
            assert c.member_list().members[0].client_urls == (m.client_url,)
        data_root = m.data_dir.parent
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)  # gone: stopped and reaped
    assert not data_root.exists()  # the temporary data dir is removed


def test_member_restart_keeps_data(tmp_path: Path) -> None:
    with member(data_dir=tmp_path) as m:
        with m.client() as c:
            c.put("k", "durable")
        m.restart()
        with m.client() as c:
            assert c.get("k").value == b"durable"


def test_fixtures_from_the_plugin(ketch_member: Member, ketch_client: Client) -> None:
    ketch_client.put("from-fixture", "1")
    assert ketch_client.get("from-fixture").value == b"1"
    assert ketch_member.proc is not None and ketch_member.proc.poll() is None


@pytest.mark.parametrize("server", ["etcd", "ketch"])
def test_cluster_replicates_and_stops_every_member_by_pid(server: Server) -> None:
    with cluster(3, server=server) as members:
        pids = [m.pid for m in members]
        assert None not in pids and len({m.endpoint for m in members}) == 3
        with Client([m.endpoint for m in members]) as c:
            listed = c.member_list().members
            assert sorted((x.name, x.client_urls) for x in listed) == [
                (m.name, (m.client_url,)) for m in members
            ]
            c.put("k", "replicated")
        for m in members:
            with m.client() as c:
                assert c.get("k").value == b"replicated"
        data_root = members[0].data_dir.parent
    for pid in pids:
        assert pid is not None
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    assert not data_root.exists()


def test_cluster_of_one_is_a_member_and_of_none_is_an_error(tmp_path: Path) -> None:
    with cluster(1, data_dir=tmp_path) as (m,), m.client() as c:
        assert c.member_list().members[0].name == "m0"
    with pytest.raises(ValueError, match="at least one member"), cluster(0):
        pass


def test_a_server_that_cannot_start_says_why(tmp_path: Path) -> None:
    with (
        pytest.raises(ServerStartError, match="exited with status"),
        member(data_dir=tmp_path, extra_args=["--no-such-flag"]),
    ):
        pass


def test_cluster_fixture_from_the_plugin(ketch_cluster: list[Member]) -> None:
    assert len(ketch_cluster) == 3
    with ketch_cluster[0].client() as first, ketch_cluster[2].client() as last:
        first.put("from-cluster-fixture", "1")
        assert last.get("from-cluster-fixture").value == b"1"
        assert len(last.member_list().members) == 3
