//! Access rules and the per-request decision (stage `access`, docs/behaviour.md).
//!
//! * `public` passes everybody; `login` needs a valid session; `role:a,b`
//!   needs a session carrying any one of the roles; `deny` is 403 for
//!   everybody, a session included.
//! * Without a session a browser navigation is sent to the login page (303),
//!   anything else (API clients, `fetch`, form posts) gets 401, because a
//!   redirect to an HTML form is useless to a script and would turn a POST
//!   into a GET.
//! * Role names compare exactly (case-sensitive): `Admin` is not `admin`,
//!   and no folding rule can be argued around.

use std::fmt;

/// A route's (or the default) access rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Access {
    /// Everybody, no session needed.
    Public,
    /// Any valid session.
    Login,
    /// A session with at least one of these roles (non-empty, no duplicates).
    Roles(Vec<String>),
    /// Nobody, a session included.
    Deny,
}

/// Why an access rule does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AccessError {
    /// Not `public`, `login`, `role:...` or `deny`.
    #[error("invalid access {0:?}: expected \"public\", \"login\", \"role:a,b\" or \"deny\"")]
    Unknown(String),
    /// `role:` with nothing, or an empty entry between commas.
    #[error("empty role name in {0:?}")]
    EmptyRole(String),
    /// A role name outside `A-Za-z0-9._-`.
    #[error("invalid role name {0:?}: use A-Z a-z 0-9 . _ -")]
    InvalidRole(String),
}

/// True for 1–64 bytes of `A-Za-z0-9._-`: safe in the roles header and logs.
pub fn valid_role_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

impl Access {
    /// Parses `"public"`, `"login"`, `"role:a,b"` (any of; names trimmed of
    /// spaces, duplicates dropped) or `"deny"`. Keywords are exact lowercase.
    pub fn parse(s: &str) -> Result<Access, AccessError> {
        match s {
            "public" => return Ok(Access::Public),
            "login" => return Ok(Access::Login),
            "deny" => return Ok(Access::Deny),
            _ => {}
        }
        let Some(list) = s.strip_prefix("role:") else {
            return Err(AccessError::Unknown(s.to_owned()));
        };
        let mut roles: Vec<String> = Vec::new();
        for name in list.split(',').map(|n| n.trim_matches([' ', '\t'])) {
            if name.is_empty() {
                return Err(AccessError::EmptyRole(s.to_owned()));
            }
            if !valid_role_name(name) {
                return Err(AccessError::InvalidRole(name.to_owned()));
            }
            if !roles.iter().any(|r| r == name) {
                roles.push(name.to_owned());
            }
        }
        Ok(Access::Roles(roles))
    }

    /// The configuration spelling; [`Access::parse`] reads it back.
    pub fn as_string(&self) -> String {
        match self {
            Access::Public => "public".into(),
            Access::Login => "login".into(),
            Access::Roles(roles) => format!("role:{}", roles.join(",")),
            Access::Deny => "deny".into(),
        }
    }
}

impl fmt::Display for Access {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.as_string())
    }
}

/// What the gateway does with a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Forward it.
    Allow,
    /// 303 to the login page (browser navigation without a session).
    LoginRedirect,
    /// 401 JSON (no session, not a navigation).
    Unauthorized,
    /// 403 (wrong role, or `deny`).
    Forbidden,
}

/// The decision for `access`, given the session's roles (`Some` only when a
/// valid session exists) and whether the request is a browser navigation
/// (see [`is_navigation`]).
pub fn decide(access: &Access, roles: Option<&[String]>, navigation: bool) -> Decision {
    let no_session = if navigation {
        Decision::LoginRedirect
    } else {
        Decision::Unauthorized
    };
    match (access, roles) {
        (Access::Public, _) => Decision::Allow,
        (Access::Deny, _) => Decision::Forbidden,
        (Access::Login | Access::Roles(_), None) => no_session,
        (Access::Login, Some(_)) => Decision::Allow,
        (Access::Roles(needed), Some(held)) => {
            if held.iter().any(|h| needed.contains(h)) {
                Decision::Allow
            } else {
                Decision::Forbidden
            }
        }
    }
}

/// A browser navigation: method `GET` or `HEAD` (exact, methods are
/// case-sensitive) and any `Accept` value naming `text/html` (ASCII
/// case-insensitive). `*/*` alone does not count: it is what scripts send.
pub fn is_navigation(method: &str, accept_values: &mut dyn Iterator<Item = &[u8]>) -> bool {
    const HTML: &[u8] = b"text/html";
    if !matches!(method, "GET" | "HEAD") {
        return false;
    }
    for value in accept_values {
        if value
            .windows(HTML.len())
            .any(|w| w.eq_ignore_ascii_case(HTML))
        {
            return true;
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roles(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn parse_keywords() {
        assert_eq!(Access::parse("public"), Ok(Access::Public));
        assert_eq!(Access::parse("login"), Ok(Access::Login));
        assert_eq!(Access::parse("deny"), Ok(Access::Deny));
        for bad in [
            "",
            "Public",
            "LOGIN",
            " login",
            "login ",
            "allow",
            "none",
            "role",
            "roles:a",
            "role=a",
            "Role:a",
            "deny,login",
        ] {
            assert_eq!(
                Access::parse(bad),
                Err(AccessError::Unknown(bad.into())),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn parse_roles() {
        assert_eq!(
            Access::parse("role:admin"),
            Ok(Access::Roles(roles(&["admin"])))
        );
        assert_eq!(
            Access::parse("role: admin , ops.team,dev_1,a-b "),
            Ok(Access::Roles(roles(&["admin", "ops.team", "dev_1", "a-b"])))
        );
        assert_eq!(
            Access::parse("role:admin,admin,Admin"),
            Ok(Access::Roles(roles(&["admin", "Admin"])))
        );
        for bad in [
            "role:",
            "role: ",
            "role:a,",
            "role:,a",
            "role:a,,b",
            "role:a, ,b",
        ] {
            assert!(
                matches!(Access::parse(bad), Err(AccessError::EmptyRole(_))),
                "{bad:?}"
            );
        }
        for bad in [
            "role:a b",
            "role:a;b",
            "role:a|b",
            "role:a:b",
            "role:caf\u{e9}",
            "role:a\nb",
            "role:a/b",
            "role:a\"",
        ] {
            assert!(
                matches!(Access::parse(bad), Err(AccessError::InvalidRole(_))),
                "{bad:?}"
            );
        }
        let long = format!("role:{}", "r".repeat(65));
        assert!(Access::parse(&long).is_err());
    }

    #[test]
    fn as_string_round_trips() {
        for s in [
            "public",
            "login",
            "deny",
            "role:admin",
            "role:a,b.c,d_e,f-g",
        ] {
            let access = Access::parse(s).unwrap();
            assert_eq!(access.as_string(), s);
            assert_eq!(access.to_string(), s);
            assert_eq!(Access::parse(&access.as_string()), Ok(access));
        }
        assert_eq!(
            Access::parse("role: a , b").unwrap().as_string(),
            "role:a,b"
        );
    }

    #[test]
    fn every_combination() {
        use Decision::*;
        let admin_rule = Access::Roles(roles(&["admin", "ops"]));
        let admin = roles(&["admin"]);
        let ops_and_dev = roles(&["dev", "ops"]);
        let dev = roles(&["dev"]);
        let upper = roles(&["Admin", "ADMIN", "admin "]);
        let none: Vec<String> = vec![];
        // (rule, roles, navigation, expected)
        let cases: Vec<(&Access, Option<&[String]>, bool, Decision)> = vec![
            (&Access::Public, None, true, Allow),
            (&Access::Public, None, false, Allow),
            (&Access::Public, Some(&dev), true, Allow),
            (&Access::Public, Some(&none), false, Allow),
            (&Access::Login, None, true, LoginRedirect),
            (&Access::Login, None, false, Unauthorized),
            (&Access::Login, Some(&none), true, Allow),
            (&Access::Login, Some(&none), false, Allow),
            (&Access::Login, Some(&dev), false, Allow),
            (&admin_rule, None, true, LoginRedirect),
            (&admin_rule, None, false, Unauthorized),
            (&admin_rule, Some(&admin), true, Allow),
            (&admin_rule, Some(&admin), false, Allow),
            (&admin_rule, Some(&ops_and_dev), false, Allow),
            (&admin_rule, Some(&dev), true, Forbidden),
            (&admin_rule, Some(&dev), false, Forbidden),
            (&admin_rule, Some(&none), true, Forbidden),
            (&admin_rule, Some(&upper), false, Forbidden),
            (&Access::Deny, None, true, Forbidden),
            (&Access::Deny, None, false, Forbidden),
            (&Access::Deny, Some(&admin), true, Forbidden),
            (&Access::Deny, Some(&admin), false, Forbidden),
        ];
        for (rule, held, nav, expected) in cases {
            assert_eq!(
                decide(rule, held, nav),
                expected,
                "{rule:?} {held:?} nav={nav}"
            );
        }
        // An (unparseable, hand-built) empty role list admits nobody.
        assert_eq!(
            decide(&Access::Roles(vec![]), Some(&admin), true),
            Forbidden
        );
    }

    fn nav(method: &str, accept: &[&str]) -> bool {
        let mut values = accept.iter().map(|v| v.as_bytes());
        is_navigation(method, &mut values)
    }

    #[test]
    fn navigation() {
        let browser = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8";
        assert!(nav("GET", &[browser]));
        assert!(nav("HEAD", &[browser]));
        assert!(nav("GET", &["TEXT/HTML"]));
        assert!(nav("GET", &["Text/Html; charset=utf-8"]));
        assert!(nav("GET", &["application/json", "text/html"]));
        assert!(nav("GET", &["", "application/xhtml+xml, text/html;q=0.1"]));
        assert!(!nav("GET", &[]));
        assert!(!nav("GET", &[""]));
        assert!(!nav("GET", &["*/*"]));
        assert!(!nav("GET", &["application/json"]));
        assert!(!nav("GET", &["text/htm"]));
        assert!(!nav("GET", &["text/plain", "text/*"]));
        for method in ["POST", "PUT", "DELETE", "OPTIONS", "get", "Get", "head", ""] {
            assert!(!nav(method, &[browser]), "{method:?}");
        }
        // Non-UTF-8 bytes in the header do not matter.
        let mut values = [&b"\xff\xfetext/html"[..]].into_iter();
        assert!(is_navigation("GET", &mut values));
    }
}
