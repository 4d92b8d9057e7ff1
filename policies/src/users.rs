//! Local accounts: user names and argon2id password hashes.
//!
//! * **Names** are 1–64 bytes of `A-Z a-z 0-9 . _ @ + -`: enough for e-mail
//!   addresses, and nothing that could split a session cookie (`|`), a header
//!   value, a log line or an HTML attribute.
//! * **Hashes** are argon2id PHC strings with the argon2 crate's default
//!   (OWASP-recommended) parameters and a fresh salt from the OS.
//! * **Verification has one shape.** Login must not reveal which user names
//!   exist, so an unknown user (or an unusable stored hash, or an unacceptable
//!   password) still costs one full argon2id verification, against a fixed
//!   dummy hash, and answers `false`.
//!
//! Hashing and verifying are deliberately slow (tens of milliseconds, ~19 MiB
//! each): the gateway calls them off the async workers (`spawn_blocking`),
//! behind the login rate limits.

use std::sync::LazyLock;

use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use argon2::{Algorithm, Argon2, Params, Version};

/// Longest password accepted, in bytes: argon2 itself takes far longer ones,
/// but nobody types more, and a bound keeps request handling predictable.
pub const MAX_PASSWORD_LEN: usize = 1024;

/// Longest user name, in bytes.
pub const MAX_USER_NAME_LEN: usize = 64;

/// Why a password cannot be hashed.
#[derive(Debug, thiserror::Error, PartialEq, Eq, Clone)]
pub enum PasswordError {
    /// An empty password would let anyone in who knows the user name.
    #[error("the password is empty")]
    Empty,
    /// Longer than [`MAX_PASSWORD_LEN`] bytes.
    #[error("the password is longer than {MAX_PASSWORD_LEN} bytes")]
    TooLong,
    /// The OS random source or argon2 failed (not expected in practice).
    #[error("password hashing failed: {0}")]
    Hash(String),
}

/// True for 1–64 bytes of `A-Z a-z 0-9 . _ @ + -` (e-mail addresses work).
pub fn valid_user_name(name: &str) -> bool {
    (1..=MAX_USER_NAME_LEN).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'@' | b'+' | b'-'))
}

/// Hashes `password` into an argon2id PHC string (`$argon2id$v=19$...`) with
/// the default parameters and a random salt from the OS.
pub fn hash_password(password: &str) -> Result<String, PasswordError> {
    check_password(password)?;
    Argon2::default()
        .hash_password(password.as_bytes())
        .map(|hash| hash.to_string())
        .map_err(|e| PasswordError::Hash(e.to_string()))
}

/// Checks `password` against a stored PHC string, with the same cost whether
/// or not the user exists.
///
/// `phc = None` (unknown user), a malformed or non-argon2id `phc`, and an
/// empty or over-long password all still run one argon2id verification
/// against a fixed dummy hash, then answer `false`.
pub fn verify_password(phc: Option<&str>, password: &str) -> bool {
    let parsed = phc.and_then(parse_argon2id);
    match (parsed, check_password(password)) {
        (Some(hash), Ok(())) => Argon2::default()
            .verify_password(password.as_bytes(), &hash)
            .is_ok(),
        _ => {
            burn_dummy(password);
            false
        }
    }
}

/// True for a PHC string that [`verify_password`] can use: `$argon2id$`,
/// parameters argon2 accepts, a salt and a hash. Used to validate the users
/// file at load, so a typo fails loudly instead of locking the user out.
pub fn is_argon2id_hash(phc: &str) -> bool {
    parse_argon2id(phc).is_some()
}

fn check_password(password: &str) -> Result<(), PasswordError> {
    if password.is_empty() {
        Err(PasswordError::Empty)
    } else if password.len() > MAX_PASSWORD_LEN {
        Err(PasswordError::TooLong)
    } else {
        Ok(())
    }
}

fn parse_argon2id(phc: &str) -> Option<PasswordHash> {
    let hash = PasswordHash::new(phc).ok()?;
    let usable = hash.algorithm == Algorithm::Argon2id.ident()
        && hash.salt.is_some()
        && hash.hash.is_some()
        && hash.version.is_none_or(|v| Version::try_from(v).is_ok())
        && Params::try_from(&hash).is_ok();
    usable.then_some(hash)
}

/// The dummy hash used when there is nothing real to verify against: default
/// parameters (the same cost as real hashes) and a fixed salt, computed once.
static DUMMY: LazyLock<Option<PasswordHash>> = LazyLock::new(|| {
    Argon2::default()
        .hash_password_with_salt(b"portcullis dummy password", b"portcullis-dummy-salt")
        .ok()
});

#[cfg(test)]
thread_local! {
    /// Dummy verifications run on this thread (tests only).
    static DUMMY_RUNS: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

fn burn_dummy(password: &str) {
    #[cfg(test)]
    DUMMY_RUNS.with(|n| n.set(n.get() + 1));
    if let Some(dummy) = DUMMY.as_ref() {
        // Bound the input like real verifications: argon2 refuses nothing
        // here, but the cost must not depend on attacker-chosen length.
        let bytes = password.as_bytes();
        let bytes = bytes.get(..MAX_PASSWORD_LEN).unwrap_or(bytes);
        let _ = Argon2::default().verify_password(bytes, dummy);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_hash_has_a_fresh_salt() {
        let a = hash_password("pw").expect("hash");
        let b = hash_password("pw").expect("hash");
        assert_ne!(a, b, "fresh salt per hash");
        assert!(verify_password(Some(&a), "pw") && verify_password(Some(&b), "pw"));
    }

    #[test]
    fn user_names() {
        for ok in [
            "a",
            "alice",
            "Alice.Smith",
            "ops+alerts@example.com",
            "under_score",
            "dash-ed",
            "0",
            &"x".repeat(64),
        ] {
            assert!(valid_user_name(ok), "{ok:?}");
        }
        for bad in [
            "",
            &"x".repeat(65),
            "a|b",
            "a b",
            " alice",
            "alice\n",
            "a\0",
            "a/b",
            "a\\b",
            "a:b",
            "a;b",
            "a,b",
            "a\"b",
            "a<b",
            "a=b",
            "a%40b",
            "caf\u{e9}",
            "\u{430}dmin", // Cyrillic а
            "alice\u{200b}",
        ] {
            assert!(!valid_user_name(bad), "{bad:?}");
        }
    }

    #[test]
    fn hash_and_verify_round_trip() {
        let hash = hash_password("correct horse").unwrap();
        assert!(hash.starts_with("$argon2id$v=19$"), "{hash}");
        assert!(is_argon2id_hash(&hash));
        assert!(verify_password(Some(&hash), "correct horse"));
        assert!(!verify_password(Some(&hash), "correct horsE"));
        assert!(!verify_password(Some(&hash), "correct horse "));
        assert!(!verify_password(Some(&hash), ""));
        assert!(!verify_password(None, "correct horse"));
    }

    #[test]
    fn salts_are_random() {
        let a = hash_password("same").unwrap();
        let b = hash_password("same").unwrap();
        assert_ne!(a, b);
        assert!(verify_password(Some(&a), "same"));
        assert!(verify_password(Some(&b), "same"));
    }

    #[test]
    fn default_params_are_owasp() {
        let hash = hash_password("p").unwrap();
        let parsed = PasswordHash::new(&hash).unwrap();
        let params = Params::try_from(&parsed).unwrap();
        assert_eq!(params.m_cost(), Params::DEFAULT_M_COST);
        assert_eq!(params.t_cost(), Params::DEFAULT_T_COST);
        assert_eq!(params.p_cost(), Params::DEFAULT_P_COST);
        assert!(params.m_cost() >= 19 * 1024);
    }

    #[test]
    fn password_bounds() {
        assert_eq!(hash_password(""), Err(PasswordError::Empty));
        assert_eq!(
            hash_password(&"x".repeat(MAX_PASSWORD_LEN + 1)),
            Err(PasswordError::TooLong)
        );
        let longest = "y".repeat(MAX_PASSWORD_LEN);
        let hash = hash_password(&longest).unwrap();
        assert!(verify_password(Some(&hash), &longest));
        // Multi-byte characters count in bytes.
        assert_eq!(
            hash_password(&"\u{e9}".repeat(MAX_PASSWORD_LEN / 2 + 1)),
            Err(PasswordError::TooLong)
        );
    }

    #[test]
    fn non_ascii_passwords() {
        let hash = hash_password("pässwörd \u{1f512}").unwrap();
        assert!(verify_password(Some(&hash), "pässwörd \u{1f512}"));
        // NFC vs NFD are different bytes and therefore different passwords.
        assert!(!verify_password(Some(&hash), "pa\u{308}sswörd \u{1f512}"));
    }

    /// A real argon2id hash of "password" with other (valid) parameters, as
    /// produced by another tool: still verifies.
    #[test]
    fn foreign_params_verify() {
        let argon2 = Argon2::new(
            Algorithm::Argon2id,
            Version::V0x13,
            Params::new(8 * 1024, 1, 1, None).unwrap(),
        );
        let hash = argon2
            .hash_password_with_salt(b"password", b"somesaltsomesalt")
            .unwrap()
            .to_string();
        assert!(is_argon2id_hash(&hash));
        assert!(verify_password(Some(&hash), "password"));
        assert!(!verify_password(Some(&hash), "Password"));
    }

    #[test]
    fn other_algorithms_and_garbage_refused() {
        let argon2i = Argon2::new(Algorithm::Argon2i, Version::V0x13, Params::default())
            .hash_password_with_salt(b"password", b"somesaltsomesalt")
            .unwrap()
            .to_string();
        let argon2d = Argon2::new(Algorithm::Argon2d, Version::V0x13, Params::default())
            .hash_password_with_salt(b"password", b"somesaltsomesalt")
            .unwrap()
            .to_string();
        let good = hash_password("password").unwrap();
        let no_hash = good.rsplit_once('$').unwrap().0.to_string();
        let bad_params = good.replace("m=19456", "m=1");
        // 43 base64 digits of hash less six: 37, a length base64 never has.
        // (Less five left 38, a valid encoding of 28 bytes whenever the last
        // digit's low bits were zero: 1 run in 16 accepted it as a hash.)
        let truncated = good.get(..good.len() - 6).unwrap().to_string();
        for bad in [
            argon2i.as_str(),
            argon2d.as_str(),
            "",
            "password",
            "$argon2id$",
            "$argon2id$v=19$m=19456,t=2,p=1$",
            no_hash.as_str(),
            bad_params.as_str(),
            truncated.as_str(),
            "$2b$12$R9h/cIPz0gi.URNNX3kh2OPST9/PgBkqquzi.Ss7KIUgO2t0jWMUW", // bcrypt
            "$argon2id$v=99$m=19456,t=2,p=1$c29tZXNhbHQ$aGFzaGhhc2hoYXNoaGFzaA",
            "$scrypt$ln=15,r=8,p=1$c29tZXNhbHQ$aGFzaGhhc2hoYXNoaGFzaA",
        ] {
            assert!(!is_argon2id_hash(bad), "{bad:?}");
            assert!(!verify_password(Some(bad), "password"), "{bad:?}");
        }
        // Cut to whole base64 groups it is a well-formed hash of another
        // length (argon2 takes the length from the string), and that hash
        // is not the password's.
        let shorter = good.get(..good.len() - 7).unwrap();
        assert!(is_argon2id_hash(shorter), "{shorter:?}");
        assert!(!verify_password(Some(shorter), "password"));
        // A plaintext "hash" equal to the password is never accepted.
        assert!(!verify_password(Some("hunter2"), "hunter2"));
    }

    #[test]
    fn dummy_password_never_logs_in() {
        assert!(!verify_password(None, "portcullis dummy password"));
        assert!(!verify_password(
            Some("garbage"),
            "portcullis dummy password"
        ));
    }

    /// Unknown user, malformed hash, empty and over-long passwords each run
    /// exactly one argon2id verification against a dummy hash whose
    /// parameters (the cost) are those of real hashes. Checked by counting,
    /// not by timing: how long it takes is for benchmarks, not tests.
    #[test]
    fn unknown_user_costs_like_wrong_password() {
        let hash = hash_password("right").unwrap();
        let real = PasswordHash::new(&hash).unwrap();
        let dummy = DUMMY.as_ref().expect("dummy hash");
        assert_eq!(dummy.algorithm, real.algorithm);
        assert_eq!(
            Params::try_from(dummy).unwrap(),
            Params::try_from(&real).unwrap()
        );
        let runs = || DUMMY_RUNS.with(|n| n.get());
        let before = runs();
        assert!(!verify_password(Some(&hash), "wrong"));
        assert_eq!(runs(), before, "a real hash is verified itself");
        for (what, phc, password) in [
            ("unknown user", None, "wrong".to_string()),
            ("bad hash", Some("x"), "wrong".to_string()),
            ("empty", Some(hash.as_str()), String::new()),
            ("too long", Some(hash.as_str()), "z".repeat(100_000)),
        ] {
            let before = runs();
            assert!(!verify_password(phc, &password), "{what}");
            assert_eq!(runs(), before + 1, "{what}: one dummy verification");
        }
    }
}
