"""etcd's user authentication, as the client sees it: a token sent with every call.

A server with auth enabled (etcd after `etcdctl auth enable`) answers
Authenticate(name, password) with a token, and every later call carries it
as the gRPC metadata entry "token". A server without auth enabled (ketch,
which has no users yet, or etcd before `auth enable`) answers Authenticate
with "etcdserver: authentication is not enabled"; the client then goes on
without a token, as etcd's clientv3 does. A token the server stops accepting
("etcdserver: invalid auth token": etcd's simple tokens expire after 5
minutes unused and do not survive a restart; or "revision of auth store is
old" after a change of users or roles) is fetched again, and the call
that met it is sent once more.

Both clients share this bookkeeping; each makes the Authenticate call its
own way (blocking or awaited), under its own lock.
"""

from __future__ import annotations

from .._pb import rpc_pb2

__all__ = [
    "AUTHENTICATE_PATH",
    "AUTH_NOT_ENABLED",
    "RENEW_TOKEN",
    "Credentials",
    "Metadata",
    "credentials",
    "split_user",
]

AUTHENTICATE_PATH = "/etcdserverpb.Auth/Authenticate"
TOKEN_KEY = "token"  # etcd's rpctypes.TokenFieldNameGRPC
AUTH_NOT_ENABLED = "etcdserver: authentication is not enabled"
# Answers to a call whose token the server no longer takes; the call was
# refused before it was applied, so after a new token it is sent again (once).
RENEW_TOKEN = frozenset(
    {
        "etcdserver: invalid auth token",
        "etcdserver: revision of auth store is old",
    }
)

Metadata = tuple[tuple[str, str], ...]


class Credentials:
    """A user name and password, and what the server made of them."""

    def __init__(self, user: str, password: str) -> None:
        if not user:
            raise ValueError("user must not be empty")
        self.user = user
        self.password = password
        self._token: str | None = None
        self._known = False  # the server answered Authenticate (a token, or auth is off)

    @property
    def known(self) -> bool:
        """True once the server said whether it wants a token (and gave one if so)."""
        return self._known

    def request(self) -> rpc_pb2.AuthenticateRequest:
        return rpc_pb2.AuthenticateRequest(name=self.user, password=self.password)

    def accept(self, response: rpc_pb2.AuthenticateResponse) -> None:
        self._token = response.token or None
        self._known = True

    def auth_not_enabled(self) -> None:
        """The server has no auth enabled: calls go without a token."""
        self._token = None
        self._known = True

    def forget(self) -> None:
        """The token was refused: ask for a new one before the next call."""
        self._token = None
        self._known = False

    def metadata(self) -> Metadata:
        return ((TOKEN_KEY, self._token),) if self._token else ()


def credentials(user: str | None, password: str | None) -> Credentials | None:
    """The Credentials for a client's `user`/`password` arguments, or None without a user."""
    if user is None:
        if password is not None:
            raise ValueError("password given without user")
        return None
    if password is None:
        raise ValueError("user given without password")
    return Credentials(user, password)


def split_user(user: str, password: str) -> tuple[str, str | None]:
    """etcdctl's reading of --user and --password: with --password, --user is
    the name as it is; without, "name:password" splits at the first colon,
    and a bare name has no password yet (etcdctl asks for it)."""
    if password:
        return user, password
    name, colon, rest = user.partition(":")
    return (name, rest) if colon else (user, None)
