"""Server credentials for https client URLs.

--cert-file/--key-file give the server's certificate chain and key. With
--client-cert-auth, a client must present a certificate that chains to
--trusted-ca-file (etcd's ClientCertAuth: tls.RequireAndVerifyClientCert).
Without it, a client certificate is neither asked for nor checked.
"""

from __future__ import annotations

import grpc

from .config import Config

__all__ = ["server_credentials"]


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
