"""One gRPC channel per endpoint, and knowing whether it is connected.

The client picks an endpoint by its connection state before sending anything:
a write is never sent twice, so fail-over must happen before the request
leaves, when grpc still knows the connection did not come up. Each channel
is watched with grpc's connectivity subscription; `wait_ready` returns as soon
as the channel is READY, or (with `fail_fast`) as soon as connecting failed.
"""

from __future__ import annotations

import threading
import time

import grpc

from .endpoints import Endpoint, TLSConfig, channel_options

__all__ = ["SyncChannel"]

_READY = grpc.ChannelConnectivity.READY
_FAILURE = grpc.ChannelConnectivity.TRANSIENT_FAILURE
_IDLE = grpc.ChannelConnectivity.IDLE


def use_tls(endpoint: Endpoint, tls: TLSConfig | None) -> bool:
    return endpoint.secure or tls is not None


class SyncChannel:
    def __init__(self, endpoint: Endpoint, tls: TLSConfig | None) -> None:
        self.endpoint = endpoint
        options = channel_options(tls)
        if use_tls(endpoint, tls):
            creds = (tls or TLSConfig()).credentials()
            self.channel = grpc.secure_channel(endpoint.target, creds, options=options)
        else:
            self.channel = grpc.insecure_channel(endpoint.target, options=options)
        self._state: grpc.ChannelConnectivity | None = None
        self._was_ready = False
        self._cond = threading.Condition()
        self.channel.subscribe(self._on_state, try_to_connect=True)

    def _on_state(self, state: grpc.ChannelConnectivity) -> None:
        with self._cond:
            self._state = state
            self._was_ready = self._was_ready or state is _READY
            self._cond.notify_all()

    def wait_ready(self, timeout: float, fail_fast: bool) -> bool:
        """True once the channel is connected (or idle after having been: a call
        reconnects it); False after `timeout`, or at the first failure to
        connect when `fail_fast`."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                if self._state is _READY or (self._state is _IDLE and self._was_ready):
                    return True
                if fail_fast and self._state is _FAILURE:
                    return False
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)

    def close(self) -> None:
        try:
            self.channel.unsubscribe(self._on_state)
        finally:
            # grpc's connectivity poller (started by subscribe) notices the
            # unsubscribe only after its current 0.2 s wait; closing the channel
            # before that makes its next wait raise "Channel closed!" in that
            # thread. So close once it has stopped, without making callers wait.
            state = getattr(self.channel, "_connectivity_state", None)
            if state is not None and getattr(state, "polling", False):
                threading.Thread(target=self._close_when_unpolled, args=(state,), daemon=True).start()
            else:
                self.channel.close()

    def _close_when_unpolled(self, state: object) -> None:
        deadline = time.monotonic() + 2.0
        while getattr(state, "polling", False) and time.monotonic() < deadline:
            time.sleep(0.05)
        self.channel.close()
