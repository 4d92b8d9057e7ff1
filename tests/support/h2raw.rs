//! Raw HTTP/2 frames over TLS (ALPN h2), for attacks and conformance checks a
//! real client library would never send. Not part of `support/mod.rs`: the
//! files that need it include it with `#[path = "support/h2raw.rs"] mod h2raw;`.
#![allow(dead_code)]

use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};

pub const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

pub const DATA: u8 = 0x0;
pub const HEADERS: u8 = 0x1;
pub const PRIORITY: u8 = 0x2;
pub const RST_STREAM: u8 = 0x3;
pub const SETTINGS: u8 = 0x4;
pub const PING: u8 = 0x6;
pub const GOAWAY: u8 = 0x7;
pub const WINDOW_UPDATE: u8 = 0x8;
pub const CONTINUATION: u8 = 0x9;

pub const END_STREAM: u8 = 0x1;
pub const ACK: u8 = 0x1;
pub const END_HEADERS: u8 = 0x4;

pub const NO_ERROR: u32 = 0x0;
pub const PROTOCOL_ERROR: u32 = 0x1;
pub const FLOW_CONTROL_ERROR: u32 = 0x3;
pub const STREAM_CLOSED: u32 = 0x5;
pub const FRAME_SIZE_ERROR: u32 = 0x6;
pub const REFUSED_STREAM: u32 = 0x7;
pub const CANCEL: u32 = 0x8;
pub const COMPRESSION_ERROR: u32 = 0x9;
pub const ENHANCE_YOUR_CALM: u32 = 0xb;

/// One frame as read off the wire.
#[derive(Clone, Debug)]
pub struct Frame {
    pub ty: u8,
    pub flags: u8,
    pub stream: u32,
    pub payload: Vec<u8>,
}

impl Frame {
    /// The error code of a GOAWAY or RST_STREAM.
    pub fn error_code(&self) -> Option<u32> {
        let at = match self.ty {
            GOAWAY => 4,
            RST_STREAM => 0,
            _ => return None,
        };
        let b = self.payload.get(at..at + 4)?;
        Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
}

/// What the server did next.
#[derive(Debug)]
pub enum Event {
    Frame(Frame),
    /// EOF, reset, or a TLS error: the connection is gone.
    Closed,
    /// Nothing within the wait.
    Silent,
}

/// Encodes a frame.
pub fn frame(ty: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut out = Vec::with_capacity(9 + payload.len());
    out.extend_from_slice(&len.to_be_bytes()[1..]);
    out.push(ty);
    out.push(flags);
    out.extend_from_slice(&(stream & 0x7fff_ffff).to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// A SETTINGS payload from (identifier, value) pairs.
pub fn settings(pairs: &[(u16, u32)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (id, value) in pairs {
        out.extend_from_slice(&id.to_be_bytes());
        out.extend_from_slice(&value.to_be_bytes());
    }
    out
}

/// HPACK integer with an `prefix`-bit prefix; `first` holds the high bits.
pub fn hpack_int(first: u8, prefix: u32, mut value: usize, out: &mut Vec<u8>) {
    let max = (1usize << prefix) - 1;
    if value < max {
        out.push(first | value as u8);
        return;
    }
    out.push(first | max as u8);
    value -= max;
    while value >= 128 {
        out.push((value % 128 + 128) as u8);
        value /= 128;
    }
    out.push(value as u8);
}

fn hpack_string(s: &[u8], out: &mut Vec<u8>) {
    hpack_int(0, 7, s.len(), out);
    out.extend_from_slice(s);
}

/// Literal header field without indexing, new name (no Huffman).
pub fn hpack_literal(name: &[u8], value: &[u8]) -> Vec<u8> {
    let mut out = vec![0x00];
    hpack_string(name, &mut out);
    hpack_string(value, &mut out);
    out
}

/// Literal header field with incremental indexing, new name (enters the
/// dynamic table at index 62).
pub fn hpack_literal_indexed(name: &[u8], value: &[u8]) -> Vec<u8> {
    let mut out = vec![0x40];
    hpack_string(name, &mut out);
    hpack_string(value, &mut out);
    out
}

/// Literal without indexing whose name is static-table entry `index`.
pub fn hpack_literal_name(index: usize, value: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    hpack_int(0x00, 4, index, &mut out);
    hpack_string(value, &mut out);
    out
}

/// `GET https://localhost{path}` as a header block.
pub fn get_block(path: &str) -> Vec<u8> {
    let mut out = vec![0x82, 0x87]; // :method GET, :scheme https
    out.extend(hpack_literal_name(4, path.as_bytes())); // :path
    out.extend(hpack_literal_name(1, b"localhost")); // :authority
    out
}

/// A TLS connection that negotiated h2, with the preface and an empty SETTINGS sent.
pub struct H2Conn {
    pub tls: TlsStream<TcpStream>,
    buf: Vec<u8>,
}

fn client_config(ca_pem: &str) -> Arc<rustls::ClientConfig> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(cert.expect("CA PEM")).expect("add CA");
    }
    let mut config = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec()];
    Arc::new(config)
}

impl H2Conn {
    /// TLS with ALPN h2 only; panics unless the server picked h2.
    pub async fn open(port: u16, ca_pem: &str) -> H2Conn {
        let conn = H2Conn::open_bare(port, ca_pem).await;
        let mut conn = conn;
        let mut hello = PREFACE.to_vec();
        hello.extend(frame(SETTINGS, 0, 0, &[]));
        conn.send(&hello).await.expect("send preface");
        conn
    }

    /// TLS with ALPN h2, nothing sent yet.
    pub async fn open_bare(port: u16, ca_pem: &str) -> H2Conn {
        let connector = tokio_rustls::TlsConnector::from(client_config(ca_pem));
        let tcp = TcpStream::connect((Ipv4Addr::LOCALHOST, port))
            .await
            .expect("connect");
        let name = ServerName::try_from("localhost").unwrap();
        let tls = connector.connect(name, tcp).await.expect("TLS handshake");
        assert_eq!(
            tls.get_ref().1.alpn_protocol(),
            Some(&b"h2"[..]),
            "server did not negotiate h2"
        );
        H2Conn {
            tls,
            buf: Vec::new(),
        }
    }

    pub async fn send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.tls.write_all(bytes).await?;
        self.tls.flush().await
    }

    /// The next frame, or `Closed`/`Silent` after `wait`.
    pub async fn next(&mut self, wait: Duration) -> Event {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            if self.buf.len() >= 9 {
                let len = u32::from_be_bytes([0, self.buf[0], self.buf[1], self.buf[2]]) as usize;
                if self.buf.len() >= 9 + len {
                    let f = Frame {
                        ty: self.buf[3],
                        flags: self.buf[4],
                        stream: u32::from_be_bytes([
                            self.buf[5],
                            self.buf[6],
                            self.buf[7],
                            self.buf[8],
                        ]) & 0x7fff_ffff,
                        payload: self.buf[9..9 + len].to_vec(),
                    };
                    self.buf.drain(..9 + len);
                    return Event::Frame(f);
                }
            }
            let mut chunk = [0u8; 16 * 1024];
            match tokio::time::timeout_at(deadline, self.tls.read(&mut chunk)).await {
                Err(_) => return Event::Silent,
                Ok(Ok(0)) | Ok(Err(_)) => return Event::Closed,
                Ok(Ok(n)) => self.buf.extend_from_slice(&chunk[..n]),
            }
        }
    }

    /// Reads frames until `pick` returns `Some`, the connection closes
    /// (`None`), or `wait` passes (`None`). PINGs are not answered.
    pub async fn wait_for<T>(
        &mut self,
        wait: Duration,
        mut pick: impl FnMut(&Frame) -> Option<T>,
    ) -> Option<T> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.next(left).await {
                Event::Frame(f) => {
                    if let Some(t) = pick(&f) {
                        return Some(t);
                    }
                }
                Event::Closed | Event::Silent => return None,
            }
        }
    }

    /// The GOAWAY error code the server sends next (frames before it are
    /// skipped); `None` if it closes or goes silent without one.
    pub async fn goaway(&mut self, wait: Duration) -> Option<u32> {
        self.wait_for(wait, |f| (f.ty == GOAWAY).then(|| f.error_code()).flatten())
            .await
    }

    /// True once the connection is closed (reads reach EOF) within `wait`,
    /// whatever frames came before.
    pub async fn closed_within(&mut self, wait: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.next(left).await {
                Event::Frame(_) => continue,
                Event::Closed => return true,
                Event::Silent => return false,
            }
        }
    }
}
