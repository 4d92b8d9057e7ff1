//! The configured names, turned into directory names under the ACME storage:
//! the directory URL's host for `acme/<host>/`, the domain set for
//! `certs/<set>/`. Both come from config, so whatever could escape or alias
//! a directory is mapped away or refused here, once, for the store and the
//! client alike.

use std::net::IpAddr;

use super::error::AcmeError;

/// Longest domain-set directory name before it is shortened with a hash.
const MAX_SET_NAME: usize = 120;

/// `host` or `host_port` of an https URL, reduced to `[a-z0-9.-_]`.
pub(super) fn directory_host(directory: &str) -> Result<String, AcmeError> {
    let rest = directory
        .strip_prefix("https://")
        .ok_or_else(|| AcmeError::Config {
            reason: format!("directory {directory:?} must be an https:// URL"),
        })?;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let authority = authority.rsplit('@').next().unwrap_or_default();
    let host: String = authority
        .to_ascii_lowercase()
        .chars()
        .map(|c| match c {
            'a'..='z' | '0'..='9' | '.' | '-' => c,
            _ => '_',
        })
        .collect();
    // Nothing but separators (or `.`/`..`) would escape or alias the directory.
    if host.trim_matches(['_', '.']).is_empty() {
        return Err(AcmeError::Config {
            reason: format!("directory {directory:?} has no host"),
        });
    }
    Ok(host)
}

/// Lowercase, no trailing dot, IPs canonical, duplicates dropped, sorted;
/// wildcards refused (HTTP-01 cannot validate them).
pub(super) fn normalize_domains(domains: &[String]) -> Result<Vec<String>, AcmeError> {
    let mut out = Vec::with_capacity(domains.len());
    for domain in domains {
        let name = domain.trim();
        let name = name.strip_suffix('.').unwrap_or(name);
        let name = match name.parse::<IpAddr>() {
            Ok(ip) => ip.to_string(),
            Err(_) => name.to_ascii_lowercase(),
        };
        if name.starts_with("*.") {
            return Err(AcmeError::Config {
                reason: format!("{name}: wildcard names need DNS-01, which is not supported"),
            });
        }
        let plausible = !name.is_empty()
            && name.len() <= 253
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':'));
        if !plausible {
            return Err(AcmeError::Config {
                reason: format!("{domain:?} is not a domain name"),
            });
        }
        if !out.contains(&name) {
            out.push(name);
        }
    }
    if out.is_empty() {
        return Err(AcmeError::Config {
            reason: "no domains".to_owned(),
        });
    }
    out.sort();
    Ok(out)
}

/// A directory name for a normalised domain set: the names joined by `+`, or
/// for long sets the first name, the count and a hash of all of them.
pub(super) fn set_name(names: &[String]) -> String {
    let joined = names.join("+").replace(':', "_");
    if joined.len() <= MAX_SET_NAME {
        return joined;
    }
    let digest = ring::digest::digest(&ring::digest::SHA256, names.join(",").as_bytes());
    let hex: String = digest
        .as_ref()
        .iter()
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect();
    let first = names
        .first()
        .map(|n| n.replace(':', "_"))
        .unwrap_or_default();
    let first: String = first.chars().take(64).collect();
    format!("{first}+{}-{hex}", names.len().saturating_sub(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn directory_hosts() {
        let host = |u: &str| directory_host(u).expect(u);
        assert_eq!(
            host("https://acme-v02.api.letsencrypt.org/directory"),
            "acme-v02.api.letsencrypt.org"
        );
        assert_eq!(host("https://127.0.0.1:14000/dir"), "127.0.0.1_14000");
        assert_eq!(host("https://user@[::1]:443/d"), "___1__443");
        assert_eq!(host("https://CA.Example"), "ca.example");
        for bad in [
            "http://ca.example/dir",
            "https:///dir",
            "https://../x",
            "ca.example",
        ] {
            let err = directory_host(bad).expect_err(bad);
            assert!(
                err.to_string().starts_with("ACME config: directory"),
                "{err}"
            );
        }
    }

    #[test]
    fn domain_sets() {
        let set = normalize_domains(&names(&["B.test.", "a.test", "b.test", "::1"])).expect("ok");
        assert_eq!(set, ["::1", "a.test", "b.test"]);
        assert_eq!(set_name(&set), "__1+a.test+b.test");
        let err = normalize_domains(&names(&["*.a.test"])).expect_err("wildcard");
        assert!(err.to_string().contains("DNS-01"), "{err}");
        assert!(normalize_domains(&[]).is_err());
        assert!(normalize_domains(&names(&["a/../b"])).is_err());

        let many: Vec<String> = (0..40)
            .map(|i| format!("host-{i:02}.example.com"))
            .collect();
        let long = set_name(&normalize_domains(&many).expect("ok"));
        assert!(long.starts_with("host-00.example.com+39-"), "{long}");
        assert!(long.len() < 100);
        let mut fewer = many.clone();
        fewer.pop();
        assert_ne!(long, set_name(&normalize_domains(&fewer).expect("ok")));
    }
}
