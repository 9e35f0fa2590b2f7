"""Every etcd server flag in ketch.config's table: accepted in every form etcd
takes, with etcd's kinds and defaults, listed by --help and README.

The list of flags to cover is etcd's own: Debian's etcd 3.4 binary's `--help`,
plus the flags etcd registers without listing them, plus etcd 3.5's additions
(ETCD_35_ADDITIONS, with their source).
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
from ketch.config import USAGE, ConfigError, markdown_table, parse
from ketch.config.flags import FLAGS, GROUPS

from ..support import ETCD, REPO

NO_ENV: dict[str, str] = {}

# Flags etcd 3.4.23 registers but leaves out of `--help` (etcdmain/config.go):
# the deprecated --log-output, the gateway switch, the 3.5 backports Debian
# carries, and etcd 0.4's names it accepts and ignores (`ignored`).
ETCD_34_UNLISTED = (
    "log-output", "enable-grpc-gateway", "experimental-enable-lease-checkpoint-persist",
    "unsafe-no-fsync", "cluster-active-size", "cluster-remove-delay", "cluster-sync-interval",
    "config", "force", "max-result-buffer", "max-retry-attempts", "peer-heartbeat-interval",
    "peer-election-timeout", "retry-interval", "snapshot", "v", "vv",
)  # fmt: skip

# etcd 3.5's server flags that 3.4's --help does not have: etcd v3.5's
# server/etcdmain/help.go and server/embed/config.go (the op-guide's
# "Configuration flags" page lists the same), as of v3.5.17; the last two are
# the 3.6 flags issue 10 names, which 3.5 backports took up under these names.
ETCD_35_ADDITIONS = (
    "socket-reuse-port", "socket-reuse-address", "listen-client-http-urls", "v2-deprecation",
    "client-cert-file", "client-key-file", "peer-client-cert-file", "peer-client-key-file",
    "self-signed-cert-validity", "tls-min-version", "tls-max-version",
    "enable-log-rotation", "log-rotation-config-json",
    "experimental-enable-distributed-tracing", "experimental-distributed-tracing-address",
    "experimental-distributed-tracing-service-name",
    "experimental-distributed-tracing-instance-id",
    "experimental-distributed-tracing-sampling-rate",
    "experimental-compact-hash-check-enabled", "experimental-compact-hash-check-time",
    "experimental-compaction-sleep-interval", "experimental-warning-unary-request-duration",
    "experimental-bootstrap-defrag-threshold-megabytes",
    "experimental-txn-mode-write-with-shared-buffer", "experimental-memory-mlock",
    "experimental-downgrade-check-time", "experimental-wait-cluster-ready-timeout",
    "experimental-stop-grpc-service-on-defrag",
    "experimental-max-learners", "experimental-snapshot-catchup-entries",
)  # fmt: skip


def etcd_help_flags() -> list[str]:
    """The flags Debian's etcd lists in `etcd --help`, in its order."""
    out = subprocess.run([ETCD, "--help"], capture_output=True, text=True, timeout=30, check=False)
    return re.findall(r"^  --([a-z0-9-]+)", out.stdout + out.stderr, re.MULTILINE)


def etcd_flags() -> list[str]:
    """Every flag ketch must take: etcd's listed, unlisted and 3.5's."""
    names = [n for n in etcd_help_flags() if n not in ("version", "help")]
    return [*names, *ETCD_34_UNLISTED, *ETCD_35_ADDITIONS]


# A valid value for every flag, unlike its default where there is one (so the
# no-op flags draw their warning), and what ketch.config makes of it. The end
# to end test starts ketch with these.
VALID: dict[str, tuple[str, Any]] = {
    "name": ("n1", "n1"),
    "data-dir": ("d", "d"),
    "wal-dir": ("w", "w"),
    "snapshot-count": ("10000", 10000),
    "heartbeat-interval": ("50", 50),
    "election-timeout": ("500", 500),
    "initial-election-tick-advance": ("false", False),
    "listen-peer-urls": ("http://127.0.0.1:12380", ("http://127.0.0.1:12380",)),
    "listen-client-urls": ("http://127.0.0.1:12379", ("http://127.0.0.1:12379",)),
    "listen-client-http-urls": ("http://127.0.0.1:12382", ("http://127.0.0.1:12382",)),
    "max-snapshots": ("3", 3),
    "max-wals": ("3", 3),
    "quota-backend-bytes": ("8589934592", 8589934592),
    "backend-batch-interval": ("10ms", 0.01),
    "backend-batch-limit": ("100", 100),
    "max-txn-ops": ("256", 256),
    "max-request-bytes": ("2097152", 2097152),
    "max-concurrent-streams": ("1000", 1000),
    "grpc-keepalive-min-time": ("10s", 10.0),
    "grpc-keepalive-interval": ("1h", 3600.0),
    "grpc-keepalive-timeout": ("30s", 30.0),
    "socket-reuse-port": ("true", True),
    "socket-reuse-address": ("true", True),
    "initial-advertise-peer-urls": ("http://127.0.0.1:12380", ("http://127.0.0.1:12380",)),
    "initial-cluster": ("n1=http://127.0.0.1:12380", "n1=http://127.0.0.1:12380"),
    "initial-cluster-state": ("new", "new"),
    "initial-cluster-token": ("tok", "tok"),
    "advertise-client-urls": ("http://127.0.0.1:12379", ("http://127.0.0.1:12379",)),
    "discovery": ("https://discovery.etcd.io/3e86b59982e49066c5d813af1c2e2579",
                  "https://discovery.etcd.io/3e86b59982e49066c5d813af1c2e2579"),
    "discovery-fallback": ("exit", "exit"),
    "discovery-proxy": ("http://127.0.0.1:3128", "http://127.0.0.1:3128"),
    "discovery-srv": ("example.com", "example.com"),
    "discovery-srv-name": ("prod", "prod"),
    "strict-reconfig-check": ("false", False),
    "pre-vote": ("false", False),
    "auto-compaction-retention": ("1000", "1000"),
    "auto-compaction-mode": ("revision", "revision"),
    "enable-v2": ("false", False),
    "v2-deprecation": ("write-only", "write-only"),
    "cert-file": ("s.pem", "s.pem"),
    "key-file": ("s-key.pem", "s-key.pem"),
    "client-cert-file": ("c.pem", "c.pem"),
    "client-key-file": ("c-key.pem", "c-key.pem"),
    "client-cert-auth": ("true", True),
    "client-crl-file": ("crl.pem", "crl.pem"),
    "client-cert-allowed-hostname": ("client.example.com", "client.example.com"),
    "trusted-ca-file": ("ca.pem", "ca.pem"),
    "auto-tls": ("true", True),
    "peer-cert-file": ("p.pem", "p.pem"),
    "peer-key-file": ("p-key.pem", "p-key.pem"),
    "peer-client-cert-file": ("pc.pem", "pc.pem"),
    "peer-client-key-file": ("pc-key.pem", "pc-key.pem"),
    "peer-client-cert-auth": ("true", True),
    "peer-trusted-ca-file": ("ca.pem", "ca.pem"),
    "peer-cert-allowed-cn": ("member", "member"),
    "peer-cert-allowed-hostname": ("member.example.com", "member.example.com"),
    "peer-auto-tls": ("true", True),
    "self-signed-cert-validity": ("2", 2),
    "peer-crl-file": ("peer-crl.pem", "peer-crl.pem"),
    "cipher-suites": (
        "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
        ("TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256", "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256"),
    ),
    "cors": ("http://example.com:8080", ("http://example.com:8080",)),
    "host-whitelist": ("example.com,localhost", ("example.com", "localhost")),
    "tls-min-version": ("TLS1.2", "TLS1.2"),
    "tls-max-version": ("TLS1.3", "TLS1.3"),
    "experimental-peer-skip-client-san-verification": ("true", True),
    "auth-token": ("simple", "simple"),
    "bcrypt-cost": ("12", 12),
    "auth-token-ttl": ("600", 600),
    "enable-pprof": ("true", True),
    "metrics": ("extensive", "extensive"),
    "listen-metrics-urls": ("http://127.0.0.1:12381", ("http://127.0.0.1:12381",)),
    "logger": ("zap", "zap"),
    "log-outputs": ("stdout", ("stdout",)),
    "log-output": ("stdout", ("stdout",)),
    "log-level": ("info", "info"),
    "enable-log-rotation": ("true", True),
    "log-rotation-config-json": ('{"maxsize": 10}', '{"maxsize": 10}'),
    "experimental-enable-distributed-tracing": ("true", True),
    "experimental-distributed-tracing-address": ("127.0.0.1:4318", "127.0.0.1:4318"),
    "experimental-distributed-tracing-service-name": ("ketch", "ketch"),
    "experimental-distributed-tracing-instance-id": ("i-1", "i-1"),
    "experimental-distributed-tracing-sampling-rate": ("100", 100),
    "proxy": ("readonly", "readonly"),
    "proxy-failure-wait": ("1000", 1000),
    "proxy-refresh-interval": ("1000", 1000),
    "proxy-dial-timeout": ("100", 100),
    "proxy-write-timeout": ("100", 100),
    "proxy-read-timeout": ("100", 100),
    "experimental-initial-corrupt-check": ("true", True),
    "experimental-corrupt-check-time": ("1m", 60.0),
    "experimental-compact-hash-check-enabled": ("true", True),
    "experimental-compact-hash-check-time": ("2m", 120.0),
    "experimental-enable-v2v3": ("/v2", "/v2"),
    "experimental-backend-bbolt-freelist-type": ("array", "array"),
    "experimental-enable-lease-checkpoint": ("true", True),
    "experimental-enable-lease-checkpoint-persist": ("true", True),
    "experimental-compaction-batch-limit": ("500", 500),
    "experimental-compaction-sleep-interval": ("20ms", 0.02),
    "experimental-watch-progress-notify-interval": ("5s", 5.0),
    "experimental-warning-apply-duration": ("200ms", 0.2),
    "experimental-warning-unary-request-duration": ("1s", 1.0),
    "experimental-bootstrap-defrag-threshold-megabytes": ("100", 100),
    "experimental-txn-mode-write-with-shared-buffer": ("false", False),
    "experimental-memory-mlock": ("true", True),
    "experimental-downgrade-check-time": ("10s", 10.0),
    "experimental-wait-cluster-ready-timeout": ("10s", 10.0),
    "experimental-stop-grpc-service-on-defrag": ("true", True),
    "experimental-max-learners": ("2", 2),
    "experimental-snapshot-catchup-entries": ("100", 100),
    "force-new-cluster": ("true", True),
    "unsafe-no-fsync": ("true", True),
    "debug": ("true", True),
    "log-package-levels": ("etcdmain=DEBUG", "etcdmain=DEBUG"),
    "enable-grpc-gateway": ("true", True),
    "grpc-workers": ("2", 2),
    **{f.name: ("1", "1") for f in GROUPS[-1][1]},  # the ignored etcd 0.4 flags
}


def test_every_etcd_flag_is_in_the_table() -> None:
    names = etcd_flags()
    assert len(etcd_help_flags()) >= 80, "etcd --help did not list its flags"
    assert sorted(set(names) - set(FLAGS)) == []
    # ...and the table has nothing etcd lacks but ketch's own and --config-file/--version.
    own = {f.name for f in FLAGS.values() if f.since == "ketch"} | {"config-file", "version"}
    assert sorted(set(FLAGS) - set(names) - own) == []


def test_help_lists_every_listed_flag_in_etcds_groups() -> None:
    listed = re.findall(r"^  --([a-z0-9-]+)", USAGE, re.MULTILINE)
    assert sorted(listed) == sorted(f.name for f in FLAGS.values() if not f.hidden)
    groups = re.findall(r"^(\S[^:\n]*):$", USAGE, re.MULTILINE)
    assert groups[:5] == ["Usage", "Member", "Clustering", "Security", "Auth"]
    assert "  --grpc-workers 'number of CPUs, at most 4' (ketch)" in USAGE
    assert "  --enable-pprof 'false' [no effect]" in USAGE
    assert "  --max-concurrent-streams 'math.MaxUint32'\n" in USAGE
    assert "  --grpc-keepalive-min-time '5s'\n" in USAGE


def test_readme_flag_table_is_the_tables() -> None:
    readme = (REPO / "README.md").read_text()
    assert markdown_table() in readme, (
        "README's flag table: regenerate with ketch.config.markdown_table()"
    )


def test_values_cover_every_flag() -> None:
    assert sorted(set(FLAGS) - set(VALID) - {"config-file", "version"}) == []


def _alone(name: str, text: str) -> list[str]:
    """Arguments that make `--name text` valid on its own."""
    base = {
        "listen-client-urls": ["--advertise-client-urls", "http://127.0.0.1:1"],
        "client-cert-auth": ["--trusted-ca-file", "ca.pem"],
        "peer-client-cert-auth": ["--peer-trusted-ca-file", "ca.pem"],
        "experimental-enable-lease-checkpoint-persist": ["--experimental-enable-lease-checkpoint"],
        "initial-advertise-peer-urls": ["--initial-cluster", f"default={text}"],
        "initial-cluster": ["--name", "n1", "--initial-advertise-peer-urls", "http://127.0.0.1:12380"],
        "name": ["--initial-advertise-peer-urls", "http://localhost:2380"],
        "heartbeat-interval": [],
        # etcd 3.5 rotates one file output only.
        "enable-log-rotation": ["--log-outputs", "ketch.log"],
    }  # fmt: skip
    return base.get(name, [])


def _field_value(cfg: Any, name: str) -> Any:
    field = FLAGS[name].field
    return getattr(cfg, field) if field else None


@pytest.mark.parametrize("name", sorted(set(VALID) - {"discovery"}))
def test_every_form_gives_the_same_value(name: str, tmp_path: Path) -> None:
    text, expected = VALID[name]
    flag = FLAGS[name]
    forms: list[list[str]] = [[f"--{name}={text}"], [f"-{name}={text}"]]
    if not flag.kind.is_bool:
        forms += [[f"--{name}", text], [f"-{name}", text]]
    extra = _alone(name, text)
    configs = [parse([*form, *extra], NO_ENV) for form in forms]
    env = {f"ETCD_{name.upper().replace('-', '_')}": text}
    configs.append(parse(extra, env))
    for cfg in configs:
        if flag.field:
            assert _field_value(cfg, name) == expected, cfg
        assert (flag.warning() in cfg.warnings) == flag.warns(expected)
    if flag.yaml_key:
        entries = {flag.yaml_key: _yaml_form(flag, text, expected), **_yaml_alone(name)}
        f = tmp_path / "c.yaml"
        f.write_text(_yaml_doc(entries))
        cfg = parse(["--config-file", str(f)], NO_ENV)
        if flag.field:
            assert _field_value(cfg, name) == expected, entries


def _yaml_doc(entries: dict[str, str]) -> str:
    """YAML text for {key: value text}, a dotted key inside its section."""
    sections: dict[str, list[str]] = {}
    lines = []
    for key, value in entries.items():
        section, dot, sub = key.partition(".")
        if dot:
            sections.setdefault(section, []).append(f"  {sub}: {value}")
        else:
            lines.append(f"{key}: {value}")
    for section, subs in sections.items():
        lines += [f"{section}:", *subs]
    return "\n".join(lines) + "\n"


def _yaml_form(flag: Any, text: str, expected: Any) -> str:
    import json

    if isinstance(expected, bool):
        return "true" if expected else "false"
    if isinstance(expected, float):  # etcd's YAML durations are integer nanoseconds
        return str(round(expected * 1e9))
    if isinstance(expected, int):
        return str(expected)
    if isinstance(expected, tuple) and flag.kind.go_type == "[]string":
        return json.dumps(list(expected))
    return json.dumps(text)


def _yaml_alone(name: str) -> dict[str, str]:
    return {
        "client-cert-auth": {"client-transport-security.trusted-ca-file": "ca.pem"},
        "peer-client-cert-auth": {"peer-transport-security.trusted-ca-file": "ca.pem"},
        "experimental-enable-lease-checkpoint-persist": {
            "experimental-enable-lease-checkpoint": "true"
        },
        "initial-advertise-peer-urls": {"initial-cluster": "default=http://127.0.0.1:12380"},
        "initial-cluster": {"name": "n1", "initial-advertise-peer-urls": "http://127.0.0.1:12380"},
        "name": {"initial-advertise-peer-urls": "http://localhost:2380"},
        "enable-log-rotation": {"log-outputs": "ketch.log"},
    }.get(name, {})


def test_defaults_are_etcd_35s() -> None:
    cfg = parse([], NO_ENV)
    assert cfg.warnings == ()
    assert (cfg.pre_vote, cfg.strict_reconfig_check, cfg.initial_election_tick_advance) == (
        True, True, True,
    )  # fmt: skip
    assert (cfg.max_concurrent_streams, cfg.grpc_keepalive_min_time) == (2**32 - 1, 5.0)
    assert (cfg.grpc_keepalive_interval, cfg.grpc_keepalive_timeout) == (7200.0, 20.0)
    assert (cfg.max_learners, cfg.snapshot_catchup_entries, cfg.max_txn_ops) == (1, 5000, 128)
    assert (cfg.tls_min_version, cfg.tls_max_version, cfg.cipher_suites) == ("TLS1.2", "", ())


def test_inert_values_draw_no_warning() -> None:
    cfg = parse(["--enable-v2=false", "--auth-token=simple", "--proxy=off", "--cors=*"], NO_ENV)
    assert cfg.warnings == ()


def test_one_warning_per_no_op_flag_naming_it() -> None:
    cfg = parse(["--enable-pprof", "--listen-metrics-urls=http://127.0.0.1:2381"], NO_ENV)
    assert cfg.warnings == (
        (
            "flag --enable-pprof has no effect in ketch: ketch is not a Go program and has no "
            "pprof endpoint"
        ),
    )
    # --listen-metrics-urls is served: no warning.
    assert cfg.enable_pprof and cfg.listen_metrics_urls == ("http://127.0.0.1:2381",)


def test_debug_means_debug_logs() -> None:
    assert parse(["--debug"], NO_ENV).log_level == "debug"


def test_unsafe_no_fsync_warns_as_etcd_does() -> None:
    (line,) = parse(["--unsafe-no-fsync"], NO_ENV).warnings
    assert "--unsafe-no-fsync" in line and "data loss" in line


def test_discovery_leaves_the_cluster_to_be_found_at_start() -> None:
    cfg = parse(
        ["--discovery-srv", "example.com", "--initial-advertise-peer-urls", "http://127.0.0.1:1"],
        NO_ENV,
    )
    # A placeholder of this member alone; the server asks DNS for a new data dir.
    assert cfg.initial_cluster == "default=http://127.0.0.1:1"
    assert cfg.discovery_srv == "example.com"
    assert not cfg.warnings


# etcd 3.4.23's lines for the same flags (run by hand and in tests/e2e/test_flags.py).
BAD = [
    (["--max-concurrent-streams=x"],
     'invalid value "x" for flag -max-concurrent-streams: strconv.ParseUint: parsing "x": invalid syntax', 2),
    (["--max-concurrent-streams=5000000000"],
     'invalid value "5000000000" for flag -max-concurrent-streams: strconv.ParseUint: parsing "5000000000": value out of range', 2),  # noqa: E501 -- etcd's message, quoted whole
    (["--discovery-fallback=foo"], 'invalid value "foo" for flag -discovery-fallback: invalid value', 2),
    (["--proxy=foo"], 'invalid value "foo" for flag -proxy: invalid value', 2),
    (["--listen-metrics-urls=foo"],
     'invalid value "foo" for flag -listen-metrics-urls: URL scheme must be http, https, unix, or unixs: foo', 2),
    (["--cors=foo"], 'invalid value "foo" for flag -cors: URL scheme must be http, https, unix, or unixs: foo', 2),
    (["--grpc-keepalive-min-time=5"], 'invalid value "5" for flag -grpc-keepalive-min-time: parse error', 2),
    (["--backend-batch-limit=x"], 'invalid value "x" for flag -backend-batch-limit: parse error', 2),
    (["--max-wals=-1"], 'invalid value "-1" for flag -max-wals: parse error', 2),
    (["--pre-vote=maybe"], 'invalid boolean value "maybe" for -pre-vote: parse error', 2),
    (["--cipher-suites=FOO"], 'unexpected TLS cipher suite "FOO"', 1),
    (["--auto-compaction-mode=foo"], 'error verifying flags, unknown auto-compaction-mode "foo". See \'ketch --help\'.', 1),  # noqa: E501 -- etcd's message, quoted whole
    (["--auto-compaction-retention=foo"], 'error parsing CompactionRetention: time: invalid duration "foo"', 1),
    (["--auth-token=foo"], "auth: invalid auth options", 1),
    (["--experimental-enable-lease-checkpoint-persist"],
     ("error verifying flags, setting experimental-enable-lease-checkpoint-persist requires "
      "experimental-enable-lease-checkpoint. See 'ketch --help'."), 1),
    (["--discovery-srv=x", "--initial-cluster=default=http://localhost:2380"],
     ('error verifying flags, multiple discovery or bootstrap flags are set. Choose one of '
      '"initial-cluster", "discovery" or "discovery-srv". See \'ketch --help\'.'), 1),
    (["--election-timeout=0"], "error verifying flags, --election-timeout must be >0 (set to 0ms). See 'ketch --help'.", 1),  # noqa: E501 -- etcd's message, quoted whole
    (["--listen-metrics-urls=http://foo.com:2381"],
     "error verifying flags, expected IP in URL for binding (http://foo.com:2381). See 'ketch --help'.", 1),
    (["--experimental-max-learners=0"], "--experimental-max-learners must be >0", 1),
    (["--tls-min-version=TLS1.1"], 'invalid value "TLS1.1" for flag -tls-min-version: invalid value', 2),
]  # fmt: skip


@pytest.mark.parametrize(("args", "message", "code"), BAD, ids=lambda x: str(x)[:40])
def test_bad_values(args: list[str], message: str, code: int) -> None:
    with pytest.raises(ConfigError) as e:
        parse(args, NO_ENV)
    assert message in str(e.value) and e.value.exit_code == code
