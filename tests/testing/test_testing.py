"""ketch.testing: the context manager and the pytest fixtures it registers."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from ketch import Client
from ketch.testing import Member, ServerStartError, cluster, member


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


def test_three_member_cluster_says_it_is_not_there_yet() -> None:
    with (
        pytest.raises(NotImplementedError, match="cannot form a 3-member cluster yet"),
        cluster(size=3),
    ):
        pass
    with cluster(size=1) as members:
        assert len(members) == 1


def test_a_server_that_cannot_start_says_why(tmp_path: Path) -> None:
    with (
        pytest.raises(ServerStartError, match="exited with status"),
        member(data_dir=tmp_path, extra_args=["--no-such-flag"]),
    ):
        pass
