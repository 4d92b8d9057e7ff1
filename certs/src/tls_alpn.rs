//! TLS-ALPN-01 (RFC 8737): the CA opens a TLS connection to port 443 that
//! offers only the `acme-tls/1` protocol and names the domain being validated;
//! the answer is a self-signed certificate for that domain carrying the
//! SHA-256 digest of the key authorization in a critical `acmeIdentifier`
//! extension. After the handshake the CA closes the connection.
//!
//! The https listener's own TLS config cannot offer `acme-tls/1` (pingora's
//! rustls listener fixes ALPN to h2/http1.1), so validation handshakes are
//! taken off the connection before it reaches that config: [`answer`] reads
//! the ClientHello, and either completes a validation handshake with
//! [`validation_config`] or hands back every byte it read, for the caller to
//! put back in front of the stream. It only looks while a TLS-ALPN-01
//! challenge is pending ([`PendingCerts::is_pending`]), so ordinary
//! connections pay nothing the rest of the time.
//!
//! The pending certificates are kept here ([`PendingCerts`]) rather than
//! with the ACME client: the client publishes into them through
//! `acme::ChallengeStore`, and this module needs nothing from `acme`.

use std::collections::HashMap;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::task::{Context, Poll};
use std::time::Duration;

use rcgen::{CertificateParams, CustomExtension, KeyPair, PKCS_ECDSA_P256_SHA256};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;
use rustls_pki_types::PrivateKeyDer;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::error::CertError;

/// The ALPN protocol ID of TLS-ALPN-01 validation handshakes.
pub const ACME_TLS_ALPN: &[u8] = b"acme-tls/1";

/// Bytes read while looking for a ClientHello before giving up on it: a
/// ClientHello fits in one 16 KiB record; anything longer is not ours.
const MAX_PEEK: usize = 64 * 1024;
/// How long the ClientHello may take while a challenge is pending.
const PEEK_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a validation handshake may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The challenge certificates a validation handshake may be answered with,
/// by domain. Cheap to clone; the clones share one state, written while an
/// order is being validated and read on the https listener.
#[derive(Clone, Debug, Default)]
pub struct PendingCerts {
    inner: Arc<Pending>,
}

#[derive(Debug, Default)]
struct Pending {
    certs: RwLock<HashMap<String, Arc<CertifiedKey>>>,
    /// Set while `certs` is not empty: the https listener's fast path.
    any: AtomicBool,
}

impl PendingCerts {
    /// None pending.
    pub fn new() -> Self {
        Self::default()
    }

    /// True while a challenge is pending (one atomic load: the https
    /// listener asks on every connection).
    pub fn is_pending(&self) -> bool {
        self.inner.any.load(Ordering::Acquire)
    }

    /// The challenge certificate for `server_name`, if pending; names are
    /// matched case-insensitively (stored lowercase).
    pub fn get(&self, server_name: &str) -> Option<Arc<CertifiedKey>> {
        // A panic elsewhere while holding the lock leaves a usable map.
        let map = self
            .inner
            .certs
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        map.get(&server_name.to_ascii_lowercase()).cloned()
    }

    /// Answer validations of `domain` (lowercase) with `cert`.
    pub(crate) fn insert(&self, domain: String, cert: Arc<CertifiedKey>) {
        let mut map = self
            .inner
            .certs
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        map.insert(domain, cert);
        self.inner.any.store(true, Ordering::Release);
    }

    /// Stop answering validations of `domain`.
    pub(crate) fn remove(&self, domain: &str) {
        let mut map = self
            .inner
            .certs
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        map.remove(domain);
        self.inner.any.store(!map.is_empty(), Ordering::Release);
    }
}

/// The challenge certificate for `domain`: self-signed P-256, the domain as
/// its only SAN, and `digest` (SHA-256 of the key authorization) in the
/// critical id-pe-acmeIdentifier extension (RFC 8737 3).
pub fn challenge_cert(domain: &str, digest: &[u8]) -> Result<Arc<CertifiedKey>, CertError> {
    let fail = |reason: String| CertError::Generate {
        names: domain.to_owned(),
        reason,
    };
    if digest.len() != 32 {
        return Err(fail(format!(
            "key authorization digest is {} bytes, not 32",
            digest.len()
        )));
    }
    let mut params =
        CertificateParams::new(vec![domain.to_owned()]).map_err(|e| fail(e.to_string()))?;
    params.custom_extensions = vec![CustomExtension::new_acme_identifier(digest)];
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(|e| fail(e.to_string()))?;
    let cert = params.self_signed(&key).map_err(|e| fail(e.to_string()))?;
    let signing = rustls::crypto::ring::sign::any_supported_type(&PrivateKeyDer::Pkcs8(
        key.serialize_der().into(),
    ))
    .map_err(|e| fail(e.to_string()))?;
    Ok(Arc::new(CertifiedKey::new(
        vec![cert.der().clone()],
        signing,
    )))
}

/// The TLS config that answers validation handshakes: `acme-tls/1` only, and
/// the pending challenge certificate for the requested name (none: the
/// handshake fails). `challenges` is a [`PendingCerts`] or what holds one
/// (`acme::ChallengeStore`); it is read on every validation handshake.
pub fn validation_config(
    challenges: impl Into<PendingCerts>,
) -> Result<Arc<ServerConfig>, CertError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS12, &rustls::version::TLS13])
        .map_err(|e| CertError::Generate {
            names: "acme-tls/1".to_owned(),
            reason: e.to_string(),
        })?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(ChallengeResolver(challenges.into())));
    config.alpn_protocols = vec![ACME_TLS_ALPN.to_vec()];
    Ok(Arc::new(config))
}

#[derive(Debug)]
struct ChallengeResolver(PendingCerts);

impl ResolvesServerCert for ChallengeResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let name = hello.server_name()?;
        let found = self.0.get(name);
        if found.is_none() {
            tracing::warn!(
                server_name = name,
                "TLS-ALPN-01 validation for a name with no pending challenge"
            );
        }
        found
    }
}

/// What [`answer`] did with a connection.
#[derive(Debug)]
pub enum Peeked {
    /// It was a TLS-ALPN-01 validation and has been answered (or refused);
    /// the connection is finished.
    Answered,
    /// Not a validation: these bytes were read and must be put back in front
    /// of the stream before the normal TLS handshake.
    NotAcme(Vec<u8>),
}

/// Reads the ClientHello from `io` and, if it offers `acme-tls/1`, completes
/// the validation handshake with `config`. Anything else, including input
/// that is not a ClientHello at all, is handed back untouched: the normal
/// handshake decides about it. Writes nothing unless it answers.
pub async fn answer<S>(io: &mut S, config: &Arc<ServerConfig>) -> Peeked
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    let mut seen = Vec::new();
    let peeking = AtomicBool::new(true);
    let recording = Recording {
        io,
        seen: &mut seen,
        peeking: &peeking,
    };
    let acceptor = tokio_rustls::LazyConfigAcceptor::new(Default::default(), recording);
    let start = match tokio::time::timeout(PEEK_TIMEOUT, acceptor).await {
        Ok(Ok(start)) => start,
        // Not TLS, a malformed hello, too slow or too long: not a validation.
        Ok(Err(_)) | Err(_) => return Peeked::NotAcme(seen),
    };
    let acme = start
        .client_hello()
        .alpn()
        .is_some_and(|mut offered| offered.any(|p| p == ACME_TLS_ALPN));
    if !acme {
        drop(start);
        return Peeked::NotAcme(seen);
    }
    peeking.store(false, Ordering::Relaxed);
    let name = start.client_hello().server_name().map(str::to_owned);
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, start.into_stream(config.clone())).await {
        Ok(Ok(mut tls)) => {
            tracing::info!(server_name = ?name, "answered a TLS-ALPN-01 validation handshake");
            // RFC 8737 3: the CA sends nothing after the handshake.
            let _ = tokio::io::AsyncWriteExt::shutdown(&mut tls).await;
        }
        Ok(Err(e)) => {
            tracing::info!(server_name = ?name, error = %e, "TLS-ALPN-01 validation handshake failed")
        }
        Err(_) => tracing::info!(server_name = ?name, "TLS-ALPN-01 validation handshake timed out"),
    }
    Peeked::Answered
}

/// Keeps a copy of every byte read while peeking, and swallows writes then
/// (a failed peek must not send an alert the real handshake would not).
struct Recording<'a, S> {
    io: &'a mut S,
    seen: &'a mut Vec<u8>,
    peeking: &'a AtomicBool,
}

impl<S: AsyncRead + Unpin> AsyncRead for Recording<'_, S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = Pin::new(&mut *this.io).poll_read(cx, buf);
        if this.peeking.load(Ordering::Relaxed) {
            this.seen
                .extend_from_slice(buf.filled().get(before..).unwrap_or_default());
            if this.seen.len() > MAX_PEEK {
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "no ClientHello within 64 KiB",
                )));
            }
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Recording<'_, S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.peeking.load(Ordering::Relaxed) {
            return Poll::Ready(Ok(data.len()));
        }
        Pin::new(&mut *this.io).poll_write(cx, data)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.peeking.load(Ordering::Relaxed) {
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut *this.io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.peeking.load(Ordering::Relaxed) {
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut *this.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
    use rustls::{DigitallySignedStruct, SignatureScheme};
    use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

    /// Accepts whatever the server shows: these tests inspect it themselves.
    #[derive(Debug)]
    struct AnyCert;

    impl ServerCertVerifier for AnyCert {
        fn verify_server_cert(
            &self,
            _: &CertificateDer<'_>,
            _: &[CertificateDer<'_>],
            _: &ServerName<'_>,
            _: &[u8],
            _: UnixTime,
        ) -> Result<ServerCertVerified, rustls::Error> {
            Ok(ServerCertVerified::assertion())
        }
        fn verify_tls12_signature(
            &self,
            _: &[u8],
            _: &CertificateDer<'_>,
            _: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            Ok(HandshakeSignatureValid::assertion())
        }
        fn verify_tls13_signature(
            &self,
            _: &[u8],
            _: &CertificateDer<'_>,
            _: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            Ok(HandshakeSignatureValid::assertion())
        }
        fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
            rustls::crypto::ring::default_provider()
                .signature_verification_algorithms
                .supported_schemes()
        }
    }

    fn client(alpn: &[&[u8]]) -> tokio_rustls::TlsConnector {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut cfg = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("versions")
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCert))
            .with_no_client_auth();
        cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        tokio_rustls::TlsConnector::from(Arc::new(cfg))
    }

    /// One server connection through [`answer`], and what the server read
    /// from the client afterwards (when not answered).
    async fn serve_one(listener: TcpListener, config: Arc<ServerConfig>) -> Peeked {
        let (mut stream, _) = listener.accept().await.expect("accept");
        answer(&mut stream, &config).await
    }

    /// A store with a pending challenge certificate for `a.test`.
    fn pending_a_test() -> PendingCerts {
        let store = PendingCerts::new();
        store.insert(
            "a.test".into(),
            challenge_cert("a.test", &digest()).expect("cert"),
        );
        store
    }

    /// [`serve_one`] on a fresh loopback listener; its address and task.
    async fn spawn_server(
        config: Arc<ServerConfig>,
    ) -> (std::net::SocketAddr, tokio::task::JoinHandle<Peeked>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        (addr, tokio::spawn(serve_one(listener, config)))
    }

    fn digest() -> [u8; 32] {
        let mut d = [0u8; 32];
        for (i, b) in d.iter_mut().enumerate() {
            *b = i as u8;
        }
        d
    }

    #[tokio::test]
    async fn a_validation_handshake_gets_the_challenge_certificate() {
        let store = PendingCerts::new();
        assert!(!store.is_pending());
        store.insert(
            "a.test".into(),
            challenge_cert("a.test", &digest()).expect("cert"),
        );
        assert!(store.is_pending());
        let config = validation_config(store.clone()).expect("config");
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let server = tokio::spawn(serve_one(listener, config));

        let tcp = TcpStream::connect(addr).await.expect("connect");
        // Upper case in SNI: names are matched case-insensitively.
        let name = ServerName::try_from("A.test").expect("name");
        let tls = client(&[ACME_TLS_ALPN])
            .connect(name, tcp)
            .await
            .expect("handshake");
        let (_, conn) = tls.get_ref();
        assert_eq!(conn.alpn_protocol(), Some(ACME_TLS_ALPN));
        let leaf = conn.peer_certificates().expect("certs")[0].clone();
        let (_, parsed) = x509_parser::parse_x509_certificate(&leaf).expect("x509");
        let ext = parsed
            .extensions()
            .iter()
            .find(|e| e.oid.to_id_string() == "1.3.6.1.5.5.7.1.31")
            .expect("acmeIdentifier extension");
        assert!(ext.critical);
        // DER OCTET STRING (0x04, length 32) around the digest.
        assert_eq!(&ext.value[..2], &[0x04, 32]);
        assert_eq!(&ext.value[2..], &digest());
        assert!(matches!(server.await.expect("join"), Peeked::Answered));
    }

    #[tokio::test]
    async fn a_validation_for_a_name_not_pending_fails() {
        let config = validation_config(pending_a_test()).expect("config");
        let (addr, server) = spawn_server(config).await;
        let tcp = TcpStream::connect(addr).await.expect("connect");
        let name = ServerName::try_from("b.test").expect("name");
        assert!(client(&[ACME_TLS_ALPN]).connect(name, tcp).await.is_err());
        assert!(matches!(server.await.expect("join"), Peeked::Answered));
    }

    #[tokio::test]
    async fn other_clients_get_every_byte_back_and_nothing_written() {
        let config = validation_config(pending_a_test()).expect("config");

        // An ordinary browser-like ClientHello (h2, http/1.1) for the same
        // name, as rustls would send it.
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut cfg = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("versions")
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCert))
            .with_no_client_auth();
        cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        let name = ServerName::try_from("a.test").expect("name");
        let mut conn = rustls::ClientConnection::new(Arc::new(cfg), name).expect("client");
        let mut hello = Vec::new();
        conn.write_tls(&mut hello).expect("hello");

        let (addr, server) = spawn_server(config.clone()).await;
        let mut tcp = TcpStream::connect(addr).await.expect("connect");
        tcp.write_all(&hello).await.expect("write");
        let Peeked::NotAcme(seen) = server.await.expect("join") else {
            panic!("an h2 ClientHello is not a validation")
        };
        assert_eq!(seen, hello, "exactly the ClientHello, byte for byte");
        // The server side closed without writing anything (no alert).
        let mut buf = [0u8; 1];
        assert_eq!(tcp.read(&mut buf).await.expect("eof"), 0);

        // Not TLS at all: handed back byte for byte.
        let (addr, server) = spawn_server(config).await;
        let mut tcp = TcpStream::connect(addr).await.expect("connect");
        let request = b"GET / HTTP/1.1\r\nHost: a.test\r\n\r\n";
        tcp.write_all(request).await.expect("write");
        let Peeked::NotAcme(seen) = server.await.expect("join") else {
            panic!("plain HTTP is not a validation")
        };
        assert_eq!(seen, request);
        let mut buf = [0u8; 1];
        // The server side is gone without having written anything.
        assert_eq!(tcp.read(&mut buf).await.expect("eof"), 0);
    }

    #[test]
    fn a_digest_of_the_wrong_size_is_an_error_not_a_panic() {
        assert!(challenge_cert("a.test", &[0u8; 31]).is_err());
    }
}
