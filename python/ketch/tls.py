"""TLS material for the client and peer listeners.

--cert-file/--key-file give the server's certificate chain and key. With
--client-cert-auth, a client must present a certificate that chains to
--trusted-ca-file (etcd's ClientCertAuth: tls.RequireAndVerifyClientCert).
Without it, a client certificate is neither asked for nor checked. The
client port's handshakes are the engine's (rustls, rust/src/server/tls.rs);
the peer port's too; grpcio's only when a joining member asks a running
one for the member list.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .config import Config

if TYPE_CHECKING:
    import grpc

__all__ = [
    "client_tls_files",
    "peer_channel_credentials",
    "peer_dial_tls",
    "peer_tls_files",
]


def _read(path: str, what: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise OSError(e.errno, f"cannot read {what} {path}: {e.strerror}") from None


ListenerTlsFiles = tuple[str, str, str, bool, str, str, str, list[str]]


def _listener_files(
    cfg: Config, prefix: str, cert: str, key: str, ca: str, cert_auth: bool, crl: str
) -> ListenerTlsFiles:
    """(cert, key, trusted CA, client cert auth, CRL, TLS min version, TLS max
    version, cipher suites) for one listener kind, once each given file has
    been read (OSError names the one that cannot); the engine reads them
    itself, and again when they change. The TLS versions and cipher suites
    are shared by both kinds, as in etcd."""
    flag = f"--{prefix}"
    _read(cert, f"{flag}cert-file")
    _read(key, f"{flag}key-file")
    if ca:
        _read(ca, f"{flag}trusted-ca-file")
    if crl:
        _read(crl, f"{flag}crl-file" if prefix else "--client-crl-file")
    versions = (cfg.tls_min_version, cfg.tls_max_version)
    return (cert, key, ca, cert_auth, crl, *versions, list(cfg.cipher_suites))


def client_tls_files(cfg: Config) -> ListenerTlsFiles:
    """For https --listen-client-urls: --cert-file/--key-file, and with
    --client-cert-auth a client must present a certificate that chains to
    --trusted-ca-file (and is not in --client-crl-file)."""
    return _listener_files(
        cfg, "", cfg.cert_file, cfg.key_file, cfg.trusted_ca_file, cfg.client_cert_auth,
        cfg.client_crl_file,
    )  # fmt: skip


def peer_tls_files(cfg: Config) -> ListenerTlsFiles:
    """For https --listen-peer-urls: --peer-cert-file/--peer-key-file, and
    with --peer-client-cert-auth a peer must present a certificate that
    chains to --peer-trusted-ca-file (and is not in --peer-crl-file)."""
    return _listener_files(
        cfg, "peer-", cfg.peer_cert_file, cfg.peer_key_file, cfg.peer_trusted_ca_file,
        cfg.peer_client_cert_auth, cfg.peer_crl_file,
    )  # fmt: skip


def peer_dial_tls(cfg: Config) -> tuple[bytes | None, bytes, bytes, bool] | None:
    """How the peer transport dials https peers, as etcd's: the peer
    certificate is also the client certificate; --peer-trusted-ca-file
    verifies the other member, or, with a --peer-auto-tls certificate
    (server.py made it, so cfg.peer_auto_tls is still set), nothing does:
    etcd's dialer skips verification then. None without peer TLS files."""
    if not (cfg.peer_cert_file or cfg.peer_trusted_ca_file):
        return None
    ca = (
        _read(cfg.peer_trusted_ca_file, "--peer-trusted-ca-file")
        if cfg.peer_trusted_ca_file
        else None
    )
    if cfg.peer_cert_file and cfg.peer_key_file:
        cert = _read(cfg.peer_cert_file, "--peer-cert-file")
        return ca, cert, _read(cfg.peer_key_file, "--peer-key-file"), cfg.peer_auto_tls
    return ca, b"", b"", False


def peer_channel_credentials(cfg: Config) -> grpc.ChannelCredentials:
    """grpcio's credentials for a joining member asking a running one for
    the member list (ketch.peer.fetch_members), as peer_dial_tls: the peer
    certificate is also the client certificate; --peer-trusted-ca-file (or
    the system's roots) verifies the other member."""
    import grpc  # only a joining member needs grpcio; the server runs without it

    ca = (
        _read(cfg.peer_trusted_ca_file, "--peer-trusted-ca-file")
        if cfg.peer_trusted_ca_file
        else None
    )
    if cfg.peer_cert_file and cfg.peer_key_file:
        return grpc.ssl_channel_credentials(
            root_certificates=ca,
            private_key=_read(cfg.peer_key_file, "--peer-key-file"),
            certificate_chain=_read(cfg.peer_cert_file, "--peer-cert-file"),
        )
    return grpc.ssl_channel_credentials(root_certificates=ca)
