//! `[tls]`: where certificates come from, the ACME mode included.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use super::{Report, Section};

/// Default `[tls] storage`.
pub(super) const DEFAULT_STORAGE: &str = "/var/lib/portcullis";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TlsMode {
    Files {
        cert: PathBuf,
        key: PathBuf,
    },
    SelfSigned,
    /// Certificates from an ACME CA (HTTP-01 on the http listener, or
    /// TLS-ALPN-01 on the https listener).
    Acme(AcmeMode),
    /// A platform in front terminates TLS; `trusted_proxies` say the scheme.
    Off,
}

/// `tls.mode = "acme"`: the CA and how to reach it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcmeMode {
    /// Directory URL (https).
    pub directory: String,
    pub email: Option<String>,
    /// `ca`: PEM roots also trusted for the CA's HTTPS, read at load.
    pub ca_pem: Option<Vec<u8>>,
    /// `challenge`: HTTP-01 (default) or TLS-ALPN-01.
    pub challenge: Challenge,
}

/// `tls.challenge`. Kept here rather than taken from `certs` so that the
/// config module stays free of other crates' types (the `config` fuzz target
/// compiles it alone); `gateway::acme` maps it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Challenge {
    /// HTTP-01 on the http listener.
    Http01,
    /// TLS-ALPN-01 on the https listener.
    TlsAlpn01,
}

/// Let's Encrypt's production directory, the default.
pub const LETS_ENCRYPT: &str = "https://acme-v02.api.letsencrypt.org/directory";

#[derive(Debug)]
pub struct Tls {
    pub mode: TlsMode,
    pub domains: Vec<String>,
    pub storage: PathBuf,
}

pub(super) fn read_tls(sec: &mut Section<'_>, base: &Path, r: &mut Report) -> Option<Tls> {
    let errors_before = r.errors.len();
    let mode_s = sec.str("mode", r).unwrap_or("acme");
    let domains = read_domains(sec, r);
    let storage = sec
        .str("storage", r)
        .map(|s| base.join(s))
        .unwrap_or_else(|| PathBuf::from(DEFAULT_STORAGE));
    let cert = sec.str("cert", r).map(|s| base.join(s));
    let key = sec.str("key", r).map(|s| base.join(s));
    let mode = match mode_s {
        "files" => files_mode(sec, cert, key, r),
        "self-signed" => Some(TlsMode::SelfSigned),
        "off" => Some(TlsMode::Off),
        "acme" => read_acme(sec, base, &domains, r).map(TlsMode::Acme),
        other => {
            r.error(
                sec.key("mode"),
                format!("{other:?} is not one of \"acme\", \"files\", \"self-signed\", \"off\""),
            );
            None
        }
    };
    if let Some(mode) = &mode {
        keys_of_other_modes(sec, mode, r);
    }
    (r.errors.len() == errors_before).then(|| Tls {
        mode: mode.unwrap_or(TlsMode::Off),
        domains,
        storage,
    })
}

/// `domains`, lowercase without a trailing dot; IP addresses allowed.
fn read_domains(sec: &mut Section<'_>, r: &mut Report) -> Vec<String> {
    let mut domains = Vec::new();
    for (i, d) in sec
        .str_list("domains", r)
        .unwrap_or_default()
        .into_iter()
        .enumerate()
    {
        let d = d.trim().trim_end_matches('.').to_ascii_lowercase();
        // IP addresses are valid names for self-signed and file certificates.
        if valid_domain(&d) || d.parse::<IpAddr>().is_ok() {
            domains.push(d);
        } else {
            r.error(
                format!("{}[{i}]", sec.key("domains")),
                format!("{d:?} is not a valid domain name"),
            );
        }
    }
    domains
}

fn files_mode(
    sec: &Section<'_>,
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
    r: &mut Report,
) -> Option<TlsMode> {
    match (cert, key) {
        (Some(cert), Some(key)) => Some(TlsMode::Files { cert, key }),
        (c, k) => {
            if c.is_none() {
                r.error(sec.key("cert"), "required when tls.mode = \"files\"");
            }
            if k.is_none() {
                r.error(sec.key("key"), "required when tls.mode = \"files\"");
            }
            None
        }
    }
}

/// Keys that belong to another mode than the one chosen are errors.
fn keys_of_other_modes(sec: &Section<'_>, mode: &TlsMode, r: &mut Report) {
    if !matches!(mode, TlsMode::Files { .. }) {
        for k in ["cert", "key"] {
            if sec.has(k) {
                r.error(sec.key(k), "only used with tls.mode = \"files\"");
            }
        }
    }
    if !matches!(mode, TlsMode::Acme(_)) {
        for k in ["email", "directory", "ca", "challenge"] {
            if sec.has(k) {
                r.error(sec.key(k), "only used with tls.mode = \"acme\"");
            }
        }
    }
}

fn read_acme(
    sec: &mut Section<'_>,
    base: &Path,
    domains: &[String],
    r: &mut Report,
) -> Option<AcmeMode> {
    let errors_before = r.errors.len();
    if domains.is_empty() && !r.errors.iter().any(|e| e.key.starts_with("tls.domains")) {
        r.error(
            sec.key("domains"),
            "required with tls.mode = \"acme\": the names to get a certificate for",
        );
    }
    if let Some(d) = domains.iter().find(|d| d.starts_with("*.")) {
        r.error(
            sec.key("domains"),
            format!("{d:?}: wildcard certificates need the DNS-01 challenge, which portcullis does not do"),
        );
    }
    let directory = sec
        .str("directory", r)
        .unwrap_or(LETS_ENCRYPT)
        .trim()
        .to_string();
    if !directory.starts_with("https://") || directory.len() <= "https://".len() {
        r.error(
            sec.key("directory"),
            format!("{directory:?} is not an https:// URL"),
        );
    }
    let email = read_email(sec, r);
    let ca_pem = sec
        .str("ca", r)
        .and_then(|p| read_ca(&base.join(p), &sec.key("ca"), r));
    let challenge = read_challenge(sec, domains, r);
    (r.errors.len() == errors_before).then_some(AcmeMode {
        directory,
        email,
        ca_pem,
        challenge,
    })
}

fn read_email(sec: &mut Section<'_>, r: &mut Report) -> Option<String> {
    let email = sec.str("email", r).map(|e| e.trim().to_string());
    if let Some(e) = &email {
        let ok = e.split_once('@').is_some_and(|(a, d)| {
            !a.is_empty()
                && d.contains('.')
                && !e.chars().any(|c| c.is_whitespace() || c.is_control())
        });
        if !ok {
            r.error(sec.key("email"), format!("{e:?} is not an e-mail address"));
        }
    }
    email
}

/// `ca`: read at load, and it must hold at least one PEM certificate.
fn read_ca(path: &Path, key: &str, r: &mut Report) -> Option<Vec<u8>> {
    match std::fs::read(path) {
        Ok(pem) if pem.windows(27).any(|w| w == b"-----BEGIN CERTIFICATE-----") => Some(pem),
        Ok(_) => {
            r.error(key, format!("{} holds no PEM certificate", path.display()));
            None
        }
        Err(e) => {
            r.error(key, format!("cannot read {}: {e}", path.display()));
            None
        }
    }
}

fn read_challenge(sec: &mut Section<'_>, domains: &[String], r: &mut Report) -> Challenge {
    match sec.str("challenge", r) {
        None | Some("http-01") => Challenge::Http01,
        Some("tls-alpn-01") => {
            if let Some(ip) = domains.iter().find(|d| d.parse::<IpAddr>().is_ok()) {
                r.error(
                    sec.key("challenge"),
                    format!("\"tls-alpn-01\" validates DNS names only here; {ip:?} in tls.domains needs \"http-01\""),
                );
            }
            Challenge::TlsAlpn01
        }
        Some(other) => {
            r.error(
                sec.key("challenge"),
                format!("{other:?} is not one of \"http-01\", \"tls-alpn-01\""),
            );
            Challenge::Http01
        }
    }
}

fn valid_domain(d: &str) -> bool {
    !d.is_empty()
        && d.len() <= 253
        && d.split('.').enumerate().all(|(i, label)| {
            (label == "*" && i == 0)
                || (!label.is_empty()
                    && label.len() <= 63
                    && !label.starts_with('-')
                    && !label.ends_with('-')
                    && label
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-'))
        })
}
