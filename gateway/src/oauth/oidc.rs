//! OpenID Connect providers (`kind = "oidc"` and `"google"`) through the
//! `openidconnect` crate: discovery (or the configured endpoints), the
//! authorization code exchange with PKCE, and id_token verification.
//!
//! Provider metadata and keys are cached for an hour; a token signed with a
//! key the cache does not know makes one refetch of the JWKS, at most once
//! a minute per provider (a flood of forged `kid`s cannot make us hammer
//! the provider), then verification is tried once more.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use openidconnect::core::{
    CoreAuthenticationFlow, CoreClient, CoreIdToken, CoreIdTokenVerifier, CoreJsonWebKeySet,
    CoreJwsSigningAlgorithm, CoreProviderMetadata, CoreResponseType, CoreSubjectIdentifierType,
};
use openidconnect::{
    AuthUrl, AuthorizationCode, ClaimsVerificationError, ClientId, ClientSecret, CsrfToken,
    EmptyAdditionalProviderMetadata, IssuerUrl, JsonWebKeySetUrl, JwsSigningAlgorithm, Nonce,
    PkceCodeChallenge, PkceCodeVerifier, RedirectUrl, RequestTokenError, ResponseTypes, Scope,
    SignatureVerificationError, TokenResponse, TokenUrl, UserInfoUrl,
};

use super::http::Capped;
use super::{Failure, Person, Start};
use crate::config::{OidcConf, ProviderConf};

/// Metadata and keys are fetched again after this long.
const METADATA_TTL: Duration = Duration::from_secs(3600);
/// At most one JWKS refetch for an unknown key per this long.
const REFETCH_EVERY: Duration = Duration::from_secs(60);
/// `iat` may be this far in the future (clock skew)...
const IAT_SKEW_SECS: i64 = 60;
/// ...and this far in the past (a code is exchanged right after it is issued).
const IAT_MAX_AGE_SECS: i64 = 600;

struct Cached {
    meta: CoreProviderMetadata,
    fetched: Instant,
}

pub struct Oidc {
    issuer: String,
    explicit: Option<Explicit>,
    client_id: String,
    client_secret: String,
    scopes: Vec<String>,
    groups_claim: String,
    http: Capped,
    cached: ArcSwapOption<Cached>,
    last_refetch: Mutex<Option<Instant>>,
}

struct Explicit {
    auth: String,
    token: String,
    jwks: String,
    userinfo: Option<String>,
}

impl Oidc {
    pub fn new(p: &ProviderConf, o: &OidcConf, http: Capped) -> Oidc {
        Oidc {
            // The issuer exactly as configured: it is compared with `iss`.
            issuer: o.issuer.clone(),
            explicit: o.endpoints.as_ref().map(|e| Explicit {
                auth: e.auth_url.to_string(),
                token: e.token_url.to_string(),
                jwks: e.jwks_url.to_string(),
                userinfo: e.userinfo_url.as_ref().map(ToString::to_string),
            }),
            client_id: p.client_id.clone(),
            client_secret: p.client_secret.value.clone(),
            scopes: p.scopes.clone(),
            groups_claim: o.groups_claim.clone(),
            http,
            cached: ArcSwapOption::empty(),
            last_refetch: Mutex::new(None),
        }
    }

    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    fn issuer_url(&self) -> Result<IssuerUrl, Failure> {
        IssuerUrl::new(self.issuer.clone()).map_err(|_| Failure::Unreachable("issuer_url"))
    }

    /// The metadata, from the cache while it is young, else fetched (a
    /// failed fetch keeps serving the old copy, if any).
    async fn metadata(&self) -> Result<CoreProviderMetadata, Failure> {
        let cached = self.cached.load_full();
        if let Some(c) = cached
            .as_ref()
            .filter(|c| c.fetched.elapsed() < METADATA_TTL)
        {
            return Ok(c.meta.clone());
        }
        match self.fetch().await {
            Ok(meta) => {
                self.cached.store(Some(std::sync::Arc::new(Cached {
                    meta: meta.clone(),
                    fetched: Instant::now(),
                })));
                Ok(meta)
            }
            Err(reason) => match cached {
                Some(c) => {
                    tracing::warn!(issuer = %self.issuer, reason, "provider metadata refresh failed; using the cached copy");
                    Ok(c.meta.clone())
                }
                None => Err(Failure::Unreachable(reason)),
            },
        }
    }

    async fn fetch(&self) -> Result<CoreProviderMetadata, &'static str> {
        let issuer = self.issuer_url().map_err(Failure::reason)?;
        let Some(e) = &self.explicit else {
            // The crate checks the document's `issuer` equals ours and
            // fetches its JWKS.
            return CoreProviderMetadata::discover_async(issuer, &self.http)
                .await
                .map_err(|e| {
                    tracing::warn!(issuer = %self.issuer, error = %e, "provider discovery failed");
                    "discovery"
                });
        };
        let bad = |_| "endpoint_url";
        let jwks_url = JsonWebKeySetUrl::new(e.jwks.clone()).map_err(bad)?;
        let jwks = CoreJsonWebKeySet::fetch_async(&jwks_url, &self.http)
            .await
            .map_err(|e| {
                tracing::warn!(issuer = %self.issuer, error = %e, "provider JWKS fetch failed");
                "jwks"
            })?;
        let meta = CoreProviderMetadata::new(
            issuer,
            AuthUrl::new(e.auth.clone()).map_err(bad)?,
            jwks_url,
            vec![ResponseTypes::new(vec![CoreResponseType::Code])],
            vec![CoreSubjectIdentifierType::Public],
            vec![CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256],
            EmptyAdditionalProviderMetadata {},
        )
        .set_token_endpoint(Some(TokenUrl::new(e.token.clone()).map_err(bad)?))
        .set_userinfo_endpoint(
            e.userinfo
                .clone()
                .map(UserInfoUrl::new)
                .transpose()
                .map_err(bad)?,
        )
        .set_jwks(jwks);
        Ok(meta)
    }

    fn client(
        &self,
        meta: CoreProviderMetadata,
        redirect_uri: &str,
    ) -> Result<
        CoreClient<
            openidconnect::EndpointSet,
            openidconnect::EndpointNotSet,
            openidconnect::EndpointNotSet,
            openidconnect::EndpointNotSet,
            openidconnect::EndpointMaybeSet,
            openidconnect::EndpointMaybeSet,
        >,
        Failure,
    > {
        let redirect = RedirectUrl::new(redirect_uri.to_string())
            .map_err(|_| Failure::Refused("redirect_uri"))?;
        Ok(CoreClient::from_provider_metadata(
            meta,
            ClientId::new(self.client_id.clone()),
            Some(ClientSecret::new(self.client_secret.clone())),
        )
        .set_redirect_uri(redirect))
    }

    pub async fn authorize_url(&self, start: &Start<'_>) -> Result<String, Failure> {
        let meta = self.metadata().await?;
        let client = self.client(meta, start.redirect_uri)?;
        let (state, nonce) = (start.state.to_string(), start.nonce.to_string());
        let challenge = PkceCodeChallenge::from_code_verifier_sha256(&PkceCodeVerifier::new(
            start.pkce_verifier.to_string(),
        ));
        let mut request = client
            .authorize_url(
                CoreAuthenticationFlow::AuthorizationCode,
                move || CsrfToken::new(state),
                move || Nonce::new(nonce),
            )
            .set_pkce_challenge(challenge);
        // The crate always asks for `openid`.
        for scope in self.scopes.iter().filter(|s| *s != "openid") {
            request = request.add_scope(Scope::new(scope.clone()));
        }
        let (url, _, _) = request.url();
        Ok(url.to_string())
    }

    pub async fn finish(&self, code: &str, start: &Start<'_>) -> Result<Person, Failure> {
        let meta = self.metadata().await?;
        let client = self.client(meta.clone(), start.redirect_uri)?;
        let exchange = client
            .exchange_code(AuthorizationCode::new(code.to_string()))
            .map_err(|_| Failure::Unreachable("token_endpoint_missing"))?
            .set_pkce_verifier(PkceCodeVerifier::new(start.pkce_verifier.to_string()));
        let token = match exchange.request_async(&self.http).await {
            Ok(t) => t,
            Err(RequestTokenError::ServerResponse(e)) => {
                tracing::info!(issuer = %self.issuer, error = %e.error(), "the provider refused the code");
                return Err(Failure::Refused("code_refused"));
            }
            Err(RequestTokenError::Request(e)) => {
                tracing::warn!(issuer = %self.issuer, error = %e, "token endpoint unreachable");
                return Err(Failure::Unreachable("token_endpoint"));
            }
            Err(e) => {
                tracing::warn!(issuer = %self.issuer, error = %e, "token endpoint answered garbage");
                return Err(Failure::Unreachable("token_response"));
            }
        };
        let Some(id_token) = token.id_token() else {
            return Err(Failure::Refused("id_token_missing"));
        };
        let nonce = Nonce::new(start.nonce.to_string());
        let claims = match self.verify(&meta, id_token, &nonce) {
            Err(ClaimsVerificationError::SignatureVerification(
                SignatureVerificationError::NoMatchingKey,
            )) => {
                let meta = self.refetch_keys(meta).await?;
                self.verify(&meta, id_token, &nonce)
            }
            other => other,
        }
        .map_err(|e| {
            tracing::info!(issuer = %self.issuer, error = %e, "id_token refused");
            Failure::Refused(refusal(&e))
        })?;
        // `azp`, which the crate leaves to the caller: when present it must
        // be us, and a token for several audiences must name it.
        let azp = claims.authorized_party().map(|a| a.as_str());
        if azp.is_some_and(|a| a != self.client_id)
            || (claims.audiences().len() > 1 && azp.is_none())
        {
            return Err(Failure::Refused("id_token_azp"));
        }
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
        let iat = claims.issue_time().timestamp();
        if iat > now + IAT_SKEW_SECS {
            return Err(Failure::Refused("id_token_iat_future"));
        }
        if iat < now - IAT_MAX_AGE_SECS {
            return Err(Failure::Refused("id_token_iat_stale"));
        }
        // Verified above: the same payload's other claims may be read.
        let extra = payload(id_token);
        let strings = |name: &str| -> Vec<String> {
            match extra.get(name) {
                Some(serde_json::Value::Array(a)) => a
                    .iter()
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect(),
                Some(serde_json::Value::String(s)) => vec![s.clone()],
                _ => Vec::new(),
            }
        };
        Ok(Person {
            subject: claims.subject().as_str().to_string(),
            email: claims.email().map(|e| e.as_str().to_string()),
            email_verified: claims.email_verified() == Some(true),
            hosted_domain: extra.get("hd").and_then(|v| v.as_str()).map(str::to_string),
            groups: strings(&self.groups_claim),
            login: claims.preferred_username().map(|u| u.as_str().to_string()),
            amr: claims
                .auth_method_refs()
                .map(|list| list.iter().map(|a| a.as_str().to_string()).collect())
                .unwrap_or_default(),
        })
    }

    fn verify<'t>(
        &self,
        meta: &CoreProviderMetadata,
        id_token: &'t CoreIdToken,
        nonce: &Nonce,
    ) -> Result<&'t openidconnect::core::CoreIdTokenClaims, ClaimsVerificationError> {
        let issuer = IssuerUrl::new(self.issuer.clone())
            .map_err(|_| ClaimsVerificationError::Other("issuer".into()))?;
        // Asymmetric algorithms only: no `none`, and no HMAC with the
        // client secret (which anyone holding the secret could forge).
        let mut algs: Vec<CoreJwsSigningAlgorithm> = meta
            .id_token_signing_alg_values_supported()
            .iter()
            .filter(|a| !a.uses_shared_secret() && **a != CoreJwsSigningAlgorithm::None)
            .cloned()
            .collect();
        if algs.is_empty() {
            algs.push(CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256);
        }
        let verifier = CoreIdTokenVerifier::new_public_client(
            ClientId::new(self.client_id.clone()),
            issuer,
            meta.jwks().clone(),
        )
        .set_allowed_algs(algs);
        id_token.claims(&verifier, nonce)
    }

    /// One JWKS refetch for a token signed by an unknown key, unless one
    /// happened within [`REFETCH_EVERY`].
    async fn refetch_keys(
        &self,
        meta: CoreProviderMetadata,
    ) -> Result<CoreProviderMetadata, Failure> {
        let unknown_key = Failure::Refused("id_token_unknown_key");
        {
            let Ok(mut last) = self.last_refetch.lock() else {
                return Err(unknown_key);
            };
            if last.is_some_and(|t| t.elapsed() < REFETCH_EVERY) {
                return Err(unknown_key);
            }
            *last = Some(Instant::now());
        }
        let jwks = CoreJsonWebKeySet::fetch_async(meta.jwks_uri(), &self.http)
            .await
            .map_err(|_| Failure::Unreachable("jwks"))?;
        let meta = meta.set_jwks(jwks);
        self.cached.store(Some(std::sync::Arc::new(Cached {
            meta: meta.clone(),
            fetched: Instant::now(),
        })));
        Ok(meta)
    }

    /// `check --online`: discovery and keys, one line.
    pub async fn probe(&self) -> Result<String, String> {
        let meta = self.fetch().await.map_err(|r| format!("{r} failed"))?;
        let keys = meta.jwks().keys().len();
        let token = meta
            .token_endpoint()
            .map_or("none".to_string(), |t| t.to_string());
        Ok(format!(
            "issuer {}, authorization {}, token {token}, {keys} signing key(s)",
            meta.issuer().as_str(),
            meta.authorization_endpoint().as_str()
        ))
    }
}

/// The one-word audit reason for a verification error.
fn refusal(e: &ClaimsVerificationError) -> &'static str {
    match e {
        ClaimsVerificationError::Expired(_) => "id_token_expired",
        ClaimsVerificationError::InvalidAudience(_) => "id_token_audience",
        ClaimsVerificationError::InvalidIssuer(_) => "id_token_issuer",
        ClaimsVerificationError::InvalidNonce(_) => "id_token_nonce",
        ClaimsVerificationError::SignatureVerification(
            SignatureVerificationError::DisallowedAlg(_),
        ) => "id_token_algorithm",
        ClaimsVerificationError::SignatureVerification(
            SignatureVerificationError::NoMatchingKey,
        ) => "id_token_unknown_key",
        ClaimsVerificationError::SignatureVerification(_) => "id_token_signature",
        _ => "id_token_invalid",
    }
}

/// The id_token's payload as JSON (only read after verification).
fn payload(id_token: &CoreIdToken) -> serde_json::Map<String, serde_json::Value> {
    use base64::Engine;
    let jwt = id_token.to_string();
    jwt.split('.')
        .nth(1)
        .and_then(|p| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(p)
                .ok()
        })
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .unwrap_or_default()
}
