"""Prometheus' text format, read back: enough to compare ketch's /metrics
with etcd's (names, types, help, label names) and to read sample values."""

from __future__ import annotations

import re
import urllib.request
from dataclasses import dataclass, field

_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


@dataclass
class Family:
    name: str
    kind: str = "untyped"
    help: str = ""
    samples: list[tuple[str, dict[str, str], float]] = field(default_factory=list)

    def label_names(self) -> set[str]:
        """Label names of the family's samples, `le` left out (histogram buckets)."""
        return {k for _, labels, _ in self.samples for k in labels if k != "le"}

    def value(self, **labels: str) -> float:
        """The one sample (named as the family) whose labels include `labels`."""
        found = [
            v
            for n, ls, v in self.samples
            if n == self.name and all(ls.get(k) == want for k, want in labels.items())
        ]
        assert len(found) == 1, f"{self.name}{labels}: {len(found)} samples"
        return found[0]


def parse(text: str) -> dict[str, Family]:
    families: dict[str, Family] = {}
    for line in text.splitlines():
        if line.startswith("# HELP "):
            name, _, help_text = line[7:].partition(" ")
            families.setdefault(name, Family(name)).help = help_text
        elif line.startswith("# TYPE "):
            name, _, kind = line[7:].partition(" ")
            families.setdefault(name, Family(name)).kind = kind
        elif line and not line.startswith("#"):
            m = _SAMPLE.match(line)
            assert m, f"not a sample line: {line!r}"
            name, labels, value = m.group(1), m.group(2) or "", m.group(3)
            family = name
            for suffix in ("_bucket", "_sum", "_count"):
                base = name.removesuffix(suffix)
                if base != name and families.get(base, Family(base)).kind == "histogram":
                    family = base
            families.setdefault(family, Family(family)).samples.append(
                (name, dict(_LABEL.findall(labels)), float(value))
            )
    return families


def scrape(url: str) -> dict[str, Family]:
    with urllib.request.urlopen(f"{url}/metrics", timeout=10) as r:
        return parse(r.read().decode())


def scrape_text(url: str) -> str:
    with urllib.request.urlopen(f"{url}/metrics", timeout=10) as r:
        return str(r.read().decode())


# The metrics issue #15 lists: etcd's alert rules and dashboard read these.
LISTED = (
    "etcd_server_has_leader",
    "etcd_server_is_leader",
    "etcd_server_leader_changes_seen_total",
    "etcd_server_proposals_committed_total",
    "etcd_server_proposals_applied_total",
    "etcd_server_proposals_pending",
    "etcd_server_proposals_failed_total",
    "etcd_server_heartbeat_send_failures_total",
    "etcd_server_slow_apply_total",
    "etcd_server_quota_backend_bytes",
    "etcd_server_version",
    "etcd_server_id",
    "etcd_disk_wal_fsync_duration_seconds",
    "etcd_disk_backend_commit_duration_seconds",
    "etcd_disk_backend_snapshot_duration_seconds",
    "etcd_mvcc_db_total_size_in_bytes",
    "etcd_mvcc_db_total_size_in_use_in_bytes",
    "etcd_mvcc_put_total",
    "etcd_mvcc_delete_total",
    "etcd_mvcc_range_total",
    "etcd_mvcc_txn_total",
    "etcd_debugging_mvcc_keys_total",
    "etcd_debugging_mvcc_watcher_total",
    "etcd_debugging_mvcc_slow_watcher_total",
    "etcd_debugging_lease_granted_total",
    "etcd_network_client_grpc_sent_bytes_total",
    "etcd_network_client_grpc_received_bytes_total",
    "grpc_server_started_total",
    "grpc_server_handled_total",
    "grpc_server_msg_received_total",
    "grpc_server_msg_sent_total",
    "grpc_server_handling_seconds",
    "process_cpu_seconds_total",
    "process_resident_memory_bytes",
    "process_open_fds",
    "process_max_fds",
    "process_start_time_seconds",
    "process_virtual_memory_bytes",
)
# Only where a member has peers (a cluster of more than one).
LISTED_PEER = (
    "etcd_network_peer_round_trip_time_seconds",
    "etcd_network_peer_sent_bytes_total",
    "etcd_network_peer_received_bytes_total",
)


def differences(etcd: dict[str, Family], ketch: dict[str, Family], names: tuple[str, ...]) -> list[str]:
    """What differs between the two scrapes for `names`: presence, type, help, label names."""
    out = []
    for name in names:
        e, k = etcd.get(name), ketch.get(name)
        if e is None or k is None:
            out.append(f"{name}: in etcd {e is not None}, in ketch {k is not None}")
            continue
        if (e.kind, e.help) != (k.kind, k.help):
            out.append(f"{name}: etcd {e.kind} {e.help!r}, ketch {k.kind} {k.help!r}")
        if e.label_names() != k.label_names():
            out.append(f"{name}: labels etcd {sorted(e.label_names())}, ketch {sorted(k.label_names())}")
    return out
