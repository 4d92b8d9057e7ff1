//! The SNI resolver: an immutable name → certificate map behind an `ArcSwap`,
//! so renewal or reload can swap certificates without touching the listener.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

pub use crate::loaded::Loaded;

/// Immutable SNI map: exact names, `*.example.com` wildcards (one label), and a default.
///
/// Built once per reload so that the handshake path only does lookups.
#[derive(Debug, Default)]
pub struct CertSet {
    certs: Vec<Loaded>,
    /// Exact name → index into `certs`.
    exact: HashMap<String, usize>,
    /// Wildcard suffix (`example.com` for `*.example.com`) → index into `certs`.
    wildcard: HashMap<String, usize>,
}

impl CertSet {
    /// Index `certs`. The first certificate is the default for clients without
    /// SNI or with an unknown name; when two certificates claim a name, the
    /// earlier one wins so the outcome does not depend on hashing.
    pub fn new(certs: Vec<Loaded>) -> Self {
        let mut exact = HashMap::new();
        let mut wildcard = HashMap::new();
        for (index, cert) in certs.iter().enumerate() {
            for name in &cert.names {
                let name = normalize(name);
                match name.strip_prefix("*.") {
                    Some(suffix) if !suffix.is_empty() => {
                        wildcard.entry(suffix.to_owned()).or_insert(index);
                    }
                    _ => {
                        exact.entry(name.into_owned()).or_insert(index);
                    }
                }
            }
        }
        Self {
            certs,
            exact,
            wildcard,
        }
    }

    /// The certificate for `server_name` (SNI): exact match, then a wildcard
    /// covering exactly one more label, then the default. `None` only when
    /// the set is empty.
    pub fn get(&self, server_name: Option<&str>) -> Option<Arc<CertifiedKey>> {
        let index = server_name
            .and_then(|name| self.lookup(&normalize(name)))
            .unwrap_or(0);
        self.certs.get(index).map(|c| Arc::clone(&c.certified))
    }

    /// All certificates, the default first.
    pub fn certs(&self) -> &[Loaded] {
        &self.certs
    }

    /// True when there is no certificate at all (handshakes will fail).
    pub fn is_empty(&self) -> bool {
        self.certs.is_empty()
    }

    fn lookup(&self, name: &str) -> Option<usize> {
        if let Some(&index) = self.exact.get(name) {
            return Some(index);
        }
        let (first, rest) = name.split_once('.')?;
        if first.is_empty() || rest.is_empty() {
            return None;
        }
        self.wildcard.get(rest).copied()
    }
}

/// Lowercase and drop one trailing dot, allocating only when a letter is uppercase.
fn normalize(name: &str) -> Cow<'_, str> {
    let name = name.strip_suffix('.').unwrap_or(name);
    if name.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(name.to_ascii_lowercase())
    } else {
        Cow::Borrowed(name)
    }
}

/// rustls `ResolvesServerCert` over an `ArcSwap<CertSet>`: `replace` swaps
/// atomically and the next handshake sees it, while handshakes in flight
/// keep the set they started with.
#[derive(Debug)]
pub struct Resolver {
    set: ArcSwap<CertSet>,
}

impl Resolver {
    /// A resolver serving `set`.
    pub fn new(set: CertSet) -> Self {
        Self {
            set: ArcSwap::from_pointee(set),
        }
    }

    /// Serve `set` from the next handshake on.
    pub fn replace(&self, set: CertSet) {
        self.set.store(Arc::new(set));
    }

    /// The set being served now (e.g. to check expiry or to extend it).
    pub fn current(&self) -> Arc<CertSet> {
        self.set.load_full()
    }
}

impl ResolvesServerCert for Resolver {
    fn resolve(&self, client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let found = self.set.load().get(client_hello.server_name());
        if found.is_none() {
            // Debug, not warn: every refused handshake would log otherwise.
            tracing::debug!(
                sni = client_hello.server_name(),
                "no TLS certificate loaded; handshake refused"
            );
        }
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::self_signed::generate;
    use rustls::pki_types::{CertificateDer, ServerName};
    use rustls::{ClientConfig, ClientConnection, RootCertStore, ServerConfig, ServerConnection};

    fn cert(names: &[&str]) -> Loaded {
        let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        generate(&names).expect("generate")
    }

    fn leaf(key: &CertifiedKey) -> &CertificateDer<'static> {
        &key.cert[0]
    }

    fn is(got: Option<Arc<CertifiedKey>>, want: &Loaded) -> bool {
        got.is_some_and(|g| leaf(&g) == leaf(&want.certified))
    }

    fn sample() -> (CertSet, [Loaded; 3]) {
        let default = cert(&["default.test", "127.0.0.1"]);
        let app = cert(&["app.example.com", "Other.Example.com"]);
        let wild = cert(&["*.example.com"]);
        let set = CertSet::new(vec![default.clone(), app.clone(), wild.clone()]);
        (set, [default, app, wild])
    }

    #[test]
    fn exact_case_insensitive_and_trailing_dot() {
        let (set, [_, app, _]) = sample();
        assert!(is(set.get(Some("app.example.com")), &app));
        assert!(is(set.get(Some("APP.Example.COM")), &app));
        assert!(is(set.get(Some("app.example.com.")), &app));
        // Names in the certificate are normalized too.
        assert!(is(set.get(Some("other.example.com")), &app));
    }

    #[test]
    fn wildcard_covers_one_label_only() {
        let (set, [default, app, wild]) = sample();
        assert!(is(set.get(Some("x.example.com")), &wild));
        assert!(is(set.get(Some("X.EXAMPLE.COM.")), &wild));
        // Exact beats wildcard.
        assert!(is(set.get(Some("app.example.com")), &app));
        // Two labels, or the bare domain, fall back to the default.
        assert!(is(set.get(Some("a.b.example.com")), &default));
        assert!(is(set.get(Some("example.com")), &default));
        assert!(is(set.get(Some(".example.com")), &default));
    }

    #[test]
    fn default_for_no_sni_or_unknown_name() {
        let (set, [default, _, _]) = sample();
        assert!(is(set.get(None), &default));
        assert!(is(set.get(Some("unknown.test")), &default));
        assert!(is(set.get(Some("")), &default));
        assert_eq!(set.certs().len(), 3);
    }

    #[test]
    fn first_claim_wins() {
        let a = cert(&["same.test"]);
        let b = cert(&["same.test"]);
        let set = CertSet::new(vec![a.clone(), b]);
        assert!(is(set.get(Some("same.test")), &a));
    }

    #[test]
    fn empty_set_resolves_nothing() {
        let set = CertSet::new(Vec::new());
        assert!(set.is_empty());
        assert!(set.get(None).is_none());
        assert!(set.get(Some("app.example.com")).is_none());
        assert!(CertSet::default().get(None).is_none());
    }

    fn provider() -> Arc<rustls::crypto::CryptoProvider> {
        Arc::new(rustls::crypto::ring::default_provider())
    }

    fn server_config(resolver: Arc<Resolver>) -> Arc<ServerConfig> {
        let config = ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .expect("tls13")
            .with_no_client_auth()
            .with_cert_resolver(resolver);
        Arc::new(config)
    }

    /// Run a TLS 1.3 handshake in memory and return the leaf the client saw,
    /// or the error either side hit.
    fn handshake(
        server: &Arc<ServerConfig>,
        trusted: &[&Loaded],
        name: &str,
    ) -> Result<CertificateDer<'static>, rustls::Error> {
        let mut roots = RootCertStore::empty();
        for t in trusted {
            roots.add(leaf(&t.certified).clone()).expect("root");
        }
        let client_config = ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .expect("tls13")
            .with_root_certificates(roots)
            .with_no_client_auth();
        let server_name = ServerName::try_from(name.to_owned()).expect("server name");
        let mut client = ClientConnection::new(Arc::new(client_config), server_name)?;
        let mut server = ServerConnection::new(Arc::clone(server))?;

        for _ in 0..20 {
            if !client.is_handshaking() && !server.is_handshaking() {
                break;
            }
            let mut buf = Vec::new();
            while client.wants_write() {
                client.write_tls(&mut buf).expect("client write");
            }
            let mut rd = &buf[..];
            while !rd.is_empty() {
                server.read_tls(&mut rd).expect("server read");
                server.process_new_packets()?;
            }
            let mut buf = Vec::new();
            while server.wants_write() {
                server.write_tls(&mut buf).expect("server write");
            }
            let mut rd = &buf[..];
            while !rd.is_empty() {
                client.read_tls(&mut rd).expect("client read");
                client.process_new_packets()?;
            }
        }
        assert!(!client.is_handshaking(), "handshake did not finish");
        assert_eq!(
            client.protocol_version(),
            Some(rustls::ProtocolVersion::TLSv1_3)
        );
        let peer = client.peer_certificates().expect("peer certs");
        Ok(peer[0].clone())
    }

    #[test]
    fn tls13_handshake_serves_certificate_per_sni() {
        let (set, [default, app, wild]) = sample();
        let trusted = [&default, &app, &wild];
        let resolver = Arc::new(Resolver::new(set));
        let server = server_config(Arc::clone(&resolver));

        let got = handshake(&server, &trusted, "app.example.com").expect("app");
        assert_eq!(&got, leaf(&app.certified));
        let got = handshake(&server, &trusted, "x.example.com").expect("wildcard");
        assert_eq!(&got, leaf(&wild.certified));
        // An IP server name sends no SNI: the default answers.
        let got = handshake(&server, &trusted, "127.0.0.1").expect("default");
        assert_eq!(&got, leaf(&default.certified));
        let got = handshake(&server, &trusted, "default.test").expect("default by name");
        assert_eq!(&got, leaf(&default.certified));
    }

    #[test]
    fn replace_is_seen_by_next_handshake() {
        let first = cert(&["app.example.com"]);
        let second = cert(&["app.example.com"]);
        let trusted = [&first, &second];
        let resolver = Arc::new(Resolver::new(CertSet::new(vec![first.clone()])));
        let server = server_config(Arc::clone(&resolver));

        let got = handshake(&server, &trusted, "app.example.com").expect("first");
        assert_eq!(&got, leaf(&first.certified));

        resolver.replace(CertSet::new(vec![second.clone()]));
        assert!(is(resolver.current().get(None), &second));
        let got = handshake(&server, &trusted, "app.example.com").expect("second");
        assert_eq!(&got, leaf(&second.certified));
    }

    #[test]
    fn empty_resolver_refuses_handshake() {
        let only = cert(&["app.example.com"]);
        let resolver = Arc::new(Resolver::new(CertSet::default()));
        let server = server_config(resolver);
        assert!(handshake(&server, &[&only], "app.example.com").is_err());
    }
}
