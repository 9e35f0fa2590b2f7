"""ketch's configuration: etcd's flags, ETCD_* variables and YAML config file.

Three sources, as etcd reads them (etcdmain/config.go, embed/config.go):

1. Command-line flags, parsed the way Go's `flag` package does: `-name x`,
   `--name x`, `-name=x`; a bool flag takes no separate argument
   (`-client-cert-auth` or `-client-cert-auth=false`); parsing stops at the
   first non-flag argument or at `--`.
2. For every flag not given on the command line, the variable `ETCD_<FLAG>`
   (upper case, dashes as underscores), when set and non-empty.
3. `--config-file` (or `ETCD_CONFIG_FILE`): a YAML file with etcd's keys. When
   one is given, etcd ignores every other flag and variable; so does ketch.

Every flag is in one table (`flags.GROUPS`): its Go kind, etcd's default, the
Config field it sets, and, for a flag ketch accepts without doing what etcd
does, the reason, which becomes the one warning line in `Config.warnings`.

Where etcd exits 2 (a flag it cannot parse) ketch exits 2 with the same one
line on stderr; where etcd exits 1 (flags that parse but do not make a valid
configuration) ketch exits 1. Either way `ConfigError` carries the line, and
nothing has touched the data dir yet.

One difference: etcd refuses to start when a flag and its ETCD_* variable are
both set ("conflicting environment variable ... is shadowed"); ketch lets the
flag win and notes the shadowed variable in `Config.warnings`.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from .. import membership
from . import _go
from ._go import quote, split_host_port
from .flags import DEFAULT_GRPC_WORKERS, FLAGS, YAML_KEYS, YAML_SECTIONS, markdown_table, usage

__all__ = [
    "DEFAULT_QUOTA_BACKEND_BYTES",
    "USAGE",
    "Config",
    "ConfigError",
    "HelpRequested",
    "VersionRequested",
    "markdown_table",
    "parse",
]

DEFAULT_NAME = "default"
DEFAULT_INITIAL_ADVERTISE_PEER_URLS = "http://localhost:2380"
DEFAULT_INITIAL_CLUSTER = f"{DEFAULT_NAME}={DEFAULT_INITIAL_ADVERTISE_PEER_URLS}"
DEFAULT_MAX_REQUEST_BYTES = 1572864  # 1.5 MiB, etcd's DefaultMaxRequestBytes
DEFAULT_QUOTA_BACKEND_BYTES = 2 * 1024**3  # what quota-backend-bytes 0 means
MAX_ELECTION_MS = 50_000  # etcd's maxElectionMs
USAGE = usage()

# Go's crypto/tls suite names (tls.CipherSuites() and InsecureCipherSuites() of
# Go 1.19) plus the two short names etcd's tlsutil adds.
CIPHER_SUITES = frozenset(
    (
        "TLS_AES_128_GCM_SHA256",
        "TLS_AES_256_GCM_SHA384",
        "TLS_CHACHA20_POLY1305_SHA256",
        "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA",
        "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA",
        "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA",
        "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA",
        "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
        "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
        "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
        "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
        "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
        "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
        "TLS_RSA_WITH_RC4_128_SHA",
        "TLS_RSA_WITH_3DES_EDE_CBC_SHA",
        "TLS_RSA_WITH_AES_128_CBC_SHA",
        "TLS_RSA_WITH_AES_256_CBC_SHA",
        "TLS_RSA_WITH_AES_128_CBC_SHA256",
        "TLS_RSA_WITH_AES_128_GCM_SHA256",
        "TLS_RSA_WITH_AES_256_GCM_SHA384",
        "TLS_ECDHE_ECDSA_WITH_RC4_128_SHA",
        "TLS_ECDHE_RSA_WITH_RC4_128_SHA",
        "TLS_ECDHE_RSA_WITH_3DES_EDE_CBC_SHA",
        "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256",
        "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256",
        "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305",
        "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305",
    )
)


class ConfigError(Exception):
    """A configuration ketch will not start with: one line for stderr, an exit code."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class HelpRequested(Exception):
    """-h/--help was given: print `USAGE` and exit 0."""


class VersionRequested(Exception):
    """--version was given: print the version and exit 0."""


@dataclass(frozen=True)
class Config:
    """Everything the server needs, validated. URL lists keep their flag's order.

    A flag that only draws a warning has no field unless another part of
    ketch is to wire it (the TLS and gRPC transport settings)."""

    name: str = DEFAULT_NAME
    data_dir: str = f"{DEFAULT_NAME}.ketch"
    wal_dir: str = ""  # "" = <data-dir>/member/wal
    listen_client_urls: tuple[str, ...] = ("http://localhost:2379",)
    advertise_client_urls: tuple[str, ...] = ("http://localhost:2379",)
    listen_peer_urls: tuple[str, ...] = ("http://localhost:2380",)
    initial_advertise_peer_urls: tuple[str, ...] = (DEFAULT_INITIAL_ADVERTISE_PEER_URLS,)
    initial_cluster: str = DEFAULT_INITIAL_CLUSTER
    initial_cluster_token: str = "etcd-cluster"
    initial_cluster_state: str = "new"
    cert_file: str = ""
    key_file: str = ""
    trusted_ca_file: str = ""
    client_cert_auth: bool = False
    client_crl_file: str = ""
    auto_tls: bool = False
    peer_cert_file: str = ""
    peer_key_file: str = ""
    peer_trusted_ca_file: str = ""
    peer_client_cert_auth: bool = False
    peer_auto_tls: bool = False
    peer_crl_file: str = ""
    cipher_suites: tuple[str, ...] = ()
    tls_min_version: str = "TLS1.2"
    tls_max_version: str = ""
    max_concurrent_streams: int = _go.UINT32_MAX
    grpc_keepalive_min_time: float = 5.0  # seconds
    grpc_keepalive_interval: float = 7200.0
    grpc_keepalive_timeout: float = 20.0
    listen_metrics_urls: tuple[str, ...] = ()
    metrics: str = "basic"
    enable_pprof: bool = False
    max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES
    quota_backend_bytes: int = 0
    max_txn_ops: int = 128
    grpc_workers: int = DEFAULT_GRPC_WORKERS
    heartbeat_interval: int = 100  # ms: one Raft tick
    election_timeout: int = 1000  # ms
    initial_election_tick_advance: bool = True
    snapshot_count: int = 100_000
    snapshot_catchup_entries: int = 5000
    max_snapshots: int = 5
    max_wals: int = 5
    strict_reconfig_check: bool = True
    pre_vote: bool = True
    max_learners: int = 1
    force_new_cluster: bool = False
    unsafe_no_fsync: bool = False
    debug: bool = False
    log_level: str = "info"
    logger: str = "zap"
    log_outputs: tuple[str, ...] = ("default",)
    config_file: str = ""
    watch_progress_notify_interval: float = 600.0  # seconds (etcd: 10m)
    warnings: tuple[str, ...] = ()

    @property
    def member_id(self) -> int:
        """This member's ID for a new data dir (etcd's NewMember)."""
        return membership.member_id(
            _cluster_map(self.initial_cluster)[self.name], self.initial_cluster_token
        )

    @property
    def cluster_id(self) -> int:
        """The cluster's ID for a new data dir (etcd's genID over the initial members)."""
        return membership.cluster_id(m[0] for m in self.initial_members)

    @property
    def initial_members(self) -> list[tuple[int, str, list[str]]]:
        """Every member of --initial-cluster as (member ID, name, peer URLs), self included,
        in the flag's order: what the engine bootstraps a new cluster with."""
        token = self.initial_cluster_token
        return [
            (membership.member_id(urls, token), name, list(urls))
            for name, urls in _cluster_map(self.initial_cluster).items()
        ]


_FIELDS = {f.name for f in dataclasses.fields(Config)}
for _f in FLAGS.values():  # the table and the dataclass must agree
    assert not _f.field or _f.field in _FIELDS, _f.name


# --- command line -----------------------------------------------------------


def _parse_command_line(args: Sequence[str]) -> tuple[dict[str, Any], bool]:
    """Go's flag.FlagSet.Parse: the flags set (name -> value) and whether -version was given."""
    values: dict[str, Any] = {}
    i = 0
    while i < len(args):
        s = args[i]
        if len(s) < 2 or s[0] != "-":
            break
        minuses = 2 if s[1] == "-" else 1
        if minuses == 2 and len(s) == 2:  # "--" ends the flags
            i += 1
            break
        name = s[minuses:]
        if not name or name[0] in "-=":
            raise ConfigError(f"bad flag syntax: {s}", 2)
        i += 1
        name, has_value, value = name.partition("=")
        flag = FLAGS.get(name)
        if flag is None:
            if name in ("help", "h"):
                raise HelpRequested
            raise ConfigError(f"flag provided but not defined: -{name}", 2)
        if flag.kind.is_bool:
            try:
                values[name] = flag.kind.parse(value) if has_value else True
            except ValueError as e:
                raise ConfigError(
                    f"invalid boolean value {quote(value)} for -{name}: {e}", 2
                ) from None
            continue
        if not has_value:
            if i >= len(args):
                raise ConfigError(f"flag needs an argument: -{name}", 2)
            value = args[i]
            i += 1
        try:
            values[name] = flag.kind.parse(value)
        except ValueError as e:
            raise ConfigError(f"invalid value {quote(value)} for flag -{name}: {e}", 2) from None
    if i < len(args):
        raise ConfigError(
            f"error verifying flags, '{args[i]}' is not a valid flag. See 'ketch --help'."
        )
    return values, bool(values.pop("version", False))


def _from_environment(
    given: dict[str, Any], env: Mapping[str, str], warnings: list[str]
) -> dict[str, Any]:
    values = dict(given)
    for name, flag in FLAGS.items():
        key = _go.env_key(name)
        raw = env.get(key, "")
        if not raw or name in ("version", "config-file"):
            continue
        if name in given:
            warnings.append(
                f"environment variable {key} is shadowed by the command-line flag --{name}"
            )
            continue
        try:
            values[name] = flag.kind.parse(raw)
        except ValueError as e:
            raise ConfigError(
                f"error verifying flags, invalid value {quote(raw)} for {key}: {e}. See 'ketch --help'."
            ) from None
    return values


# --- config file ------------------------------------------------------------

_TYPE_WORDS = {
    "bool": "true or false", "string": "a string", "[]string": "a list of strings",
    "time.Duration": "a duration (integer nanoseconds)",
}  # fmt: skip


def _from_yaml(path: str) -> dict[str, Any]:
    import yaml  # only when a config file is used

    def fail(msg: str) -> ConfigError:
        return ConfigError(f"error verifying flags, {path}: {msg}")

    try:
        with open(path, "rb") as f:
            doc = yaml.safe_load(f)
    except OSError as e:
        raise ConfigError(
            f"error verifying flags, open {path}: {e.strerror.lower() if e.strerror else e}"
        ) from None
    except yaml.YAMLError as e:
        raise fail(" ".join(str(e).split())) from None
    if doc is None:
        doc = {}
    if not isinstance(doc, dict):
        raise fail("the configuration must be a YAML mapping")
    # Flatten the nested sections into dotted keys.
    entries: dict[str, Any] = {}
    for key, v in doc.items():
        if key in YAML_SECTIONS and v is not None:
            if not isinstance(v, dict):
                raise fail(f"{key} must be a mapping")
            entries.update({f"{key}.{k}": x for k, x in v.items()})
        else:
            entries[str(key)] = v
    values: dict[str, Any] = {}
    # Unknown keys are ignored, as etcd's YAML decoding ignores them.
    for key, v in entries.items():
        flag = YAML_KEYS.get(key)
        if flag is None or v is None:
            continue
        try:
            values[flag.name] = flag.kind.from_yaml(v)
        except TypeError as e:
            words = _TYPE_WORDS.get(str(e), "an integer")
            raise fail(f"{key} must be {words}, not {v!r}") from None
        except ValueError as e:
            raise fail(f"invalid {key} {quote(str(v))}: {e}") from None
    return values


# --- putting it together ----------------------------------------------------


def parse(args: Sequence[str], environ: Mapping[str, str] | None = None) -> Config:
    """Build the Config from the command line and environment, as etcd would.

    Raises ConfigError (message and exit code), HelpRequested or VersionRequested.
    """
    env = os.environ if environ is None else environ
    given, version = _parse_command_line(args)
    if version:
        raise VersionRequested
    warnings: list[str] = []
    config_file = given.get("config-file") or env.get("ETCD_CONFIG_FILE", "")
    if config_file:
        values = _from_yaml(config_file)
        values["config-file"] = config_file
    else:
        values = _from_environment(given, env, warnings)
    cfg = _validate(values)
    # One line per flag set that does not do in ketch what it does in etcd,
    # and the cautions of flags that do.
    warnings += [FLAGS[n].warning() for n, v in values.items() if FLAGS[n].warns(v)]
    warnings += [FLAGS[n].notice for n, v in values.items() if FLAGS[n].notices(v)]
    return dataclasses.replace(cfg, warnings=tuple(warnings))


def _fail(msg: str) -> ConfigError:
    return ConfigError(f"error verifying flags, {msg}. See 'ketch --help'.")


def _validate(values: dict[str, Any]) -> Config:
    fields = {FLAGS[n].field: v for n, v in values.items() if FLAGS[n].field}
    cfg = Config(**fields)
    explicit = set(values)

    def value(name: str) -> Any:
        return values.get(name, FLAGS[name].default)

    # etcd drops its default advertise URL when listen URLs are given on the
    # command line or in the environment (not in a config file), unless it
    # may run as a v2 proxy.
    may_be_proxy = value("proxy") != "off" or (
        value("discovery") != "" and value("discovery-fallback") == "proxy"
    )
    if (
        not cfg.config_file
        and "listen-client-urls" in explicit
        and "advertise-client-urls" not in explicit
        and not may_be_proxy
    ):
        raise _fail(
            "--advertise-client-urls is required when --listen-client-urls is set explicitly"
        )
    for flag_name, urls in (
        ("listen-client-urls", cfg.listen_client_urls),
        ("listen-peer-urls", cfg.listen_peer_urls),
        ("listen-metrics-urls", cfg.listen_metrics_urls),
    ):
        for u in urls:
            parts = urlsplit(u)
            if parts.scheme in ("unix", "unixs") and flag_name != "listen-metrics-urls":
                raise _fail(f"--{flag_name}: ketch does not serve unix sockets ({u})")
            host, _ = split_host_port(parts.netloc)
            if host != "localhost" and not _is_ip(host):
                raise _fail(f"expected IP in URL for binding ({u})")
    for flag_name, urls in (
        ("initial-advertise-peer-urls", cfg.initial_advertise_peer_urls),
        ("advertise-client-urls", cfg.advertise_client_urls),
    ):
        for u in urls:
            if not split_host_port(urlsplit(u).netloc)[0]:
                raise _fail(
                    f'--{flag_name} "{",".join(urls)}" must be "host:port" (unexpected empty host ({u}))'
                )

    # Discovery and a static cluster exclude each other (embed.Config.Validate).
    discovery = bool(value("discovery") or value("discovery-srv"))
    if discovery and (
        "initial-cluster" in explicit or (value("discovery") and value("discovery-srv"))
    ):
        raise _fail(
            'multiple discovery or bootstrap flags are set. Choose one of "initial-cluster", '
            '"discovery" or "discovery-srv"'
        )

    # etcd: a non-default name with the default initial cluster means "this
    # member alone, at its advertised peer URLs" (UpdateDefaultClusterFromName);
    # so does discovery in ketch, which has none (etcd would ask the service).
    initial_cluster = cfg.initial_cluster
    if (discovery and "initial-cluster" not in explicit) or (
        cfg.name != DEFAULT_NAME and initial_cluster == DEFAULT_INITIAL_CLUSTER
    ):
        initial_cluster = ",".join(f"{cfg.name}={u}" for u in cfg.initial_advertise_peer_urls)
    try:
        members = _cluster_map(initial_cluster)
    except ValueError as e:
        raise _fail(str(e)) from None
    if cfg.name not in members:
        raise _fail(
            f"couldn't find local name {quote(cfg.name)} in the initial cluster configuration"
        )
    if sorted(members[cfg.name]) != sorted(cfg.initial_advertise_peer_urls):
        missing = [
            f"{cfg.name}={u}" for u in members[cfg.name] if u not in cfg.initial_advertise_peer_urls
        ]
        if missing:
            raise _fail(
                f"--initial-cluster has {','.join(missing)} but missing from "
                f"--initial-advertise-peer-urls={','.join(sorted(cfg.initial_advertise_peer_urls))}"
            )
        extra = [u for u in cfg.initial_advertise_peer_urls if u not in members[cfg.name]]
        raise _fail(
            f"--initial-advertise-peer-urls has {','.join(extra)} but missing from "
            f"--initial-cluster={initial_cluster}"
        )
    all_urls = [u for urls in members.values() for u in urls]
    if len(set(all_urls)) != len(all_urls):
        # etcd's VerifyBootstrap/VerifyJoinExisting, with URLsMap.String()'s sorted names.
        listing = ",".join(f"{n}={u}" for n in sorted(members) for u in members[n])
        raise ConfigError(f"initial cluster {listing} has duplicate url")

    if any(urlsplit(u).scheme == "https" for u in cfg.listen_client_urls) and not (
        (cfg.cert_file and cfg.key_file) or cfg.auto_tls
    ):
        u = next(u for u in cfg.listen_client_urls if urlsplit(u).scheme == "https")
        raise _fail(
            f"TLS key/cert (--cert-file, --key-file) must be provided for client url {u} with HTTPS scheme"
        )
    for u in cfg.listen_peer_urls:
        parts = urlsplit(u)
        if parts.scheme == "https" and not (cfg.peer_cert_file and cfg.peer_key_file):
            # etcd's transport.NewListener, word for word (not a flag error there).
            raise ConfigError(
                f"cannot listen on TLS for {parts.netloc}: KeyFile and CertFile are not presented"
            )
    # etcd's embed.Config.Validate, word for word.
    if cfg.heartbeat_interval <= 0:
        raise _fail(f"--heartbeat-interval must be >0 (set to {cfg.heartbeat_interval}ms)")
    if cfg.election_timeout <= 0:
        raise _fail(f"--election-timeout must be >0 (set to {cfg.election_timeout}ms)")
    if 5 * cfg.heartbeat_interval > cfg.election_timeout:
        raise _fail(
            f"--election-timeout[{cfg.election_timeout}ms] should be at least as 5 times as "
            f"--heartbeat-interval[{cfg.heartbeat_interval}ms]"
        )
    if cfg.election_timeout > MAX_ELECTION_MS:
        raise _fail(
            f"--election-timeout[{cfg.election_timeout}ms] is too long, and should be set "
            f"less than {MAX_ELECTION_MS}ms"
        )
    mode = value("auto-compaction-mode")
    if mode not in ("", "periodic", "revision"):
        raise _fail(f"unknown auto-compaction-mode {quote(mode)}")
    if value("experimental-enable-lease-checkpoint-persist") and not value(
        "experimental-enable-lease-checkpoint"
    ):
        raise _fail(
            "setting experimental-enable-lease-checkpoint-persist requires "
            "experimental-enable-lease-checkpoint"
        )
    if cfg.max_learners < 1:
        raise _fail(f"--experimental-max-learners must be >0 (set to {cfg.max_learners})")
    if cfg.tls_min_version and cfg.tls_max_version and cfg.tls_min_version > cfg.tls_max_version:
        raise _fail(
            f"min version ({cfg.tls_min_version}) is greater than max version "
            f"({cfg.tls_max_version})"
        )
    if cfg.tls_min_version == "TLS1.3" and cfg.cipher_suites:
        raise _fail("cipher suites cannot be configured when only TLS1.3 is enabled")
    if cfg.peer_client_cert_auth and not cfg.peer_trusted_ca_file:
        raise _fail(
            "--peer-client-cert-auth needs --peer-trusted-ca-file to verify peer certificates against"
        )
    if cfg.client_cert_auth and not cfg.trusted_ca_file:
        raise _fail(
            "--client-cert-auth needs --trusted-ca-file to verify client certificates against"
        )

    # Checked by etcd once flags pass, when the server is built: exit 1 with
    # the error alone (no "error verifying flags").
    try:
        _parse_compaction_retention(mode, value("auto-compaction-retention"))
    except ValueError as e:
        raise ConfigError(f"error parsing CompactionRetention: {e}") from None
    for suite in cfg.cipher_suites:
        if suite not in CIPHER_SUITES:
            raise ConfigError(f"unexpected TLS cipher suite {quote(suite)}")
    if value("auth-token").split(",", 1)[0] not in ("simple", "jwt"):
        raise ConfigError("auth: invalid auth options")

    data_dir = cfg.data_dir if "data-dir" in explicit and cfg.data_dir else f"{cfg.name}.ketch"
    log_level = "debug" if cfg.debug else cfg.log_level
    return dataclasses.replace(
        cfg, initial_cluster=initial_cluster, data_dir=data_dir, log_level=log_level
    )


def _parse_compaction_retention(mode: str, retention: str) -> float:
    """etcd's parseCompactionRetention: a whole number is hours (periodic) or
    revisions; anything else is a Go duration."""
    try:
        n = int(retention)
    except ValueError:
        n = -1
    if n >= 0:
        return float(n) * (1 if mode == "revision" else 3600)
    try:
        return _go.parse_duration(retention)
    except ValueError:
        raise ValueError(f"time: invalid duration {quote(retention)}") from None


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _cluster_map(s: str) -> dict[str, tuple[str, ...]]:
    """etcd's types.NewURLsMap: "name=url,name=url,..." to name -> URLs."""
    members: dict[str, list[str]] = {}
    for item in s.split(","):
        if not item:
            continue
        name, sep, u = item.partition("=")
        if not sep:
            continue  # etcd's parser skips an entry with no "="
        members.setdefault(name, []).append(u)
    out: dict[str, tuple[str, ...]] = {}
    for name, urls in members.items():
        out[name] = _go.parse_urls(",".join(urls))
    if not out:
        raise ValueError("initial cluster unset and no discovery URL found")
    return out
