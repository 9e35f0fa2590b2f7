"""Graceful shutdown: SIGTERM/SIGINT -> exit 0 within seconds, nothing lost.

(Shutdown in the middle of a write load is in test_crash.py.)
"""

from __future__ import annotations

import signal
import time

import pytest


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_exits_0_and_keeps_data(make_server, sig: signal.Signals) -> None:
    server = make_server("ketch")
    for i in range(3):
        assert server.etcdctl("put", f"k{i}", f"v{i}") == (0, "OK\n", "")
    rc, before, _ = server.etcdctl("get", "", "--from-key", "-w", "fields")
    assert rc == 0
    assert server.proc is not None
    started = time.monotonic()
    server.proc.send_signal(sig)
    assert server.proc.wait(10) == 0, server.log_text()
    assert time.monotonic() - started < 3.0
    assert "stopped" in server.log_text()
    server.stop()
    server.start()
    rc, after, _ = server.etcdctl("get", "", "--from-key", "-w", "fields")
    assert rc == 0
    # Same keys, values and revisions; only the header's term may move on.
    assert _without_term(after) == _without_term(before)
    assert '"Revision" : 4' in after


def _without_term(fields_output: str) -> list[str]:
    return [line for line in fields_output.splitlines() if not line.startswith('"RaftTerm"')]
