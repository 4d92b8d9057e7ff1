use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use super::emergency::EMERGENCY_ENV;
use super::tls::LETS_ENCRYPT;
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
"#;

fn env_with(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
    let map: HashMap<String, String> = vars
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    move |k| map.get(k).cloned()
}

fn parse_with(text: &str, vars: &[(&str, &str)]) -> Result<Loaded, Vec<ConfigError>> {
    let path = Path::new("/etc/portcullis/portcullis.toml");
    let env = env_with(vars);
    parse(text, path, &env, Report::new(path)).map_err(|r| r.errors)
}

fn errors(text: &str) -> Vec<String> {
    match parse_with(text, &[]) {
        Ok(_) => panic!("expected errors for:\n{text}"),
        Err(e) => e.iter().map(|e| e.to_string()).collect(),
    }
}

fn has(errs: &[String], needle: &str) -> bool {
    errs.iter().any(|e| e.contains(needle))
}

#[test]
fn minimal_config_loads_with_defaults() {
    let cfg = parse_with(BASE, &[]).expect("valid").config;
    assert_eq!(cfg.server.max_body, 10 << 20);
    assert_eq!(cfg.server.threads, 2);
    assert_eq!(cfg.upstreams[0].connect_timeout, Duration::from_secs(2));
    assert_eq!(cfg.upstreams[0].read_timeout, Duration::from_secs(60));
    assert_eq!(cfg.tls.storage, PathBuf::from("/var/lib/portcullis"));
    assert_eq!(cfg.access_default, Access::Public);
}

#[test]
fn unknown_keys_are_named_everywhere() {
    let errs = errors(&format!(
        "{BASE}\n[[route]]\npath = \"/\"\nacess = \"public\"\n"
    ));
    assert!(has(&errs, "route[0].acess: unknown key"), "{errs:?}");
    let errs = errors(&BASE.replace("[server]", "[server]\nthreds = 2"));
    assert!(
        has(
            &errs,
            "portcullis.toml: server.threds: unknown key (expected one of:"
        ),
        "{errs:?}"
    );
    let errs = errors(&format!("{BASE}\n[frobnicate]\nx = 1\n"));
    assert!(has(&errs, "frobnicate: unknown key"), "{errs:?}");
}

#[test]
fn every_error_is_reported_not_only_the_first() {
    let text = BASE
        .replace(
            "[server]",
            "[server]\nmax_body = \"10 parsecs\"\ntrusted_proxies = [\"10.0.0.0/33\"]",
        )
        .replace(
            "addrs = [\"127.0.0.1:8000\"]",
            "addrs = [\"127.0.0.1:8000\"]\nconnect_timeout = \"2 seconds\"",
        );
    let errs = errors(&text);
    assert!(has(&errs, "server.max_body"), "{errs:?}");
    assert!(has(&errs, "server.trusted_proxies[0]"), "{errs:?}");
    assert!(has(&errs, "upstreams.app.connect_timeout"), "{errs:?}");
}

#[test]
fn bad_values_name_their_key() {
    let cases = [
        ("[server]\nhttps = \"0.0.0.0\"", "server.https"),
        ("[server]\nhttps = 443", "server.https: expected a string"),
        ("[server]\nthreads = 0", "server.threads"),
        (
            "[server]\ncase_insensitive_paths = \"yes\"",
            "server.case_insensitive_paths",
        ),
    ];
    for (replacement, needle) in cases {
        let errs = errors(&BASE.replace("[server]\nhttps = \"127.0.0.1:8443\"", replacement));
        assert!(has(&errs, needle), "{needle}: {errs:?}");
    }
}

#[test]
fn secrets_resolve_from_env_and_file() {
    let key = "k".repeat(32);
    let text = format!("{BASE}\n[secrets]\nsession_keys = \"env:KEYS\"\n");
    let cfg = parse_with(&text, &[("KEYS", &format!("{key}, {}", "j".repeat(40)))])
        .expect("valid")
        .config;
    let keys = cfg.secrets.session_keys.expect("keys");
    assert_eq!(keys.source, SecretSource::Env("KEYS".into()));
    assert_eq!(keys.value.len(), 2);
    assert!(
        !format!("{keys:?}").contains(&key),
        "Debug must not print secrets"
    );

    let errs = parse_with(&text, &[]).expect_err("missing env");
    assert!(errs[0]
        .to_string()
        .contains("secrets.session_keys: environment variable KEYS is not set"));
    let errs = parse_with(&text, &[("KEYS", "short")]).expect_err("short");
    assert!(errs[0].to_string().contains("at least 32"), "{errs:?}");

    let dir = tempfile::tempdir().expect("tmp");
    std::fs::write(dir.path().join("keys"), format!("{key}\n")).expect("write");
    let path = dir.path().join("p.toml");
    let text = format!("{BASE}\n[secrets]\nsession_keys = \"file:keys\"\n");
    let env = env_with(&[]);
    let cfg = parse(&text, &path, &env, Report::new(&path))
        .expect("valid")
        .config;
    assert_eq!(
        cfg.secrets.session_keys.expect("keys").value,
        vec![key.into_bytes()]
    );
}

#[test]
fn login_access_needs_session_keys() {
    let errs = errors(&BASE.replace("default = \"public\"", "default = \"login\""));
    assert!(
        has(
            &errs,
            "access.default: \"login\" and \"role:\" need secrets.session_keys"
        ),
        "{errs:?}"
    );
}

/// `BASE` with `[access] default` left out (so `"login"`), no keys, and `routes`.
fn implicit_login(routes: &str) -> String {
    format!(
        "{}\n{routes}",
        BASE.replace("[access]\ndefault = \"public\"\n", "")
    )
}

#[test]
fn a_catch_all_route_makes_the_default_unreachable_so_no_keys_are_needed() {
    let text = implicit_login("[[route]]\npath = \"/\"\naccess = \"public\"\n");
    let cfg = parse_with(&text, &[]).expect("valid").config;
    assert_eq!(cfg.access_default, Access::Login);
    assert!(cfg.secrets.session_keys.is_none());
    // The catch-all may come last.
    let text = implicit_login(
        "[[route]]\npath = \"/api\"\naccess = \"public\"\n[[route]]\npath = \"/\"\naccess = \"deny\"\n",
    );
    parse_with(&text, &[]).expect("valid");
    // A login route after the catch-all never matches either.
    let text = implicit_login(
        "[[route]]\npath = \"/\"\naccess = \"public\"\n[[route]]\npath = \"/admin\"\naccess = \"login\"\n",
    );
    parse_with(&text, &[]).expect("valid");
    // Before it, it does.
    let text = implicit_login(
        "[[route]]\npath = \"/admin\"\naccess = \"role:admin\"\n[[route]]\npath = \"/\"\naccess = \"public\"\n",
    );
    let errs = errors(&text);
    assert_eq!(
        errs,
        vec!["/etc/portcullis/portcullis.toml: route[0].access: \"login\" and \"role:\" need secrets.session_keys (e.g. \"env:PORTCULLIS_SESSION_KEYS\" holding a key from `portcullis secret`)"]
    );
}

#[test]
fn a_reachable_default_names_the_requests_that_reach_it() {
    const NEED: &str = "access.default: \"login\" and \"role:\" need secrets.session_keys (e.g. \"env:PORTCULLIS_SESSION_KEYS\" holding a key from `portcullis secret`); requests no route matches reach access.default: ";
    let cases = [
        ("", "every request (there is no [[route]])"),
        (
            "[[route]]\npath = \"/api/\"\naccess = \"public\"\n[[route]]\npath = \"/static\"\naccess = \"public\"\n\
             [[route]]\npath = \"/api/v1\"\naccess = \"public\"\n",
            "every path outside /api, /static",
        ),
        // A host or methods make "/" no catch-all.
        (
            "[[route]]\npath = \"/\"\nhost = \"App.Example.com\"\naccess = \"public\"\n",
            "hosts other than app.example.com on any path",
        ),
        (
            "[[route]]\npath = \"/\"\nmethods = [\"GET\"]\naccess = \"public\"\n",
            "methods other than GET, HEAD on any path",
        ),
        (
            "[[route]]\npath = \"/api\"\nmethods = [\"GET\"]\naccess = \"public\"\n\
             [[route]]\npath = \"/api\"\nmethods = [\"POST\"]\naccess = \"public\"\n",
            "every path outside /api; methods other than GET, POST, HEAD under /api",
        ),
        // A plain route over a filtered one leaves nothing there.
        (
            "[[route]]\npath = \"/app/admin\"\nhost = \"a.example\"\naccess = \"public\"\n\
             [[route]]\npath = \"/app\"\naccess = \"public\"\n",
            "every path outside /app",
        ),
        (
            "[[route]]\npath = \"/api/\"\naccess = \"public\"\n\
             [[route]]\npath = \"/\"\nmethods = [\"GET\"]\naccess = \"public\"\n",
            "methods other than GET, HEAD on any path outside /api",
        ),
        (
            "[[route]]\npath = \"/x\"\nhost = \"a.example\"\nmethods = [\"GET\"]\naccess = \"public\"\n",
            "every path outside /x; requests under /x that no route's host and methods match",
        ),
    ];
    for (routes, who) in cases {
        let errs = errors(&implicit_login(routes));
        assert!(
            errs.iter().any(|e| e.ends_with(&format!("{NEED}{who}"))),
            "{routes}: {errs:?}"
        );
        assert_eq!(errs.len(), 1, "{errs:?}");
    }
    // An explicit role rule for unmatched paths is judged the same way.
    let text = BASE.replace("default = \"public\"", "default = \"role:ops\"");
    assert!(has(&errors(&text), NEED), "role default");
    let text = format!("{text}\n[[route]]\npath = \"/\"\naccess = \"public\"\n");
    parse_with(&text, &[]).expect("unreachable role default");
}

#[test]
fn case_insensitive_paths_cover_prefixes_in_any_case() {
    let routes = "[[route]]\npath = \"/api\"\naccess = \"public\"\n\
                  [[route]]\npath = \"/API/v1\"\nmethods = [\"GET\"]\naccess = \"public\"\n";
    let errs = errors(&implicit_login(routes));
    assert!(
        has(
            &errs,
            "reach access.default: every path outside /api, /API/v1; methods other than GET, HEAD under /API/v1"
        ),
        "{errs:?}"
    );
    let text =
        implicit_login(routes).replace("[server]", "[server]\ncase_insensitive_paths = true");
    let errs = errors(&text);
    assert!(
        errs.iter()
            .any(|e| e.ends_with("reach access.default: every path outside /api")),
        "{errs:?}"
    );
}

#[test]
fn a_route_with_errors_leaves_the_default_unjudged() {
    // The broken route may have been the catch-all: only its own error shows.
    let text =
        implicit_login("[[route]]\npath = \"/\"\naccess = \"public\"\nupstream = \"nope\"\n");
    let errs = errors(&text);
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert!(has(
        &errs,
        "route[0].upstream: \"nope\" is not a configured upstream"
    ));
}

#[test]
fn emergency_gate() {
    const SECRET: &str = "an-emergency-secret-of-32-or-more-chars";
    const KEYS: &str = "k0123456789abcdef0123456789abcdef";
    let text = |em: &str| {
        format!(
            "{BASE}\n[secrets]\nsession_keys = \"env:K\"\nemergency = \"env:E\"\n[emergency]\n{em}\n"
        )
    };
    let load = |em: &str, vars: &[(&str, &str)]| parse_with(&text(em), vars);
    let base_vars = [("K", KEYS), ("E", SECRET)];
    // Off by default, with the documented defaults.
    let cfg = load("", &base_vars).expect("loads").config;
    assert!(!cfg.emergency.enabled);
    assert_eq!(cfg.emergency.ttl, Duration::from_secs(900));
    assert_eq!(cfg.emergency.roles, ["admin"]);
    assert_eq!(cfg.emergency.attempts, Rate::parse("5/15m").expect("rate"));
    // Only the verifier is kept, and it never prints.
    let verifier = &cfg.secrets.emergency.as_ref().expect("secret").value;
    assert!(verifier.verify(SECRET.as_bytes()));
    assert!(!format!("{cfg:?}").contains(SECRET));
    // The environment wins over the file, both ways.
    let on = [("K", KEYS), ("E", SECRET), (EMERGENCY_ENV, "true")];
    assert!(
        load("enabled = false", &on)
            .expect("loads")
            .config
            .emergency
            .enabled
    );
    let off = [("K", KEYS), ("E", SECRET), (EMERGENCY_ENV, "false")];
    assert!(
        !load("enabled = true", &off)
            .expect("loads")
            .config
            .emergency
            .enabled
    );
    let cfg = load(
        "enabled = true\nttl = \"1h\"\nroles = [\"admin\", \"ops\"]\nallow_from = [\"203.0.113.0/24\", \"2001:db8::1\"]\nattempts = \"3/10m\"",
        &base_vars,
    )
    .expect("loads")
    .config;
    assert!(cfg.emergency.enabled);
    assert_eq!(cfg.emergency.allow_from.len(), 2);

    let errs = |em: &str, vars: &[(&str, &str)]| -> Vec<String> {
        match load(em, vars) {
            Ok(_) => Vec::new(),
            Err(e) => e.iter().map(ToString::to_string).collect(),
        }
    };
    let bad_env = [("K", KEYS), ("E", SECRET), (EMERGENCY_ENV, "yes")];
    for (em, vars, needle) in [
        (
            "ttl = \"2h\"",
            &base_vars[..],
            "emergency.ttl: must be more than 0 and at most 1h",
        ),
        ("ttl = \"0s\"", &base_vars[..], "emergency.ttl"),
        (
            "roles = []",
            &base_vars[..],
            "emergency.roles: needs at least one role",
        ),
        (
            "roles = [\"ad min\"]",
            &base_vars[..],
            "emergency.roles: invalid role name",
        ),
        (
            "allow_from = [\"everyone\"]",
            &base_vars[..],
            "emergency.allow_from[0]",
        ),
        ("attempts = \"lots\"", &base_vars[..], "emergency.attempts"),
        ("enabled = \"yes\"", &base_vars[..], "emergency.enabled"),
        ("", &bad_env[..], "PORTCULLIS_EMERGENCY_ENABLED is \"yes\""),
        (
            "enabled = true\nsecret = \"x\"",
            &base_vars[..],
            "emergency.secret: unknown key",
        ),
    ] {
        let e = errs(em, vars);
        assert!(has(&e, needle), "{em}: {e:?}");
    }
    let short = [("K", KEYS), ("E", "too short")];
    assert!(has(
        &errs("", &short),
        "secrets.emergency: is 9 characters; it needs at least 32"
    ));
    // Enabled without a secret, or without session keys for its forms.
    let e = match parse_with(
        &format!("{BASE}\n[secrets]\nsession_keys = \"env:K\"\n[emergency]\nenabled = true\n"),
        &[("K", KEYS)],
    ) {
        Ok(_) => Vec::new(),
        Err(e) => e.iter().map(ToString::to_string).collect(),
    };
    assert!(
        has(&e, "emergency.enabled: the gate needs secrets.emergency"),
        "{e:?}"
    );
    let e = match parse_with(
        &format!("{BASE}\n[secrets]\nemergency = \"env:E\"\n[emergency]\nenabled = true\n"),
        &[("E", SECRET)],
    ) {
        Ok(_) => Vec::new(),
        Err(e) => e.iter().map(ToString::to_string).collect(),
    };
    assert!(
        has(&e, "emergency.enabled: the gate needs secrets.session_keys"),
        "{e:?}"
    );
}

#[test]
fn redis_store() {
    let load = |rl: &str, vars: &[(&str, &str)]| {
        parse_with(&format!("{BASE}\n[rate_limit]\n{rl}\n"), vars)
    };
    let cfg = load(
        "store = \"redis\"\nredis = \"env:R\"\non_store_error = \"deny\"",
        &[("R", "redis://:hunter2@cache.internal:6380/2")],
    )
    .expect("loads")
    .config;
    let redis = cfg.rate_limit.redis.expect("redis store");
    assert_eq!(redis.on_error, OnStoreError::Deny);
    assert_eq!(redis.info.addr().to_string(), "cache.internal:6380");
    assert_eq!(redis.info.redis_settings().db(), 2);
    assert!(!format!("{redis:?}").contains("hunter2"), "{redis:?}");
    let cfg = load("store = \"redis\"\nredis = \"redis://127.0.0.1:6379\"", &[])
        .expect("a literal URL without a password is fine")
        .config;
    assert_eq!(
        cfg.rate_limit.redis.expect("redis").on_error,
        OnStoreError::Allow
    );

    let errs = |rl: &str, vars: &[(&str, &str)]| -> Vec<String> {
        match load(rl, vars) {
            Ok(_) => Vec::new(),
            Err(e) => e.iter().map(ToString::to_string).collect(),
        }
    };
    for (rl, vars, needle) in [
        (
            "store = \"redis\"",
            &[][..],
            "rate_limit.redis: required with store = \"redis\"",
        ),
        (
            "store = \"redis\"\nredis = \"redis://:pw@10.0.0.1\"",
            &[],
            "a literal URL with a password is refused",
        ),
        (
            "store = \"redis\"\nredis = \"http://10.0.0.1\"",
            &[],
            "\"http://10.0.0.1\" is not a redis://",
        ),
        (
            "store = \"redis\"\nredis = \"env:R\"",
            &[("R", "rediss://10.0.0.1")],
            "the value is not a redis://",
        ),
        (
            "store = \"redis\"\nredis = \"env:R\"",
            &[],
            "rate_limit.redis: environment variable R is not set",
        ),
        (
            "store = \"redis\"\nredis = \"redis://h:notaport\"",
            &[],
            "rate_limit.redis: not a usable Redis URL",
        ),
        (
            "store = \"redis\"\nredis = \"redis://h\"\non_store_error = \"maybe\"",
            &[],
            "rate_limit.on_store_error: \"maybe\" is not one of",
        ),
        (
            "store = \"disk\"",
            &[],
            "rate_limit.store: \"disk\" is not one of",
        ),
    ] {
        let e = errs(rl, vars);
        assert!(has(&e, needle), "{rl}: {e:?}");
    }
    // An env URL with a password is never echoed in an error.
    let e = errs(
        "store = \"redis\"\nredis = \"env:R\"",
        &[("R", "mysql://u:s3cret@h")],
    );
    assert!(!e.iter().any(|l| l.contains("s3cret")), "{e:?}");
    let warned = load("redis = \"redis://h\"", &[]).expect("loads").warnings;
    assert!(
        warned.iter().any(|w| w
            .to_string()
            .contains("has no effect with store = \"memory\"")),
        "{warned:?}"
    );
}

#[test]
fn rate_limits() {
    let cfg = parse_with(BASE, &[]).expect("valid").config;
    assert_eq!(
        cfg.rate_limit.default,
        Some(Rate::parse("600/minute").expect("rate"))
    );
    assert_eq!(
        cfg.rate_limit.login,
        Some(Rate::parse("5/minute").expect("rate"))
    );
    let text = format!(
        "{BASE}\n[rate_limit]\ndefault = \"off\"\nlogin = \"3/15m\"\n\
         [[route]]\npath = \"/api\"\nrate_limit = \"100/min\"\nrate_key = \"header:X-Api-Key\"\n\
         [[route]]\npath = \"/me\"\nrate_limit = \"10/s\"\nrate_key = \"user\"\n"
    );
    let cfg = parse_with(&text, &[]).expect("valid").config;
    assert_eq!(cfg.rate_limit.default, None);
    assert_eq!(
        cfg.rate_limit.login.map(|r| r.per),
        Some(Duration::from_secs(900))
    );
    assert_eq!(
        cfg.routes[0].rate_limit.as_ref().map(|(_, k)| k.clone()),
        Some(RateKey::Header("x-api-key".into()))
    );
    assert_eq!(
        cfg.routes[1].rate_limit.as_ref().map(|(_, k)| k.clone()),
        Some(RateKey::User)
    );
}

#[test]
fn rate_limit_counters_follow_the_rule_or_its_id_not_its_position() {
    let a = "[[route]]\npath = \"/api\"\nrate_limit = \"3/min\"\n";
    let b =
        "[[route]]\npath = \"/login\"\nmethods = [\"POST\", \"get\"]\nrate_limit = \"1000/min\"\n";
    let b_reordered =
        "[[route]]\npath = \"/login\"\nmethods = [\"GET\", \"post\"]\nrate_limit = \"1000/min\"\n";
    let counters = |routes: &str| -> Vec<Option<String>> {
        let cfg = parse_with(&format!("{BASE}\n{routes}"), &[])
            .expect("valid")
            .config;
        cfg.routes.iter().map(|r| r.limit_counter()).collect()
    };
    let ab = counters(&format!("{a}{b}"));
    let ba = counters(&format!("{b_reordered}{a}"));
    assert_eq!(ab[0], ba[1], "same rule, other position");
    assert_eq!(ab[1], ba[0], "method order and case do not matter");
    assert_ne!(ab[0], ab[1]);
    assert!(ab[0].as_deref().is_some_and(|c| c.starts_with("def:")));
    // Another rate, key or host is another rule.
    for other in [
        "[[route]]\npath = \"/api\"\nrate_limit = \"4/min\"\n",
        "[[route]]\npath = \"/api\"\nrate_limit = \"3/min\"\nrate_key = \"user\"\n",
        "[[route]]\nhost = \"a.example\"\npath = \"/api\"\nrate_limit = \"3/min\"\n",
    ] {
        assert_ne!(counters(other)[0], ab[0], "{other}");
    }
    // No limit, no counter; an id names the counter whatever the rule says.
    assert_eq!(counters("[[route]]\npath = \"/\"\n"), vec![None]);
    let with_id = "[[route]]\nid = \"api\"\npath = \"/api\"\nrate_limit = \"3/min\"\n";
    assert_eq!(counters(with_id), vec![Some("id:api".to_string())]);
    // Ids are checked and unique.
    for bad in ["API", "", "a_b", &"x".repeat(33)] {
        let errs = errors(&format!("{BASE}\n[[route]]\nid = {bad:?}\npath = \"/\"\n"));
        assert!(has(&errs, "route[0].id"), "{bad}: {errs:?}");
    }
    let errs = errors(&format!(
        "{BASE}\n[[route]]\nid = \"a\"\npath = \"/a\"\n[[route]]\nid = \"a\"\npath = \"/b\"\n"
    ));
    assert!(
        has(&errs, "route[1].id: is already the id of another route"),
        "{errs:?}"
    );
}

#[test]
fn identity_presets_name_the_headers_and_files_may_override_them() {
    let identity = |extra: &str| {
        parse_with(&format!("{BASE}\n[identity]\n{extra}"), &[])
            .map(|l| l.config.identity)
            .map_err(|e| e.iter().map(|e| e.to_string()).collect::<Vec<_>>())
    };
    let names = |i: &crate::config::IdentityConf| {
        (
            i.user_header.clone(),
            i.roles_header.clone(),
            i.email_header.clone(),
            i.name_header.clone(),
        )
    };
    let s = |v: &str| v.to_string();
    let default = identity("").expect("valid");
    assert_eq!(default.preset, super::identity::Preset::Portcullis);
    assert_eq!(
        names(&default),
        (
            s("X-Forwarded-User"),
            s("X-Forwarded-Roles"),
            s("X-Forwarded-Email"),
            None
        )
    );
    assert_eq!(
        names(&identity("preset = \"oauth2-proxy\"").expect("valid")),
        (
            s("X-Forwarded-User"),
            s("X-Forwarded-Groups"),
            s("X-Forwarded-Email"),
            None
        )
    );
    assert_eq!(
        names(&identity("preset = \"authelia\"\nemail_header = \"X-Mail\"").expect("valid")),
        (
            s("Remote-User"),
            s("Remote-Groups"),
            s("X-Mail"),
            Some(s("Remote-Name"))
        )
    );
    assert_eq!(
        identity("name_header = \"X-Name\"")
            .expect("valid")
            .name_header,
        Some(s("X-Name"))
    );
    let errs = identity("preset = \"Authelia\"").expect_err("case matters");
    assert!(
        has(&errs, "identity.preset: \"Authelia\" is not one of"),
        "{errs:?}"
    );
    let errs = identity("preset = \"authelia\"\nname_header = \"remote_user\"").expect_err("twice");
    assert!(
        has(
            &errs,
            "identity.name_header: \"remote_user\" is already `user_header`"
        ),
        "{errs:?}"
    );
}

#[test]
fn routes_resolve_upstreams_and_inherit_defaults() {
    let text = format!(
        "{BASE}\n[upstreams.api]\naddrs = [\"127.0.0.1:9000\"]\n\
         [[route]]\npath = \"/api\"\nupstream = \"api\"\nmax_body = \"1MB\"\nmethods = [\"GET\"]\n\
         [[route]]\npath = \"/\"\nupstream = \"app\"\naccess = \"deny\"\n"
    );
    let cfg = parse_with(&text, &[]).expect("valid").config;
    assert_eq!(cfg.routes.len(), 2);
    assert_eq!(cfg.upstreams[cfg.routes[0].upstream].name, "api");
    assert_eq!(cfg.routes[0].max_body, 1 << 20);
    assert_eq!(cfg.routes[0].access, Access::Public);
    assert_eq!(cfg.routes[1].access, Access::Deny);
    assert_eq!(cfg.routes[1].max_body, 10 << 20);

    let errs = errors(&format!(
        "{BASE}\n[upstreams.api]\naddrs = [\"127.0.0.1:9000\"]\n[[route]]\npath = \"/\"\n"
    ));
    assert!(
        has(&errs, "route[0].upstream: required when more than one"),
        "{errs:?}"
    );
    let errs = errors(&format!(
        "{BASE}\n[[route]]\npath = \"/\"\nupstream = \"nope\"\n"
    ));
    assert!(
        has(
            &errs,
            "route[0].upstream: \"nope\" is not a configured upstream"
        ),
        "{errs:?}"
    );
    let errs = errors(&format!("{BASE}\n[[route]]\npath = \"admin\"\n"));
    assert!(has(&errs, "route[0].path"), "{errs:?}");
    let errs = errors(&format!("{BASE}\n[[route]]\naccess = \"public\"\n"));
    assert!(has(&errs, "route[0].path: required"), "{errs:?}");
}

#[test]
fn tls_modes() {
    let errs = errors(&BASE.replace("mode = \"self-signed\"", "mode = \"files\""));
    assert!(
        has(&errs, "tls.cert: required") && has(&errs, "tls.key: required"),
        "{errs:?}"
    );
    let cfg = parse_with(
        &BASE.replace(
            "mode = \"self-signed\"",
            "mode = \"files\"\ncert = \"c.pem\"\nkey = \"/k.pem\"",
        ),
        &[],
    )
    .expect("valid")
    .config;
    assert_eq!(
        cfg.tls.mode,
        TlsMode::Files {
            cert: "/etc/portcullis/c.pem".into(),
            key: "/k.pem".into()
        }
    );
    let errs = errors(&BASE.replace("mode = \"self-signed\"", "mode = \"off\""));
    assert!(
        has(&errs, "server.https") && has(&errs, "server.http: required"),
        "{errs:?}"
    );
    let errs = errors(&BASE.replace("mode = \"self-signed\"", "mode = \"tls\""));
    assert!(has(&errs, "tls.mode: \"tls\" is not one of"), "{errs:?}");
}

#[test]
fn acme_mode() {
    let dir = tempfile::tempdir().expect("dir");
    let ca = dir.path().join("ca.pem");
    std::fs::write(
        &ca,
        "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
    )
    .expect("write");
    let with = |tls: &str| {
        BASE.replace("mode = \"self-signed\"", tls).replace(
            "https = \"127.0.0.1:8443\"",
            "https = \"127.0.0.1:8443\"\nhttp = \"127.0.0.1:8080\"",
        )
    };
    // The default mode, with the default directory.
    let cfg = parse_with(
        &with("domains = [\"app.example.com\", \"www.example.com\"]"),
        &[],
    )
    .expect("valid")
    .config;
    assert_eq!(
        cfg.tls.mode,
        TlsMode::Acme(AcmeMode {
            directory: LETS_ENCRYPT.into(),
            email: None,
            ca_pem: None,
            challenge: Challenge::Http01,
        })
    );
    let cfg = parse_with(
        &with(&format!(
            "mode = \"acme\"\ndomains = [\"a.test\"]\nemail = \"ops@example.com\"\ndirectory = \"https://127.0.0.1:14000/dir\"\nca = \"{}\"\nchallenge = \"http-01\"",
            ca.display()
        )),
        &[],
    )
    .expect("valid")
    .config;
    let TlsMode::Acme(mode) = cfg.tls.mode else {
        panic!("acme")
    };
    assert_eq!(mode.email.as_deref(), Some("ops@example.com"));
    assert!(mode.ca_pem.is_some());

    for (tls, needle) in [
        (
            "mode = \"acme\"",
            "tls.domains: required with tls.mode = \"acme\"",
        ),
        (
            "domains = [\"*.example.com\"]",
            "wildcard certificates need the DNS-01 challenge",
        ),
        (
            "domains = [\"a.test\"]\ndirectory = \"http://ca.test/dir\"",
            "tls.directory: \"http://ca.test/dir\" is not an https:// URL",
        ),
        (
            "domains = [\"a.test\"]\nemail = \"not an address\"",
            "tls.email: \"not an address\" is not an e-mail address",
        ),
        (
            "domains = [\"a.test\"]\nca = \"/nonexistent/ca.pem\"",
            "tls.ca: cannot read /nonexistent/ca.pem",
        ),
        (
            "domains = [\"a.test\"]\nchallenge = \"dns-01\"",
            "tls.challenge: \"dns-01\" is not one of",
        ),
        (
            "domains = [\"a.test\", \"192.0.2.7\"]\nchallenge = \"tls-alpn-01\"",
            "tls.challenge: \"tls-alpn-01\" validates DNS names only here; \"192.0.2.7\"",
        ),
        (
            "mode = \"self-signed\"\nemail = \"ops@example.com\"",
            "tls.email: only used with tls.mode = \"acme\"",
        ),
    ] {
        let errs = errors(&with(tls));
        assert!(has(&errs, needle), "{tls}: {errs:?}");
    }
    // HTTP-01 is answered on the http listener: it must exist.
    let errs = errors(&BASE.replace("mode = \"self-signed\"", "domains = [\"a.test\"]"));
    assert!(
        has(&errs, "server.http: required with tls.mode = \"acme\""),
        "{errs:?}"
    );
    // TLS-ALPN-01 is answered on the https listener: no http listener needed.
    let cfg = parse_with(
        &BASE.replace(
            "mode = \"self-signed\"",
            "domains = [\"a.test\"]\nchallenge = \"tls-alpn-01\"",
        ),
        &[],
    )
    .expect("valid without server.http")
    .config;
    let TlsMode::Acme(mode) = cfg.tls.mode else {
        panic!("acme")
    };
    assert_eq!(mode.challenge, Challenge::TlsAlpn01);
}

#[test]
fn invalid_toml_is_one_line_with_a_line_number() {
    let errs = errors("[server\nhttps = 1");
    assert_eq!(errs.len(), 1);
    assert!(!errs[0].contains('\n'), "{errs:?}");
    assert!(errs[0].contains("line 1"), "{errs:?}");
}

fn safety(text: &str, vars: &[(&str, &str)]) -> (Vec<String>, Vec<String>) {
    let cfg = parse_with(text, vars).expect("valid").config;
    let r = startup_safety(&cfg);
    (
        r.errors.iter().map(|e| e.to_string()).collect(),
        r.warnings.iter().map(|e| e.to_string()).collect(),
    )
}

#[test]
fn startup_safety_only_bites_off_loopback() {
    let literal = format!("{BASE}\n[secrets]\nsession_keys = \"{}\"\n", "x".repeat(32));
    let (errs, warns) = safety(&literal, &[]);
    assert!(errs.is_empty(), "{errs:?}");
    assert!(
        warns.iter().any(|w| w.contains("literal secret")),
        "{warns:?}"
    );

    let public = literal.replace("127.0.0.1:8443", "0.0.0.0:443");
    let (errs, _) = safety(&public, &[]);
    assert!(
        errs.iter()
            .any(|e| e.contains("secrets.session_keys: a literal secret is refused")),
        "{errs:?}"
    );

    let (errs, _) = safety(&BASE.replace("127.0.0.1:8443", "0.0.0.0:443"), &[]);
    assert!(
        errs.iter()
            .any(|e| e.contains("secrets.session_keys: required")),
        "{errs:?}"
    );

    let env_keys = format!("{BASE}\n[secrets]\nsession_keys = \"env:K\"\n")
        .replace("127.0.0.1:8443", "0.0.0.0:443");
    let (errs, _) = safety(&env_keys, &[("K", &"k".repeat(32))]);
    assert!(errs.is_empty(), "{errs:?}");

    let off = env_keys
        .replace("https = \"0.0.0.0:443\"", "http = \"0.0.0.0:8080\"")
        .replace("mode = \"self-signed\"", "mode = \"off\"");
    let (errs, _) = safety(&off, &[("K", &"k".repeat(32))]);
    assert!(
        errs.iter().any(|e| e.contains("server.trusted_proxies")),
        "{errs:?}"
    );
    let trusted = off.replace("[server]", "[server]\ntrusted_proxies = [\"10.0.0.0/8\"]");
    let (errs, _) = safety(&trusted, &[("K", &"k".repeat(32))]);
    assert!(errs.is_empty(), "{errs:?}");
}

#[test]
fn sessions_and_identity() {
    let keys = "k".repeat(32);
    let text = format!(
        "{BASE}\n[secrets]\nsession_keys = \"env:K\"\n[session]\nttl = \"1h\"\nidle = \"30m\"\nsame_site = \"strict\"\n\
         [identity]\nuser_header = \"X-User\"\n[[route]]\npath = \"/admin\"\naccess = \"role:admin, ops\"\n"
    )
    .replace("default = \"public\"", "default = \"login\"");
    let cfg = parse_with(&text, &[("K", &keys)]).expect("valid").config;
    assert_eq!(
        cfg.store.url.value, "sqlite:/var/lib/portcullis/portcullis.db",
        "the default store is a file in [tls] storage"
    );
    assert_eq!(cfg.session.idle, Duration::from_secs(1800));
    assert_eq!(cfg.session.same_site, SameSite::Strict);
    assert_eq!(cfg.identity.user_header, "X-User");
    assert_eq!(cfg.identity.roles_header, "X-Forwarded-Roles");
    assert_eq!(cfg.access_default, Access::Login);
    assert_eq!(
        cfg.routes[0].access,
        Access::Roles(vec!["admin".into(), "ops".into()])
    );

    // Without [access] default, the documented default is "login".
    let text = format!("{BASE}\n[secrets]\nsession_keys = \"env:K\"\n")
        .replace("[access]\ndefault = \"public\"\n", "");
    assert_eq!(
        parse_with(&text, &[("K", &keys)])
            .expect("valid")
            .config
            .access_default,
        Access::Login
    );

    // Version 2: the users file is an exchange format, not a live store.
    let old = format!("{BASE}\n[session]\nusers = \"u.toml\"\n");
    let e = errors(&old).concat();
    assert!(
        e.contains("session.users")
            && e.contains("portcullis user import /etc/portcullis/u.toml -c CONFIG"),
        "{e}"
    );

    let cases = [
        (
            "[session]\nidle = \"2d\"",
            "session.idle: must not be longer than session.ttl",
        ),
        ("[session]\nsame_site = \"lenient\"", "session.same_site"),
        (
            "[identity]\nuser_header = \"X-Forwarded-For\"",
            "identity.user_header: \"X-Forwarded-For\" is a header the gateway sets itself",
        ),
        (
            "[identity]\nroles_header = \"bad header\"",
            "identity.roles_header",
        ),
        (
            "[[route]]\npath = \"/x\"\naccess = \"role:\"",
            "route[0].access",
        ),
    ];
    for (extra, needle) in cases {
        let errs = errors(&format!("{BASE}\n{extra}\n"));
        assert!(has(&errs, needle), "{needle}: {errs:?}");
    }
}

#[test]
fn headers_and_cors() {
    let text = format!(
        "{BASE}\n[headers]\nhsts = \"max-age=63072000\"\napp_may_override = [\"csp\", \"coop\"]\n\
         [[route]]\npath = \"/embed\"\nheaders = {{ frame_options = \"\" }}\n\
         [cors]\nallow_origins = [\"https://App.Example.com:443\"]\nallow_credentials = true\n"
    );
    let cfg = parse_with(&text, &[]).expect("valid").config;
    assert_eq!(
        cfg.headers.value(SecurityHeader::Hsts),
        Some("max-age=63072000")
    );
    assert!(cfg.headers.app_may_override(SecurityHeader::Coop));
    assert_eq!(
        cfg.routes[0].headers.value(SecurityHeader::FrameOptions),
        None
    );
    assert_eq!(
        cfg.routes[0].headers.value(SecurityHeader::Hsts),
        Some("max-age=63072000"),
        "merged, not replaced"
    );
    let cors = cfg.cors.expect("cors on");
    assert!(cors.allowed_origin("https://app.example.com"));

    let cases = [
        (
            "[headers]\nframe_options = \"DENY\\r\\nSet-Cookie: x=1\"",
            "headers",
        ),
        (
            "[headers]\napp_may_override = [\"server\"]",
            "headers.app_may_override",
        ),
        ("[headers]\nxss = \"1\"", "headers.xss: unknown key"),
        (
            "[[route]]\npath = \"/x\"\nheaders = { hsts = \"\\n\" }",
            "route[0].headers",
        ),
        (
            "[[route]]\npath = \"/x\"\nheaders = { server = \"x\" }",
            "route[0].headers.server: unknown key",
        ),
        (
            "[cors]\nallow_origins = [\"*\"]\nallow_credentials = true",
            "cors",
        ),
        (
            "[cors]\nallow_origins = [\"https://*.example.com\"]",
            "cors",
        ),
    ];
    for (extra, needle) in cases {
        let errs = errors(&format!("{BASE}\n{extra}\n"));
        assert!(has(&errs, needle), "{needle}: {errs:?}");
    }
}

/// The security-review keys (issue 15): defaults, and every mistake named.
#[test]
fn request_hardening_keys_default_and_name_their_mistakes() {
    let cfg = parse_with(BASE, &[]).expect("valid").config;
    assert_eq!(cfg.server.buffer_body, 64 << 10);
    assert_eq!(cfg.server.body_timeout, Duration::from_secs(30));
    assert_eq!(cfg.server.body_min_rate, 1 << 10);
    assert!(cfg.server.pass_client_headers.is_empty());

    let cfg = parse_with(
        &format!(
            "{}\n[[route]]\npath = \"/upload\"\nbuffer_body = \"0\"\nmethod_override = true\n",
            BASE.replace(
                "[server]",
                "[server]\nbuffer_body = \"8KB\"\nbody_timeout = \"5s\"\nbody_min_rate = \"0\"\npass_client_headers = [\"cf_connecting_ip\", \"X-Remote-User\"]"
            )
        ),
        &[],
    )
    .expect("valid")
    .config;
    assert_eq!(cfg.server.buffer_body, 8 << 10);
    assert_eq!(cfg.server.body_timeout, Duration::from_secs(5));
    assert_eq!(cfg.server.body_min_rate, 0);
    assert_eq!(
        cfg.server.pass_client_headers,
        ["cf-connecting-ip", "x-remote-user"]
    );
    assert_eq!(cfg.routes[0].buffer_body, 0);
    assert!(cfg.routes[0].method_override);

    let errs = errors(&BASE.replace("[server]", "[server]\nbuffer_body = \"1MB\""));
    assert!(
        has(
            &errs,
            "portcullis.toml: server.buffer_body: 1048576 bytes is over the 64KB"
        ),
        "{errs:?}"
    );
    let errs = errors(&format!(
        "{BASE}\n[[route]]\npath = \"/\"\nbuffer_body = \"65537\"\n"
    ));
    assert!(has(&errs, "route[0].buffer_body: 65537 bytes"), "{errs:?}");
    let errs = errors(&BASE.replace("[server]", "[server]\nbody_timeout = \"0s\""));
    assert!(
        has(
            &errs,
            "server.body_timeout: \"0s\" must be greater than zero"
        ),
        "{errs:?}"
    );
    let errs = errors(&BASE.replace(
        "[server]",
        "[server]\npass_client_headers = [\"X-Forwarded-For\"]",
    ));
    assert!(
        has(
            &errs,
            "server.pass_client_headers[0]: \"X-Forwarded-For\" is not a header the gateway removes"
        ),
        "{errs:?}"
    );
    let errs = errors(&format!(
        "{BASE}\n[[route]]\npath = \"/\"\nmethod_override = \"yes\"\n"
    ));
    assert!(has(&errs, "route[0].method_override"), "{errs:?}");
}

#[test]
fn the_auth_listener_needs_trusted_proxies_and_its_own_address() {
    let with = |server: &str| BASE.replace("[server]\n", &format!("[server]\n{server}\n"));
    let errs = errors(&with("auth = \"127.0.0.1:9902\""));
    assert!(has(&errs, "server.auth"), "{errs:?}");
    assert!(has(&errs, "trusted_proxies"), "{errs:?}");
    let errs = errors(&with(
        "auth = \"127.0.0.1:8443\"\ntrusted_proxies = [\"127.0.0.1/32\"]",
    ));
    assert!(has(&errs, "must differ"), "{errs:?}");
    let errs = errors(&with(
        "auth = \"nowhere\"\ntrusted_proxies = [\"127.0.0.1/32\"]",
    ));
    assert!(has(&errs, "server.auth"), "{errs:?}");
    let ok = parse_with(
        &with("auth = \"127.0.0.1:9902\"\ntrusted_proxies = [\"127.0.0.1/32\"]"),
        &[],
    )
    .expect("valid");
    assert_eq!(
        ok.config.server.auth,
        Some("127.0.0.1:9902".parse().unwrap())
    );
    assert!(ok.warnings.is_empty(), "loopback: no warning");
    let far = parse_with(
        &with("auth = \"0.0.0.0:9902\"\ntrusted_proxies = [\"10.0.0.0/8\"]"),
        &[],
    )
    .expect("valid");
    assert!(far
        .warnings
        .iter()
        .any(|w| w.to_string().contains("plain text")));
}
