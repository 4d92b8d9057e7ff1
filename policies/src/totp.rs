//! TOTP (RFC 6238: SHA-1, 6 digits, 30 s steps, one step either side) on
//! top of `totp-rs`. What this adds is the gateway's rules: the secret's
//! size and spelling, what a typed code may look like, and that a step is
//! accepted once (the store keeps the last one used).

use totp_rs::{Builder, Secret, Totp};

/// Secret bytes (160 bits, RFC 4226's recommendation).
pub const SECRET_LEN: usize = 20;
/// Seconds per step.
pub const STEP: u64 = 30;

/// A new random secret.
pub fn new_secret() -> [u8; SECRET_LEN] {
    rand::random()
}

/// The secret as people type it: RFC 4648 base32, no padding.
pub fn encode(secret: &[u8]) -> String {
    Secret::from(secret.to_vec()).to_base32()
}

/// The secret back from [`encode`]'s text: `None` for anything else,
/// including a secret of another size.
pub fn decode(text: &str) -> Option<Vec<u8>> {
    let secret = Secret::try_from_base32(text).ok()?;
    let bytes = secret.as_ref().to_vec();
    (bytes.len() == SECRET_LEN && encode(&bytes) == text).then_some(bytes)
}

fn totp(secret: &[u8], issuer: Option<&str>, account: &str) -> Option<Totp> {
    Builder::new()
        .with_secret(secret.to_vec())
        .with_issuer(issuer.map(str::to_string))
        .with_account_name(account)
        .build()
        .ok()
}

/// The `otpauth://totp/…` URL an authenticator app scans. Colons are not
/// allowed in either label part, so they are replaced.
pub fn otpauth_url(secret: &[u8], issuer: &str, account: &str) -> Option<String> {
    let clean = |s: &str| s.replace(':', " ");
    totp(secret, Some(&clean(issuer)), &clean(account))?
        .to_url()
        .ok()
}

/// The step `code` belongs to, if it is right for `secret` at Unix second
/// `now` (±1 step). Spaces are ignored; anything but six ASCII digits is
/// wrong. Whether the step was used already is [`fresh`]'s question.
pub fn matching_step(secret: &[u8], code: &str, now: u64) -> Option<u64> {
    let code: String = code.chars().filter(|c| *c != ' ').collect();
    if code.len() != 6 || !code.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    totp(secret, None, "")?.check(&code, now)
}

/// Whether `step` may be accepted after `last_used`: each code once, and
/// none older than one already used.
pub fn fresh(step: u64, last_used: Option<u64>) -> bool {
    last_used.is_none_or(|last| step > last)
}

#[cfg(test)]
mod tests {
    use super::*;

    // RFC 6238 appendix B, SHA-1, truncated to 6 digits.
    const RFC_SECRET: &[u8; 20] = b"12345678901234567890";

    #[test]
    fn rfc_6238_vectors() {
        for (t, code) in [
            (59, "287082"),
            (1_111_111_109, "081804"),
            (1_111_111_111, "050471"),
            (1_234_567_890, "005924"),
            (2_000_000_000, "279037"),
        ] {
            assert_eq!(matching_step(RFC_SECRET, code, t), Some(t / STEP), "{t}");
        }
    }

    #[test]
    fn one_step_either_side_and_no_further() {
        let t = 1_111_111_109;
        assert_eq!(matching_step(RFC_SECRET, "081804", t + 30), Some(t / STEP));
        assert_eq!(matching_step(RFC_SECRET, "081804", t - 30), Some(t / STEP));
        assert_eq!(matching_step(RFC_SECRET, "081804", t + 61), None);
        assert_eq!(matching_step(RFC_SECRET, "081804", t - 61), None);
    }

    #[test]
    fn only_six_digits_count() {
        let t = 1_111_111_109;
        assert_eq!(matching_step(RFC_SECRET, "081 804", t), Some(t / STEP));
        for bad in [
            "",
            "81804",
            "0818040",
            "+81804",
            "-81804",
            "08180a",
            "０８１８０４",
            "081804\n",
            "81804 ",
            "0x1804",
        ] {
            assert_eq!(matching_step(RFC_SECRET, bad, t), None, "{bad:?}");
        }
        // Another secret.
        assert_eq!(matching_step(&[7; 20], "081804", t), None);
    }

    #[test]
    fn a_step_is_accepted_once() {
        assert!(fresh(10, None));
        assert!(fresh(11, Some(10)));
        assert!(!fresh(10, Some(10)));
        assert!(!fresh(9, Some(10)));
    }

    #[test]
    fn secrets_round_trip_and_nothing_else_decodes() {
        let s = new_secret();
        assert_ne!(s, new_secret());
        let text = encode(&s);
        assert_eq!(text.len(), 32);
        assert_eq!(decode(&text), Some(s.to_vec()));
        for bad in [
            String::new(),
            text.to_lowercase(),
            format!("{text}A"),
            text[..31].to_string(),
            encode(&[1; 16]),
            format!("{text}===="),
        ] {
            assert_eq!(decode(&bad), None, "{bad}");
        }
    }

    #[test]
    fn the_url_names_issuer_and_account() {
        let url = otpauth_url(RFC_SECRET, "app.example:443", "ann").expect("url");
        assert!(url.starts_with("otpauth://totp/"), "{url}");
        assert!(url.contains("secret="), "{url}");
        assert!(url.contains("ann"), "{url}");
        assert!(!url.contains("example:443"), "{url}");
    }
}
