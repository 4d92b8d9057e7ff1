//! The `X-Forwarded-Assertion` header: a short-lived JWT that lets an app
//! check the identity headers really came from the gateway.
//!
//! Claims: `iss`, `sub` (user), `aud` (the upstream), `iat`,
//! `exp = iat + 60`, `jti`, `email` (when the account has one), `roles`,
//! `amr` (how the session signed in, RFC 8176 values where one fits).
//! Signed with HS256 (a shared key, [`hs256`]) or with a private key whose
//! public half is in the JWKS (`crate::signing`).
//!
//! Built by hand from base64url and `serde_json` (it is three base64url
//! segments) instead of pulling in a JWT crate and its crypto backends. The
//! header is fixed per key, so the usual JWT pitfalls (`alg: none`, key
//! confusion) cannot arise on this side; the verifier's side is in
//! docs/configuration.md ("Verifying the assertion").

use serde_json::json;

use crate::mac;

/// Seconds an assertion is valid: long enough for clock skew and a slow
/// upstream, short enough that a leaked header is soon worthless.
pub const ASSERTION_LIFETIME: u64 = 60;

/// `{"alg":"HS256","typ":"JWT"}`, base64url.
const HEADER_B64: &str = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9";

/// Who an assertion is about.
#[derive(Debug, Clone, Copy)]
pub struct Subject<'a> {
    /// The account name.
    pub sub: &'a str,
    /// The account's e-mail address, if it has one.
    pub email: Option<&'a str>,
    /// The account's roles.
    pub roles: &'a [String],
}

/// Everything an assertion says.
#[derive(Debug, Clone)]
pub struct Claims<'a> {
    /// Who.
    pub subject: Subject<'a>,
    /// For which upstream.
    pub aud: &'a str,
    /// When (seconds since the epoch); `exp` follows.
    pub iat: u64,
    /// The issuer, when known.
    pub iss: Option<&'a str>,
    /// A unique id (an app may refuse a replay within the minute).
    pub jti: Option<&'a str>,
    /// How the session signed in ([`amr`]); left out when empty.
    pub amr: Vec<String>,
}

impl Claims<'_> {
    /// The claims as compact JSON, every value escaped by `serde_json`.
    pub fn to_json(&self) -> String {
        let who = self.subject;
        let mut claims = json!({
            "sub": who.sub,
            "roles": who.roles,
            "iat": self.iat,
            "exp": self.iat.saturating_add(ASSERTION_LIFETIME),
            "aud": self.aud,
        });
        if let Some(map) = claims.as_object_mut() {
            if let Some(email) = who.email {
                map.insert("email".into(), email.into());
            }
            if let Some(iss) = self.iss {
                map.insert("iss".into(), iss.into());
            }
            if let Some(jti) = self.jti {
                map.insert("jti".into(), jti.into());
            }
            if !self.amr.is_empty() {
                map.insert("amr".into(), self.amr.clone().into());
            }
        }
        claims.to_string()
    }
}

/// The HS256 JWT for `who`, audience `aud`, issued at `now` (claims `sub`,
/// `roles`, `iat`, `exp`, `aud`, `email`).
pub fn assertion(key: &[u8], who: Subject<'_>, aud: &str, now: u64) -> String {
    let claims = Claims {
        subject: who,
        aud,
        iat: now,
        iss: None,
        jti: None,
        amr: Vec::new(),
    };
    hs256(key, &claims.to_json())
}

/// The `amr` values for a session's sign-in method (`password`,
/// `password+totp`, `github+amr`, `passkey`, …): `pwd` for a password,
/// `otp` for a TOTP or recovery code, `hwk` and `user` for a passkey,
/// `idp:NAME` for a provider, `emergency` for the emergency gate, and
/// `mfa` when two factors were used (or the provider said so).
pub fn amr(method: &str) -> Vec<String> {
    let (first, second) = match method.split_once('+') {
        Some((a, b)) => (a, Some(b)),
        None => (method, None),
    };
    let mut out: Vec<String> = match first {
        "password" => vec!["pwd".into()],
        "passkey" => vec!["hwk".into(), "user".into()],
        "emergency" => vec!["emergency".into()],
        "" => Vec::new(),
        provider => vec![format!("idp:{provider}")],
    };
    match second {
        Some("totp" | "recovery") => out.push("otp".into()),
        Some("passkey") => out.extend(["hwk".into(), "user".into()]),
        _ => {}
    }
    if crate::mfa::is_multi_factor(method) {
        out.push("mfa".into());
    }
    out
}

/// `header.claims.signature` for the fixed HS256 header and `claims` JSON.
pub fn hs256(key: &[u8], claims: &str) -> String {
    let mut out = String::with_capacity(HEADER_B64.len() + 2 * claims.len() + 48);
    out.push_str(HEADER_B64);
    out.push('.');
    mac::push_b64(claims.as_bytes(), &mut out);
    let tag = mac::tag(&mac::keyed(key), &[out.as_bytes()]);
    out.push('.');
    mac::push_b64(&tag, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine as _;
    use serde_json::Value;

    const KEY: &[u8] = b"assertion key assertion key assertion key";
    const NOW: u64 = 1_700_000_000;

    fn roles(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    /// An assertion without an e-mail address.
    fn jwt(sub: &str, roles: &[String], aud: &str, now: u64) -> String {
        let who = Subject {
            sub,
            email: None,
            roles,
        };
        assertion(KEY, who, aud, now)
    }

    /// A minimal independent HS256 verifier: returns the claims when the
    /// signature matches `key`.
    fn verify(token: &str, key: &[u8]) -> Option<Value> {
        let parts: Vec<&str> = token.split('.').collect();
        let [header, claims, sig] = parts[..] else {
            return None;
        };
        let header: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(header).ok()?).ok()?;
        if header != json!({"alg": "HS256", "typ": "JWT"}) {
            return None;
        }
        let signing_input = format!("{}.{}", parts[0], parts[1]);
        let expected = mac::tag(&mac::keyed(key), &[signing_input.as_bytes()]);
        if URL_SAFE_NO_PAD.decode(sig).ok()? != expected {
            return None;
        }
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(claims).ok()?).ok()
    }

    #[test]
    fn decodes_with_exact_claims() {
        let token = jwt("alice", &roles(&["admin", "ops"]), "app", NOW);
        let header = token.split('.').next().unwrap();
        assert_eq!(
            URL_SAFE_NO_PAD.decode(header).unwrap(),
            br#"{"alg":"HS256","typ":"JWT"}"#
        );
        let claims = verify(&token, KEY).unwrap();
        assert_eq!(
            claims,
            json!({
                "sub": "alice",
                "roles": ["admin", "ops"],
                "iat": NOW,
                "exp": NOW + 60,
                "aud": "app",
            })
        );
        assert_eq!(claims.as_object().unwrap().len(), 5);
        assert_eq!(
            claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap(),
            ASSERTION_LIFETIME
        );
    }

    /// The well-known jwt.io HS256 example, as an independent known answer.
    #[test]
    fn jwt_io_example() {
        assert_eq!(
            hs256(
                b"your-256-bit-secret",
                r#"{"sub":"1234567890","name":"John Doe","iat":1516239022}"#
            ),
            "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.\
             eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIiwiaWF0IjoxNTE2MjM5MDIyfQ.\
             SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c"
        );
    }

    #[test]
    fn other_key_fails() {
        let token = jwt("alice", &[], "app", NOW);
        assert!(verify(&token, KEY).is_some());
        assert!(verify(&token, b"another key another key another key!!").is_none());
        assert!(verify(&token, &KEY[1..]).is_none());
    }

    #[test]
    fn tampered_claims_fail() {
        let token = jwt("alice", &roles(&["user"]), "app", NOW);
        let parts: Vec<&str> = token.split('.').collect();
        let forged_claims = URL_SAFE_NO_PAD.encode(
            json!({"sub": "alice", "roles": ["admin"], "iat": NOW, "exp": NOW + 60, "aud": "app"})
                .to_string(),
        );
        let forged = format!("{}.{}.{}", parts[0], forged_claims, parts[2]);
        assert!(verify(&forged, KEY).is_none());
        let none_alg = format!(
            "{}.{}.",
            URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#),
            parts[1]
        );
        assert!(verify(&none_alg, KEY).is_none());
    }

    /// Names, roles and audiences are JSON-escaped, never spliced: no claim
    /// injection through a crafted value.
    #[test]
    fn values_are_escaped() {
        let sub = r#"bob","roles":["admin"],"x":""#;
        let aud = "a\"b\\c\n\u{1f512}";
        let token = jwt(sub, &roles(&["r\"1", ""]), aud, NOW);
        let claims = verify(&token, KEY).unwrap();
        assert_eq!(claims["sub"], sub);
        assert_eq!(claims["aud"], aud);
        assert_eq!(claims["roles"], json!(["r\"1", ""]));
        assert_eq!(claims.as_object().unwrap().len(), 5);
    }

    #[test]
    fn the_email_claim_is_there_only_with_an_address() {
        let staff = roles(&["staff"]);
        let who = Subject {
            sub: "alice",
            email: Some(r#"alice"@example.com"#),
            roles: &staff,
        };
        let claims = verify(&assertion(KEY, who, "app", NOW), KEY).unwrap();
        assert_eq!(claims["email"], r#"alice"@example.com"#);
        assert_eq!(claims.as_object().unwrap().len(), 6);
        let none = verify(&jwt("alice", &staff, "app", NOW), KEY).unwrap();
        assert!(none.get("email").is_none());
    }

    #[test]
    fn empty_roles_and_edges() {
        let token = jwt("a", &[], "", 0);
        let claims = verify(&token, KEY).unwrap();
        assert_eq!(claims["roles"], json!([]));
        assert_eq!(claims["iat"], 0);
        assert_eq!(claims["exp"], 60);
        // No padding, URL-safe alphabet, exactly three segments.
        assert_eq!(token.split('.').count(), 3);
        assert!(token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.')));
        // Saturates instead of wrapping.
        let late = verify(&jwt("a", &[], "x", u64::MAX), KEY).unwrap();
        assert_eq!(late["exp"], u64::MAX);
    }

    #[test]
    fn deterministic() {
        let a = jwt("alice", &roles(&["admin"]), "app", NOW);
        assert_eq!(a, jwt("alice", &roles(&["admin"]), "app", NOW));
        assert_ne!(a, jwt("alice", &roles(&["admin"]), "app", NOW + 1));
    }

    #[test]
    fn the_full_claims_and_amr() {
        let staff = roles(&["staff"]);
        let c = Claims {
            subject: Subject {
                sub: "alice",
                email: None,
                roles: &staff,
            },
            aud: "app",
            iat: NOW,
            iss: Some("https://app.example.com"),
            jti: Some("0123"),
            amr: amr("password+totp"),
        };
        let claims = verify(&hs256(KEY, &c.to_json()), KEY).unwrap();
        assert_eq!(claims["iss"], "https://app.example.com");
        assert_eq!(claims["jti"], "0123");
        assert_eq!(claims["amr"], json!(["pwd", "otp", "mfa"]));
        assert_eq!(claims.as_object().unwrap().len(), 8);
        for (method, want) in [
            ("password", vec!["pwd"]),
            ("password+recovery", vec!["pwd", "otp", "mfa"]),
            ("password+passkey", vec!["pwd", "hwk", "user", "mfa"]),
            ("passkey", vec!["hwk", "user", "mfa"]),
            ("github", vec!["idp:github"]),
            ("github+amr", vec!["idp:github", "mfa"]),
            ("google+totp", vec!["idp:google", "otp", "mfa"]),
            ("emergency", vec!["emergency"]),
            ("+totp", vec!["otp"]),
        ] {
            assert_eq!(amr(method), want, "{method}");
        }
    }
}
