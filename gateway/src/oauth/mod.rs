//! Sign-in with providers: OpenID Connect (any issuer, Google) and GitHub
//! (OAuth 2.0 and its REST API). Built once per config into [`Providers`];
//! the reserved pages (`reserved/oauth.rs`) call [`Provider::authorize_url`]
//! at the start and [`Provider::finish`] at the callback.
//!
//! Everything the provider says is checked here or in `policies::signin`
//! before it names anyone: the id_token through the `openidconnect` crate
//! (signature with the provider's JWKS, refetched on an unknown key at most
//! once a minute; `iss`, `aud`, `azp`, `exp`, `nonce`; `iat` within a small
//! skew; asymmetric algorithms only), GitHub's answers through typed JSON.
//! A provider that cannot be reached or answers something unusable is a
//! [`Failure::Unreachable`] (502), anything it refuses or that fails
//! verification a [`Failure::Refused`] (403); neither carries provider text
//! to a page.

mod github;
mod http;
mod oidc;

use std::sync::Arc;

use crate::config::{LoginConf, Protocol, ProviderConf, Signup};

/// Why a sign-in could not complete.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// The provider is down or answered garbage (502 page); the reason is
    /// one word for the audit line.
    Unreachable(&'static str),
    /// The provider refused, or its answer failed a check (403 page).
    Refused(&'static str),
}

impl Failure {
    /// The audit reason.
    pub fn reason(self) -> &'static str {
        match self {
            Failure::Unreachable(r) | Failure::Refused(r) => r,
        }
    }
}

/// What a provider said about the person, verified.
#[derive(Debug, Clone, Default)]
pub struct Person {
    /// Stable at the provider: OIDC `sub`, GitHub's numeric user id.
    pub subject: String,
    pub email: Option<String>,
    pub email_verified: bool,
    /// Google's `hd`.
    pub hosted_domain: Option<String>,
    /// OIDC `groups_claim` values; GitHub `org` and `org/team`.
    pub groups: Vec<String>,
    /// A readable handle (GitHub login, `preferred_username`), for names.
    pub login: Option<String>,
    /// The id_token's `amr` (how the provider authenticated the person);
    /// empty for GitHub, which does not say.
    pub amr: Vec<String>,
}

/// What the start of a sign-in needs to send the browser on.
pub struct Start<'a> {
    pub state: &'a str,
    pub nonce: &'a str,
    pub pkce_verifier: &'a str,
    pub redirect_uri: &'a str,
}

/// One configured provider, ready to use.
pub struct Provider {
    pub id: String,
    pub name: String,
    pub allowed_domains: Vec<String>,
    pub allowed_emails: Vec<String>,
    pub role_map: Vec<(String, Vec<String>)>,
    /// GitHub: required orgs (empty: none, and always for OIDC).
    pub required_orgs: Vec<String>,
    /// Google: `hd` must be an allowed domain.
    pub check_hosted_domain: bool,
    client: Client,
}

enum Client {
    Oidc(oidc::Oidc),
    Github(github::Github),
}

impl Provider {
    /// The provider's authorization URL for this start.
    pub async fn authorize_url(&self, start: &Start<'_>) -> Result<String, Failure> {
        match &self.client {
            Client::Oidc(c) => c.authorize_url(start).await,
            Client::Github(c) => Ok(c.authorize_url(start)),
        }
    }

    /// Exchanges the code and verifies what comes back.
    pub async fn finish(&self, code: &str, start: &Start<'_>) -> Result<Person, Failure> {
        match &self.client {
            Client::Oidc(c) => c.finish(code, start).await,
            Client::Github(c) => c.finish(code, start).await,
        }
    }

    /// RFC 9207: whether the callback's `iss` names this provider (a
    /// mix-up defence when several providers are configured). GitHub sends
    /// none; any value is taken as not contradicting it.
    pub fn issued_by(&self, iss: &str) -> bool {
        match &self.client {
            Client::Oidc(c) => c.issuer() == iss,
            Client::Github(_) => true,
        }
    }

    /// `check --online`: what the provider publishes, one line.
    pub async fn probe(&self) -> Result<String, String> {
        match &self.client {
            Client::Oidc(c) => c.probe().await,
            Client::Github(c) => Ok(c.describe()),
        }
    }

    /// The rules `policies::signin` applies.
    pub fn rules(&self) -> policies::signin::Rules<'_> {
        policies::signin::Rules {
            allowed_domains: &self.allowed_domains,
            allowed_emails: &self.allowed_emails,
            check_hosted_domain: self.check_hosted_domain,
            required_orgs: &self.required_orgs,
        }
    }
}

/// `[login]`, compiled.
pub struct Providers {
    pub password: bool,
    pub signup: Signup,
    pub default_roles: Vec<String>,
    pub link_by_email: bool,
    /// Which accounts must have a second factor.
    pub mfa: policies::mfa::Requirement,
    /// The role of `/.portcullis/admin`.
    pub admin_role: String,
    /// `[login] passkeys`: sign-in with a passkey alone.
    pub passkeys: bool,
    pub list: Vec<Arc<Provider>>,
}

impl Providers {
    /// Builds every provider's HTTP client (an unreadable `ca` is an error
    /// here, at load, not at the first sign-in).
    pub fn build(conf: &LoginConf) -> Result<Providers, String> {
        let list = conf
            .providers
            .iter()
            .map(|p| build(p).map(Arc::new))
            .collect::<Result<_, _>>()?;
        Ok(Providers {
            password: conf.password,
            signup: conf.signup,
            default_roles: conf.default_roles.clone(),
            link_by_email: conf.link_by_email,
            mfa: conf.mfa.clone(),
            admin_role: conf.admin_role.clone(),
            passkeys: conf.passkeys,
            list,
        })
    }

    /// The provider with this id.
    pub fn get(&self, id: &str) -> Option<&Arc<Provider>> {
        self.list.iter().find(|p| p.id == id)
    }
}

fn build(p: &ProviderConf) -> Result<Provider, String> {
    let http =
        http::client(p.ca.as_deref()).map_err(|e| format!("login.provider {:?}: {e}", p.id))?;
    let (client, required_orgs, check_hosted_domain) = match &p.protocol {
        Protocol::Oidc(o) => (
            Client::Oidc(oidc::Oidc::new(p, o, http)),
            Vec::new(),
            o.check_hosted_domain,
        ),
        Protocol::Github(g) => (
            Client::Github(github::Github::new(p, g, http)),
            g.orgs.clone(),
            false,
        ),
    };
    Ok(Provider {
        id: p.id.clone(),
        name: p.name.clone(),
        allowed_domains: p.allowed_domains.clone(),
        allowed_emails: p.allowed_emails.clone(),
        role_map: p.role_map.clone(),
        required_orgs,
        check_hosted_domain,
        client,
    })
}
