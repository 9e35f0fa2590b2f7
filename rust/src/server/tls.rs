//! TLS for https client URLs, as etcd's listeners do it: the server's
//! certificate and key; with `--client-cert-auth`, a client certificate that
//! chains to `--trusted-ca-file` (and is not in `--client-crl-file`) is
//! required, otherwise none is asked for.
//!
//! The files are read again when they change (their modification times are
//! checked on every accepted connection, a few `stat`s), so a rotated
//! certificate is served from the next handshake on, with no restart; a
//! rotation caught half-written keeps the previous configuration and says so.

use std::fs;
use std::io;
use std::sync::Arc;
use std::time::SystemTime;

use parking_lot::Mutex;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, ServerConfig, SignatureScheme};

/// The TLS flags of one listener kind.
#[derive(Debug, Clone, Default)]
pub struct TlsFiles {
    pub cert_file: String,
    pub key_file: String,
    /// Empty: none.
    pub trusted_ca_file: String,
    pub client_cert_auth: bool,
    /// Empty: none.
    pub crl_file: String,
    /// "TLS1.2" or "TLS1.3"; empty for rustls's (and etcd's) defaults.
    pub min_version: String,
    pub max_version: String,
    /// etcd's --cipher-suites, by their IANA names (Go's); empty: rustls's
    /// defaults. As in Go, they choose among TLS 1.2 suites only.
    pub cipher_suites: Vec<String>,
}

impl TlsFiles {
    fn paths(&self) -> Vec<&str> {
        [&self.cert_file, &self.key_file, &self.trusted_ca_file, &self.crl_file]
            .into_iter()
            .filter(|p| !p.is_empty())
            .map(String::as_str)
            .collect()
    }

    fn mtimes(&self) -> Vec<Option<SystemTime>> {
        self.paths().into_iter().map(|p| fs::metadata(p).and_then(|m| m.modified()).ok()).collect()
    }
}

pub struct ReloadingTls {
    files: TlsFiles,
    current: Mutex<(Vec<Option<SystemTime>>, Arc<ServerConfig>)>,
}

impl ReloadingTls {
    /// Reads the files once; an error names the file and what is wrong with it.
    pub fn new(files: TlsFiles) -> Result<ReloadingTls, String> {
        let mtimes = files.mtimes();
        let config = build(&files)?;
        Ok(ReloadingTls { files, current: Mutex::new((mtimes, config)) })
    }

    /// The configuration for the next handshake, read again if a file changed.
    pub fn current(&self) -> Arc<ServerConfig> {
        let mtimes = self.files.mtimes();
        let mut current = self.current.lock();
        if current.0 != mtimes {
            match build(&self.files) {
                Ok(config) => {
                    crate::log_info!("client TLS files changed; serving the new certificate");
                    *current = (mtimes, config);
                }
                // Keep serving the old one; try again on the next connection.
                Err(e) => crate::log_warn!("client TLS files changed but cannot be used yet: {e}"),
            }
        }
        current.1.clone()
    }
}

fn read(path: &str, flag: &str) -> Result<Vec<u8>, String> {
    fs::read(path).map_err(|e| format!("cannot read {flag} {path}: {e}"))
}

fn certs(pem: &[u8], path: &str, flag: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs: Vec<_> = rustls_pemfile::certs(&mut &pem[..])
        .collect::<Result<_, io::Error>>()
        .map_err(|e| format!("{flag} {path}: {e}"))?;
    if certs.is_empty() {
        return Err(format!("{flag} {path}: no PEM certificate in it"));
    }
    Ok(certs)
}

fn build(files: &TlsFiles) -> Result<Arc<ServerConfig>, String> {
    let chain = certs(&read(&files.cert_file, "--cert-file")?, &files.cert_file, "--cert-file")?;
    let key_pem = read(&files.key_file, "--key-file")?;
    let key: PrivateKeyDer<'static> = rustls_pemfile::private_key(&mut &key_pem[..])
        .map_err(|e| format!("--key-file {}: {e}", files.key_file))?
        .ok_or_else(|| format!("--key-file {}: no PEM private key in it", files.key_file))?;
    let provider = Arc::new(provider(&files.cipher_suites)?);
    let versions = versions(&files.min_version, &files.max_version)?;
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&versions)
        .map_err(|e| format!("TLS versions: {e}"))?;
    let builder = if files.client_cert_auth {
        let mut roots = RootCertStore::empty();
        if !files.trusted_ca_file.is_empty() {
            let pem = read(&files.trusted_ca_file, "--trusted-ca-file")?;
            for cert in certs(&pem, &files.trusted_ca_file, "--trusted-ca-file")? {
                roots.add(cert).map_err(|e| format!("--trusted-ca-file {}: {e}", files.trusted_ca_file))?;
            }
        }
        let mut verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
        if !files.crl_file.is_empty() {
            let pem = read(&files.crl_file, "--client-crl-file")?;
            let crls: Vec<CertificateRevocationListDer<'static>> = rustls_pemfile::crls(&mut &pem[..])
                .collect::<Result<_, io::Error>>()
                .map_err(|e| format!("--client-crl-file {}: {e}", files.crl_file))?;
            verifier = verifier.with_crls(crls);
        }
        let verifier = verifier.build().map_err(|e| format!("--trusted-ca-file {}: {e}", files.trusted_ca_file))?;
        builder.with_client_cert_verifier(verifier)
    } else {
        builder.with_no_client_auth()
    };
    let mut config = builder
        .with_single_cert(chain, key)
        .map_err(|e| format!("--cert-file {} and --key-file {}: {e}", files.cert_file, files.key_file))?;
    // gRPC is HTTP/2; HTTP/1.1 is offered for the endpoints beside it.
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// ring's provider, its TLS 1.2 suites cut down to `names` when given.
///
/// As in Go, the list chooses among TLS 1.2 suites only: TLS 1.3's names are
/// accepted and change nothing. Go's suites that rustls does not implement
/// (CBC, RC4, 3DES) are left out with a warning; a list with none that
/// rustls offers is refused.
fn provider(names: &[String]) -> Result<rustls::crypto::CryptoProvider, String> {
    const TLS13: [&str; 3] = ["TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384", "TLS_CHACHA20_POLY1305_SHA256"];
    let mut provider = rustls::crypto::ring::default_provider();
    let names: Vec<&str> = names.iter().map(String::as_str).filter(|n| !TLS13.contains(n)).collect();
    if names.is_empty() {
        return Ok(provider);
    }
    let is_tls12 = |s: &rustls::SupportedCipherSuite| s.version() == &rustls::version::TLS12;
    // rustls's names are the IANA names; Go also takes the ChaCha20 ones without "_SHA256".
    let matches = |s: &rustls::SupportedCipherSuite, name: &str| {
        let ours = format!("{:?}", s.suite());
        ours == name || ours.strip_suffix("_SHA256") == Some(name)
    };
    let (offered, missing): (Vec<&str>, Vec<&str>) =
        names.iter().partition(|n| provider.cipher_suites.iter().any(|s| is_tls12(s) && matches(s, n)));
    if offered.is_empty() {
        let ours: Vec<String> =
            provider.cipher_suites.iter().filter(|s| is_tls12(s)).map(|s| format!("{:?}", s.suite())).collect();
        return Err(format!(
            "--cipher-suites: ketch's TLS (rustls) offers none of {}; it offers {}",
            names.join(","),
            ours.join(", ")
        ));
    }
    if !missing.is_empty() {
        crate::log_warn!("--cipher-suites: rustls does not implement {}; they are left out", missing.join(","));
    }
    provider.cipher_suites.retain(|s| !is_tls12(s) || offered.iter().any(|n| matches(s, n)));
    Ok(provider)
}

/// A self-signed certificate and its key (PEM) for `hosts` (DNS names or IP
/// addresses): etcd's --auto-tls. rcgen's default validity (to year 4096) rather
/// than etcd's one year: it is made anew at every start anyway.
pub fn self_signed(hosts: &[String]) -> Result<(String, String), String> {
    let certified = rcgen::generate_simple_self_signed(hosts.to_vec()).map_err(|e| format!("--auto-tls: {e}"))?;
    Ok((certified.cert.pem(), certified.signing_key.serialize_pem()))
}

/// etcd's --peer-auto-tls dialer (transport.SelfCert sets InsecureSkipVerify):
/// every member's certificate is self-signed and no CA vouches for any, so
/// the peer's certificate is taken unchecked. The handshake's signatures are
/// still checked, so the peer holds the key of the certificate it showed.
#[derive(Debug)]
struct UnverifiedPeerCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for UnverifiedPeerCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// The client side of a peer connection under --peer-auto-tls: the other
/// member's certificate is not verified, and this member presents its own
/// generated certificate (`cert_pem`, `key_pem`; none when empty), as etcd's
/// peer dialer does.
pub(crate) fn unverified_peer_client(cert_pem: &[u8], key_pem: &[u8]) -> Result<Arc<ClientConfig>, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("peer auto TLS: {e}"))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(UnverifiedPeerCertificate(provider)));
    let mut config = if cert_pem.is_empty() {
        builder.with_no_client_auth()
    } else {
        let chain = certs(cert_pem, "the generated certificate", "--peer-auto-tls")?;
        let key = rustls_pemfile::private_key(&mut &key_pem[..])
            .map_err(|e| format!("--peer-auto-tls key: {e}"))?
            .ok_or("--peer-auto-tls: no PEM private key in the generated key")?;
        builder.with_client_auth_cert(chain, key).map_err(|e| format!("--peer-auto-tls certificate: {e}"))?
    };
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Arc::new(config))
}

fn versions(min: &str, max: &str) -> Result<Vec<&'static rustls::SupportedProtocolVersion>, String> {
    let rank = |v: &str, flag: &str, default: u8| match v {
        "" => Ok(default),
        "TLS1.2" => Ok(2),
        "TLS1.3" => Ok(3),
        other => Err(format!("--{flag} {other}: ketch's TLS (rustls) speaks TLS1.2 and TLS1.3 only")),
    };
    let (lo, hi) = (rank(min, "tls-min-version", 2)?, rank(max, "tls-max-version", 3)?);
    if lo > hi {
        return Err(format!("--tls-min-version {min} is above --tls-max-version {max}"));
    }
    let mut out = Vec::new();
    if lo <= 2 {
        out.push(&rustls::version::TLS12);
    }
    if hi >= 3 {
        out.push(&rustls::version::TLS13);
    }
    Ok(out)
}

/// One DER element: (tag, contents, the rest after it).
fn der_element(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n].iter().fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
        (len, &rest[n..])
    };
    (rest.len() >= len).then(|| (tag, &rest[..len], &rest[len..]))
}

/// The subject's common name of a DER certificate (the user etcd takes a
/// client certificate for under --client-cert-auth), or None.
pub(crate) fn common_name(cert: &[u8]) -> Option<String> {
    const SEQUENCE: u8 = 0x30;
    const CN_OID: &[u8] = &[0x55, 0x04, 0x03];
    let (_, certificate, _) = der_element(cert).filter(|e| e.0 == SEQUENCE)?;
    let (_, tbs, _) = der_element(certificate).filter(|e| e.0 == SEQUENCE)?;
    let mut fields = tbs;
    // [0] version is optional; then serial, signature, issuer, validity, subject.
    let (tag, _, rest) = der_element(fields)?;
    if tag == 0xa0 {
        fields = rest;
    }
    for _ in 0..4 {
        fields = der_element(fields)?.2;
    }
    let (_, mut subject, _) = der_element(fields).filter(|e| e.0 == SEQUENCE)?;
    let mut cn = None;
    while let Some((_, set, rest)) = der_element(subject) {
        subject = rest;
        let mut attrs = set;
        while let Some((_, attr, more)) = der_element(attrs) {
            attrs = more;
            let (oid_tag, oid, value) = der_element(attr)?;
            if oid_tag == 0x06 && oid == CN_OID {
                let (_, text, _) = der_element(value)?;
                // Go keeps the last CN of a subject with several.
                cn = Some(String::from_utf8_lossy(text).into_owned());
            }
        }
    }
    cn
}

#[cfg(test)]
mod common_name_tests {
    #[test]
    fn reads_the_subject_common_name() {
        let mut params = rcgen::CertificateParams::new(vec!["localhost".into()]).unwrap();
        params.distinguished_name.push(rcgen::DnType::OrganizationName, "o");
        params.distinguished_name.push(rcgen::DnType::CommonName, "alice");
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        assert_eq!(super::common_name(cert.der()).as_deref(), Some("alice"));
        assert_eq!(super::common_name(b"\x30\x03\x02\x01\x00"), None);
    }
}

#[cfg(test)]
mod unverified_peer_tests {
    use std::sync::Arc;

    use rustls::pki_types::ServerName;
    use rustls::{ClientConfig, ClientConnection, RootCertStore, ServerConfig, ServerConnection};

    /// A TLS handshake in memory; Err with the first side's error.
    fn handshake(client: Arc<ClientConfig>, server: Arc<ServerConfig>) -> Result<(), rustls::Error> {
        let mut client = ClientConnection::new(client, ServerName::try_from("127.0.0.1").unwrap()).unwrap();
        let mut server = ServerConnection::new(server).unwrap();
        for _ in 0..10 {
            let mut wire = Vec::new();
            client.write_tls(&mut wire).unwrap();
            server.read_tls(&mut &wire[..]).unwrap();
            server.process_new_packets()?;
            wire.clear();
            server.write_tls(&mut wire).unwrap();
            client.read_tls(&mut &wire[..]).unwrap();
            client.process_new_packets()?;
            if !client.is_handshaking() && !server.is_handshaking() {
                return Ok(());
            }
        }
        panic!("the handshake did not finish");
    }

    fn self_signed_server() -> (Arc<ServerConfig>, String, String) {
        let (cert, key) = super::self_signed(&["127.0.0.1".into()]).unwrap();
        let chain = super::certs(cert.as_bytes(), "cert", "test").unwrap();
        let der_key = rustls_pemfile::private_key(&mut key.as_bytes()).unwrap().unwrap();
        let server = ServerConfig::builder().with_no_client_auth().with_single_cert(chain, der_key).unwrap();
        (Arc::new(server), cert, key)
    }

    #[test]
    fn peer_auto_tls_takes_a_self_signed_certificate_that_verification_refuses() {
        let (server, cert, key) = self_signed_server();
        let unverified = super::unverified_peer_client(cert.as_bytes(), key.as_bytes()).unwrap();
        assert_eq!(handshake(unverified, server.clone()), Ok(()));
        let verified =
            Arc::new(ClientConfig::builder().with_root_certificates(RootCertStore::empty()).with_no_client_auth());
        assert!(matches!(handshake(verified, server), Err(rustls::Error::InvalidCertificate(_))));
    }
}
