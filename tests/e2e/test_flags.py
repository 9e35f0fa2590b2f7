"""etcd's whole command line through the `ketch` process: every flag of etcd's
list starts ketch, every no-op logs its one warning, and the flags ketch
honours behave as in Debian's etcd.

Starting a server per flag would take minutes, so the flags go in one start
with everything that fits together; the discovery flags, which exclude
--initial-cluster and need a DNS server or a discovery service, start ketch
in tests/e2e/test_discovery.py.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from ketch.config.flags import FLAGS

from ..server.test_flags import VALID, etcd_flags
from ..support import (
    ETCD,
    Server,
    TLSFiles,
    etcdctl,
    free_port,
    ketch_command,
    make_tls_files,
    subprocess_env,
)

ServerFactory = Callable[..., Server]

# Set by Server's own command line (name, URLs, cluster) or not a server flag.
MANAGED = {
    "name", "data-dir", "listen-client-urls", "advertise-client-urls", "listen-peer-urls",
    "initial-advertise-peer-urls", "initial-cluster", "config-file", "version",
}  # fmt: skip
# The flags that need a start of their own; debug rides along to keep the
# main start's log short.
DISCOVERY_SRV = ("discovery-srv", "discovery-srv-name", "discovery-proxy", "discovery-fallback",
                 "debug")  # fmt: skip
DISCOVERY = ("discovery",)


def _args(names: list[str], tmp_path: Path, files: TLSFiles) -> list[str]:
    real = {
        "wal-dir": str(tmp_path / "wal"),
        "cert-file": str(files.server_cert), "key-file": str(files.server_key),
        "trusted-ca-file": str(files.ca), "peer-trusted-ca-file": str(files.ca),
        "peer-cert-file": str(files.peer_cert), "peer-key-file": str(files.peer_key),
        "listen-metrics-urls": f"http://127.0.0.1:{free_port()}",
        # --enable-log-rotation needs one file output; a stream beside it is allowed.
        "log-outputs": f"stdout,{tmp_path / 'ketch.log'}", "log-output": f"stdout,{tmp_path / 'ketch.log'}",
    }  # fmt: skip
    return [f"--{n}={real.get(n, VALID[n][0])}" for n in names]


def _check_warnings(log: str, names: list[str]) -> None:
    for n in names:
        flag = FLAGS[n]
        count = log.count(f"flag --{n} has no effect in ketch:")
        if flag.warns(VALID[n][1]):
            assert log.count(flag.warning()) == 1, f"--{n}: no warning or more than one\n{log}"
        else:
            assert count == 0, f"--{n} does what etcd does; it must not warn"


def test_every_etcd_flag_starts_ketch(make_server: ServerFactory, tmp_path: Path) -> None:
    names = [n for n in dict.fromkeys(etcd_flags()) if n not in MANAGED]
    main = [n for n in names if n not in DISCOVERY_SRV + DISCOVERY]
    assert len(main) > 100
    (tmp_path / "tls").mkdir()
    # Client URLs stay http, so the client TLS files are checked but not read
    # (as by etcd); the TLS flags are exercised by tests/e2e/test_kubeadm.py.
    server = make_server(
        "ketch", _args(main, tmp_path, make_tls_files(tmp_path / "tls")), start=False
    )
    server.start()
    assert server.etcdctl("put", "k", "v")[0] == 0
    _check_warnings(server.log_text(), main)
    assert "--unsafe-no-fsync is set" in server.log_text()
    assert list((tmp_path / "wal").glob("*.wal")), "--wal-dir holds the WAL"
    server.stop()
    # The discovery flags bootstrap from DNS or a discovery service, which
    # tests/e2e/test_discovery.py provides; their warnings are checked here.
    for n in DISCOVERY_SRV + DISCOVERY:
        assert FLAGS[n].warns(VALID[n][1]) == (n == "discovery-fallback" and VALID[n][1] != "exit")


def _run(cmd: list[str], cwd: Path) -> tuple[int, str, str]:
    p = subprocess.run(cmd, check=False, capture_output=True, timeout=30, cwd=cwd,
                       env=subprocess_env(), stdin=subprocess.DEVNULL)  # fmt: skip
    return p.returncode, p.stdout.decode(), p.stderr.decode()


BAD_VALUES = [
    ["--max-concurrent-streams=x"],
    ["--max-concurrent-streams=5000000000"],
    ["--discovery-fallback=foo"],
    ["--proxy=foo"],
    ["--listen-metrics-urls=foo"],
    ["--cors=foo"],
    ["--grpc-keepalive-min-time=5"],
    ["--backend-batch-limit=x"],
    ["--max-wals=-1"],
    ["--max-snapshots=x"],
    ["--pre-vote=maybe"],
    ["--strict-reconfig-check=2"],
    ["--experimental-corrupt-check-time=1"],
    ["--auth-token-ttl=-5"],
    ["--proxy-read-timeout=x"],
]


@pytest.mark.parametrize("args", BAD_VALUES, ids=" ".join)
def test_bad_value_is_etcds_line_exit_2_nothing_written(tmp_path: Path, args: list[str]) -> None:
    data = tmp_path / "d"
    etcd_rc, _, etcd_err = _run([ETCD, "--data-dir", str(data), *args], tmp_path)
    rc, out, err = _run([*ketch_command(), "--data-dir", str(data), *args], tmp_path)
    assert etcd_rc == 2
    assert (rc, out, err) == (2, "", "ketch: " + etcd_err.splitlines()[0] + "\n")
    assert not list(tmp_path.iterdir()), "nothing may be created on a bad flag"


BAD_COMBINATIONS = [
    ["--auto-compaction-mode=foo"],
    ["--auto-compaction-retention=foo"],
    ["--experimental-enable-lease-checkpoint-persist"],
    ["--election-timeout=0"],
    ["--listen-metrics-urls=http://foo.com:2381"],
    ["--cipher-suites=FOO"],
]


@pytest.mark.parametrize("args", BAD_COMBINATIONS, ids=" ".join)
def test_bad_combination_exit_1_nothing_written(tmp_path: Path, args: list[str]) -> None:
    data = tmp_path / "d"
    etcd_rc, _, etcd_err = _run([ETCD, "--logger=zap", "--data-dir", str(data), *args], tmp_path)
    assert etcd_rc == 1
    rc, _, err = _run([*ketch_command(), "--data-dir", str(data), *args], tmp_path)
    assert rc == 1 and len(err.splitlines()) == 1
    # etcd logs the same error inside a JSON line.
    message = err.removeprefix("ketch: ").removeprefix("error verifying flags, ").strip()
    message = message.removesuffix(". See 'ketch --help'.")
    assert message.replace('"', '\\"') in etcd_err
    assert not data.exists()


def test_wal_dir_is_used_and_found_again_as_etcd(
    make_server: ServerFactory, tmp_path: Path
) -> None:
    for kind in ("etcd", "ketch"):
        wal = tmp_path / f"{kind}-wal"
        s = make_server(kind, ["--wal-dir", str(wal)])
        assert s.etcdctl("put", "k", kind)[0] == 0
        s.stop()
        assert list(wal.glob("*.wal")), f"{kind}: no WAL in --wal-dir"
        assert not (s.data_dir / "member" / "wal").exists(), f"{kind}: WAL in the data dir"
        s.start()
        rc, out, _ = s.etcdctl("get", "k", "--print-value-only")
        assert (rc, out) == (0, f"{kind}\n")
        s.stop()


def _add(s: Server, name: str, *extra: str) -> tuple[int, str]:
    rc, out, err = etcdctl(s, "--command-timeout=3s", "member", "add", name,
                           f"--peer-urls=http://127.0.0.1:{free_port()}", *extra, timeout=20)  # fmt: skip
    return rc, (out + err).strip().splitlines()[-1]


@pytest.mark.parametrize("strict", [True, False])
def test_strict_reconfig_check_as_etcd(make_server: ServerFactory, strict: bool) -> None:
    """A voter added but never started leaves one started voter of two: with
    the check (the default) a third voter is refused at once; without it the
    change is proposed, and cannot commit without a quorum."""
    answers = []
    for kind in ("etcd", "ketch"):
        s = make_server(kind, [] if strict else ["--strict-reconfig-check=false"])
        assert _add(s, "b")[0] == 0
        answers.append(_add(s, "c"))
        s.stop()
    if strict:
        expected = "Error: etcdserver: re-configuration failed due to not enough started members"
        assert answers == [(1, expected)] * 2
    else:
        for rc, line in answers:
            assert rc != 0 and "not enough started members" not in line, answers


def test_max_learners(make_server: ServerFactory) -> None:
    # etcd 3.4 has no --experimental-max-learners; its one-learner rule is the default.
    default = make_server("ketch")
    assert _add(default, "l1", "--learner")[0] == 0
    assert _add(default, "l2", "--learner") == (
        1, "Error: etcdserver: too many learner members in cluster",
    )  # fmt: skip
    two = make_server("ketch", ["--experimental-max-learners=2"])
    assert _add(two, "l1", "--learner")[0] == 0
    assert _add(two, "l2", "--learner")[0] == 0


@pytest.mark.parametrize("limit", ["2", "3"])
def test_max_txn_ops_as_etcd(make_server: ServerFactory, limit: str) -> None:
    answers = []
    txn = b"\nput a 1\nput b 2\nput c 3\n\n\n"
    for kind in ("etcd", "ketch"):
        s = make_server(kind, [f"--max-txn-ops={limit}"])
        rc, out, err = s.etcdctl("txn", stdin=txn)
        answers.append((rc, (out + err).strip().splitlines()[-1]))
        s.stop()
    assert answers[0] == answers[1]
    if limit == "2":
        assert answers[0] == (1, "Error: etcdserver: too many operations in txn request")
    else:
        assert answers[0][0] == 0


def _bind_beside(port: int) -> bool:
    """Whether another socket with SO_REUSEPORT can listen on the port too."""
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        try:
            sock.bind(("127.0.0.1", port))
            sock.listen(1)
        except OSError:
            return False
        return True


@pytest.mark.parametrize("reuse", [True, False])
def test_socket_reuse_port_lets_another_process_listen_beside(
    make_server: ServerFactory, reuse: bool
) -> None:
    # etcd's --socket-reuse-port sets SO_REUSEPORT on the client and peer
    # listeners, so a second server can take over the port (a rolling restart).
    server = make_server("ketch", ["--socket-reuse-port"] if reuse else [])
    assert _bind_beside(server.client_port) == reuse
    assert _bind_beside(server.peer_port) == reuse
    assert server.etcdctl("put", "k", "v")[0] == 0
