"""The `ketch` command line as a process, next to etcd's for the same input."""

from __future__ import annotations

import json
import socket
import subprocess
from pathlib import Path

import pytest
from ketch import membership

from ..support import ETCD, Server, free_port, ketch_command, subprocess_env


def run(
    cmd: list[str], env: dict[str, str] | None = None, cwd: Path | None = None
) -> tuple[int, str, str]:
    p = subprocess.run(
        cmd,
        check=False,
        capture_output=True,
        timeout=30,
        env=subprocess_env(env),
        cwd=cwd,
        stdin=subprocess.DEVNULL,
    )
    return p.returncode, p.stdout.decode(), p.stderr.decode()


BAD_FLAGS = [
    ["--foo"],
    ["-foo=1"],
    ["--name"],
    ["--max-request-bytes", "x"],
    ["--max-request-bytes=-1"],
    ["--quota-backend-bytes", "1.5"],
    ["--client-cert-auth=maybe"],
    ["---x"],
    ["--initial-cluster-state", "bad"],
    ["--listen-client-urls", "ftp://foo:1"],
    ["--listen-client-urls", "http://127.0.0.1"],
    ["--advertise-client-urls", "http://127.0.0.1:1/path"],
]


@pytest.mark.parametrize("args", BAD_FLAGS, ids=" ".join)
def test_bad_flag_is_one_line_and_exit_2_like_etcd(tmp_path: Path, args: list[str]) -> None:
    etcd_rc, _, etcd_err = run([ETCD, *args], cwd=tmp_path)
    rc, out, err = run([*ketch_command(), *args], cwd=tmp_path)
    assert etcd_rc == 2
    # etcd follows its line with a usage text; ketch prints the line alone.
    assert (rc, out, err) == (2, "", "ketch: " + etcd_err.splitlines()[0] + "\n")
    assert not list(tmp_path.iterdir()), "nothing may be created on a bad flag"


def test_positional_argument_is_refused_with_exit_1(tmp_path: Path) -> None:
    etcd_rc, _, etcd_err = run([ETCD, "extra"], cwd=tmp_path)
    rc, _, err = run([*ketch_command(), "extra"], cwd=tmp_path)
    assert (etcd_rc, rc) == (1, 1)
    assert "'extra' is not a valid flag" in etcd_err
    assert err == "ketch: error verifying flags, 'extra' is not a valid flag. See 'ketch --help'.\n"


def test_bad_environment_value_exits_1(tmp_path: Path) -> None:
    rc, _, err = run([*ketch_command()], env={"ETCD_MAX_REQUEST_BYTES": "lots"}, cwd=tmp_path)
    assert rc == 1
    assert err == (
        'ketch: error verifying flags, invalid value "lots" for ETCD_MAX_REQUEST_BYTES: '
        "parse error. See 'ketch --help'.\n"
    )


def test_version_and_help() -> None:
    rc, out, err = run([*ketch_command(), "--version"])
    assert (rc, err) == (0, "")
    assert out.startswith("ketch Version: 0.1.0\netcd API Version: 3.5\n")
    rc, out, err = run([*ketch_command(), "-h"])
    assert (rc, err) == (0, "")
    assert "--listen-client-urls" in out and "--config-file" in out


def test_port_in_use_is_one_line_and_exit_1(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        url = f"http://127.0.0.1:{port}"
        rc, _, err = run(
            [*ketch_command(), "--data-dir", str(tmp_path / "d"), "--listen-client-urls", url,
             "--advertise-client-urls", url, "--log-level", "error"],
        )  # fmt: skip
    assert (rc, err) == (1, f"ketch: listen tcp 127.0.0.1:{port}: bind: address already in use\n")
    assert not (tmp_path / "d").exists(), "the data dir is not touched when a port cannot be bound"


def _member_list(server: Server) -> dict[str, object]:
    rc, out, err = server.etcdctl("member", "list", "-w", "json")
    assert rc == 0, err
    doc: dict[str, object] = json.loads(out)
    return doc


def test_environment_configures_ketch(make_server) -> None:
    client, peer = free_port(), free_port()
    env = {
        "ETCD_NAME": "from-env",
        "ETCD_LISTEN_CLIENT_URLS": f"http://127.0.0.1:{client}",
        "ETCD_ADVERTISE_CLIENT_URLS": f"http://127.0.0.1:{client}",
        "ETCD_LISTEN_PEER_URLS": f"http://127.0.0.1:{peer}",
        "ETCD_INITIAL_ADVERTISE_PEER_URLS": f"http://127.0.0.1:{peer}",
        "ETCD_INITIAL_CLUSTER_TOKEN": "env-token",
        "ETCD_DATA_DIR": "env-data",
    }
    server = make_server(
        "ketch", client_port=client, peer_port=peer, args=["--name", "from-flag"], env=env
    )
    members = _member_list(server)["members"]
    assert isinstance(members, list)
    # The flag beats ETCD_NAME; everything else comes from the environment.
    assert members[0]["name"] == "from-flag"
    assert members[0]["ID"] == membership.member_id([f"http://127.0.0.1:{peer}"], "env-token")
    assert (server.data_dir.parent / "env-data").is_dir()
    assert "ETCD_NAME is shadowed" in server.log_text()


def test_config_file_wins_over_flags_and_environment(make_server, tmp_path: Path) -> None:
    client, peer = free_port(), free_port()
    config = tmp_path / "ketch.yaml"
    config.write_text(
        f"""\
name: from-file
data-dir: {tmp_path / "file-data"}
listen-client-urls: http://127.0.0.1:{client}
advertise-client-urls: http://127.0.0.1:{client}
listen-peer-urls: http://127.0.0.1:{peer}
initial-advertise-peer-urls: http://127.0.0.1:{peer}
initial-cluster: from-file=http://127.0.0.1:{peer}
initial-cluster-token: file-token
max-request-bytes: 2000
log-level: debug
some-etcd-key-ketch-does-not-use: 1
"""
    )
    server = make_server(
        "ketch",
        client_port=client,
        peer_port=peer,
        args=[
            "--config-file",
            str(config),
            "--name",
            "from-flag",
            "--max-request-bytes",
            "9999999",
        ],
        env={"ETCD_INITIAL_CLUSTER_TOKEN": "env-token"},
    )
    members = _member_list(server)["members"]
    assert isinstance(members, list)
    assert members[0]["name"] == "from-file"
    assert members[0]["ID"] == membership.member_id([f"http://127.0.0.1:{peer}"], "file-token")
    assert (tmp_path / "file-data").is_dir()
    # max-request-bytes 2000 from the file, not the flag's 9999999.
    rc, _, err = server.etcdctl("put", "k", stdin=b"v" * 3000)
    assert (rc, err.splitlines()[-1]) == (1, "Error: etcdserver: request is too large")


def test_member_and_cluster_ids_match_etcd(make_server) -> None:
    """etcd's own IDs for a member with two peer URLs and a custom token."""
    client, p1, p2 = free_port(), free_port(), free_port()
    peers = [f"http://127.0.0.1:{p2}", f"http://127.0.0.1:{p1}"]
    args = [
        "--name", "m1",
        "--listen-client-urls", f"http://127.0.0.1:{client}",
        "--advertise-client-urls", f"http://127.0.0.1:{client}",
        "--listen-peer-urls", ",".join(peers),
        "--initial-advertise-peer-urls", ",".join(peers),
        "--initial-cluster", ",".join(f"m1={u}" for u in peers),
        "--initial-cluster-token", "token-42",
    ]  # fmt: skip
    server = make_server("etcd", client_port=client, args=args)
    doc = _member_list(server)
    member = membership.member_id(peers, "token-42")
    assert doc["members"][0]["ID"] == member  # type: ignore[index]
    assert doc["header"]["cluster_id"] == membership.cluster_id([member])  # type: ignore[index]
