//! Certificates from PEM files (`[tls] mode = "files"`), and the parsing
//! every other source shares, so all certificates are checked the same way.

use std::io;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::{self, PemObject};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::error::CertError;
use crate::loaded::Loaded;

/// Load a PEM chain (leaf first) and its PEM private key (PKCS#8, PKCS#1 or
/// SEC1). Both may live in the same file.
///
/// Fails when a file is missing or unreadable, holds no certificate or key,
/// or the key does not belong to the leaf. An expired certificate loads: the
/// caller sees `not_after` and decides.
pub fn load(cert_path: &Path, key_path: &Path) -> Result<Loaded, CertError> {
    let cert_pem = read(cert_path)?;
    let key_pem = read(key_path)?;
    from_pem(&cert_pem, cert_path, &key_pem, key_path)
}

/// Like [`load`], over PEM already in memory; the paths only label errors.
pub fn from_pem(
    cert_pem: &[u8],
    cert_path: &Path,
    key_pem: &[u8],
    key_path: &Path,
) -> Result<Loaded, CertError> {
    let chain = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_error(cert_path, e))?;
    let key = match PrivateKeyDer::from_pem_slice(key_pem) {
        Ok(key) => key,
        Err(pem::Error::NoItemsFound) => {
            return Err(CertError::NoKey {
                path: key_path.to_owned(),
            })
        }
        Err(e) => return Err(pem_error(key_path, e)),
    };
    from_der(chain, cert_path, key, key_path)
}

/// Build a [`Loaded`] from DER: the chain (leaf first) and its private key.
pub(crate) fn from_der(
    chain: Vec<CertificateDer<'static>>,
    cert_path: &Path,
    key: PrivateKeyDer<'static>,
    key_path: &Path,
) -> Result<Loaded, CertError> {
    let Some(leaf) = chain.first() else {
        return Err(CertError::NoCertificate {
            path: cert_path.to_owned(),
        });
    };
    let (names, not_before, not_after) =
        inspect(leaf).map_err(|reason| CertError::BadCertificate {
            path: cert_path.to_owned(),
            reason,
        })?;

    let signing_key = rustls::crypto::ring::sign::any_supported_type(&key).map_err(|e| {
        CertError::UnsupportedKey {
            path: key_path.to_owned(),
            reason: e.to_string(),
        }
    })?;
    let certified = CertifiedKey::new(chain, signing_key);
    match certified.keys_match() {
        Ok(()) => {}
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch)) => {
            return Err(CertError::KeyMismatch {
                cert: cert_path.to_owned(),
                key: key_path.to_owned(),
            })
        }
        // ring keys always expose their public key, so `Unknown` does not
        // happen; any other error means webpki rejected the leaf.
        Err(e) => {
            return Err(CertError::BadCertificate {
                path: cert_path.to_owned(),
                reason: e.to_string(),
            })
        }
    }

    Ok(Loaded {
        certified: Arc::new(certified),
        names,
        not_before,
        not_after,
    })
}

/// Read a whole file, telling "missing" apart from "unreadable".
fn read(path: &Path) -> Result<Vec<u8>, CertError> {
    std::fs::read(path).map_err(|source| match source.kind() {
        io::ErrorKind::NotFound => CertError::NotFound {
            path: path.to_owned(),
        },
        _ => CertError::Read {
            path: path.to_owned(),
            source,
        },
    })
}

fn pem_error(path: &Path, e: pem::Error) -> CertError {
    let path: PathBuf = path.to_owned();
    match e {
        pem::Error::NoItemsFound => CertError::NoCertificate { path },
        other => CertError::Pem {
            path,
            reason: other.to_string(),
        },
    }
}

/// Names (DNS SANs lowercased, IP SANs as text; the CN only without either)
/// and the validity period of a leaf certificate.
fn inspect(leaf: &CertificateDer<'_>) -> Result<(Vec<String>, SystemTime, SystemTime), String> {
    let (_, x509) = X509Certificate::from_der(leaf.as_ref()).map_err(|e| e.to_string())?;

    let mut names = Vec::new();
    let san = x509.subject_alternative_name().map_err(|e| e.to_string())?;
    for general in san.iter().flat_map(|ext| &ext.value.general_names) {
        match general {
            GeneralName::DNSName(dns) => push_unique(&mut names, dns.to_ascii_lowercase()),
            GeneralName::IPAddress(bytes) => {
                if let Some(ip) = ip_from_bytes(bytes) {
                    push_unique(&mut names, ip.to_string());
                }
            }
            _ => {}
        }
    }
    if names.is_empty() {
        // Legacy certificates without SANs: clients may still accept the CN.
        let cn = x509.subject().iter_common_name().next();
        if let Some(cn) = cn.and_then(|cn| cn.as_str().ok()) {
            names.push(cn.to_ascii_lowercase());
        }
    }

    let not_before = system_time(x509.validity().not_before.timestamp())
        .ok_or_else(|| "notBefore out of range".to_owned())?;
    let not_after = system_time(x509.validity().not_after.timestamp())
        .ok_or_else(|| "notAfter out of range".to_owned())?;
    Ok((names, not_before, not_after))
}

fn push_unique(names: &mut Vec<String>, name: String) {
    if !names.contains(&name) {
        names.push(name);
    }
}

fn ip_from_bytes(bytes: &[u8]) -> Option<IpAddr> {
    match bytes.len() {
        4 => <[u8; 4]>::try_from(bytes).ok().map(IpAddr::from),
        16 => <[u8; 16]>::try_from(bytes).ok().map(IpAddr::from),
        _ => None,
    }
}

fn system_time(unix_secs: i64) -> Option<SystemTime> {
    let magnitude = Duration::from_secs(unix_secs.unsigned_abs());
    if unix_secs >= 0 {
        UNIX_EPOCH.checked_add(magnitude)
    } else {
        UNIX_EPOCH.checked_sub(magnitude)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{CertificateParams, KeyPair, PKCS_ECDSA_P256_SHA256};

    struct Pair {
        cert_pem: String,
        key_pem: String,
    }

    fn pair(names: &[&str]) -> Pair {
        let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).expect("key");
        let cert = CertificateParams::new(names)
            .expect("params")
            .self_signed(&key)
            .expect("cert");
        Pair {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        }
    }

    fn write(dir: &Path, name: &str, contents: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, contents).expect("write");
        path
    }

    #[test]
    fn loads_names_and_not_after() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = pair(&["App.Example.com", "*.example.com", "10.0.0.1", "::1"]);
        let cert = write(dir.path(), "cert.pem", &p.cert_pem);
        let key = write(dir.path(), "key.pem", &p.key_pem);

        let loaded = load(&cert, &key).expect("load");
        assert_eq!(
            loaded.names,
            ["app.example.com", "*.example.com", "10.0.0.1", "::1"]
        );
        // rcgen's default validity runs from 1975 to 4096.
        assert!(loaded.not_after > SystemTime::now() + Duration::from_secs(100 * 365 * 86400));
        assert_eq!(
            loaded.not_before,
            UNIX_EPOCH + Duration::from_secs(157_766_400)
        );
        assert_eq!(loaded.certified.cert.len(), 1);
    }

    #[test]
    fn cert_and_key_may_share_a_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = pair(&["app.example.com"]);
        let both = write(
            dir.path(),
            "both.pem",
            &format!("{}{}", p.key_pem, p.cert_pem),
        );
        let loaded = load(&both, &both).expect("load");
        assert_eq!(loaded.names, ["app.example.com"]);
    }

    #[test]
    fn missing_cert() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = pair(&["a.test"]);
        let key = write(dir.path(), "key.pem", &p.key_pem);
        let missing = dir.path().join("nope.pem");
        let err = load(&missing, &key).expect_err("missing");
        assert!(matches!(err, CertError::NotFound { ref path } if path == &missing));
        assert!(
            err.to_string().ends_with("nope.pem: file not found"),
            "{err}"
        );
    }

    #[test]
    fn missing_key() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = pair(&["a.test"]);
        let cert = write(dir.path(), "cert.pem", &p.cert_pem);
        let missing = dir.path().join("nope.key");
        let err = load(&cert, &missing).expect_err("missing");
        assert!(matches!(err, CertError::NotFound { ref path } if path == &missing));
    }

    #[test]
    fn unreadable_path_is_not_reported_as_missing() {
        let dir = tempfile::tempdir().expect("tempdir");
        // Reading a directory fails with something other than NotFound.
        let err = load(dir.path(), dir.path()).expect_err("dir");
        assert!(matches!(err, CertError::Read { .. }), "{err}");
    }

    #[test]
    fn no_certificate_in_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = pair(&["a.test"]);
        let cert = write(dir.path(), "cert.pem", "hello, not a certificate\n");
        let key = write(dir.path(), "key.pem", &p.key_pem);
        let err = load(&cert, &key).expect_err("garbage");
        assert!(matches!(err, CertError::NoCertificate { .. }), "{err}");
        assert!(err.to_string().ends_with("cert.pem: no certificate found"));
    }

    #[test]
    fn garbage_pem() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = pair(&["a.test"]);
        let cert = write(
            dir.path(),
            "cert.pem",
            "-----BEGIN CERTIFICATE-----\n!!!not base64!!!\n-----END CERTIFICATE-----\n",
        );
        let key = write(dir.path(), "key.pem", &p.key_pem);
        let err = load(&cert, &key).expect_err("garbage");
        assert!(matches!(err, CertError::Pem { .. }), "{err}");

        // Valid base64 that is not a certificate.
        let cert = write(
            dir.path(),
            "cert2.pem",
            "-----BEGIN CERTIFICATE-----\naGVsbG8gd29ybGQ=\n-----END CERTIFICATE-----\n",
        );
        let err = load(&cert, &key).expect_err("not x509");
        assert!(matches!(err, CertError::BadCertificate { .. }), "{err}");
    }

    #[test]
    fn no_key_in_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = pair(&["a.test"]);
        let cert = write(dir.path(), "cert.pem", &p.cert_pem);
        // A certificate where the key should be.
        let key = write(dir.path(), "key.pem", &p.cert_pem);
        let err = load(&cert, &key).expect_err("no key");
        assert!(matches!(err, CertError::NoKey { ref path } if path == &key));
        assert!(err.to_string().contains("key.pem: no private key found"));
    }

    #[test]
    fn key_not_matching_cert() {
        let dir = tempfile::tempdir().expect("tempdir");
        let a = pair(&["a.test"]);
        let b = pair(&["a.test"]);
        let cert = write(dir.path(), "cert.pem", &a.cert_pem);
        let key = write(dir.path(), "key.pem", &b.key_pem);
        let err = load(&cert, &key).expect_err("mismatch");
        assert!(matches!(err, CertError::KeyMismatch { .. }), "{err}");
        let msg = err.to_string();
        assert!(
            msg.contains("key.pem: private key does not match the certificate in"),
            "{msg}"
        );
    }
}
