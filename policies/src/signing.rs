//! Assertion keys with a public half (`[identity] assertion = "es256"` or
//! `"eddsa"`): generated as PKCS#8, kept by the identity store, published
//! as a JWK (RFC 7517/7518, Ed25519 per RFC 8037), named by their RFC 7638
//! thumbprint, and signing compact JWS (RFC 7515) with ring.
//!
//! The header is fixed per key (`alg`, `kid`, `typ`): nothing a token
//! says chooses how it is checked. Verifying is the app's side (PyJWT's
//! `PyJWKClient` with `algorithms=["ES256"]`, docs/configuration.md).

use ring::rand::SystemRandom;
use ring::signature::{
    EcdsaKeyPair, Ed25519KeyPair, KeyPair as _, ECDSA_P256_SHA256_FIXED_SIGNING,
};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use thiserror::Error;

use crate::mac;

/// A public-key signature algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Alg {
    /// ECDSA on P-256 with SHA-256.
    Es256,
    /// Ed25519.
    EdDsa,
}

impl Alg {
    /// The JWS `alg` value.
    pub fn as_str(self) -> &'static str {
        match self {
            Alg::Es256 => "ES256",
            Alg::EdDsa => "EdDSA",
        }
    }

    /// From the JWS `alg` value (as stored).
    pub fn parse(s: &str) -> Option<Alg> {
        match s {
            "ES256" => Some(Alg::Es256),
            "EdDSA" => Some(Alg::EdDsa),
            _ => None,
        }
    }
}

/// A key that cannot be made, read or used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum KeyError {
    /// The bytes are not a PKCS#8 key of this algorithm.
    #[error("not a PKCS#8 {0} key")]
    Malformed(&'static str),
    /// The system's random source or the signer failed.
    #[error("the {0} signer failed")]
    Failed(&'static str),
}

enum Inner {
    Es256(EcdsaKeyPair),
    EdDsa(Ed25519KeyPair),
}

/// A private key ready to sign, with its public JWK and `kid`.
pub struct KeyPair {
    alg: Alg,
    kid: String,
    /// base64url of the JWS header, fixed for this key.
    header: String,
    jwk: Value,
    inner: Inner,
}

impl std::fmt::Debug for KeyPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the private key.
        f.debug_struct("KeyPair")
            .field("alg", &self.alg)
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

/// A new private key, PKCS#8 (DER).
pub fn generate(alg: Alg) -> Result<Vec<u8>, KeyError> {
    let rng = SystemRandom::new();
    let doc = match alg {
        Alg::Es256 => EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng),
        Alg::EdDsa => Ed25519KeyPair::generate_pkcs8(&rng),
    };
    doc.map(|d| d.as_ref().to_vec())
        .map_err(|_| KeyError::Failed(alg.as_str()))
}

/// The public JWK members that the RFC 7638 thumbprint covers, in the
/// order it requires (lexicographic).
fn required_members(alg: Alg, public: &[u8]) -> Result<Vec<(&'static str, String)>, KeyError> {
    match alg {
        // Uncompressed point: 0x04 || x || y.
        Alg::Es256 => {
            let (Some(&0x04), Some(x), Some(y)) =
                (public.first(), public.get(1..33), public.get(33..65))
            else {
                return Err(KeyError::Malformed("ES256"));
            };
            Ok(vec![
                ("crv", "P-256".into()),
                ("kty", "EC".into()),
                ("x", mac::b64(x)),
                ("y", mac::b64(y)),
            ])
        }
        Alg::EdDsa => Ok(vec![
            ("crv", "Ed25519".into()),
            ("kty", "OKP".into()),
            ("x", mac::b64(public)),
        ]),
    }
}

/// The RFC 7638 thumbprint of the members: SHA-256 of their canonical
/// JSON, base64url.
fn thumbprint(members: &[(&str, String)]) -> String {
    let body: Vec<String> = members
        .iter()
        .map(|(k, v)| format!("{}:{}", json!(k), json!(v)))
        .collect();
    mac::b64(&Sha256::digest(
        format!("{{{}}}", body.join(",")).as_bytes(),
    ))
}

impl KeyPair {
    /// Reads a stored PKCS#8 key.
    pub fn from_pkcs8(alg: Alg, der: &[u8]) -> Result<KeyPair, KeyError> {
        let bad = KeyError::Malformed(alg.as_str());
        let inner = match alg {
            Alg::Es256 => EcdsaKeyPair::from_pkcs8(
                &ECDSA_P256_SHA256_FIXED_SIGNING,
                der,
                &SystemRandom::new(),
            )
            .map(Inner::Es256),
            Alg::EdDsa => Ed25519KeyPair::from_pkcs8_maybe_unchecked(der).map(Inner::EdDsa),
        }
        .map_err(|_| bad)?;
        let public = match &inner {
            Inner::Es256(k) => k.public_key().as_ref().to_vec(),
            Inner::EdDsa(k) => k.public_key().as_ref().to_vec(),
        };
        let members = required_members(alg, &public)?;
        let kid = thumbprint(&members);
        let mut jwk = serde_json::Map::new();
        for (k, v) in members {
            jwk.insert(k.into(), v.into());
        }
        jwk.insert("alg".into(), alg.as_str().into());
        jwk.insert("use".into(), "sig".into());
        jwk.insert("kid".into(), kid.clone().into());
        let header = json!({"alg": alg.as_str(), "kid": kid, "typ": "JWT"}).to_string();
        Ok(KeyPair {
            alg,
            header: mac::b64(header.as_bytes()),
            kid,
            jwk: Value::Object(jwk),
            inner,
        })
    }

    /// The algorithm.
    pub fn alg(&self) -> Alg {
        self.alg
    }

    /// The key id: the public key's RFC 7638 thumbprint.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The public JWK (with `alg`, `use` and `kid`).
    pub fn jwk(&self) -> &Value {
        &self.jwk
    }

    /// `header.claims.signature` for `claims` (JSON).
    pub fn sign(&self, claims: &str) -> Result<String, KeyError> {
        let mut out = String::with_capacity(self.header.len() + 2 * claims.len() + 100);
        out.push_str(&self.header);
        out.push('.');
        mac::push_b64(claims.as_bytes(), &mut out);
        let failed = KeyError::Failed(self.alg.as_str());
        let sig = match &self.inner {
            Inner::Es256(k) => k
                .sign(&SystemRandom::new(), out.as_bytes())
                .map_err(|_| failed)?
                .as_ref()
                .to_vec(),
            Inner::EdDsa(k) => k.sign(out.as_bytes()).as_ref().to_vec(),
        };
        out.push('.');
        mac::push_b64(&sig, &mut out);
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine as _;
    use ring::signature::{UnparsedPublicKey, ECDSA_P256_SHA256_FIXED, ED25519};

    /// Checks a token against the JWK alone, as an app would.
    fn verify(token: &str, jwk: &Value) -> Option<Value> {
        let (input, sig) = token.rsplit_once('.')?;
        let sig = URL_SAFE_NO_PAD.decode(sig).ok()?;
        let b = |k: &str| URL_SAFE_NO_PAD.decode(jwk[k].as_str().unwrap()).unwrap();
        let ok = match jwk["kty"].as_str()? {
            "EC" => {
                let mut point = vec![4u8];
                point.extend(b("x"));
                point.extend(b("y"));
                UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, point)
                    .verify(input.as_bytes(), &sig)
                    .is_ok()
            }
            "OKP" => UnparsedPublicKey::new(&ED25519, b("x"))
                .verify(input.as_bytes(), &sig)
                .is_ok(),
            _ => false,
        };
        let claims = input.split('.').nth(1)?;
        ok.then(|| serde_json::from_slice(&URL_SAFE_NO_PAD.decode(claims).unwrap()).unwrap())
    }

    fn header(token: &str) -> Value {
        let h = token.split('.').next().unwrap();
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(h).unwrap()).unwrap()
    }

    #[test]
    fn both_algorithms_sign_what_their_jwk_verifies() {
        for alg in [Alg::Es256, Alg::EdDsa] {
            let der = generate(alg).unwrap();
            let key = KeyPair::from_pkcs8(alg, &der).unwrap();
            let token = key.sign(r#"{"sub":"alice"}"#).unwrap();
            assert_eq!(verify(&token, key.jwk()).unwrap()["sub"], "alice");
            assert_eq!(
                header(&token),
                json!({"alg": alg.as_str(), "kid": key.kid(), "typ": "JWT"})
            );
            assert_eq!(key.jwk()["kid"], key.kid());
            assert_eq!(key.jwk()["alg"], alg.as_str());
            assert_eq!(key.jwk()["use"], "sig");
            // Read back from storage: the same key.
            assert_eq!(KeyPair::from_pkcs8(alg, &der).unwrap().kid(), key.kid());
            // Another key's JWK does not verify it; a changed claim fails.
            let other = KeyPair::from_pkcs8(alg, &generate(alg).unwrap()).unwrap();
            assert_ne!(other.kid(), key.kid());
            assert!(verify(&token, other.jwk()).is_none());
            let parts: Vec<&str> = token.split('.').collect();
            let forged = format!(
                "{}.{}.{}",
                parts[0],
                URL_SAFE_NO_PAD.encode(r#"{"sub":"bob"}"#),
                parts[2]
            );
            assert!(verify(&forged, key.jwk()).is_none());
            // Never the private key in a debug print.
            assert!(!format!("{key:?}").contains(&URL_SAFE_NO_PAD.encode(&der)));
        }
    }

    #[test]
    fn a_key_of_the_other_algorithm_or_junk_is_refused() {
        let ec = generate(Alg::Es256).unwrap();
        let ed = generate(Alg::EdDsa).unwrap();
        assert_eq!(
            KeyPair::from_pkcs8(Alg::EdDsa, &ec).unwrap_err(),
            KeyError::Malformed("EdDSA")
        );
        assert_eq!(
            KeyPair::from_pkcs8(Alg::Es256, &ed).unwrap_err(),
            KeyError::Malformed("ES256")
        );
        assert!(KeyPair::from_pkcs8(Alg::Es256, b"junk").is_err());
        assert!(KeyPair::from_pkcs8(Alg::EdDsa, &[]).is_err());
        assert_eq!(Alg::parse("ES256"), Some(Alg::Es256));
        assert_eq!(Alg::parse("EdDSA"), Some(Alg::EdDsa));
        assert_eq!(Alg::parse("es256"), None);
        assert_eq!(Alg::parse("HS256"), None);
    }

    /// RFC 8037 appendix A.3: the thumbprint of its Ed25519 key.
    #[test]
    fn rfc8037_thumbprint() {
        let members = vec![
            ("crv", "Ed25519".to_string()),
            ("kty", "OKP".to_string()),
            (
                "x",
                "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo".to_string(),
            ),
        ];
        assert_eq!(
            thumbprint(&members),
            "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"
        );
    }
}
