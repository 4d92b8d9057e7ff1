//! Stage `session`: from the request's cookies to an identity, and the cookies
//! the gateway sets. The cookie format and MAC live in `policies::session`;
//! this module adds what needs the identity store and revocations.

use cookie::{Cookie, SameSite as CookieSameSite};
use pingora::http::RequestHeader;
use policies::cookies::{self, CookieError};
use policies::session::{self, Session};

use crate::config::SameSite;
use crate::runtime::{EmergencyRt, SessionRt};
use crate::state::{Accounts, Shared};
use crate::store::StoreDown;
use identity::Lookup;
use policies::emergency::Grant;

/// The session cookie.
pub const SESSION_COOKIE: &str = "__Host-portcullis";
/// The browser binding that CSRF tokens are tied to.
pub const CSRF_COOKIE: &str = "__Host-portcullis-csrf";
/// The emergency session (docs/configuration.md `[emergency]`).
pub const EMERGENCY_COOKIE: &str = "__Host-portcullis-emergency";
/// The user name apps see for an emergency session: parentheses are not
/// allowed in user names, so it can never be a real account.
pub const EMERGENCY_USER: &str = "(emergency)";
/// Every cookie the gateway owns starts with this; none reaches the app.
pub const OWN_COOKIE_PREFIX: &str = "__Host-portcullis";

/// Who is making the request.
#[derive(Debug, Clone)]
pub struct Identity {
    /// The account's name as created (its case is what apps see).
    pub user: String,
    pub roles: Vec<String>,
    /// The account's e-mail address, if it has one.
    pub email: Option<String>,
    /// The session, to revoke it at logout; `None` for an emergency session.
    pub session: Option<Session>,
    /// How the session was established (`password`, `password+totp`, a
    /// provider id…: `policies::mfa`); `emergency` for the gate's.
    pub method: String,
    /// Second factors the account has.
    pub factors: u32,
}

impl Identity {
    /// The session used a second factor (or a passkey).
    pub fn multi_factor(&self) -> bool {
        policies::mfa::is_multi_factor(&self.method)
    }
}

/// A valid session whose sign-in is not finished: it must use its second
/// factor (`StepUp`) or first get one (`Enrol`). It is no identity: apps,
/// rules and pages see no session, only the pages that finish it see this.
#[derive(Debug, Clone)]
pub struct Unfinished {
    pub identity: Identity,
    pub need: policies::mfa::Gate,
}

/// The outcome of stage `session`.
#[derive(Debug, Default)]
pub struct Auth {
    pub identity: Option<Identity>,
    /// A `Set-Cookie` to send: a refreshed session, or a clear of a bad one.
    pub set_cookie: Option<String>,
    /// A session cookie came that the identity store could not check.
    pub unavailable: bool,
}

/// The raw bytes of every `Cookie` header (see `policies::cookies`: one
/// non-ASCII byte must not hide the gateway's cookies).
fn cookie_headers(req: &RequestHeader) -> impl Iterator<Item = &[u8]> {
    req.headers
        .get_all(http::header::COOKIE)
        .iter()
        .map(|v| v.as_bytes())
}

/// The single value of cookie `name` (`policies::cookies::single`: two
/// copies mean someone planted one, so neither is believed).
pub fn cookie<'a>(req: &'a RequestHeader, name: &'a str) -> Result<Option<&'a str>, CookieError> {
    cookies::single(cookie_headers(req), name.as_bytes())
}

fn same_site(s: SameSite) -> CookieSameSite {
    match s {
        SameSite::Lax => CookieSameSite::Lax,
        SameSite::Strict => CookieSameSite::Strict,
        SameSite::None => CookieSameSite::None,
    }
}

/// `Set-Cookie` for a session, alive until its absolute expiry (`now_ms`:
/// Unix milliseconds; `Max-Age` in whole seconds, rounded down so the
/// browser never keeps a cookie the gateway no longer takes).
pub fn session_cookie(rt: &SessionRt, s: &Session, now_ms: u64) -> String {
    let max_age = s.issued.saturating_add(rt.life.ttl).saturating_sub(now_ms) / 1000;
    Cookie::build((SESSION_COOKIE, session::encode(s, &rt.keys)))
        .secure(true)
        .http_only(true)
        .path("/")
        .same_site(same_site(rt.same_site))
        .max_age(cookie::time::Duration::seconds(max_age as i64))
        .build()
        .to_string()
}

/// `Set-Cookie` for an emergency grant: strict same-site, until it expires.
pub fn emergency_cookie(value: String, max_age: u64) -> String {
    strict_cookie(EMERGENCY_COOKIE, &value, max_age)
}

/// Step 5 for the emergency gate (only called while it is enabled for this
/// client): the grant in the emergency cookie, if valid — signed with a key
/// from the current secret, unexpired, not longer than `ttl`, not logged
/// out. A bad cookie is no grant, and is cleared.
pub async fn emergency(
    em: &EmergencyRt,
    shared: &Shared,
    req: &RequestHeader,
    now: u64,
) -> Result<(Option<Grant>, Option<String>), StoreDown> {
    let value = match cookie(req, EMERGENCY_COOKIE) {
        Ok(Some(v)) => v,
        Ok(None) => return Ok((None, None)),
        Err(_) => return Ok((None, Some(clear_cookie(EMERGENCY_COOKIE)))),
    };
    let Some(grant) = em.verifier.decode(value, now, em.ttl) else {
        return Ok((None, Some(clear_cookie(EMERGENCY_COOKIE))));
    };
    if shared.revocations.is_revoked(&grant.id).await? {
        return Ok((None, Some(clear_cookie(EMERGENCY_COOKIE))));
    }
    Ok((Some(grant), None))
}

/// `Set-Cookie` for a short-lived value only this site's own pages send
/// back (SameSite=Strict), for `max_age` seconds.
pub fn strict_cookie(name: &str, value: &str, max_age: u64) -> String {
    short_lived(name, value, max_age, CookieSameSite::Strict)
}

/// `Set-Cookie` for a short-lived binding that must survive a cross-site
/// top-level navigation back to us (SameSite=Lax).
pub fn lax_cookie(name: &str, value: &str, max_age: u64) -> String {
    short_lived(name, value, max_age, CookieSameSite::Lax)
}

fn short_lived(name: &str, value: &str, max_age: u64, same_site: CookieSameSite) -> String {
    Cookie::build((name, value))
        .secure(true)
        .http_only(true)
        .path("/")
        .same_site(same_site)
        .max_age(cookie::time::Duration::seconds(
            i64::try_from(max_age).unwrap_or(0),
        ))
        .build()
        .to_string()
}

/// `Set-Cookie` that removes cookie `name`.
pub fn clear_cookie(name: &str) -> String {
    Cookie::build((name, ""))
        .secure(true)
        .http_only(true)
        .path("/")
        .max_age(cookie::time::Duration::ZERO)
        .build()
        .to_string()
}

/// `Set-Cookie` for the CSRF binding: a browser-session cookie, never sent cross-site.
pub fn csrf_cookie(binding: &str) -> String {
    Cookie::build((CSRF_COOKIE, binding))
        .secure(true)
        .http_only(true)
        .path("/")
        .same_site(CookieSameSite::Strict)
        .build()
        .to_string()
}

/// Verifies the session cookie: MAC and lifetimes, then its record through
/// the identity store's cache (it exists, its account exists, is enabled
/// and has the epoch the session was issued under). A bad cookie is no
/// cookie, and is cleared. A cookie that cannot be checked because the
/// store is unavailable is no identity either, but is kept: the stage
/// answers 503 where an account is needed, and the session works again when
/// the store is back.
pub async fn authenticate(
    rt: &SessionRt,
    accounts: &Accounts,
    req: &RequestHeader,
    now_ms: u64,
) -> Auth {
    let cleared = || Auth {
        set_cookie: Some(clear_cookie(SESSION_COOKIE)),
        ..Auth::default()
    };
    let value = match cookie(req, SESSION_COOKIE) {
        Ok(Some(v)) => v,
        Ok(None) => return Auth::default(),
        Err(_) => return cleared(),
    };
    let Ok((mut s, refresh)) = session::decode(value, &rt.keys, now_ms, rt.life) else {
        return cleared();
    };
    let Some(cache) = accounts.cache() else {
        return Auth {
            unavailable: true,
            ..Auth::default()
        };
    };
    let (record, account) = match cache.session(s.id_hex().as_str(), now_ms).await {
        Lookup::Valid { session, account } => (session, account),
        Lookup::Invalid => return cleared(),
        Lookup::Unavailable => {
            return Auth {
                unavailable: true,
                ..Auth::default()
            }
        }
    };
    let set_cookie = refresh.then(|| {
        s.seen = now_ms;
        // Activity for the account page; not on the path of this request.
        let (store, id) = (cache.store().clone(), record.id.clone());
        let at = i64::try_from(now_ms).unwrap_or(i64::MAX);
        tokio::spawn(async move {
            if let Err(e) = store.touch_session(&id, at).await {
                tracing::debug!(error = %e, "session activity not recorded");
            }
        });
        session_cookie(rt, &s, now_ms)
    });
    Auth {
        identity: Some(Identity {
            user: account.name.clone(),
            roles: account.all_roles(),
            email: account.email.clone(),
            session: Some(s),
            method: record.method.clone(),
            factors: account.factors,
        }),
        set_cookie,
        unavailable: false,
    }
}

/// The request's `Cookie` headers without the gateway's own cookies (any
/// name starting with [`OWN_COOKIE_PREFIX`], in any case). The app never
/// sees a session token; its own cookies pass byte for byte.
pub fn strip_own_cookies(req: &RequestHeader) -> cookies::Stripped {
    cookies::strip(|| cookie_headers(req), OWN_COOKIE_PREFIX.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(cookies: &[&str]) -> RequestHeader {
        let mut r = RequestHeader::build("GET", b"/", None).expect("req");
        for c in cookies {
            r.append_header("cookie", *c).expect("header");
        }
        r
    }

    #[test]
    fn own_cookies_never_reach_the_app() {
        use cookies::Stripped;
        assert_eq!(strip_own_cookies(&req(&["a=1; b=2"])), Stripped::Unchanged);
        assert_eq!(
            strip_own_cookies(&req(&[
                "a=1; __Host-portcullis=x; b=2",
                "__Host-portcullis-csrf=y"
            ])),
            Stripped::Rest(b"a=1; b=2".to_vec())
        );
        assert_eq!(
            strip_own_cookies(&req(&["__Host-portcullis=x"])),
            Stripped::Empty
        );
        // Raw UTF-8 next to the session cookie (as browsers send it).
        let mut r = req(&[]);
        let utf8 = http::HeaderValue::from_bytes(b"__Host-portcullis=x; name=Jos\xc3\xa9")
            .expect("obs-text is a valid header value");
        r.append_header("cookie", utf8).expect("header");
        assert_eq!(cookie(&r, SESSION_COOKIE), Ok(Some("x")));
        assert_eq!(
            strip_own_cookies(&r),
            Stripped::Rest(b"name=Jos\xc3\xa9".to_vec())
        );
    }

    #[test]
    fn cookies_are_host_prefixed_and_private() {
        let c = clear_cookie(SESSION_COOKIE);
        for attr in ["Secure", "HttpOnly", "Path=/", "Max-Age=0"] {
            assert!(c.contains(attr), "{c}");
        }
        let c = csrf_cookie("abc");
        assert!(
            c.starts_with("__Host-portcullis-csrf=abc") && c.contains("SameSite=Strict"),
            "{c}"
        );
    }
}
