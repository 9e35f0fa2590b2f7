"""The package's top level is the client API and nothing else."""

from __future__ import annotations

import subprocess
import sys

import ketch
import ketch.client


def test_the_top_level_exports_the_client_api() -> None:
    assert set(ketch.__all__) == {*ketch.client.__all__, "ETCD_VERSION", "__version__"}
    for name in ketch.__all__:
        assert getattr(ketch, name) is not None
    for internal in ("Config", "ConfigError", "parse", "serve", "EngineBridge", "EngineError"):
        assert not hasattr(ketch, internal)


def test_both_faces_have_the_same_methods() -> None:
    from ketch.client import aio, sync

    for async_cls, sync_cls in (
        (aio.AsyncClient, sync.Client), (aio.AsyncWatch, sync.Watch),
        (aio.AsyncKeepAlive, sync.KeepAlive), (aio.AsyncLease, sync.Lease),
        (aio.AsyncTxnBuilder, sync.TxnBuilder),
    ):  # fmt: skip
        renamed = {"__aenter__": "__enter__", "__aexit__": "__exit__", "__aiter__": "__iter__",
                   "__anext__": "__next__"}  # fmt: skip
        public = {renamed.get(n, n) for n in dir(async_cls) if not n.startswith("_") or n in renamed}
        assert public == {n for n in dir(sync_cls) if not n.startswith("_") or n in renamed.values()}


def test_importing_ketch_loads_neither_grpc_nor_the_engine() -> None:
    code = "import sys, ketch; print(sorted(m for m in ('grpc', 'ketch._core') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "[]"


def test_the_blocking_face_is_generated_from_the_async_one() -> None:
    from pathlib import Path

    tool = Path(__file__).resolve().parents[2] / "tools" / "unasync_client.py"
    check = subprocess.run(
        [sys.executable, str(tool), "--check"], check=False, capture_output=True, text=True, timeout=60
    )
    assert check.returncode == 0, check.stderr
