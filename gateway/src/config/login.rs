//! `[login]` and `[[login.provider]]`: who signs in, and how
//! (docs/configuration.md `[login]`).
//!
//! Providers are read into what the runtime needs and nothing looser: every
//! URL parsed and HTTPS, the client secret a reference (`env:`/`file:`),
//! kind-specific keys refused on other kinds, role names checked, an extra
//! root (`ca`) read now so a missing file is a config error, not a failed
//! sign-in.

use std::path::Path;

use policies::mfa::Requirement;
use url::Url;

use super::secret::{self, Secret, SecretSource};
use super::{EnvLookup, Report, Section};

/// `[login]`, validated.
#[derive(Debug)]
pub struct LoginConf {
    /// Local accounts may sign in with a password.
    pub password: bool,
    pub signup: Signup,
    /// Roles of an account created at a first provider sign-in.
    pub default_roles: Vec<String>,
    /// A provider identity with a verified address equal to one account's
    /// address signs in to that account.
    pub link_by_email: bool,
    /// `mfa` with `mfa_roles`: which accounts must have a second factor.
    pub mfa: Requirement,
    /// Holders of this role reach `/.portcullis/admin`.
    pub admin_role: String,
    /// Passkeys may sign in alone (they are a second factor either way).
    pub passkeys: bool,
    pub providers: Vec<ProviderConf>,
}

/// `[login] signup`: who gets an account at a first provider sign-in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signup {
    /// Anyone the provider's rules allow.
    Open,
    /// Only with an invitation (until invitations exist: nobody new).
    Invite,
    /// Only identities that already have an account.
    Existing,
}

/// One `[[login.provider]]`.
#[derive(Debug)]
pub struct ProviderConf {
    /// `[a-z0-9-]{1,32}`: in URLs, audit lines and metrics.
    pub id: String,
    /// The button label.
    pub name: String,
    pub protocol: Protocol,
    pub client_id: String,
    pub client_secret: Secret<String>,
    pub scopes: Vec<String>,
    pub allowed_domains: Vec<String>,
    pub allowed_emails: Vec<String>,
    /// Provider group (OIDC claim values, GitHub `org` or `org/team`) → roles.
    pub role_map: Vec<(String, Vec<String>)>,
    /// An extra trusted root for the provider's HTTPS, as PEM.
    pub ca: Option<Vec<u8>>,
}

/// How the provider is spoken to.
#[derive(Debug)]
pub enum Protocol {
    Oidc(OidcConf),
    Github(GithubConf),
}

/// `kind = "oidc"` or `"google"`.
#[derive(Debug)]
pub struct OidcConf {
    /// Exactly as written (it is compared with `iss` character for
    /// character); checked to be an https URL.
    pub issuer: String,
    /// Explicit endpoints instead of discovery.
    pub endpoints: Option<Endpoints>,
    /// The id_token claim whose values `role_map` maps.
    pub groups_claim: String,
    /// Google: the `hd` claim must be an allowed domain.
    pub check_hosted_domain: bool,
}

/// Endpoints given in the config (`kind = "oidc"` without discovery).
#[derive(Debug)]
pub struct Endpoints {
    pub auth_url: Url,
    pub token_url: Url,
    pub jwks_url: Url,
    pub userinfo_url: Option<Url>,
}

/// `kind = "github"`.
#[derive(Debug)]
pub struct GithubConf {
    pub auth_url: Url,
    pub token_url: Url,
    /// `/user`, `/user/emails`, `/user/orgs`, `/user/teams` live under it.
    pub api_url: Url,
    /// Membership of one of these orgs is required (empty: none).
    pub orgs: Vec<String>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Oidc,
    Google,
    Github,
}

const GOOGLE_ISSUER: &str = "https://accounts.google.com";
const GITHUB_AUTH: &str = "https://github.com/login/oauth/authorize";
const GITHUB_TOKEN: &str = "https://github.com/login/oauth/access_token";
const GITHUB_API: &str = "https://api.github.com";

pub(super) fn read_login(
    sec: &mut Section<'_>,
    base: &Path,
    env: EnvLookup<'_>,
    r: &mut Report,
) -> Option<LoginConf> {
    let errors_before = r.errors.len();
    let password = sec.bool("password", r).unwrap_or(true);
    let signup = match sec.str("signup", r) {
        None | Some("invite") => Signup::Invite,
        Some("open") => Signup::Open,
        Some("existing") => Signup::Existing,
        Some(other) => {
            r.error(
                sec.key("signup"),
                format!("{other:?} is not one of \"open\", \"invite\", \"existing\""),
            );
            Signup::Invite
        }
    };
    let default_roles = roles(sec, "default_roles", r);
    let link_by_email = sec.bool("link_by_email", r).unwrap_or(false);
    let mfa = read_mfa(sec, r);
    let passkeys = sec.bool("passkeys", r).unwrap_or(false);
    let admin_role = match sec.str("admin_role", r) {
        None => "admin".to_string(),
        Some(role) if policies::access::valid_role_name(role) => role.to_string(),
        Some(role) => {
            r.error(
                sec.key("admin_role"),
                format!("invalid role name {role:?}: use A-Z a-z 0-9 . _ -"),
            );
            String::new()
        }
    };
    let mut providers: Vec<ProviderConf> = Vec::new();
    for mut p in sec.table_list("provider", r).unwrap_or_default() {
        if let Some(conf) = read_provider(&mut p, base, env, r) {
            if providers.iter().any(|q| q.id == conf.id) {
                r.error(
                    p.key("id"),
                    format!("{:?} is used by another provider", conf.id),
                );
            }
            providers.push(conf);
        }
        p.finish(r);
    }
    if !password && providers.is_empty() {
        r.error(
            sec.key("password"),
            "false leaves no way to sign in: add a [[login.provider]] or keep passwords",
        );
    }
    if !providers.is_empty() && signup == Signup::Existing && !link_by_email {
        r.warn(
            sec.key("signup"),
            "\"existing\" without link_by_email = true: an identity not linked before \
             (by an earlier sign-in) can never sign in",
        );
    }
    (r.errors.len() == errors_before).then_some(LoginConf {
        password,
        signup,
        default_roles,
        link_by_email,
        mfa,
        admin_role,
        passkeys,
        providers,
    })
}

/// `mfa` and `mfa_roles`: roles only with `"roles"`, and then at least one.
fn read_mfa(sec: &mut Section<'_>, r: &mut Report) -> Requirement {
    let listed = roles(sec, "mfa_roles", r);
    let has_list = sec.has("mfa_roles");
    match sec.str("mfa", r) {
        None | Some("optional") | Some("required") if has_list => {
            r.error(
                sec.key("mfa_roles"),
                "only used with mfa = \"roles\": remove it or set mfa = \"roles\"",
            );
            Requirement::Optional
        }
        None | Some("optional") => Requirement::Optional,
        Some("required") => Requirement::Required,
        Some("roles") if listed.is_empty() => {
            r.error(
                sec.key("mfa_roles"),
                "mfa = \"roles\" needs at least one role here (for example [\"admin\"])",
            );
            Requirement::Optional
        }
        Some("roles") => Requirement::Roles(listed),
        Some(other) => {
            r.error(
                sec.key("mfa"),
                format!("{other:?} is not one of \"optional\", \"required\", \"roles\""),
            );
            Requirement::Optional
        }
    }
}

fn read_provider(
    sec: &mut Section<'_>,
    base: &Path,
    env: EnvLookup<'_>,
    r: &mut Report,
) -> Option<ProviderConf> {
    let errors_before = r.errors.len();
    let id = sec.str("id", r).unwrap_or_default().to_string();
    let id_ok = (1..=32).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if !id_ok {
        r.error(
            sec.key("id"),
            "required: 1–32 of a-z 0-9 - (it appears in URLs and logs)",
        );
    }
    let kind = match sec.str("kind", r) {
        Some("oidc") => Kind::Oidc,
        Some("google") => Kind::Google,
        Some("github") => Kind::Github,
        other => {
            let found = other.map_or("nothing".to_string(), |k| format!("{k:?}"));
            r.error(
                sec.key("kind"),
                format!("expected \"oidc\", \"google\" or \"github\", found {found}"),
            );
            return None;
        }
    };
    let name = sec
        .str("name", r)
        .unwrap_or(match kind {
            Kind::Oidc => "OpenID Connect",
            Kind::Google => "Google",
            Kind::Github => "GitHub",
        })
        .to_string();
    if name.is_empty() || name.len() > 64 || name.chars().any(char::is_control) {
        r.error(sec.key("name"), "a label of 1–64 printable characters");
    }
    let client_id = sec.str("client_id", r).unwrap_or_default().to_string();
    if client_id.is_empty() || client_id.chars().any(char::is_control) {
        r.error(
            sec.key("client_id"),
            "required: the client id the provider gave you",
        );
    }
    let client_secret = read_secret(sec, base, env, r);
    let scopes: Vec<String> = match sec.str_list("scopes", r) {
        Some(list) => list.into_iter().map(str::to_string).collect(),
        None => match kind {
            Kind::Oidc | Kind::Google => vec!["openid".into(), "email".into(), "profile".into()],
            Kind::Github => vec!["read:user".into(), "user:email".into(), "read:org".into()],
        },
    };
    if scopes.iter().any(|s| {
        s.is_empty()
            || !s
                .bytes()
                .all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\')
    }) {
        r.error(
            sec.key("scopes"),
            "scopes are non-empty printable ASCII without spaces",
        );
    }
    if kind != Kind::Github && !scopes.iter().any(|s| s == "openid") {
        r.error(
            sec.key("scopes"),
            "an OpenID Connect provider needs the \"openid\" scope",
        );
    }
    let allowed_domains = lowercase_list(sec, "allowed_domains", r);
    let allowed_emails = lowercase_list(sec, "allowed_emails", r);
    for d in &allowed_domains {
        if d.contains('@') || !d.contains('.') {
            r.error(sec.key("allowed_domains"), format!("{d:?} is not a domain"));
        }
    }
    for e in &allowed_emails {
        if e.split('@').count() != 2 || e.starts_with('@') || e.ends_with('@') {
            r.error(
                sec.key("allowed_emails"),
                format!("{e:?} is not an address"),
            );
        }
    }
    let role_map = read_role_map(sec, r);
    let ca = read_ca(sec, base, r);
    let protocol = match kind {
        Kind::Oidc | Kind::Google => read_oidc(sec, kind, r).map(Protocol::Oidc),
        Kind::Github => read_github(sec, r).map(Protocol::Github),
    };
    let client_secret = client_secret?;
    let protocol = protocol?;
    (r.errors.len() == errors_before).then_some(ProviderConf {
        id,
        name,
        protocol,
        client_id,
        client_secret,
        scopes,
        allowed_domains,
        allowed_emails,
        role_map,
        ca,
    })
}

fn read_oidc(sec: &mut Section<'_>, kind: Kind, r: &mut Report) -> Option<OidcConf> {
    refuse(
        sec,
        &["github_orgs", "api_url"],
        "only for kind = \"github\"",
        r,
    );
    let issuer = match (sec.str("issuer", r), kind) {
        (Some(i), _) => url(sec, "issuer", i, r).map(|_| i.to_string())?,
        (None, Kind::Google) => GOOGLE_ISSUER.to_string(),
        (None, _) => {
            r.error(sec.key("issuer"), "required: the provider's issuer URL (discovery is at ISSUER/.well-known/openid-configuration)");
            return None;
        }
    };
    let given: Vec<&str> = ["auth_url", "token_url", "jwks_url", "userinfo_url"]
        .into_iter()
        .filter(|k| sec.has(k))
        .collect();
    let endpoints = if given.is_empty() {
        None
    } else {
        let mut get = |key: &'static str, r: &mut Report| {
            let text = sec.str(key, r)?;
            url(sec, key, text, r)
        };
        let auth_url = get("auth_url", r);
        let token_url = get("token_url", r);
        let jwks_url = get("jwks_url", r);
        let userinfo_url = get("userinfo_url", r);
        match (auth_url, token_url, jwks_url) {
            (Some(auth_url), Some(token_url), Some(jwks_url)) => Some(Endpoints {
                auth_url,
                token_url,
                jwks_url,
                userinfo_url,
            }),
            _ => {
                r.error(
                    sec.key("auth_url"),
                    "explicit endpoints need auth_url, token_url and jwks_url together (or none, for discovery)",
                );
                return None;
            }
        }
    };
    let groups_claim = sec.str("groups_claim", r).unwrap_or("groups").to_string();
    if groups_claim.is_empty() {
        r.error(sec.key("groups_claim"), "an id_token claim name");
    }
    Some(OidcConf {
        issuer,
        endpoints,
        groups_claim,
        check_hosted_domain: kind == Kind::Google,
    })
}

fn read_github(sec: &mut Section<'_>, r: &mut Report) -> Option<GithubConf> {
    refuse(
        sec,
        &["issuer", "jwks_url", "userinfo_url", "groups_claim"],
        "not for kind = \"github\" (GitHub is OAuth 2.0 without OpenID Connect)",
        r,
    );
    let mut get = |key: &'static str, default: &str, r: &mut Report| {
        let text = sec.str(key, r).unwrap_or(default);
        url(sec, key, text, r)
    };
    let auth_url = get("auth_url", GITHUB_AUTH, r);
    let token_url = get("token_url", GITHUB_TOKEN, r);
    let api_url = get("api_url", GITHUB_API, r);
    let orgs = lowercase_list(sec, "github_orgs", r);
    Some(GithubConf {
        auth_url: auth_url?,
        token_url: token_url?,
        api_url: api_url?,
        orgs,
    })
}

/// Keys that make no sense for this kind: errors, not silently ignored.
fn refuse(sec: &mut Section<'_>, keys: &[&'static str], why: &str, r: &mut Report) {
    for key in keys {
        if sec.has(key) {
            r.error(sec.key(key), why.to_string());
        }
    }
}

/// An `https://` URL without credentials or fragment.
fn url(sec: &Section<'_>, key: &str, text: &str, r: &mut Report) -> Option<Url> {
    match Url::parse(text) {
        Ok(u) if u.scheme() != "https" => {
            r.error(sec.key(key), format!("{text:?} must be an https:// URL"));
            None
        }
        Ok(u) if !u.username().is_empty() || u.password().is_some() || u.fragment().is_some() => {
            r.error(
                sec.key(key),
                format!("{text:?} must not carry credentials or a #fragment"),
            );
            None
        }
        Ok(u) if u.host_str().is_none_or(str::is_empty) => {
            r.error(sec.key(key), format!("{text:?} has no host"));
            None
        }
        Ok(u) => Some(u),
        Err(e) => {
            r.error(sec.key(key), format!("{text:?} is not a URL: {e}"));
            None
        }
    }
}

/// `client_secret`: `env:NAME` or `file:PATH` only.
fn read_secret(
    sec: &mut Section<'_>,
    base: &Path,
    env: EnvLookup<'_>,
    r: &mut Report,
) -> Option<Secret<String>> {
    let key = sec.key("client_secret");
    let Some(reference) = sec.str("client_secret", r) else {
        r.error(
            key,
            "required: \"env:NAME\" or \"file:PATH\" holding the client secret",
        );
        return None;
    };
    match secret::resolve(reference, base, env) {
        Ok(s) if s.source == SecretSource::Literal => {
            r.error(
                key,
                "a client secret is never written in the config: use \"env:NAME\" or \"file:PATH\"",
            );
            None
        }
        Ok(s) => match String::from_utf8(s.value) {
            Ok(value) => Some(Secret {
                source: s.source,
                value,
            }),
            Err(_) => {
                r.error(key, "the secret is not UTF-8 text");
                None
            }
        },
        Err(e) => {
            r.error(key, e.to_string());
            None
        }
    }
}

fn read_ca(sec: &mut Section<'_>, base: &Path, r: &mut Report) -> Option<Vec<u8>> {
    let path = base.join(sec.str("ca", r)?);
    match std::fs::read(&path) {
        Ok(pem) if pem.windows(27).any(|w| w == b"-----BEGIN CERTIFICATE-----") => Some(pem),
        Ok(_) => {
            r.error(
                sec.key("ca"),
                format!("{} holds no PEM certificate", path.display()),
            );
            None
        }
        Err(e) => {
            r.error(
                sec.key("ca"),
                format!("cannot read {}: {e}", path.display()),
            );
            None
        }
    }
}

fn roles<'a>(sec: &mut Section<'a>, key: &'a str, r: &mut Report) -> Vec<String> {
    let list = sec.str_list(key, r).unwrap_or_default();
    for role in &list {
        if !policies::access::valid_role_name(role) {
            r.error(
                sec.key(key),
                format!("invalid role name {role:?}: use A-Z a-z 0-9 . _ -"),
            );
        }
    }
    let mut out: Vec<String> = list.into_iter().map(str::to_string).collect();
    out.sort();
    out.dedup();
    out
}

fn lowercase_list<'a>(sec: &mut Section<'a>, key: &'a str, r: &mut Report) -> Vec<String> {
    let list = sec.str_list(key, r).unwrap_or_default();
    let mut out = Vec::with_capacity(list.len());
    for item in list {
        if item.is_empty()
            || !item.is_ascii()
            || item
                .bytes()
                .any(|b| b.is_ascii_whitespace() || b.is_ascii_control())
        {
            r.error(sec.key(key), format!("{item:?}: ASCII without spaces"));
        }
        out.push(item.to_ascii_lowercase());
    }
    out
}

/// `role_map = { "group" = ["role", …] }`.
fn read_role_map(sec: &mut Section<'_>, r: &mut Report) -> Vec<(String, Vec<String>)> {
    let Some(mut map) = sec.table("role_map", r) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for key in map.keys() {
        if key.is_empty() || key.chars().any(char::is_control) {
            r.error(map.key(key), "a group name");
        }
        let roles = roles(&mut map, key, r);
        out.push((key.to_string(), roles));
    }
    map.finish(r);
    out
}
