"""ketch: a Raft-replicated key-value store that speaks etcd's v3 API.

A small facade. The names that need grpc or the native engine
(`ketch._core`) load on first use, so `ketch --version` and configuration
errors answer without loading either.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

from .config import Config, ConfigError, parse
from .membership import cluster_id, member_id

if TYPE_CHECKING:
    from .engine import EngineBridge
    from .errors import GRPC_STATUS, EngineError
    from .server import serve

__all__ = [
    "GRPC_STATUS",
    "Config",
    "ConfigError",
    "EngineBridge",
    "EngineError",
    "__version__",
    "cluster_id",
    "member_id",
    "parse",
    "serve",
]

_LAZY = {
    "EngineBridge": "engine",
    "EngineError": "errors",
    "GRPC_STATUS": "errors",
    "serve": "server",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'ketch' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(f".{module}", __name__), name)
