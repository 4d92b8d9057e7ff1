//! Self-signed certificates (ECDSA P-256, rcgen on ring) for `portcullis demo`
//! and `[tls] mode = "self-signed"`, kept stable across restarts so browsers
//! that accepted the certificate once do not ask again.

use std::net::IpAddr;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rcgen::{
    CertificateParams, DnType, ExtendedKeyUsagePurpose, KeyPair, KeyUsagePurpose,
    PKCS_ECDSA_P256_SHA256,
};
use rustls_pki_types::PrivateKeyDer;
use x509_parser::time::ASN1Time;

use crate::error::CertError;
use crate::files;
use crate::loaded::Loaded;
use crate::storage::{ensure_private_dir, write_atomic};

/// Validity of a new certificate, counted from now.
const VALIDITY: Duration = Duration::from_secs(365 * 86_400);
/// How far `notBefore` lies in the past, for clients whose clock is behind.
const BACKDATE: Duration = Duration::from_secs(86_400);
/// A stored certificate with less left than this is replaced.
const MIN_REMAINING: Duration = Duration::from_secs(30 * 86_400);
/// Label for errors about in-memory material.
const GENERATED: &str = "(generated self-signed certificate)";

/// In memory, nothing written: for `portcullis demo`.
///
/// Names that parse as IP addresses become IP SANs, the rest DNS SANs; the
/// first name is also the CN.
pub fn generate(names: &[String]) -> Result<Loaded, CertError> {
    build(&normalize(names)?).map(|generated| generated.loaded)
}

/// Reuse `{storage}/self-signed/cert.pem` + `key.pem` when they parse, cover
/// every requested name and have more than 30 days left; otherwise generate
/// new ones and write them (directory 0700, files 0600, atomically).
pub fn load_or_create(storage: &Path, names: &[String]) -> Result<Loaded, CertError> {
    let wanted = normalize(names)?;
    let dir = storage.join("self-signed");
    let cert_path = dir.join("cert.pem");
    let key_path = dir.join("key.pem");

    match files::load(&cert_path, &key_path) {
        Ok(loaded) => {
            let missing: Vec<&str> = wanted
                .iter()
                .filter(|name| !loaded.names.contains(name))
                .map(String::as_str)
                .collect();
            let fresh = loaded
                .not_after
                .duration_since(SystemTime::now())
                .is_ok_and(|left| left > MIN_REMAINING);
            if missing.is_empty() && fresh {
                tracing::debug!(path = %cert_path.display(), "reusing self-signed certificate");
                return Ok(loaded);
            }
            if !missing.is_empty() {
                tracing::info!(path = %cert_path.display(), missing = ?missing,
                    "self-signed certificate lacks requested names; generating a new one");
            } else {
                tracing::info!(path = %cert_path.display(),
                    "self-signed certificate expires within 30 days; generating a new one");
            }
        }
        Err(CertError::NotFound { .. }) => {
            tracing::info!(path = %cert_path.display(), "generating self-signed certificate");
        }
        Err(e) => {
            tracing::warn!(error = %e, "stored self-signed certificate unusable; generating a new one");
        }
    }

    let generated = build(&wanted)?;
    ensure_private_dir(&dir)?;
    // Key first: if we stop in between, the pair mismatches and the next
    // start regenerates instead of serving a certificate without its key.
    write_atomic(&key_path, generated.key_pem.as_bytes(), 0o600)?;
    write_atomic(&cert_path, generated.cert_pem.as_bytes(), 0o600)?;
    Ok(generated.loaded)
}

struct Generated {
    loaded: Loaded,
    cert_pem: String,
    key_pem: String,
}

/// Lowercase, drop a trailing dot, write IPs canonically, drop duplicates;
/// the same form `files` reports, so stored certificates compare equal.
fn normalize(names: &[String]) -> Result<Vec<String>, CertError> {
    let mut out: Vec<String> = Vec::with_capacity(names.len());
    for name in names {
        let name = name.trim();
        let name = name.strip_suffix('.').unwrap_or(name);
        let name = match name.parse::<IpAddr>() {
            Ok(ip) => ip.to_string(),
            Err(_) => name.to_ascii_lowercase(),
        };
        if !name.is_empty() && !out.contains(&name) {
            out.push(name);
        }
    }
    if out.is_empty() {
        return Err(CertError::NoNames);
    }
    Ok(out)
}

fn build(names: &[String]) -> Result<Generated, CertError> {
    let fail = |reason: String| CertError::Generate {
        names: names.join(", "),
        reason,
    };

    let mut params = CertificateParams::new(names.to_vec()).map_err(|e| fail(e.to_string()))?;
    if let Some(first) = names.first() {
        // X.509 caps the CN at 64 characters; SANs are what clients check anyway.
        if first.len() <= 64 {
            params
                .distinguished_name
                .push(DnType::CommonName, first.as_str());
        } else {
            params
                .distinguished_name
                .push(DnType::CommonName, "portcullis self-signed");
        }
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_err(|_| fail("system clock is before 1970".to_owned()))?;
    let at = |secs: u64| {
        i64::try_from(secs)
            .ok()
            .and_then(|s| ASN1Time::from_timestamp(s).ok())
            .map(|t| t.to_datetime())
            .ok_or_else(|| fail("system clock out of range".to_owned()))
    };
    params.not_before = at(now.saturating_sub(BACKDATE).as_secs())?;
    params.not_after = at(now.saturating_add(VALIDITY).as_secs())?;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];

    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(|e| fail(e.to_string()))?;
    let cert = params.self_signed(&key).map_err(|e| fail(e.to_string()))?;

    let label = Path::new(GENERATED);
    let loaded = files::from_der(
        vec![cert.der().clone()],
        label,
        PrivateKeyDer::Pkcs8(key.serialize_der().into()),
        label,
    )?;
    Ok(Generated {
        loaded,
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::PermissionsExt;

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).expect("metadata").permissions().mode() & 0o777
    }

    #[test]
    fn generate_in_memory() {
        let loaded =
            generate(&names(&["Localhost", "127.0.0.1", "::1", "localhost."])).expect("generate");
        assert_eq!(loaded.names, ["localhost", "127.0.0.1", "::1"]);
        let left = loaded
            .not_after
            .duration_since(SystemTime::now())
            .expect("future");
        assert!(left > VALIDITY - Duration::from_secs(60) && left <= VALIDITY);

        let (_, x509) =
            x509_parser::parse_x509_certificate(loaded.certified.cert[0].as_ref()).expect("x509");
        let cn = x509.subject().iter_common_name().next().expect("cn");
        assert_eq!(cn.as_str().expect("cn str"), "localhost");
        let not_before = x509.validity().not_before.timestamp();
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("now")
            .as_secs() as i64;
        assert!((now - 86_400 - not_before).abs() < 60);
    }

    #[test]
    fn generate_needs_a_name() {
        assert!(matches!(generate(&[]), Err(CertError::NoNames)));
        assert!(matches!(
            generate(&names(&[" ", "."])),
            Err(CertError::NoNames)
        ));
    }

    #[test]
    fn generate_rejects_unencodable_name() {
        let err = generate(&names(&["bücher.example"])).expect_err("non-ascii");
        assert!(matches!(err, CertError::Generate { .. }), "{err}");
        assert!(err.to_string().contains("bücher.example"));
    }

    #[test]
    fn creates_private_files_then_reuses_them() {
        let storage = tempfile::tempdir().expect("tempdir");
        let root = storage.path().join("state");
        let wanted = names(&["app.example.com", "127.0.0.1"]);

        let first = load_or_create(&root, &wanted).expect("create");
        let dir = root.join("self-signed");
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&dir.join("cert.pem")), 0o600);
        assert_eq!(mode(&dir.join("key.pem")), 0o600);
        let mut entries: Vec<_> = fs::read_dir(&dir)
            .expect("read_dir")
            .map(|e| e.expect("entry").file_name())
            .collect();
        entries.sort();
        assert_eq!(entries, ["cert.pem", "key.pem"]);

        let cert_bytes = fs::read(dir.join("cert.pem")).expect("read");
        let second = load_or_create(&root, &wanted).expect("reuse");
        assert_eq!(fs::read(dir.join("cert.pem")).expect("read"), cert_bytes);
        assert_eq!(second.certified.cert, first.certified.cert);

        // A subset of the names, in another order and case, still reuses.
        let third = load_or_create(&root, &names(&["APP.example.com."])).expect("subset");
        assert_eq!(third.certified.cert, first.certified.cert);
    }

    #[test]
    fn new_name_forces_regeneration() {
        let storage = tempfile::tempdir().expect("tempdir");
        let first = load_or_create(storage.path(), &names(&["a.test"])).expect("create");
        let second =
            load_or_create(storage.path(), &names(&["a.test", "b.test"])).expect("regenerate");
        assert_ne!(second.certified.cert, first.certified.cert);
        assert_eq!(second.names, ["a.test", "b.test"]);
        let third = load_or_create(storage.path(), &names(&["b.test"])).expect("reuse");
        assert_eq!(third.certified.cert, second.certified.cert);
    }

    #[test]
    fn corrupted_file_forces_regeneration() {
        let storage = tempfile::tempdir().expect("tempdir");
        let wanted = names(&["a.test"]);
        let first = load_or_create(storage.path(), &wanted).expect("create");
        let cert_path = storage.path().join("self-signed/cert.pem");
        fs::write(&cert_path, b"garbage").expect("corrupt");

        let second = load_or_create(storage.path(), &wanted).expect("regenerate");
        assert_ne!(second.certified.cert, first.certified.cert);
        let reread = files::load(&cert_path, &storage.path().join("self-signed/key.pem"))
            .expect("valid again");
        assert_eq!(reread.certified.cert, second.certified.cert);
    }

    #[test]
    fn expiring_certificate_forces_regeneration() {
        let storage = tempfile::tempdir().expect("tempdir");
        let dir = storage.path().join("self-signed");
        ensure_private_dir(&dir).expect("dir");
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).expect("key");
        let mut params = CertificateParams::new(names(&["a.test"])).expect("params");
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("now")
            .as_secs() as i64;
        params.not_after = ASN1Time::from_timestamp(now + 10 * 86_400)
            .expect("time")
            .to_datetime();
        let old = params.self_signed(&key).expect("cert");
        fs::write(dir.join("cert.pem"), old.pem()).expect("write");
        fs::write(dir.join("key.pem"), key.serialize_pem()).expect("write");

        let loaded = load_or_create(storage.path(), &names(&["a.test"])).expect("regenerate");
        assert_ne!(loaded.certified.cert[0], *old.der());
        assert!(loaded.not_after > SystemTime::now() + Duration::from_secs(300 * 86_400));
    }

    #[test]
    fn storage_that_is_a_file_is_an_error() {
        let storage = tempfile::tempdir().expect("tempdir");
        let file = storage.path().join("self-signed");
        fs::write(&file, b"x").expect("write");
        let err = load_or_create(storage.path(), &names(&["a.test"])).expect_err("file");
        assert!(matches!(err, CertError::NotADirectory { .. }), "{err}");
    }
}
