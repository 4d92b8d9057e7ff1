//! Every reserved path, written once. Pages link to them, handlers answer
//! them, and the `reserved` stage keeps them from the app.

/// The bare prefix: itself reserved, as is everything under [`PREFIX`].
pub const ROOT: &str = "/.portcullis";
/// Everything under it is answered by the gateway and never forwarded.
pub const PREFIX: &str = "/.portcullis/";
pub const HEALTH: &str = "/.portcullis/health";
/// The assertion's public keys (JWKS).
pub const JWKS: &str = "/.portcullis/jwks.json";
pub const STYLE: &str = "/.portcullis/style.css";
/// The passkey ceremony's script: the only script the gateway serves.
pub const PASSKEY_JS: &str = "/.portcullis/passkey.js";
/// Sign-in with a passkey (alone with `[login] passkeys`, or as the second step).
pub const LOGIN_PASSKEY: &str = "/.portcullis/login/passkey";
/// Adding a passkey.
pub const ACCOUNT_PASSKEY: &str = "/.portcullis/account/passkey";
pub const LOGIN: &str = "/.portcullis/login";
pub const LOGOUT: &str = "/.portcullis/logout";
/// Provider sign-in: `?provider=ID&next=/x` sends the browser to the provider.
pub const OAUTH_START: &str = "/.portcullis/oauth2/start";
/// Where every provider sends the browser back (the redirect URI to register).
pub const OAUTH_CALLBACK: &str = "/.portcullis/oauth2/callback";
/// The signed-in person's own page, and its forms.
pub const ACCOUNT: &str = "/.portcullis/account";
pub const ACCOUNT_PASSWORD: &str = "/.portcullis/account/password";
pub const ACCOUNT_SIGN_OUT: &str = "/.portcullis/account/sign-out";
pub const ACCOUNT_SIGN_OUT_EVERYWHERE: &str = "/.portcullis/account/sign-out-everywhere";
/// The second step of a sign-in (or a step up): a TOTP or recovery code.
pub const SECOND_FACTOR: &str = "/.portcullis/login/second-factor";
/// Adding an authenticator app (also where enrolment is forced).
pub const ACCOUNT_TOTP: &str = "/.portcullis/account/totp";
/// Removing a factor, and a new set of recovery codes.
pub const ACCOUNT_REMOVE_FACTOR: &str = "/.portcullis/account/remove-factor";
pub const ACCOUNT_RECOVERY_CODES: &str = "/.portcullis/account/recovery-codes";
/// The admin console (`[login] admin_role`), and its forms.
pub const ADMIN: &str = "/.portcullis/admin";
pub const ADMIN_ACCOUNT: &str = "/.portcullis/admin/account";
pub const ADMIN_INVITE: &str = "/.portcullis/admin/invite";
pub const ADMIN_REVOKE: &str = "/.portcullis/admin/revoke-invitation";
/// A password-reset link: `?token=…` (made in the admin console).
pub const RESET: &str = "/.portcullis/reset";
/// An invitation link: `?token=…` (`portcullis user invite`).
pub const INVITE: &str = "/.portcullis/invite";
/// Where logout lands.
pub const SIGNED_OUT: &str = "/.portcullis/login?signed_out=1";
pub const EMERGENCY: &str = "/.portcullis/emergency";
pub const EMERGENCY_DASHBOARD: &str = "/.portcullis/emergency/dashboard";
pub const EMERGENCY_CREATE_USER: &str = "/.portcullis/emergency/create-user";
pub const EMERGENCY_RESET_PASSWORD: &str = "/.portcullis/emergency/reset-password";
pub const EMERGENCY_LOGOUT: &str = "/.portcullis/emergency/logout";
/// Where the emergency logout lands.
pub const EMERGENCY_ENDED: &str = "/.portcullis/emergency?ended=1";

/// Where a sign-in that still needs its second factor goes: enrolment when
/// the account has none, else the second-factor page.
pub fn finish_sign_in(need: policies::mfa::Gate) -> &'static str {
    match need {
        policies::mfa::Gate::Enrol => ACCOUNT_TOTP,
        policies::mfa::Gate::StepUp | policies::mfa::Gate::Pass => SECOND_FACTOR,
    }
}

/// Where a browser without an account session goes: to finish its sign-in,
/// or to the login page.
pub fn sign_in_page(unfinished: Option<policies::mfa::Gate>) -> &'static str {
    unfinished.map_or(LOGIN, finish_sign_in)
}

/// `page?next=…`, the query encoded.
pub fn with_next(page: &str, next: &str) -> String {
    let query: String = form_urlencoded::Serializer::new(String::new())
        .append_pair("next", next)
        .finish();
    format!("{page}?{query}")
}

/// Whether `path` (normalised) is reserved; with case-insensitive routes in
/// any case, so `/.PORTCULLIS/login` never reaches an app that folds case.
pub fn is_reserved(path: &str, case_insensitive: bool) -> bool {
    if case_insensitive {
        let head = path.get(..PREFIX.len()).unwrap_or(path);
        head.eq_ignore_ascii_case(PREFIX) || path.eq_ignore_ascii_case(ROOT)
    } else {
        path.starts_with(PREFIX) || path == ROOT
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_prefix_and_the_bare_root_are_reserved() {
        for p in [
            ROOT,
            PREFIX,
            LOGIN,
            "/.portcullis/anything",
            EMERGENCY_ENDED,
        ] {
            assert!(is_reserved(p, false), "{p}");
            assert!(is_reserved(p, true), "{p}");
        }
        for p in [
            "/.portcullisx",
            "/",
            "/a/.portcullis/login",
            "/.portcullis.css",
        ] {
            assert!(!is_reserved(p, false), "{p}");
            assert!(!is_reserved(p, true), "{p}");
        }
        for p in ["/.PORTCULLIS/login", "/.Portcullis", "/.portcullis/LOGIN"] {
            assert!(is_reserved(p, true), "{p}");
        }
        assert!(!is_reserved("/.PORTCULLIS/login", false));
        assert!(!is_reserved("/.Portcullis", false));
    }
}
