"""Validation: from the values the flags, environment or file gave to a `Config`,
with etcd's checks and etcd's messages ("error verifying flags, ...")."""

from __future__ import annotations

import dataclasses
import ipaddress
from typing import Any
from urllib.parse import urlsplit

from .. import govalue
from ..govalue import quote, split_host_port
from . import log_rotation
from .flags import FLAGS
from .model import (
    CIPHER_SUITES,
    DEFAULT_INITIAL_CLUSTER,
    DEFAULT_NAME,
    MAX_ELECTION_MS,
    Config,
    ConfigError,
)

__all__ = ["check_initial_cluster", "compaction_retention", "validate"]


def _fail(msg: str) -> ConfigError:
    return ConfigError(f"error verifying flags, {msg}. See 'ketch --help'.")


def validate(values: dict[str, Any]) -> Config:
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
    # with discovery that is a placeholder until the server asks (discovery.py).
    initial_cluster = cfg.initial_cluster
    if (discovery and "initial-cluster" not in explicit) or (
        cfg.name != DEFAULT_NAME and initial_cluster == DEFAULT_INITIAL_CLUSTER
    ):
        initial_cluster = ",".join(f"{cfg.name}={u}" for u in cfg.initial_advertise_peer_urls)
    try:
        _check_cluster(cfg.name, cfg.initial_advertise_peer_urls, initial_cluster)
    except _ClusterMismatch as e:
        raise _fail(str(e)) from None

    if any(urlsplit(u).scheme == "https" for u in cfg.listen_client_urls) and not (
        (cfg.cert_file and cfg.key_file) or cfg.auto_tls
    ):
        u = next(u for u in cfg.listen_client_urls if urlsplit(u).scheme == "https")
        raise _fail(
            f"TLS key/cert (--cert-file, --key-file) must be provided for client url {u} with HTTPS scheme"
        )
    for u in cfg.listen_peer_urls:
        parts = urlsplit(u)
        if parts.scheme == "https" and not ((cfg.peer_cert_file and cfg.peer_key_file) or cfg.peer_auto_tls):
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

    # etcd's setupLogging, part of Validate: "failed to verify flags" in etcd 3.5's log.
    if len(cfg.log_outputs) > 1 and "default" in cfg.log_outputs:
        raise _fail('multi logoutput for "default" is not supported yet')
    try:
        rotation = log_rotation.rotation(
            value("enable-log-rotation"), cfg.log_outputs, value("log-rotation-config-json")
        )
    except ConfigError as e:
        raise _fail(str(e)) from None
    if rotation is not None:
        cfg = dataclasses.replace(cfg, log_rotation=rotation.as_tuple())

    data_dir = cfg.data_dir if "data-dir" in explicit and cfg.data_dir else f"{cfg.name}.ketch"
    log_level = "debug" if cfg.debug else cfg.log_level
    return dataclasses.replace(
        cfg, initial_cluster=initial_cluster, data_dir=data_dir, log_level=log_level
    )



class _ClusterMismatch(ValueError):
    """An initial cluster that does not hold this member as its flags describe it."""


def check_initial_cluster(cfg: Config) -> None:
    """The checks of --initial-cluster against --name and
    --initial-advertise-peer-urls, for a cluster found by discovery (etcd
    makes them when the server starts, so they are not flag errors there)."""
    try:
        _check_cluster(cfg.name, cfg.initial_advertise_peer_urls, cfg.initial_cluster)
    except _ClusterMismatch as e:
        raise ConfigError(str(e)) from None


def _check_cluster(name: str, advertise: tuple[str, ...], initial_cluster: str) -> None:
    """Raises _ClusterMismatch (a flag error) or ConfigError (a bootstrap error)."""
    try:
        members = govalue.parse_urls_map(initial_cluster)
    except ValueError as e:
        raise _ClusterMismatch(str(e)) from None
    if name not in members:
        raise _ClusterMismatch(
            f"couldn't find local name {quote(name)} in the initial cluster configuration"
        )
    if sorted(members[name]) != sorted(advertise):
        missing = [f"{name}={u}" for u in members[name] if u not in advertise]
        if missing:
            raise _ClusterMismatch(
                f"--initial-cluster has {','.join(missing)} but missing from "
                f"--initial-advertise-peer-urls={','.join(sorted(advertise))}"
            )
        extra = [u for u in advertise if u not in members[name]]
        raise _ClusterMismatch(
            f"--initial-advertise-peer-urls has {','.join(extra)} but missing from "
            f"--initial-cluster={initial_cluster}"
        )
    all_urls = [u for urls in members.values() for u in urls]
    if len(set(all_urls)) != len(all_urls):
        # etcd's VerifyBootstrap/VerifyJoinExisting, with URLsMap.String()'s sorted names.
        listing = ",".join(f"{n}={u}" for n in sorted(members) for u in members[n])
        raise ConfigError(f"initial cluster {listing} has duplicate url")

def compaction_retention(cfg: Config) -> float:
    """--auto-compaction-retention as the engine takes it: seconds of history
    (periodic) or a revision count (revision; a duration there counts its
    nanoseconds, as etcd's time.Duration does). 0: no auto-compaction."""
    mode, retention = cfg.auto_compaction_mode, cfg.auto_compaction_retention
    seconds_or_count = _parse_compaction_retention(mode, retention)
    try:
        int(retention)
    except ValueError:
        if mode == "revision":
            return seconds_or_count * 1e9
    return seconds_or_count


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
        return govalue.parse_duration(retention)
    except ValueError:
        raise ValueError(f"time: invalid duration {quote(retention)}") from None


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True
