//! A throw-away certificate authority and a server certificate signed by it.

use std::path::PathBuf;
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, PKCS_ECDSA_P256_SHA256,
};
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// Names every leaf certificate is valid for.
pub const DEFAULT_NAMES: [&str; 3] = ["localhost", "127.0.0.1", "::1"];

/// A CA and one leaf (server) certificate, as PEM strings and as files in
/// `dir`:
/// - `ca.pem`: the CA certificate (what clients trust);
/// - `cert.pem`: the leaf certificate only (no chain; clients trust the CA
///   directly, so no intermediate is needed);
/// - `key.pem`: the leaf's PKCS#8 private key.
///
/// All keys are ECDSA P-256. The files live as long as the `TestPki`.
pub struct TestPki {
    pub dir: tempfile::TempDir,
    pub ca_pem: String,
    pub cert_pem: String,
    pub key_pem: String,
    pub ca_path: PathBuf,
    pub cert_path: PathBuf,
    pub key_path: PathBuf,
}

impl TestPki {
    /// A leaf for `localhost`, `127.0.0.1` and `::1`.
    pub fn new() -> TestPki {
        TestPki::with_names(&[])
    }

    /// A leaf for the default names plus `extra` (DNS names or IP addresses).
    pub fn with_names(extra: &[&str]) -> TestPki {
        let ca_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).expect("CA key");
        let ca_params = ca_params();
        let ca_cert = ca_params.self_signed(&ca_key).expect("self-sign CA");
        let issuer = Issuer::new(ca_params, ca_key);

        let names: Vec<String> = DEFAULT_NAMES
            .iter()
            .chain(extra)
            .map(|s| s.to_string())
            .collect();
        let leaf_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).expect("leaf key");
        let leaf_cert = leaf_params(names)
            .signed_by(&leaf_key, &issuer)
            .expect("sign leaf");

        let dir = tempfile::tempdir().expect("temp dir for PKI");
        let pki = TestPki {
            ca_path: dir.path().join("ca.pem"),
            cert_path: dir.path().join("cert.pem"),
            key_path: dir.path().join("key.pem"),
            ca_pem: ca_cert.pem(),
            cert_pem: leaf_cert.pem(),
            key_pem: leaf_key.serialize_pem(),
            dir,
        };
        std::fs::write(&pki.ca_path, &pki.ca_pem).unwrap();
        std::fs::write(&pki.cert_path, &pki.cert_pem).unwrap();
        std::fs::write(&pki.key_path, &pki.key_pem).unwrap();
        pki
    }

    /// A rustls server config presenting the leaf, offering `alpn` protocols
    /// (e.g. `&[b"h2", b"http/1.1"]`), for test servers.
    pub fn server_config(&self, alpn: &[&[u8]]) -> Arc<rustls::ServerConfig> {
        super::install_crypto_provider();
        let cert = CertificateDer::from_pem_slice(self.cert_pem.as_bytes()).unwrap();
        let key = PrivateKeyDer::from_pem_slice(self.key_pem.as_bytes()).unwrap();
        let mut config = rustls::ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(vec![cert], key)
            .expect("leaf cert and key match");
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Arc::new(config)
    }
}

impl Default for TestPki {
    fn default() -> Self {
        TestPki::new()
    }
}

fn ca_params() -> CertificateParams {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(DnType::CommonName, "portcullis test CA");
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params
}

fn leaf_params(names: Vec<String>) -> CertificateParams {
    let mut params = CertificateParams::new(names).expect("valid SAN names");
    params
        .distinguished_name
        .push(DnType::CommonName, "localhost");
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params
}
