//! `[login]` and `[[login.provider]]`: what loads, and every mistake named.

use std::collections::HashMap;
use std::path::Path;

use super::*;

const BASE: &str = r#"
[server]
https = "127.0.0.1:8443"
[tls]
mode = "self-signed"
[upstreams.app]
addrs = ["127.0.0.1:8000"]
[access]
default = "public"
[secrets]
session_keys = "env:KEYS"
"#;

fn parse_login(login: &str, vars: &[(&str, &str)]) -> Result<Loaded, Vec<String>> {
    let mut map: HashMap<String, String> = vars
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    map.insert("KEYS".into(), "k".repeat(32));
    let env = move |k: &str| map.get(k).cloned();
    let path = Path::new("/etc/portcullis/portcullis.toml");
    let text = format!("{BASE}\n{login}");
    parse(&text, path, &env, Report::new(path))
        .map_err(|r| r.errors.iter().map(|e| e.to_string()).collect())
}

fn errors(login: &str) -> Vec<String> {
    match parse_login(login, &[("SECRET", "s3cret")]) {
        Ok(_) => panic!("expected errors for:\n{login}"),
        Err(e) => e,
    }
}

fn has(errs: &[String], key: &str, needle: &str) -> bool {
    errs.iter().any(|e| e.contains(key) && e.contains(needle))
}

const CORP: &str = r#"
[[login.provider]]
id = "corp"
kind = "oidc"
issuer = "https://sso.example.com/realms/main"
client_id = "portcullis"
client_secret = "env:SECRET"
role_map = { "platform-admins" = ["admin"], "ops" = ["ops", "staff"] }
allowed_domains = ["Example.com"]
"#;

#[test]
fn defaults_without_login_section() {
    let cfg = parse_login("", &[]).expect("valid").config;
    assert!(cfg.login.password && cfg.login.providers.is_empty());
    assert_eq!(cfg.login.signup, Signup::Invite);
    assert!(!cfg.login.link_by_email && cfg.login.default_roles.is_empty());
}

#[test]
fn providers_load_with_their_kind_defaults() {
    let text = format!(
        "[login]\nsignup = \"open\"\ndefault_roles = [\"guest\"]\n{CORP}\n\
         [[login.provider]]\nid = \"google\"\nkind = \"google\"\nclient_id = \"g\"\nclient_secret = \"env:SECRET\"\n\
         [[login.provider]]\nid = \"gh\"\nkind = \"github\"\nclient_id = \"h\"\nclient_secret = \"env:SECRET\"\n\
         github_orgs = [\"Acme\"]\nrole_map = {{ \"acme/ops\" = [\"ops\"] }}\n"
    );
    let cfg = parse_login(&text, &[("SECRET", "s3cret")])
        .expect("valid")
        .config;
    let login = &cfg.login;
    assert_eq!(
        (login.signup, login.default_roles.as_slice()),
        (Signup::Open, &["guest".to_string()][..])
    );
    let [corp, google, gh] = &login.providers[..] else {
        panic!("three providers")
    };
    assert_eq!(
        (corp.name.as_str(), google.name.as_str(), gh.name.as_str()),
        ("OpenID Connect", "Google", "GitHub")
    );
    assert_eq!(corp.client_secret.value, "s3cret");
    assert_eq!(corp.allowed_domains, ["example.com"], "lowercased");
    assert_eq!(corp.scopes, ["openid", "email", "profile"]);
    assert_eq!(corp.role_map.len(), 2);
    let Protocol::Oidc(o) = &corp.protocol else {
        panic!("oidc")
    };
    assert_eq!(
        o.issuer, "https://sso.example.com/realms/main",
        "kept as written"
    );
    assert!(o.endpoints.is_none() && !o.check_hosted_domain && o.groups_claim == "groups");
    let Protocol::Oidc(g) = &google.protocol else {
        panic!("oidc")
    };
    assert_eq!(g.issuer, "https://accounts.google.com");
    assert!(g.check_hosted_domain);
    let Protocol::Github(h) = &gh.protocol else {
        panic!("github")
    };
    assert_eq!(h.api_url.as_str(), "https://api.github.com/");
    assert_eq!(h.orgs, ["acme"]);
    assert_eq!(gh.scopes, ["read:user", "user:email", "read:org"]);
}

#[test]
fn client_secrets_are_references_only() {
    let literal = CORP.replace("env:SECRET", "s3cret-in-the-file");
    assert!(has(
        &errors(&literal),
        "login.provider[0].client_secret",
        "never written in the config"
    ));
    let unset = CORP.replace("env:SECRET", "env:NOT_SET");
    assert!(has(
        &errors(&unset),
        "login.provider[0].client_secret",
        "NOT_SET is not set"
    ));
    let missing = CORP.replace("client_secret = \"env:SECRET\"\n", "");
    assert!(has(
        &errors(&missing),
        "login.provider[0].client_secret",
        "required"
    ));
}

#[test]
fn every_provider_mistake_names_its_key() {
    let cases: &[(&str, &str, &str)] = &[
        ("id = \"corp\"", "id = \"Corp\"", "login.provider[0].id"),
        ("id = \"corp\"", "id = \"c_rp\"", "login.provider[0].id"),
        (
            "kind = \"oidc\"",
            "kind = \"saml\"",
            "login.provider[0].kind",
        ),
        (
            "kind = \"oidc\"",
            "kind = \"OIDC\"",
            "login.provider[0].kind",
        ),
        (
            "issuer = \"https://sso.example.com/realms/main\"",
            "issuer = \"http://sso.example.com\"",
            "must be an https:// URL",
        ),
        (
            "issuer = \"https://sso.example.com/realms/main\"",
            "issuer = \"https://user:pw@sso.example.com\"",
            "credentials",
        ),
        (
            "issuer = \"https://sso.example.com/realms/main\"",
            "issuer = \"not a url\"",
            "is not a URL",
        ),
        (
            "issuer = \"https://sso.example.com/realms/main\"\n",
            "",
            "login.provider[0].issuer",
        ),
        (
            "client_id = \"portcullis\"",
            "client_id = \"\"",
            "login.provider[0].client_id",
        ),
        (
            "allowed_domains = [\"Example.com\"]",
            "allowed_domains = [\"@example.com\"]",
            "is not a domain",
        ),
        (
            "allowed_domains = [\"Example.com\"]",
            "allowed_domains = [\"exämple.com\"]",
            "ASCII",
        ),
        ("[\"admin\"]", "[\"ad min\"]", "invalid role name"),
        (
            "allowed_domains",
            "github_orgs = [\"acme\"]\nallowed_domains",
            "only for kind = \"github\"",
        ),
        (
            "allowed_domains",
            "scopes = [\"email\"]\nallowed_domains",
            "needs the \"openid\" scope",
        ),
        (
            "allowed_domains",
            "auth_url = \"https://sso.example.com/auth\"\nallowed_domains",
            "together",
        ),
        (
            "allowed_domains",
            "ca = \"/nonexistent/ca.pem\"\nallowed_domains",
            "cannot read /nonexistent/ca.pem",
        ),
        (
            "allowed_domains",
            "colour = \"blue\"\nallowed_domains",
            "unknown key",
        ),
    ];
    for (from, to, needle) in cases {
        let text = CORP.replace(from, to);
        assert_ne!(text, CORP, "{from}");
        let errs = errors(&text);
        assert!(
            errs.iter()
                .any(|e| e.contains(needle) && e.contains("portcullis.toml")),
            "{to}: {errs:?}"
        );
    }
    let github = "[[login.provider]]\nid = \"gh\"\nkind = \"github\"\nclient_id = \"h\"\nclient_secret = \"env:SECRET\"\nissuer = \"https://github.com\"\n";
    assert!(has(
        &errors(github),
        "login.provider[0].issuer",
        "not for kind = \"github\""
    ));
    let twice = format!("{CORP}{CORP}");
    assert!(has(
        &errors(&twice),
        "login.provider[1].id",
        "used by another provider"
    ));
}

#[test]
fn login_switches_are_checked() {
    assert!(has(
        &errors("[login]\npassword = false\n"),
        "login.password",
        "no way to sign in"
    ));
    assert!(has(
        &errors("[login]\nsignup = \"anyone\"\n"),
        "login.signup",
        "\"open\", \"invite\", \"existing\""
    ));
    assert!(has(
        &errors("[login]\ndefault_roles = [\"a,b\"]\n"),
        "login.default_roles",
        "invalid role name"
    ));
    assert!(has(
        &errors("[login]\ntotp = true\n"),
        "login.totp",
        "unknown key"
    ));
    // Providers without session keys.
    let no_keys = format!(
        "{}\n{CORP}",
        BASE.replace("[secrets]\nsession_keys = \"env:KEYS\"\n", "")
    );
    let path = Path::new("/etc/portcullis/portcullis.toml");
    let env = |k: &str| (k == "SECRET").then(|| "s3cret".to_string());
    let errs = parse(&no_keys, path, &env, Report::new(path))
        .expect_err("refused")
        .errors;
    assert!(errs.iter().any(|e| e
        .to_string()
        .contains("provider sign-in needs secrets.session_keys")));
    // password = false with a provider is fine.
    let ok = format!("[login]\npassword = false\n{CORP}");
    assert!(
        !parse_login(&ok, &[("SECRET", "s")])
            .expect("valid")
            .config
            .login
            .password
    );
}

#[test]
fn second_factor_settings() {
    use policies::mfa::Requirement;
    let cfg = parse_login("", &[]).expect("valid").config;
    assert_eq!(cfg.login.mfa, Requirement::Optional);
    assert_eq!(cfg.login.admin_role, "admin");
    assert!(!cfg.login.passkeys);
    let cfg = parse_login(
        "[login]\nmfa = \"required\"\nadmin_role = \"ops\"\npasskeys = true\n",
        &[],
    )
    .expect("valid")
    .config;
    assert_eq!(cfg.login.mfa, Requirement::Required);
    assert_eq!(cfg.login.admin_role, "ops");
    assert!(cfg.login.passkeys);
    let cfg = parse_login(
        "[login]\nmfa = \"roles\"\nmfa_roles = [\"admin\", \"ops\"]\n",
        &[],
    )
    .expect("valid")
    .config;
    assert_eq!(
        cfg.login.mfa,
        Requirement::Roles(vec!["admin".into(), "ops".into()])
    );
    let cases = [
        ("[login]\nmfa = \"Required\"\n", "login.mfa", "not one of"),
        (
            "[login]\nmfa = \"roles\"\n",
            "login.mfa_roles",
            "at least one role",
        ),
        (
            "[login]\nmfa = \"required\"\nmfa_roles = [\"admin\"]\n",
            "login.mfa_roles",
            "only used with mfa = \"roles\"",
        ),
        (
            "[login]\nmfa = \"roles\"\nmfa_roles = [\"ad min\"]\n",
            "login.mfa_roles",
            "invalid role name",
        ),
        (
            "[login]\nadmin_role = \"a,b\"\n",
            "login.admin_role",
            "invalid role name",
        ),
        ("[login]\nmfa = true\n", "login.mfa", ""),
        ("[login]\npasskeys = \"yes\"\n", "login.passkeys", ""),
    ];
    for (text, key, needle) in cases {
        let errs = errors(text);
        assert!(has(&errs, key, needle), "{text}: {errs:?}");
    }
}

#[test]
fn a_route_that_needs_a_second_factor_needs_a_session() {
    let ok = "[[route]]\npath = \"/admin\"\naccess = \"role:admin\"\nmfa = true\n";
    let cfg = parse_login(ok, &[]).expect("valid").config;
    assert!(cfg.routes[0].mfa);
    for access in ["public", "deny"] {
        let text = format!("[[route]]\npath = \"/x\"\naccess = \"{access}\"\nmfa = true\n");
        let errs = errors(&text);
        assert!(has(&errs, "route", "a public or denied route"), "{errs:?}");
    }
    // [access] default = "public" in BASE: a route inheriting it cannot say mfa.
    let errs = errors("[[route]]\npath = \"/x\"\nmfa = true\n");
    assert!(has(&errs, "mfa", "public or denied"), "{errs:?}");
}
