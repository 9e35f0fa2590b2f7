"""Server credentials for https client URLs.

--cert-file/--key-file give the server's certificate chain and key. With
--client-cert-auth, a client must present a certificate that chains to
--trusted-ca-file (etcd's ClientCertAuth: tls.RequireAndVerifyClientCert).
Without it, a client certificate is neither asked for nor checked.
"""

from __future__ import annotations

import grpc

from .config import Config

__all__ = ["peer_channel_credentials", "peer_server_credentials", "server_credentials"]


def _read(path: str, what: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise OSError(e.errno, f"cannot read {what} {path}: {e.strerror}") from None


def server_credentials(cfg: Config) -> grpc.ServerCredentials:
    """Credentials for every https listen URL; raises OSError naming an unreadable file."""
    cert = _read(cfg.cert_file, "--cert-file")
    key = _read(cfg.key_file, "--key-file")
    ca = _read(cfg.trusted_ca_file, "--trusted-ca-file") if cfg.trusted_ca_file else None
    return grpc.ssl_server_credentials(
        [(key, cert)],
        root_certificates=ca,
        require_client_auth=cfg.client_cert_auth,
    )


def peer_server_credentials(cfg: Config) -> grpc.ServerCredentials:
    """For https --listen-peer-urls: --peer-cert-file/--peer-key-file, and with
    --peer-client-cert-auth a peer must present a certificate that chains to
    --peer-trusted-ca-file. Raises OSError naming an unreadable file."""
    cert = _read(cfg.peer_cert_file, "--peer-cert-file")
    key = _read(cfg.peer_key_file, "--peer-key-file")
    ca = (
        _read(cfg.peer_trusted_ca_file, "--peer-trusted-ca-file")
        if cfg.peer_trusted_ca_file
        else None
    )
    return grpc.ssl_server_credentials(
        [(key, cert)], root_certificates=ca, require_client_auth=cfg.peer_client_cert_auth
    )


def peer_channel_credentials(cfg: Config) -> grpc.ChannelCredentials:
    """For https peer URLs, as etcd's peer transport: the peer certificate is
    also the client certificate; --peer-trusted-ca-file (or the system's
    roots) verifies the other member."""
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
