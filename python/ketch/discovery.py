"""Bootstrapping a new cluster by discovery, as etcd does: from DNS SRV
records (`--discovery-srv`) or from a v2 discovery service (`--discovery`).

Both run once, before a new member's data dir exists, and produce what
`--initial-cluster` would have given: the members' names and peer URLs (and,
for the discovery service, the cluster token, which is its URL). A member
that already has data never asks again.

DNS (etcd's GetDNSClusterNames): `_etcd-server-ssl._tcp.<domain>` gives
https peers and `_etcd-server._tcp.<domain>` http ones, each with
`-<discovery-srv-name>` appended when that is set. A record whose target and
port resolve to one of this member's advertised peer URLs is this member
(named by --name); the others are named 0, 1, 2... in the order found.

The discovery service (etcd's v2discovery) is an etcd v2 keys API under the
URL's path: `<path>/_config/size` says how many members to wait for; each
member creates `<path>/<member id in hex>` holding its `name=peer-url,...`,
then waits until `size` members are there (the first `size` by creation
order form the cluster; a later one finds the cluster full).
"""

from __future__ import annotations

import json
import logging
import socket
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence
from typing import Any

log = logging.getLogger("ketch.discovery")

# etcd's errors (v2discovery and embed), word for word.
ERR_SIZE_NOT_FOUND = "discovery: size key not found"
ERR_BAD_SIZE_KEY = "discovery: size key is bad"
ERR_DUPLICATE_ID = "discovery: found duplicate id"
ERR_DUPLICATE_NAME = "discovery: found duplicate name"
ERR_FULL_CLUSTER = "discovery: cluster is full"
ERR_BAD_ENDPOINT = "discovery: bad discovery endpoint"

# clientv2's DefaultRequestTimeout, and etcd's backoff cap (2^8 s) between retries.
REQUEST_TIMEOUT = 5.0
MAX_BACKOFF_EXPONENT = 8


class DiscoveryError(Exception):
    """Discovery found no usable cluster: the message is etcd's."""


# -- DNS SRV ----------------------------------------------------------------


def srv_cluster(
    domain: str, service_name: str, name: str, advertise_peer_urls: Sequence[str]
) -> str:
    """The initial cluster (`name=url,...`) the domain's SRV records describe."""
    suffix = f"-{service_name}" if service_name else ""
    found: list[str] = []
    errors: list[str] = []
    unnamed = 0
    for scheme, service in (
        ("https", f"etcd-server-ssl{suffix}"),
        ("http", f"etcd-server{suffix}"),
    ):
        try:
            parts, unnamed = _srv_members(
                scheme, service, domain, name, advertise_peer_urls, unnamed
            )
        except DiscoveryError as e:
            errors.append(str(e))
            log.info("get cluster for %s SRV: %s", service, e)
            continue
        log.info("get cluster for %s SRV: found %s", service, ",".join(parts))
        found.extend(parts)
    if not found:
        raise DiscoveryError("\n".join(errors))
    for part in found:
        log.info("got bootstrap from DNS for etcd-server: %s", part)
    cluster = ",".join(found)
    if name not in {p.split("=", 1)[0] for p in found}:
        raise DiscoveryError(f'cannot find local etcd member "{name}" in SRV records')
    return cluster


def _srv_members(
    scheme: str,
    service: str,
    domain: str,
    name: str,
    advertise_peer_urls: Sequence[str],
    unnamed: int,
) -> tuple[list[str], int]:
    """One service's records as `name=scheme://host:port`, and the next unnamed index.

    A record that resolves to this member but under the other scheme is an
    error, as in etcd (a member cannot be both http and https)."""
    import dns.exception
    import dns.resolver

    own = {}
    for url in advertise_peer_urls:
        parts = urllib.parse.urlsplit(url)
        own[_resolve(parts.hostname or "", parts.port or 0)] = url
    qname = f"_{service}._tcp.{domain}"
    try:
        answer = dns.resolver.resolve(qname, "SRV")
    except dns.exception.DNSException as e:
        raise DiscoveryError(
            f"error querying DNS SRV records for _{service} lookup {qname}: {e}"
        ) from None
    members: list[str] = []
    error = ""
    # Go's LookupSRV orders by priority, then weight (heaviest first here:
    # deterministic, where Go shuffles by weight).
    for rec in sorted(answer, key=lambda r: (r.priority, -r.weight)):
        target = str(rec.target).rstrip(".")
        try:
            addr = _resolve(target, rec.port)
        except DiscoveryError as e:
            error = str(e)
            continue
        host = f"[{target}]" if ":" in target else target
        url = f"{scheme}://{host}:{rec.port}"
        mine = own.get(addr)
        if mine is not None and urllib.parse.urlsplit(mine).scheme != scheme:
            error = (
                f"bootstrap at {url} from DNS for {service} has scheme mismatch with "
                f"expected peer {mine}"
            )
            continue
        if mine is not None:
            member = name
        else:
            member, unnamed = str(unnamed), unnamed + 1
        members.append(f"{member}={url}")
    if not members:
        raise DiscoveryError(
            f"error querying DNS SRV records for _{service} {error or 'no records'}"
        )
    return members, unnamed


def _resolve(host: str, port: int) -> str:
    """host:port as Go's ResolveTCPAddr prints it (the first address)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as e:
        raise DiscoveryError(f"lookup {host}: {e.strerror}") from None
    ip = str(infos[0][4][0])
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


# -- the v2 discovery service -------------------------------------------------


def join_discovery(durl: str, proxy: str, member_id: int, self_config: str) -> str:
    """Register this member with the discovery service at `durl` and wait for
    the others; the cluster (`name=url,...`) they form."""
    service = _DiscoveryService(durl, proxy, member_id)
    service.check()
    service.create_self(self_config)
    nodes, size, index = service.check()
    return _nodes_to_cluster(service.wait(nodes, size, index), size)


class _DiscoveryService:
    def __init__(self, durl: str, proxy: str, member_id: int) -> None:
        parts = urllib.parse.urlsplit(durl)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise DiscoveryError(ERR_BAD_ENDPOINT)
        self.endpoint = f"{parts.scheme}://{parts.netloc}"
        self.cluster = "/" + parts.path.strip("/")
        self.self_key = f"{self.cluster}/{member_id:x}"
        handlers: list[urllib.request.BaseHandler] = []
        if proxy:
            if not proxy.startswith("http"):
                proxy = "http://" + proxy
            handlers.append(urllib.request.ProxyHandler({"http": proxy, "https": proxy}))
        else:
            handlers.append(urllib.request.ProxyHandler({}))
        self._opener = urllib.request.build_opener(*handlers)
        self.retries = 0

    def _request(
        self,
        method: str,
        key: str,
        query: dict[str, str],
        body: dict[str, str] | None = None,
        timeout: float | None = REQUEST_TIMEOUT,
    ) -> tuple[int, dict[str, Any]]:
        url = f"{self.endpoint}{urllib.parse.quote(key)}"
        if query:
            url += "?" + urllib.parse.urlencode(query)
        data = urllib.parse.urlencode(body).encode() if body is not None else None
        req = urllib.request.Request(url, data=data, method=method)
        if data is not None:
            req.add_header("Content-Type", "application/x-www-form-urlencoded")
        try:
            with self._opener.open(req, timeout=timeout) as resp:
                status, raw, headers = resp.status, resp.read(), resp.headers
        except urllib.error.HTTPError as e:
            status, raw, headers = e.code, e.read(), e.headers
        try:
            doc = json.loads(raw)
        except ValueError:
            raise DiscoveryError(ERR_BAD_ENDPOINT) from None
        if not isinstance(doc, dict):
            raise DiscoveryError(ERR_BAD_ENDPOINT)
        index = headers.get("X-Etcd-Index")
        if index is not None and index.isdigit():
            doc["_index"] = int(index)
        return status, doc

    def _backoff(self, step: str, error: Exception) -> None:
        self.retries += 1
        delay = 1 << min(self.retries, MAX_BACKOFF_EXPONENT)
        log.warning(
            "retry connecting to discovery service %s (%s: %s); backoff %ds",
            self.endpoint,
            step,
            error,
            delay,
        )
        time.sleep(delay)

    def check(self) -> tuple[list[dict[str, Any]], int, int]:
        """(registered members in creation order, size, index), as etcd's checkCluster."""
        while True:
            try:
                return self._check()
            except OSError as e:  # the service cannot be reached: retry, as etcd does
                self._backoff("cluster status check", e)

    def _check(self) -> tuple[list[dict[str, Any]], int, int]:
        status, doc = self._request("GET", f"{self.cluster}/_config/size", {})
        if status == 404 and doc.get("errorCode") == 100:
            raise DiscoveryError(ERR_SIZE_NOT_FOUND)
        if status != 200:
            raise DiscoveryError(doc.get("message", ERR_BAD_ENDPOINT))
        try:
            size = int(doc["node"]["value"])
            if size < 0:
                raise ValueError
        except (KeyError, TypeError, ValueError):
            raise DiscoveryError(ERR_BAD_SIZE_KEY) from None
        status, doc = self._request("GET", self.cluster, {})
        if status != 200:
            raise DiscoveryError(doc.get("message", ERR_BAD_ENDPOINT))
        nodes = [n for n in doc["node"].get("nodes", []) if not n["key"].endswith("/_config")]
        nodes.sort(key=lambda n: n["createdIndex"])
        index = int(doc.get("_index", 0))
        for i, node in enumerate(nodes):
            if node["key"].rsplit("/", 1)[-1] == self.self_key.rsplit("/", 1)[-1]:
                break
            if i >= size - 1:
                raise DiscoveryError(ERR_FULL_CLUSTER)
        return nodes, size, index

    def create_self(self, config: str) -> None:
        status, doc = self._request("PUT", self.self_key, {"prevExist": "false"}, {"value": config})
        if status == 412 and doc.get("errorCode") == 105:
            raise DiscoveryError(ERR_DUPLICATE_ID)
        if status not in (200, 201):
            raise DiscoveryError(doc.get("message", ERR_BAD_ENDPOINT))
        log.info("registered with discovery service as %s", self.self_key.rsplit("/", 1)[-1])

    def wait(self, nodes: list[dict[str, Any]], size: int, index: int) -> list[dict[str, Any]]:
        """Wait (a recursive v2 watch) until `size` members have registered."""
        found = nodes[:size]
        while len(found) < size:
            log.info(
                "found %d peers from discovery server; waiting for %d more",
                len(found),
                size - len(found),
            )
            try:
                _, doc = self._request(
                    "GET",
                    self.cluster,
                    {"wait": "true", "recursive": "true", "waitIndex": str(index + 1)},
                    timeout=None,
                )
            except OSError as e:
                self._backoff("waiting for other nodes", e)
                found, size, index = self.check()
                found = found[:size]
                continue
            node = doc.get("node") or {}
            index = int(node.get("modifiedIndex", index))
            is_member = doc.get("action") in ("set", "create") and not node.get("key", "").endswith(
                "/_config"
            )
            if is_member and all(n["key"] != node["key"] for n in found):
                found.append(node)
        return found


def _nodes_to_cluster(nodes: list[dict[str, Any]], size: int) -> str:
    """The members' `name=url` values as one initial cluster, checked as etcd's nodesToCluster."""
    values = [str(n.get("value", "")) for n in nodes]
    cluster = ",".join(values)
    names: dict[str, list[str]] = {}
    for part in cluster.split(","):
        member, _, url = part.partition("=")
        names.setdefault(member, []).append(url)
    if len(names) != size:
        raise DiscoveryError(ERR_DUPLICATE_NAME)
    return cluster
