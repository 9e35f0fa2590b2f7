"""ketch: a Raft-replicated key-value store that speaks etcd's v3 API."""

__version__ = "0.1.0"
__all__ = ["__version__"]
