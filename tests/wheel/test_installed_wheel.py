"""The wheel as a user gets it: installed into a new virtualenv of another
CPython, with no cargo, rustc or protoc on PATH, then run and driven with the
real etcdctl, ketchctl, ketch.Client and a pytest file of the user's own.

Which wheel: $KETCH_WHEEL (`.ci/dev test` sets it to the wheel it built and
installed), else the newest dist/ketch-*.whl (`bash .ci/dev wheel`).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import textwrap
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from ..support import ETCDCTL, REPO, free_port

PYENV = Path("/root/.pyenv/versions")
# abi3-py310: one wheel for 3.10 and every later CPython; the oldest, one
# between and the newest the machine has.
PYTHONS = ["3.10", "3.11", "3.13"]
INSTALL_TIMEOUT = 300
STEP_TIMEOUT = 60


def the_wheel() -> Path:
    configured = os.environ.get("KETCH_WHEEL")
    if configured:
        return Path(configured)
    built = sorted((REPO / "dist").glob("ketch-*.whl"), key=lambda p: p.stat().st_mtime)
    if not built:
        pytest.fail("no wheel: set KETCH_WHEEL or run `bash .ci/dev wheel` (writes dist/)")
    return built[-1]


def interpreter(minor: str) -> Path:
    found = sorted(PYENV.glob(f"{minor}.*/bin/python{minor}"))
    if not found:
        pytest.fail(f"CPython {minor} is not under {PYENV} (pyenv install {minor})")
    return found[-1]


@dataclass
class Venv:
    root: Path
    # PATH for its commands: the venv's bin alone, so no cargo, rustc or
    # protoc can be found (etcdctl is called by its full path).
    path: str

    def bin(self, name: str) -> str:
        return str(self.root / "bin" / name)

    def env(self) -> dict[str, str]:
        keep = {k: v for k, v in os.environ.items()
                if not k.startswith(("ETCD", "PYTHON", "VIRTUAL_ENV", "CARGO", "RUST"))}  # fmt: skip
        return {**keep, "PATH": self.path, "ETCDCTL_API": "3"}

    def run(self, *argv: str, cwd: Path | None = None, timeout: float = STEP_TIMEOUT) -> str:
        p = subprocess.run(
            argv, env=self.env(), cwd=cwd, capture_output=True, text=True,
            timeout=timeout, stdin=subprocess.DEVNULL, check=False,
        )  # fmt: skip
        assert p.returncode == 0, f"{argv} exited {p.returncode}:\n{p.stdout}\n{p.stderr}"
        return p.stdout


_VENVS: dict[str, Venv] = {}


@pytest.fixture(scope="session")
def wheel() -> Path:
    return the_wheel()


@pytest.fixture(params=PYTHONS, ids=lambda v: f"cpython{v}")
def venv(request: pytest.FixtureRequest, wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Venv:
    """A new virtualenv of that CPython with the wheel (and pytest) installed; one per session."""
    minor: str = request.param
    if minor not in _VENVS:
        root = tmp_path_factory.mktemp(f"venv-{minor}")
        subprocess.run([str(interpreter(minor)), "-m", "venv", str(root)], check=True, timeout=120)
        v = Venv(root, str(root / "bin"))
        # The wheel's dependencies come from the package index, as a user's do.
        v.run(v.bin("pip"), "install", "-q", str(wheel), "pytest", timeout=INSTALL_TIMEOUT)
        v.run(v.bin("pip"), "check")
        _VENVS[minor] = v
    return _VENVS[minor]


@pytest.fixture
def server(venv: Venv, tmp_path: Path) -> Iterator[str]:
    """`ketch` from the venv on free 127.0.0.1 ports, data in tmp_path; yields its endpoint."""
    client, peer = free_port(), free_port()
    log = tmp_path / "ketch.log"
    argv = [
        venv.bin("ketch"), "--name", "default", "--data-dir", str(tmp_path / "data"),
        "--listen-client-urls", f"http://127.0.0.1:{client}",
        "--advertise-client-urls", f"http://127.0.0.1:{client}",
        "--listen-peer-urls", f"http://127.0.0.1:{peer}",
        "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer}",
        "--initial-cluster", f"default=http://127.0.0.1:{peer}",
    ]  # fmt: skip
    with open(log, "wb") as out:
        proc = subprocess.Popen(argv, env=venv.env(), cwd=tmp_path, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL)  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while "ready to serve client requests" not in log.read_text(errors="replace"):
            assert proc.poll() is None, f"ketch exited {proc.returncode}:\n{log.read_text()}"
            assert time.monotonic() < deadline, f"ketch not ready in 30 s:\n{log.read_text()}"
            time.sleep(0.05)
        yield f"127.0.0.1:{client}"
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def test_the_venv_has_no_rust_toolchain_and_ketch_comes_from_the_wheel(venv: Venv, wheel: Path) -> None:
    for tool in ("cargo", "rustc", "protoc"):
        assert shutil.which(tool, path=venv.path) is None, tool
    where = venv.run(venv.bin("python"), "-c", "import ketch._core as c; print(c.__file__)", cwd=Path("/"))
    assert where.startswith(str(venv.root)), where
    assert wheel.name.startswith("ketch-0.1.0-cp310-abi3-"), wheel.name


def test_version_names_the_build(venv: Venv) -> None:
    out = venv.run(venv.bin("ketch"), "--version")
    assert venv.run(venv.bin("python"), "-m", "ketch", "--version") == out
    lines = dict(line.split(": ", 1) for line in out.splitlines())
    facts = json.loads(venv.run(venv.bin("python"), "-c", textwrap.dedent("""
        import importlib.metadata, json, ketch, ketch._core as c
        print(json.dumps([importlib.metadata.version("ketch"), ketch.__version__, c.VERSION,
                          ketch.ETCD_VERSION, c.ETCD_VERSION, c.GIT_SHA]))
    """)))  # fmt: skip
    dist_version, py_version, core_version, etcd_py, etcd_core, sha = facts
    assert dist_version == py_version == core_version == lines["ketch Version"]
    assert etcd_py == etcd_core and lines["etcd API Version"] == etcd_py.rsplit(".", 1)[0]
    assert lines["Git SHA"] == sha
    # The revision is a commit of this repository (the wheel was built from it).
    known = subprocess.run(["git", "-C", str(REPO), "cat-file", "-e", f"{sha}^{{commit}}"],
                           capture_output=True, timeout=30, check=False)  # fmt: skip
    assert known.returncode == 0, f"Git SHA {sha!r} is no commit of {REPO}"


def test_etcdctl_put_get_watch_member_list(venv: Venv, server: str) -> None:
    def etcdctl(*args: str) -> str:
        return venv.run(ETCDCTL, "--endpoints", server, *args)

    watcher = subprocess.Popen([ETCDCTL, "--endpoints", server, "watch", "greeting"], env=venv.env(),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        time.sleep(1.0)  # etcdctl watch has no "watching" line; give it its stream
        assert etcdctl("put", "greeting", "hello") == "OK\n"
        assert etcdctl("get", "greeting") == "greeting\nhello\n"
        watcher.send_signal(signal.SIGINT)
        out, _ = watcher.communicate(timeout=STEP_TIMEOUT)
    finally:
        if watcher.poll() is None:
            watcher.kill()
            watcher.wait()
    assert out == "PUT\ngreeting\nhello\n"
    members = json.loads(etcdctl("member", "list", "-w", "json"))["members"]
    assert [m["name"] for m in members] == ["default"]
    assert venv.run(venv.bin("ketchctl"), "--endpoints", server, "get", "greeting") == "greeting\nhello\n"
    ctl = venv.run(venv.bin("python"), "-m", "ketch.ctl", "--endpoints", server, "get", "greeting")
    assert ctl == "greeting\nhello\n"


def test_client_from_the_wheel(venv: Venv, server: str) -> None:
    out = venv.run(venv.bin("python"), "-c", textwrap.dedent(f"""
        from ketch import Client
        with Client([{server!r}]) as c:
            c.put("from-python", "yes")
            print(c.get("from-python").kvs[0].value.decode())
            print(len(c.member_list().members))
    """))  # fmt: skip
    assert out == "yes\n1\n"


def test_ketch_testing_in_a_users_pytest_file(venv: Venv, tmp_path: Path) -> None:
    (tmp_path / "test_mine.py").write_text(textwrap.dedent("""
        from ketch.testing import member

        def test_fixture(ketch_client):
            ketch_client.put("k", "v")
            assert ketch_client.get("k").kvs[0].value == b"v"

        def test_context_manager():
            with member() as m, m.client() as c:
                c.put("a", "b")
                assert c.get("a").count == 1
    """))
    out = venv.run(venv.bin("python"), "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path),
                   cwd=tmp_path, timeout=120)  # fmt: skip
    assert "2 passed" in out, out
