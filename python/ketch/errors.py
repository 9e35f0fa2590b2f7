"""EngineError: a request the engine refused, by the engine's name for the error.

Clients never see these through Python: the client port is the engine's own
(rust/src/server, whose `status.rs` holds the one table from engine errors
to gRPC codes). Python meets them only when it calls the engine through
EngineBridge itself, as the engine tests do.
"""

from __future__ import annotations

__all__ = ["EngineError"]


class EngineError(Exception):
    """A request the engine answered with an error: its name and etcd's message."""

    def __init__(self, name: str, message: str) -> None:
        super().__init__(name, message)
        self.name = name
        self.message = message

    def __str__(self) -> str:
        return self.message
