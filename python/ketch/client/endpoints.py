"""Endpoints: parsing them, TLS credentials, and which one a call goes to next.

An endpoint is "host:port", "http://host:port" or "https://host:port" (the
forms etcdctl accepts). The client talks to one endpoint at a time and moves
on to the next when that one cannot be reached, so a list of members gives
fail-over without a load balancer.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import grpc

__all__ = ["Endpoint", "EndpointRing", "TLSConfig", "channel_options", "make_channel", "parse_endpoints", "use_tls"]

PathLike = str | Path


@dataclass(frozen=True)
class Endpoint:
    host: str
    port: int
    secure: bool
    text: str  # as the caller wrote it, for messages and for etcdctl-style output

    @property
    def target(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


def parse_endpoint(text: str) -> Endpoint:
    raw = text.strip()
    if not raw:
        raise ValueError("an endpoint is empty; give host:port or http(s)://host:port")
    if "://" in raw:
        parts = urlsplit(raw)
        if parts.scheme not in ("http", "https", "unix", "unixs") or parts.scheme.startswith("unix"):
            raise ValueError(f"endpoint {raw!r}: the scheme must be http or https")
        host, port, secure = parts.hostname or "", parts.port, parts.scheme == "https"
    else:
        parts = urlsplit("//" + raw)
        host, port, secure = parts.hostname or "", parts.port, False
    if not host or port is None:
        raise ValueError(f"endpoint {raw!r} has no port; give host:port, e.g. 127.0.0.1:2379")
    return Endpoint(host, port, secure, raw)


def parse_endpoints(endpoints: str | Sequence[str]) -> list[Endpoint]:
    items = endpoints.split(",") if isinstance(endpoints, str) else list(endpoints)
    parsed = [parse_endpoint(e) for e in items]
    if not parsed:
        raise ValueError("no endpoints given")
    return parsed


@dataclass(frozen=True)
class TLSConfig:
    """Client TLS: `ca_cert` verifies the server (the system roots when None);
    `cert` and `key` identify the client to servers that require it."""

    ca_cert: PathLike | None = None
    cert: PathLike | None = None
    key: PathLike | None = None
    server_name: str | None = None

    def __post_init__(self) -> None:
        if (self.cert is None) != (self.key is None):
            raise ValueError("give both cert and key (a client certificate needs its key)")

    def credentials(self) -> grpc.ChannelCredentials:
        def read(p: PathLike | None) -> bytes | None:
            if p is None:
                return None
            try:
                return Path(p).read_bytes()
            except OSError as e:
                raise ValueError(f"cannot read TLS file {p}: {e.strerror}") from e

        return grpc.ssl_channel_credentials(
            root_certificates=read(self.ca_cert),
            private_key=read(self.key),
            certificate_chain=read(self.cert),
        )


def use_tls(endpoint: Endpoint, tls: TLSConfig | None) -> bool:
    """An https endpoint, or any TLS setting given, means TLS."""
    return endpoint.secure or tls is not None


def channel_options(tls: TLSConfig | None) -> list[tuple[str, object]]:
    opts: list[tuple[str, object]] = [
        # etcd's server sends up to --max-request-bytes plus overhead, and a
        # range answer can be much larger: do not cap what we receive.
        ("grpc.max_receive_message_length", -1),
        ("grpc.max_send_message_length", -1),
        # Reconnect quickly after a member restarts (grpc's default backoff
        # grows to two minutes).
        ("grpc.initial_reconnect_backoff_ms", 100),
        ("grpc.min_reconnect_backoff_ms", 100),
        ("grpc.max_reconnect_backoff_ms", 1000),
        ("grpc.keepalive_time_ms", 10_000),
        ("grpc.keepalive_timeout_ms", 6_000),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.enable_retries", 0),
    ]
    if tls is not None and tls.server_name:
        opts.append(("grpc.ssl_target_name_override", tls.server_name))
    return opts


def make_channel(api: Any, endpoint: Endpoint, tls: TLSConfig | None) -> Any:
    """A channel to `endpoint`; `api` is grpc or grpc.aio, which make channels alike."""
    options = channel_options(tls)
    if use_tls(endpoint, tls):
        creds = (tls or TLSConfig()).credentials()
        return api.secure_channel(endpoint.target, creds, options=options)
    return api.insecure_channel(endpoint.target, options=options)


class EndpointRing:
    """The endpoints in order, and which one is current. Thread-safe.

    `order()` starts at the current endpoint and goes round once; `fail(ep)`
    moves past an endpoint that could not be reached, so the next call starts
    at the one after it."""

    def __init__(self, endpoints: list[Endpoint]) -> None:
        self.endpoints = endpoints
        self._current = 0
        self._lock = threading.Lock()

    def order(self) -> list[Endpoint]:
        with self._lock:
            i = self._current
        return self.endpoints[i:] + self.endpoints[:i]

    def fail(self, ep: Endpoint) -> None:
        with self._lock:
            if self.endpoints[self._current] == ep:
                self._current = (self._current + 1) % len(self.endpoints)

    def find(self, text: str) -> Endpoint:
        """The endpoint named `text` (as given, or as host:port), or a new one for it."""
        for ep in self.endpoints:
            if text in (ep.text, ep.target):
                return ep
        return parse_endpoint(text)
