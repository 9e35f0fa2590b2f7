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

Where etcd exits 2 (a flag it cannot parse) ketch exits 2 with the same one
line on stderr; where etcd exits 1 (flags that parse but do not make a valid
configuration) ketch exits 1. Either way `ConfigError` carries the line.

One difference: etcd refuses to start when a flag and its ETCD_* variable are
both set ("conflicting environment variable ... is shadowed"); ketch lets the
flag win and notes the shadowed variable in `Config.warnings`.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from . import membership

__all__ = [
    "DEFAULT_QUOTA_BACKEND_BYTES",
    "Config",
    "ConfigError",
    "HelpRequested",
    "VersionRequested",
    "parse",
]

DEFAULT_NAME = "default"
DEFAULT_LISTEN_PEER_URLS = "http://localhost:2380"
DEFAULT_LISTEN_CLIENT_URLS = "http://localhost:2379"
DEFAULT_INITIAL_ADVERTISE_PEER_URLS = "http://localhost:2380"
DEFAULT_ADVERTISE_CLIENT_URLS = "http://localhost:2379"
DEFAULT_INITIAL_CLUSTER = f"{DEFAULT_NAME}={DEFAULT_INITIAL_ADVERTISE_PEER_URLS}"
DEFAULT_INITIAL_CLUSTER_TOKEN = "etcd-cluster"
DEFAULT_MAX_REQUEST_BYTES = 1572864  # 1.5 MiB, etcd's DefaultMaxRequestBytes
DEFAULT_MAX_TXN_OPS = 128
# Like etcd using every core: one gRPC process per CPU, up to 4.
DEFAULT_GRPC_WORKERS = max(1, min(4, os.cpu_count() or 1))
MAX_GRPC_WORKERS = 64
DEFAULT_QUOTA_BACKEND_BYTES = 2 * 1024**3  # what quota-backend-bytes 0 means
LOG_LEVELS = ("debug", "info", "warn", "error", "panic", "fatal")
CLUSTER_STATES = ("new", "existing")

_UINT64_MAX = 2**64 - 1
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


class ConfigError(Exception):
    """A configuration ketch will not start with: one line for stderr, an exit code."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class HelpRequested(Exception):
    """-h/--help was given: print `USAGE` and exit 0."""


class VersionRequested(Exception):
    """--version was given: print the version and exit 0."""


MAX_ELECTION_MS = 50_000  # etcd's maxElectionMs


@dataclass(frozen=True)
class Config:
    """Everything the server needs, validated. URL lists keep their flag's order."""

    name: str = DEFAULT_NAME
    data_dir: str = f"{DEFAULT_NAME}.ketch"
    listen_client_urls: tuple[str, ...] = (DEFAULT_LISTEN_CLIENT_URLS,)
    advertise_client_urls: tuple[str, ...] = (DEFAULT_ADVERTISE_CLIENT_URLS,)
    listen_peer_urls: tuple[str, ...] = (DEFAULT_LISTEN_PEER_URLS,)
    initial_advertise_peer_urls: tuple[str, ...] = (DEFAULT_INITIAL_ADVERTISE_PEER_URLS,)
    initial_cluster: str = DEFAULT_INITIAL_CLUSTER
    initial_cluster_token: str = DEFAULT_INITIAL_CLUSTER_TOKEN
    initial_cluster_state: str = "new"
    cert_file: str = ""
    key_file: str = ""
    trusted_ca_file: str = ""
    client_cert_auth: bool = False
    peer_cert_file: str = ""
    peer_key_file: str = ""
    peer_trusted_ca_file: str = ""
    peer_client_cert_auth: bool = False
    max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES
    quota_backend_bytes: int = 0
    max_txn_ops: int = DEFAULT_MAX_TXN_OPS
    grpc_workers: int = DEFAULT_GRPC_WORKERS
    heartbeat_interval: int = 100  # ms: one Raft tick
    election_timeout: int = 1000  # ms
    snapshot_count: int = 100_000
    log_level: str = "info"
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


# --- values -----------------------------------------------------------------
# Each parser takes the flag's text and returns the value, or raises
# ValueError whose text is what Go's flag package prints after the colon.


def _parse_str(s: str) -> str:
    return s


def _parse_bool(s: str) -> bool:
    # strconv.ParseBool
    if s in ("1", "t", "T", "TRUE", "true", "True"):
        return True
    if s in ("0", "f", "F", "FALSE", "false", "False"):
        return False
    raise ValueError("parse error")


def _go_int(s: str) -> int:
    # strconv.ParseInt/ParseUint with base 0: 0x, 0o, 0b prefixes, 0-led octal.
    body = s.lstrip("+-")
    if body[:1] == "0" and len(body) > 1 and body[1:2].isdigit():
        s = s.replace("0", "0o", 1)
    try:
        return int(s, 0)
    except ValueError:
        raise ValueError("parse error") from None


def _parse_workers(s: str) -> int:
    n = _parse_uint(s)
    if not 1 <= n <= MAX_GRPC_WORKERS:
        raise ValueError(f"must be between 1 and {MAX_GRPC_WORKERS}")
    return n


def _parse_uint(s: str) -> int:
    if s.startswith(("-", "+")):
        raise ValueError("parse error")
    v = _go_int(s)
    if v > _UINT64_MAX:
        raise ValueError("value out of range")
    return v


def _parse_int64(s: str) -> int:
    v = _go_int(s)
    if not _INT64_MIN <= v <= _INT64_MAX:
        raise ValueError("value out of range")
    return v


_DURATION_UNITS = {
    "ns": 1e-9, "us": 1e-6, "\u00b5s": 1e-6, "\u03bcs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0,
}  # fmt: skip
_DURATION_PART = re.compile(r"(\d+\.?\d*|\.\d+)(ns|us|\u00b5s|\u03bcs|ms|s|m|h)")


def _parse_duration(s: str) -> float:
    """Go's time.ParseDuration ("10m", "1h30m", "250ms", "0"), in seconds."""
    body = s[1:] if s[:1] in "+-" else s
    if body == "0":
        return 0.0
    pos, total = 0, 0.0
    while pos < len(body):
        m = _DURATION_PART.match(body, pos)
        if m is None:
            raise ValueError("parse error")  # Go's flag package for a bad duration
        total += float(m.group(1)) * _DURATION_UNITS[m.group(2)]
        pos = m.end()
    if not body:
        raise ValueError("parse error")
    return -total if s.startswith("-") else total


def _choice(valid: Sequence[str]) -> Callable[[str], str]:
    def parse(s: str) -> str:
        if s not in valid:
            raise ValueError("invalid value")
        return s

    return parse


def _parse_urls(s: str) -> tuple[str, ...]:
    """etcd's types.NewURLs: comma-separated http(s) URLs with host:port and no path."""
    out = []
    for raw in s.split(","):
        u = raw.strip()
        parts = urlsplit(u)
        if parts.scheme not in ("http", "https", "unix", "unixs"):
            raise ValueError(f"URL scheme must be http, https, unix, or unixs: {u}")
        if not _has_host_port(parts.netloc):
            raise ValueError(f'URL address does not have the form "host:port": {u}')
        if parts.path:
            raise ValueError(f"URL must not contain a path: {u}")
        out.append(u)
    return tuple(dict.fromkeys(out))  # unique, as etcd's UniqueURLs


def _has_host_port(netloc: str) -> bool:
    host, sep, _ = netloc.rpartition(":")
    if not sep:
        return False
    if host.startswith("["):
        return host.endswith("]")
    return ":" not in host


def _split_host_port(netloc: str) -> tuple[str, str]:
    host, _, port = netloc.rpartition(":")
    return host.strip("[]"), port


@dataclass(frozen=True)
class _Flag:
    name: str
    field: str  # Config field it sets
    parse: Callable[[str], Any]
    is_bool: bool = False


_FLAGS: dict[str, _Flag] = {
    f.name: f
    for f in (
        _Flag("name", "name", _parse_str),
        _Flag("data-dir", "data_dir", _parse_str),
        _Flag("listen-client-urls", "listen_client_urls", _parse_urls),
        _Flag("advertise-client-urls", "advertise_client_urls", _parse_urls),
        _Flag("listen-peer-urls", "listen_peer_urls", _parse_urls),
        _Flag("initial-advertise-peer-urls", "initial_advertise_peer_urls", _parse_urls),
        _Flag("initial-cluster", "initial_cluster", _parse_str),
        _Flag("initial-cluster-token", "initial_cluster_token", _parse_str),
        _Flag("initial-cluster-state", "initial_cluster_state", _choice(CLUSTER_STATES)),
        _Flag("cert-file", "cert_file", _parse_str),
        _Flag("key-file", "key_file", _parse_str),
        _Flag("trusted-ca-file", "trusted_ca_file", _parse_str),
        _Flag("client-cert-auth", "client_cert_auth", _parse_bool, is_bool=True),
        _Flag("peer-cert-file", "peer_cert_file", _parse_str),
        _Flag("peer-key-file", "peer_key_file", _parse_str),
        _Flag("peer-trusted-ca-file", "peer_trusted_ca_file", _parse_str),
        _Flag("peer-client-cert-auth", "peer_client_cert_auth", _parse_bool, is_bool=True),
        _Flag("max-request-bytes", "max_request_bytes", _parse_uint),
        _Flag("quota-backend-bytes", "quota_backend_bytes", _parse_int64),
        _Flag("max-txn-ops", "max_txn_ops", _parse_uint),
        _Flag("grpc-workers", "grpc_workers", _parse_workers),
        _Flag("heartbeat-interval", "heartbeat_interval", _parse_uint),
        _Flag("election-timeout", "election_timeout", _parse_uint),
        _Flag("snapshot-count", "snapshot_count", _parse_uint),
        _Flag("log-level", "log_level", _choice(LOG_LEVELS)),
        _Flag(
            "experimental-watch-progress-notify-interval",
            "watch_progress_notify_interval",
            _parse_duration,
        ),
        _Flag("config-file", "config_file", _parse_str),
        _Flag("version", "", _parse_bool, is_bool=True),
    )
}

USAGE = """\
Usage:

  ketch [flags]
    Start a ketch server (etcd v3 API).

  ketch --version
    Show the version of ketch.

  ketch -h | --help
    Show the help information about ketch.

Member:
  --name 'default'
    Human-readable name for this member.
  --data-dir '${name}.ketch'
    Path to the data directory.
  --listen-client-urls 'http://localhost:2379'
    List of URLs to listen on for client traffic.
  --listen-peer-urls 'http://localhost:2380'
    List of URLs to listen on for peer traffic.
  --max-request-bytes '1572864'
    Maximum client request size in bytes the server will accept.
  --max-txn-ops '128'
    Maximum number of operations permitted in a transaction.
  --quota-backend-bytes '0'
    Raise alarms when backend size exceeds the given quota (0 defaults to 2 GiB).
  --grpc-workers (number of CPUs, at most 4)
    ketch only: gRPC server processes sharing the client port. One Python gRPC
    process serves a few thousand requests per second per core; more workers
    let throughput grow with cores. They all reach this member's one engine.

  --heartbeat-interval '100'
    Time (in milliseconds) of a heartbeat interval.
  --election-timeout '1000'
    Time (in milliseconds) for an election to timeout.
  --snapshot-count '100000'
    Number of committed transactions to trigger a snapshot to disk.

Clustering:
  --initial-advertise-peer-urls 'http://localhost:2380'
    List of this member's peer URLs to advertise to the rest of the cluster.
  --initial-cluster 'default=http://localhost:2380'
    Initial cluster configuration for bootstrapping.
  --initial-cluster-state 'new'
    Initial cluster state ('new' or 'existing').
  --initial-cluster-token 'etcd-cluster'
    Initial cluster token for the cluster during bootstrap.
  --advertise-client-urls 'http://localhost:2379'
    List of this member's client URLs to advertise to the public.

Security:
  --cert-file ''
    Path to the client server TLS cert file.
  --key-file ''
    Path to the client server TLS key file.
  --client-cert-auth 'false'
    Enable client cert authentication.
  --trusted-ca-file ''
    Path to the client server TLS trusted CA cert file.
  --peer-cert-file ''
    Path to the peer server TLS cert file.
  --peer-key-file ''
    Path to the peer server TLS key file.
  --peer-client-cert-auth 'false'
    Enable peer client cert authentication.
  --peer-trusted-ca-file ''
    Path to the peer server TLS trusted CA file.

Experimental feature:
  --experimental-watch-progress-notify-interval '10m0s'
    Duration of periodic watch progress notifications.

Logging:
  --log-level 'info'
    Configures log level. Only supports debug, info, warn, error, panic, or fatal.

Configuration:
  --config-file ''
    Path to the server configuration file (YAML, etcd's keys). When given,
    other command line flags and environment variables are ignored.

Every flag can also be set by an environment variable ETCD_<FLAG>, for
example ETCD_DATA_DIR for --data-dir; a flag given on the command line wins.
"""


def _env_key(flag: str) -> str:
    return "ETCD_" + flag.upper().replace("-", "_")


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
        flag = _FLAGS.get(name)
        if flag is None:
            if name in ("help", "h"):
                raise HelpRequested
            raise ConfigError(f"flag provided but not defined: -{name}", 2)
        if flag.is_bool:
            try:
                values[name] = flag.parse(value) if has_value else True
            except ValueError as e:
                raise ConfigError(
                    f"invalid boolean value {_q(value)} for -{name}: {e}", 2
                ) from None
            continue
        if not has_value:
            if i >= len(args):
                raise ConfigError(f"flag needs an argument: -{name}", 2)
            value = args[i]
            i += 1
        try:
            values[name] = flag.parse(value)
        except ValueError as e:
            raise ConfigError(f"invalid value {_q(value)} for flag -{name}: {e}", 2) from None
    if i < len(args):
        raise ConfigError(
            f"error verifying flags, {_q(args[i], single=True)} is not a valid flag. See 'ketch --help'."
        )
    return values, bool(values.pop("version", False))


def _q(s: str, single: bool = False) -> str:
    """Go's %q (double quotes, escapes) or '%s'."""
    if single:
        return f"'{s}'"
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


# --- config file ------------------------------------------------------------

# YAML key -> flag name, for the keys that are plain values. The TLS settings
# live under `client-transport-security` as in etcd's configYAML.
_YAML_KEYS = (
    "name",
    "data-dir",
    "listen-client-urls",
    "advertise-client-urls",
    "listen-peer-urls",
    "initial-advertise-peer-urls",
    "initial-cluster",
    "initial-cluster-token",
    "initial-cluster-state",
    "max-request-bytes",
    "quota-backend-bytes",
    "max-txn-ops",
    "grpc-workers",
    "heartbeat-interval",
    "election-timeout",
    "snapshot-count",
    "log-level",
    "experimental-watch-progress-notify-interval",
)
_YAML_TLS_KEYS = ("cert-file", "key-file", "trusted-ca-file", "client-cert-auth")
# etcd's configYAML: the same four keys under `peer-transport-security`.
_YAML_TLS_SECTIONS = {"client-transport-security": "", "peer-transport-security": "peer-"}


def _from_yaml(path: str) -> dict[str, Any]:
    import yaml  # only when a config file is used

    try:
        with open(path, "rb") as f:
            doc = yaml.safe_load(f)
    except OSError as e:
        raise ConfigError(
            f"error verifying flags, open {path}: {e.strerror.lower() if e.strerror else e}"
        ) from None
    except yaml.YAMLError as e:
        raise ConfigError(f"error verifying flags, {path}: {' '.join(str(e).split())}") from None
    if doc is None:
        doc = {}
    if not isinstance(doc, dict):
        raise ConfigError(
            f"error verifying flags, {path}: the configuration must be a YAML mapping"
        )
    values: dict[str, Any] = {}
    # Unknown keys are ignored, as etcd's YAML decoding ignores them.
    for key in _YAML_KEYS:
        if key in doc and doc[key] is not None:
            values[key] = _yaml_value(path, key, doc[key])
    for section, prefix in _YAML_TLS_SECTIONS.items():
        tls = doc.get(section)
        if tls is None:
            continue
        if not isinstance(tls, dict):
            raise ConfigError(f"error verifying flags, {path}: {section} must be a mapping")
        for key in _YAML_TLS_KEYS:
            if key in tls and tls[key] is not None:
                flag = prefix + key
                values[flag] = _yaml_value(path, f"{section}.{key}", tls[key], flag)
    return values


def _yaml_value(path: str, where: str, v: Any, flag_name: str | None = None) -> Any:
    flag = _FLAGS[flag_name or where]
    if flag.is_bool:
        if not isinstance(v, bool):
            raise ConfigError(
                f"error verifying flags, {path}: {where} must be true or false, not {v!r}"
            )
        return v
    if flag.parse is _parse_duration and isinstance(v, int) and not isinstance(v, bool):
        # etcd decodes a time.Duration from YAML as integer nanoseconds.
        return v / 1e9
    if flag.parse in (_parse_uint, _parse_int64, _parse_workers):
        if isinstance(v, bool) or not isinstance(v, int):
            raise ConfigError(
                f"error verifying flags, {path}: {where} must be an integer, not {v!r}"
            )
        v = str(v)
    elif not isinstance(v, str):
        raise ConfigError(f"error verifying flags, {path}: {where} must be a string, not {v!r}")
    try:
        return flag.parse(v)
    except ValueError as e:
        raise ConfigError(f"error verifying flags, {path}: invalid {where} {_q(v)}: {e}") from None


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
        values = dict(given)
        for name, flag in _FLAGS.items():
            key = _env_key(name)
            raw = env.get(key, "")
            if not raw or name in ("version", "config-file"):
                continue
            if name in given:
                warnings.append(
                    f"environment variable {key} is shadowed by the command-line flag --{name}"
                )
                continue
            try:
                values[name] = flag.parse(raw)
            except ValueError as e:
                raise ConfigError(
                    f"error verifying flags, invalid value {_q(raw)} for {key}: {e}. See 'ketch --help'."
                ) from None
    return _validate(values, tuple(warnings))


def _validate(values: dict[str, Any], warnings: tuple[str, ...]) -> Config:
    fields = {_FLAGS[name].field: v for name, v in values.items()}
    cfg = Config(**fields)

    def fail(msg: str) -> ConfigError:
        return ConfigError(f"error verifying flags, {msg}. See 'ketch --help'.")

    explicit = set(values)
    # etcd drops its default advertise URL when listen URLs are given on the
    # command line or in the environment (not in a config file).
    if (
        not cfg.config_file
        and "listen-client-urls" in explicit
        and "advertise-client-urls" not in explicit
    ):
        raise fail(
            "--advertise-client-urls is required when --listen-client-urls is set explicitly"
        )
    for flag_name, urls in (
        ("listen-client-urls", cfg.listen_client_urls),
        ("listen-peer-urls", cfg.listen_peer_urls),
    ):
        for u in urls:
            parts = urlsplit(u)
            if parts.scheme in ("unix", "unixs"):
                raise fail(f"--{flag_name}: ketch does not serve unix sockets ({u})")
            host, _ = _split_host_port(parts.netloc)
            if host != "localhost" and not _is_ip(host):
                raise fail(f"expected IP in URL for binding ({u})")
    for flag_name, urls in (
        ("initial-advertise-peer-urls", cfg.initial_advertise_peer_urls),
        ("advertise-client-urls", cfg.advertise_client_urls),
    ):
        for u in urls:
            if not _split_host_port(urlsplit(u).netloc)[0]:
                raise fail(
                    f'--{flag_name} "{",".join(urls)}" must be "host:port" (unexpected empty host ({u}))'
                )

    # etcd: a non-default name with the default initial cluster means "this
    # member alone, at its advertised peer URLs" (UpdateDefaultClusterFromName).
    initial_cluster = cfg.initial_cluster
    if cfg.name != DEFAULT_NAME and initial_cluster == DEFAULT_INITIAL_CLUSTER:
        initial_cluster = ",".join(f"{cfg.name}={u}" for u in cfg.initial_advertise_peer_urls)
    try:
        members = _cluster_map(initial_cluster)
    except ValueError as e:
        raise fail(str(e)) from None
    if cfg.name not in members:
        raise fail(f"couldn't find local name {_q(cfg.name)} in the initial cluster configuration")
    if sorted(members[cfg.name]) != sorted(cfg.initial_advertise_peer_urls):
        missing = [
            f"{cfg.name}={u}" for u in members[cfg.name] if u not in cfg.initial_advertise_peer_urls
        ]
        if missing:
            raise fail(
                f"--initial-cluster has {','.join(missing)} but missing from "
                f"--initial-advertise-peer-urls={','.join(sorted(cfg.initial_advertise_peer_urls))}"
            )
        extra = [u for u in cfg.initial_advertise_peer_urls if u not in members[cfg.name]]
        raise fail(
            f"--initial-advertise-peer-urls has {','.join(extra)} but missing from "
            f"--initial-cluster={initial_cluster}"
        )
    all_urls = [u for urls in members.values() for u in urls]
    if len(set(all_urls)) != len(all_urls):
        # etcd's VerifyBootstrap/VerifyJoinExisting, with URLsMap.String()'s sorted names.
        listing = ",".join(f"{n}={u}" for n in sorted(members) for u in members[n])
        raise ConfigError(f"initial cluster {listing} has duplicate url")

    if any(urlsplit(u).scheme == "https" for u in cfg.listen_client_urls) and not (
        cfg.cert_file and cfg.key_file
    ):
        u = next(u for u in cfg.listen_client_urls if urlsplit(u).scheme == "https")
        raise fail(
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
        raise fail(f"--heartbeat-interval must be >0 (set to {cfg.heartbeat_interval}ms)")
    if 5 * cfg.heartbeat_interval > cfg.election_timeout:
        raise fail(
            f"--election-timeout[{cfg.election_timeout}ms] should be at least as 5 times as "
            f"--heartbeat-interval[{cfg.heartbeat_interval}ms]"
        )
    if cfg.election_timeout > MAX_ELECTION_MS:
        raise fail(
            f"--election-timeout[{cfg.election_timeout}ms] is too long, and should be set "
            f"less than {MAX_ELECTION_MS}ms"
        )
    if cfg.peer_client_cert_auth and not cfg.peer_trusted_ca_file:
        raise fail(
            "--peer-client-cert-auth needs --peer-trusted-ca-file to verify peer certificates against"
        )
    if cfg.client_cert_auth and not cfg.trusted_ca_file:
        raise fail(
            "--client-cert-auth needs --trusted-ca-file to verify client certificates against"
        )

    data_dir = cfg.data_dir if "data-dir" in explicit and cfg.data_dir else f"{cfg.name}.ketch"
    return dataclasses.replace(
        cfg, initial_cluster=initial_cluster, data_dir=data_dir, warnings=warnings
    )


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
        out[name] = _parse_urls(",".join(urls))
    if not out:
        raise ValueError("initial cluster unset and no discovery URL found")
    return out
