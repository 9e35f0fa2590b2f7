"""ketch.config: etcd's flags, ETCD_* variables and YAML file, and their precedence."""

from __future__ import annotations

from pathlib import Path

import pytest
from ketch.config import (
    Config,
    ConfigError,
    HelpRequested,
    VersionRequested,
    parse,
)

NO_ENV: dict[str, str] = {}


def test_defaults_are_etcds() -> None:
    cfg = parse([], NO_ENV)
    assert cfg == Config()
    assert cfg.name == "default" and cfg.data_dir == "default.ketch"
    assert cfg.listen_client_urls == ("http://localhost:2379",)
    assert cfg.initial_cluster == "default=http://localhost:2380"
    assert cfg.initial_cluster_token == "etcd-cluster"
    assert (
        cfg.max_request_bytes == 1572864 and cfg.quota_backend_bytes == 0 and cfg.max_txn_ops == 128
    )
    assert (cfg.member_id, cfg.cluster_id) == (0x8E9E05C52164694D, 0xCDF818194E3A8C32)


@pytest.mark.parametrize(
    "args",
    [
        ["--name", "x"],
        ["--name=x"],
        ["-name", "x"],
        ["-name=x"],
        ["--name", "y", "--name", "x"],  # the last one wins, as in Go's flag package
    ],
)
def test_go_flag_spellings(args: list[str]) -> None:
    assert parse(args, NO_ENV).name == "x"


def test_name_derives_data_dir_and_initial_cluster() -> None:
    cfg = parse(["--name", "n1", "--initial-advertise-peer-urls", "http://10.0.0.1:2380"], NO_ENV)
    assert cfg.data_dir == "n1.ketch"
    assert cfg.initial_cluster == "n1=http://10.0.0.1:2380"


def test_bool_flag_forms() -> None:
    base = ["--trusted-ca-file", "ca.pem"]
    assert parse([*base, "--client-cert-auth"], NO_ENV).client_cert_auth is True
    assert parse([*base, "--client-cert-auth=true"], NO_ENV).client_cert_auth is True
    assert parse([*base, "-client-cert-auth=0"], NO_ENV).client_cert_auth is False


def test_numbers() -> None:
    cfg = parse(
        ["--max-request-bytes", "0x100", "--quota-backend-bytes", "-1", "--max-txn-ops", "1000"],
        NO_ENV,
    )
    assert (cfg.max_request_bytes, cfg.quota_backend_bytes, cfg.max_txn_ops) == (256, -1, 1000)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--foo"], "flag provided but not defined: -foo"),
        (["--name"], "flag needs an argument: -name"),
        (
            ["--max-request-bytes", "x"],
            'invalid value "x" for flag -max-request-bytes: parse error',
        ),
        (
            ["--max-request-bytes", "99999999999999999999"],
            'invalid value "99999999999999999999" for flag -max-request-bytes: value out of range',
        ),
        (
            ["--client-cert-auth=maybe"],
            'invalid boolean value "maybe" for -client-cert-auth: parse error',
        ),
        (["--log-level", "loud"], 'invalid value "loud" for flag -log-level: invalid value'),
        (["---x"], "bad flag syntax: ---x"),
        (["-=x"], "bad flag syntax: -=x"),
    ],
)
def test_flag_errors_exit_2(args: list[str], message: str) -> None:
    with pytest.raises(ConfigError) as e:
        parse(args, NO_ENV)
    assert (str(e.value), e.value.exit_code) == (message, 2)


def test_parsing_stops_at_double_dash_and_refuses_leftovers() -> None:
    with pytest.raises(ConfigError) as e:
        parse(["--name", "x", "--", "--data-dir", "d"], NO_ENV)
    assert e.value.exit_code == 1
    assert "'--data-dir' is not a valid flag" in str(e.value)


def test_help_and_version() -> None:
    with pytest.raises(HelpRequested):
        parse(["-h"], NO_ENV)
    with pytest.raises(HelpRequested):
        parse(["--help"], NO_ENV)
    with pytest.raises(VersionRequested):
        parse(["--name=x", "--version"], NO_ENV)


def test_environment_fills_what_flags_do_not_set() -> None:
    env = {"ETCD_NAME": "env-name", "ETCD_DATA_DIR": "/env/dir", "ETCD_MAX_REQUEST_BYTES": "77",
           "ETCD_CLIENT_CERT_AUTH": "", "ETCD_UNRELATED": "x"}  # fmt: skip
    cfg = parse(["--data-dir", "/flag/dir"], env)
    assert (cfg.name, cfg.data_dir, cfg.max_request_bytes) == ("env-name", "/flag/dir", 77)
    assert cfg.warnings == (
        "environment variable ETCD_DATA_DIR is shadowed by the command-line flag --data-dir",
    )


def test_bad_environment_value_exits_1() -> None:
    with pytest.raises(ConfigError) as e:
        parse([], {"ETCD_QUOTA_BACKEND_BYTES": "big"})
    assert e.value.exit_code == 1
    assert 'invalid value "big" for ETCD_QUOTA_BACKEND_BYTES: parse error' in str(e.value)


def test_listen_client_urls_need_advertise_client_urls() -> None:
    with pytest.raises(ConfigError) as e:
        parse(["--listen-client-urls", "http://127.0.0.1:1"], NO_ENV)
    assert "--advertise-client-urls is required when --listen-client-urls is set explicitly" in str(
        e.value
    )
    with pytest.raises(ConfigError):
        parse([], {"ETCD_LISTEN_CLIENT_URLS": "http://127.0.0.1:1"})


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (
            [
                "--listen-client-urls",
                "http://example.com:1",
                "--advertise-client-urls",
                "http://x:1",
            ],
            "expected IP in URL for binding (http://example.com:1)",
        ),
        (
            ["--initial-cluster", "other=http://localhost:2380"],
            'couldn\'t find local name "default" in the initial cluster configuration',
        ),
        (
            ["--initial-cluster", "default=http://localhost:9999"],
            "--initial-cluster has default=http://localhost:9999 but missing from --initial-advertise-peer-urls=http://localhost:2380",
        ),
        (
            ["--initial-cluster", "default=http://localhost:2380,b=http://localhost:2380"],
            # etcd 3.4.23's line, from the same flags
            "initial cluster b=http://localhost:2380,default=http://localhost:2380 has duplicate url",
        ),
        (
            ["--listen-peer-urls", "https://127.0.0.1:23801"],
            # etcd 3.4.23's line, from the same flags
            "cannot listen on TLS for 127.0.0.1:23801: KeyFile and CertFile are not presented",
        ),
        (["--peer-client-cert-auth"], "--peer-client-cert-auth needs --peer-trusted-ca-file"),
        (
            [
                "--listen-client-urls",
                "https://127.0.0.1:1",
                "--advertise-client-urls",
                "https://127.0.0.1:1",
            ],
            "TLS key/cert (--cert-file, --key-file) must be provided for client url https://127.0.0.1:1 with HTTPS scheme",  # noqa: E501 -- etcd's message, quoted whole
        ),
        (["--client-cert-auth"], "--client-cert-auth needs --trusted-ca-file"),
        (
            ["--heartbeat-interval", "300", "--election-timeout", "1000"],
            # etcd 3.4.23's line, from the same flags
            "--election-timeout[1000ms] should be at least as 5 times as --heartbeat-interval[300ms]",
        ),
        (
            ["--election-timeout", "60000"],
            "--election-timeout[60000ms] is too long, and should be set less than 50000ms",
        ),
    ],
)
def test_invalid_combinations_exit_1(args: list[str], fragment: str) -> None:
    with pytest.raises(ConfigError) as e:
        parse(args, NO_ENV)
    assert e.value.exit_code == 1
    assert fragment in str(e.value)
    assert "\n" not in str(e.value)


def test_initial_cluster_state_is_validated() -> None:
    assert (
        parse(["--initial-cluster-state", "existing"], NO_ENV).initial_cluster_state == "existing"
    )
    with pytest.raises(ConfigError):
        parse(["--initial-cluster-state", "old"], NO_ENV)


def test_config_file_ignores_flags_and_environment(tmp_path: Path) -> None:
    f = tmp_path / "c.yaml"
    f.write_text(
        """\
name: file-name
listen-client-urls: https://127.0.0.1:5000,http://127.0.0.1:5001
advertise-client-urls: https://127.0.0.1:5000
initial-advertise-peer-urls: http://127.0.0.1:6000
initial-cluster: file-name=http://127.0.0.1:6000
max-request-bytes: 1000
quota-backend-bytes: 4096
log-level: warn
client-transport-security:
  cert-file: s.pem
  key-file: s-key.pem
  trusted-ca-file: ca.pem
  client-cert-auth: true
enable-v2: true
"""
    )
    env = {"ETCD_NAME": "env-name", "ETCD_MAX_TXN_OPS": "5"}
    for args, environ in (
        (["--config-file", str(f), "--name", "flag-name", "--log-level", "debug"], env),
        ([], {**env, "ETCD_CONFIG_FILE": str(f)}),
    ):
        cfg = parse(args, environ)
        assert cfg.name == "file-name" and cfg.data_dir == "file-name.ketch"
        assert cfg.listen_client_urls == ("https://127.0.0.1:5000", "http://127.0.0.1:5001")
        assert (cfg.max_request_bytes, cfg.quota_backend_bytes, cfg.max_txn_ops) == (
            1000,
            4096,
            128,
        )
        assert (cfg.cert_file, cfg.key_file, cfg.trusted_ca_file, cfg.client_cert_auth) == (
            "s.pem",
            "s-key.pem",
            "ca.pem",
            True,
        )
        assert cfg.log_level == "warn"
        assert cfg.config_file == str(f)


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("max-request-bytes: lots\n", "max-request-bytes must be an integer"),
        ("name: [a, b]\n", "name must be a string"),
        (
            "listen-client-urls: ftp://x:1\nadvertise-client-urls: http://x:1\n",
            "URL scheme must be http, https, unix, or unixs",
        ),
        (
            "client-transport-security:\n  client-cert-auth: yes-please\n",
            "client-cert-auth must be true or false",
        ),
        ("- a list\n", "must be a YAML mapping"),
        ("name: [unclosed\n", "c.yaml"),
    ],
)
def test_bad_config_file(tmp_path: Path, text: str, fragment: str) -> None:
    f = tmp_path / "c.yaml"
    f.write_text(text)
    with pytest.raises(ConfigError) as e:
        parse(["--config-file", str(f)], NO_ENV)
    assert e.value.exit_code == 1 and fragment in str(e.value) and "\n" not in str(e.value)


def test_config_file_ketch_keys_and_durations(tmp_path: Path) -> None:
    f = tmp_path / "c.yaml"
    # etcd decodes a YAML duration as integer nanoseconds; a Go duration string is accepted too.
    f.write_text("grpc-workers: 3\nexperimental-watch-progress-notify-interval: 90000000000\n")
    cfg = parse(["--config-file", str(f)], NO_ENV)
    assert (cfg.grpc_workers, cfg.watch_progress_notify_interval) == (3, 90.0)
    f.write_text("experimental-watch-progress-notify-interval: 1m30s\n")
    assert parse(["--config-file", str(f)], NO_ENV).watch_progress_notify_interval == 90.0
    f.write_text("grpc-workers: 0\n")
    with pytest.raises(ConfigError, match="grpc-workers"):
        parse(["--config-file", str(f)], NO_ENV)


def test_missing_config_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as e:
        parse(["--config-file", str(tmp_path / "nope.yaml")], NO_ENV)
    assert "nope.yaml" in str(e.value) and "no such file" in str(e.value)


def test_config_is_frozen() -> None:
    cfg = parse([], NO_ENV)
    with pytest.raises(AttributeError):
        cfg.name = "other"  # type: ignore[misc]


THREE = "a=http://127.0.0.1:23801,b=http://127.0.0.1:23802,c=http://127.0.0.1:23803"


def test_multi_member_initial_cluster() -> None:
    cfg = parse(
        [
            "--name", "b",
            "--initial-cluster", THREE,
            "--initial-cluster-token", "tok",
            "--initial-cluster-state", "existing",
            "--initial-advertise-peer-urls", "http://127.0.0.1:23802",
            "--listen-peer-urls", "http://127.0.0.1:23802",
        ],
        NO_ENV,
    )  # fmt: skip
    # The IDs etcd 3.4.23 logs for the same flags ("starting member ... in cluster ...").
    assert cfg.member_id == 0x2737ECEDBF2A9065
    assert cfg.cluster_id == 0x64D937C925E41B58
    assert cfg.initial_members == [
        (0x4036B1DB24775EA0, "a", ["http://127.0.0.1:23801"]),
        (0x2737ECEDBF2A9065, "b", ["http://127.0.0.1:23802"]),
        (0x80AF5D65A6E2F603, "c", ["http://127.0.0.1:23803"]),
    ]
    assert cfg.initial_cluster_state == "existing"
    assert cfg.listen_peer_urls == ("http://127.0.0.1:23802",)


def test_peer_tls_flags_and_yaml(tmp_path: Path) -> None:
    cfg = parse(
        [
            "--listen-peer-urls", "https://127.0.0.1:23801",
            "--peer-cert-file", "p.crt",
            "--peer-key-file", "p.key",
            "--peer-trusted-ca-file", "ca.crt",
            "--peer-client-cert-auth",
        ],
        NO_ENV,
    )  # fmt: skip
    assert (cfg.peer_cert_file, cfg.peer_key_file, cfg.peer_trusted_ca_file) == (
        "p.crt",
        "p.key",
        "ca.crt",
    )
    assert cfg.peer_client_cert_auth is True
    env = parse([], {"ETCD_PEER_CERT_FILE": "e.crt", "ETCD_PEER_CLIENT_CERT_AUTH": "false"})
    assert env.peer_cert_file == "e.crt" and env.peer_client_cert_auth is False
    f = tmp_path / "c.yaml"
    f.write_text(
        "peer-transport-security:\n"
        "  cert-file: y.crt\n  key-file: y.key\n  trusted-ca-file: yca.crt\n"
        "  client-cert-auth: true\n"
        "client-transport-security:\n  cert-file: c.crt\n"
    )
    y = parse(["--config-file", str(f)], NO_ENV)
    assert (y.peer_cert_file, y.peer_key_file, y.peer_trusted_ca_file) == (
        "y.crt",
        "y.key",
        "yca.crt",
    )
    assert y.peer_client_cert_auth is True and y.cert_file == "c.crt"


def test_raft_timing_and_snapshot_count() -> None:
    cfg = parse(
        ["--heartbeat-interval", "50", "--election-timeout", "500", "--snapshot-count", "20"],
        NO_ENV,
    )
    assert (cfg.heartbeat_interval, cfg.election_timeout, cfg.snapshot_count) == (50, 500, 20)
    defaults = parse([], NO_ENV)
    assert (defaults.heartbeat_interval, defaults.election_timeout) == (100, 1000)
    assert defaults.snapshot_count == 100_000
