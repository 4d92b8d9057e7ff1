//! Clients for talking to the gateway: reqwest for ordinary requests, raw
//! TLS/TCP for byte-exact requests a real client would refuse to send, and
//! WebSocket over TLS.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
use tokio_tungstenite::tungstenite;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::WebSocketStream;

/// How long raw reads wait before giving up.
const RAW_TIMEOUT: Duration = Duration::from_secs(10);

/// A reqwest client for `https://localhost:PORT/...` that trusts only
/// `ca_pem`, sends `localhost` to 127.0.0.1:`port`, follows no redirects and
/// uses no proxy. `http2 = true` offers h2 and http/1.1 via ALPN (the server
/// picks); `false` speaks HTTP/1.1 only. No cookie store: tests carry cookies
/// by hand. 30 s timeout per request.
pub fn https_client(ca_pem: &str, port: u16, http2: bool) -> reqwest::Client {
    super::install_crypto_provider();
    let ca = reqwest::Certificate::from_pem(ca_pem.as_bytes()).expect("CA PEM");
    let builder = reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(ca)
        .resolve("localhost", SocketAddr::from((Ipv4Addr::LOCALHOST, port)))
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .timeout(Duration::from_secs(30));
    let builder = if http2 { builder } else { builder.http1_only() };
    builder.build().expect("build reqwest client")
}

/// A reqwest client for the plain listeners (http redirect, ops), no
/// redirects followed, HTTP/1.1 only.
pub fn http_client(port: u16) -> reqwest::Client {
    reqwest::Client::builder()
        .resolve("localhost", SocketAddr::from((Ipv4Addr::LOCALHOST, port)))
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .http1_only()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("build reqwest client")
}

/// A response read off the wire.
#[derive(Clone, Debug, Default)]
pub struct RawResponse {
    pub status: u16,
    /// Names as sent (case kept), in order, duplicates kept.
    pub headers: Vec<(String, String)>,
    /// De-chunked when the response was chunked.
    pub body: Vec<u8>,
    /// Every byte read, interim (1xx) responses included.
    pub raw: Vec<u8>,
}

impl RawResponse {
    /// First value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.header_all(name).into_iter().next()
    }

    /// Every value of header `name` (case-insensitive).
    pub fn header_all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    pub fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {}", self.body_text()))
    }
}

/// rustls client config trusting only `ca_pem`, offering `alpn`.
pub fn tls_client_config(ca_pem: &str, alpn: &[&[u8]]) -> Arc<rustls::ClientConfig> {
    super::install_crypto_provider();
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(cert.expect("CA PEM")).expect("add CA");
    }
    let mut config = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(config)
}

/// A TLS connection to 127.0.0.1:`port` with SNI `sni` (a DNS name or an IP
/// address, which sends no SNI), verified against `ca_pem`.
pub async fn tls_connect(
    port: u16,
    ca_pem: &str,
    sni: &str,
    alpn: &[&[u8]],
) -> std::io::Result<TlsStream<TcpStream>> {
    let connector = tokio_rustls::TlsConnector::from(tls_client_config(ca_pem, alpn));
    let name = ServerName::try_from(sni.to_string())
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    let tcp = TcpStream::connect((Ipv4Addr::LOCALHOST, port)).await?;
    connector.connect(name, tcp).await
}

/// Sends `request` verbatim over TLS (ALPN http/1.1) and reads one response:
/// up to its Content-Length, its last chunk, or EOF. Panics on connection
/// errors or after 10 s without a complete response.
pub async fn raw_tls(port: u16, ca_pem: &str, sni: &str, request: &[u8]) -> RawResponse {
    let mut stream = tls_connect(port, ca_pem, sni, &[b"http/1.1"])
        .await
        .unwrap_or_else(|e| panic!("TLS connect to 127.0.0.1:{port} as {sni}: {e}"));
    stream.write_all(request).await.expect("write request");
    stream.flush().await.expect("flush request");
    read_response(&mut stream, is_head(request)).await
}

/// `raw_tls` for the plain listener (or any plain HTTP/1.1 server).
pub async fn raw_tcp(port: u16, request: &[u8]) -> RawResponse {
    let mut stream = TcpStream::connect((Ipv4Addr::LOCALHOST, port))
        .await
        .unwrap_or_else(|e| panic!("connect to 127.0.0.1:{port}: {e}"));
    stream.write_all(request).await.expect("write request");
    read_response(&mut stream, is_head(request)).await
}

fn is_head(request: &[u8]) -> bool {
    request.starts_with(b"HEAD ")
}

/// Reads until one final (non-1xx, or 101) response is complete.
pub async fn read_response<S: AsyncRead + Unpin>(stream: &mut S, head: bool) -> RawResponse {
    let mut raw = Vec::new();
    let mut eof = false;
    let read_all = async {
        loop {
            if let Some(resp) = parse_response(&raw, head, eof) {
                return resp;
            }
            if eof {
                panic!(
                    "connection closed before a complete response:\n{}",
                    String::from_utf8_lossy(&raw)
                );
            }
            let mut buf = [0u8; 16 * 1024];
            match stream.read(&mut buf).await {
                Ok(0) => eof = true,
                Ok(n) => raw.extend_from_slice(&buf[..n]),
                // A peer that closes without TLS close_notify: treat as EOF.
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => eof = true,
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => eof = true,
                Err(e) => panic!("read response: {e}"),
            }
        }
    };
    match tokio::time::timeout(RAW_TIMEOUT, read_all).await {
        Ok(resp) => resp,
        Err(_) => panic!("no complete response within {RAW_TIMEOUT:?}"),
    }
}

/// Parses `raw` as (1xx responses then) one response; `None` while more
/// bytes are needed. At `eof`, an unframed body ends where the bytes end.
pub fn parse_response(raw: &[u8], head: bool, eof: bool) -> Option<RawResponse> {
    let mut start = 0;
    loop {
        let header_end = find(&raw[start..], b"\r\n\r\n")? + start;
        let head_text = String::from_utf8_lossy(&raw[start..header_end]).into_owned();
        let mut lines = head_text.split("\r\n");
        let status: u16 = lines.next()?.split(' ').nth(1)?.parse().ok()?;
        let headers: Vec<(String, String)> = lines
            .filter_map(|line| line.split_once(':'))
            .map(|(n, v)| (n.trim().to_string(), v.trim().to_string()))
            .collect();
        let body_start = header_end + 4;
        if (100..200).contains(&status) && status != 101 {
            start = body_start;
            continue;
        }
        let mut resp = RawResponse {
            status,
            headers,
            raw: raw.to_vec(),
            ..RawResponse::default()
        };
        let rest = &raw[body_start..];
        let no_body = head || status == 101 || status == 204 || status == 304;
        resp.body = if no_body {
            Vec::new()
        } else if resp
            .header("transfer-encoding")
            .is_some_and(|te| te.to_ascii_lowercase().contains("chunked"))
        {
            dechunk(rest)?
        } else if let Some(len) = resp.header("content-length") {
            let len: usize = len.parse().ok()?;
            rest.get(..len)?.to_vec()
        } else if eof {
            rest.to_vec()
        } else {
            return None;
        };
        return Some(resp);
    }
}

/// Decodes a complete chunked body; `None` until the last chunk has arrived.
fn dechunk(mut data: &[u8]) -> Option<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let line_end = find(data, b"\r\n")?;
        let size_text = String::from_utf8_lossy(&data[..line_end]);
        let size_hex = size_text.split(';').next()?.trim();
        let size = usize::from_str_radix(size_hex, 16).ok()?;
        data = &data[line_end + 2..];
        if size == 0 {
            // Trailers (usually none) end with an empty line.
            find(data, b"\r\n")?;
            return Some(body);
        }
        body.extend_from_slice(data.get(..size)?);
        data = data.get(size + 2..)?;
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

pub type WsTls = WebSocketStream<TlsStream<TcpStream>>;

/// A WebSocket over TLS to `wss://localhost:PORT{path}`; panics on failure.
pub async fn websocket_tls(port: u16, ca_pem: &str, path: &str) -> WsTls {
    websocket_tls_with(port, ca_pem, path, &[])
        .await
        .unwrap_or_else(|e| panic!("WebSocket to {path}: {e}"))
}

/// `websocket_tls` with extra request headers (e.g. a session cookie), and
/// the handshake error returned (e.g. `Http(response)` for a 401).
pub async fn websocket_tls_with(
    port: u16,
    ca_pem: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> Result<WsTls, tungstenite::Error> {
    let mut request = format!("wss://localhost:{port}{path}").into_client_request()?;
    for (name, value) in headers {
        let name = tungstenite::http::HeaderName::from_bytes(name.as_bytes()).expect("header name");
        let value = tungstenite::http::HeaderValue::from_str(value).expect("header value");
        request.headers_mut().append(name, value);
    }
    let stream = tls_connect(port, ca_pem, "localhost", &[b"http/1.1"]).await?;
    let (ws, _response) = tokio_tungstenite::client_async(request, stream).await?;
    Ok(ws)
}

/// A WebSocket over plain TCP to `ws://127.0.0.1:PORT{path}`.
pub async fn websocket_tcp(port: u16, path: &str) -> WebSocketStream<TcpStream> {
    let request = format!("ws://127.0.0.1:{port}{path}");
    let stream = TcpStream::connect((Ipv4Addr::LOCALHOST, port))
        .await
        .expect("connect");
    let (ws, _response) = tokio_tungstenite::client_async(request, stream)
        .await
        .unwrap_or_else(|e| panic!("WebSocket to {path}: {e}"));
    ws
}

/// The leaf certificate a TLS handshake with SNI `name` gets, as DER.
pub async fn served_leaf(port: u16, name: &str) -> Vec<u8> {
    use std::sync::Arc;
    super::install_crypto_provider();
    // Verification is not the point here (the issuance test does it): only
    // which certificate is served.
    #[derive(Debug)]
    struct AnyCert;
    impl rustls::client::danger::ServerCertVerifier for AnyCert {
        fn verify_server_cert(
            &self,
            _: &rustls::pki_types::CertificateDer<'_>,
            _: &[rustls::pki_types::CertificateDer<'_>],
            _: &rustls::pki_types::ServerName<'_>,
            _: &[u8],
            _: rustls::pki_types::UnixTime,
        ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
            Ok(rustls::client::danger::ServerCertVerified::assertion())
        }
        fn verify_tls12_signature(
            &self,
            _: &[u8],
            _: &rustls::pki_types::CertificateDer<'_>,
            _: &rustls::DigitallySignedStruct,
        ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
            Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
        }
        fn verify_tls13_signature(
            &self,
            _: &[u8],
            _: &rustls::pki_types::CertificateDer<'_>,
            _: &rustls::DigitallySignedStruct,
        ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
            Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
        }
        fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
            rustls::crypto::ring::default_provider()
                .signature_verification_algorithms
                .supported_schemes()
        }
    }
    let config = rustls::ClientConfig::builder()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCert))
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    let server_name = rustls::pki_types::ServerName::try_from(name.to_string()).expect("name");
    let tls = connector
        .connect(server_name, tcp)
        .await
        .expect("handshake");
    let (_, conn) = tls.get_ref();
    conn.peer_certificates()
        .and_then(|c| c.first())
        .map(|c| c.as_ref().to_vec())
        .expect("a certificate")
}
