"""Member and cluster IDs, computed exactly as etcd computes them.

etcd (etcdserver/api/membership/member.go, NewMember) names a member by the
first 8 bytes, big-endian, of sha1(sorted peer URLs joined with "" + cluster
token); a member added later also mixes in the time, which a bootstrapping
member never does. The cluster ID (cluster.go, genID) is the first 8 bytes of
sha1 over the members' IDs, sorted, each as 8 big-endian bytes. Same flags,
same IDs: `etcdctl member list` shows the numbers etcd would.
"""

from __future__ import annotations

from collections.abc import Iterable

try:
    # CPython's own SHA-1 (hashlib's fallback), not OpenSSL's: hashlib loads
    # libcrypto, 3.5 MiB of every server's resident memory, for two hashes
    # at start-up (benches/memory.py).
    from _sha1 import sha1  # type: ignore[import-not-found]
except ImportError:  # an interpreter built without it
    from hashlib import sha1

__all__ = ["cluster_id", "member_id"]


def member_id(peer_urls: Iterable[str], token: str, now: int | None = None) -> int:
    """The ID of a member with these peer URLs in the cluster named by token."""
    b = "".join(sorted(peer_urls)) + token
    if now is not None:
        b += str(now)
    return int.from_bytes(sha1(b.encode()).digest()[:8], "big")


def cluster_id(member_ids: Iterable[int]) -> int:
    """The ID of the cluster made of these members."""
    b = b"".join(m.to_bytes(8, "big") for m in sorted(member_ids))
    return int.from_bytes(sha1(b).digest()[:8], "big")
