//! Reserved paths: everything under `/.portcullis/` is answered by the
//! gateway and never forwarded (docs/behaviour.md, "Reserved paths").
//!
//! [`TABLE`] is the one list of what exists there; anything else under the
//! prefix, or a page whose feature is off, is the generic 404. New pages
//! (account, admin, provider sign-in) get a row and a handler module.

mod account;
mod admin;
mod emergency;
mod emergency_users;
mod forms;
mod invite;
mod login;
mod oauth;
mod pages;
mod passkey;
pub mod paths;
mod reset;
mod second_factor;
mod totp;

use bytes::Bytes;
use pingora::prelude::*;

use crate::answer::Answer;
use crate::ctx::Ctx;
use crate::state::Shared;

/// A page under the reserved prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Page {
    /// `ok`, for load balancers; no session needed.
    Health,
    /// The pages' stylesheet.
    Style,
    /// The assertion's public keys.
    Jwks,
    /// The passkey ceremony's script (the only one).
    PasskeyScript,
    /// Sign-in with a passkey: alone (GET, POST) or as a second step (POST).
    LoginPasskey,
    Login,
    Logout,
    SecondFactor,
    OauthStart,
    OauthCallback,
    Invite,
    Reset,
    Account(AccountPage),
    Admin(AdminPage),
    /// Only while `[emergency]` is enabled for this client.
    Emergency(emergency::Page),
}

/// The account page and its forms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AccountPage {
    Show,
    Password,
    SignOut,
    SignOutEverywhere,
    /// GET: a new secret to scan; POST: its first code.
    Totp,
    RemoveFactor,
    RecoveryCodes,
    /// GET: the ceremony; POST: the new credential.
    Passkey,
}

/// The admin console and its forms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AdminPage {
    Show,
    Account,
    Invite,
    Revoke,
}

/// Every reserved page, by exact (normalised, lowercase) path.
const TABLE: [(&str, Page); 29] = [
    (paths::HEALTH, Page::Health),
    (paths::JWKS, Page::Jwks),
    (paths::STYLE, Page::Style),
    (paths::PASSKEY_JS, Page::PasskeyScript),
    (paths::LOGIN_PASSKEY, Page::LoginPasskey),
    (paths::ACCOUNT_PASSKEY, Page::Account(AccountPage::Passkey)),
    (paths::LOGIN, Page::Login),
    (paths::LOGOUT, Page::Logout),
    (paths::SECOND_FACTOR, Page::SecondFactor),
    (paths::OAUTH_START, Page::OauthStart),
    (paths::OAUTH_CALLBACK, Page::OauthCallback),
    (paths::INVITE, Page::Invite),
    (paths::RESET, Page::Reset),
    (paths::ADMIN, Page::Admin(AdminPage::Show)),
    (paths::ADMIN_ACCOUNT, Page::Admin(AdminPage::Account)),
    (paths::ADMIN_INVITE, Page::Admin(AdminPage::Invite)),
    (paths::ADMIN_REVOKE, Page::Admin(AdminPage::Revoke)),
    (paths::ACCOUNT, Page::Account(AccountPage::Show)),
    (
        paths::ACCOUNT_PASSWORD,
        Page::Account(AccountPage::Password),
    ),
    (paths::ACCOUNT_SIGN_OUT, Page::Account(AccountPage::SignOut)),
    (
        paths::ACCOUNT_SIGN_OUT_EVERYWHERE,
        Page::Account(AccountPage::SignOutEverywhere),
    ),
    (paths::ACCOUNT_TOTP, Page::Account(AccountPage::Totp)),
    (
        paths::ACCOUNT_REMOVE_FACTOR,
        Page::Account(AccountPage::RemoveFactor),
    ),
    (
        paths::ACCOUNT_RECOVERY_CODES,
        Page::Account(AccountPage::RecoveryCodes),
    ),
    (paths::EMERGENCY, Page::Emergency(emergency::Page::Form)),
    (
        paths::EMERGENCY_DASHBOARD,
        Page::Emergency(emergency::Page::Dashboard),
    ),
    (
        paths::EMERGENCY_CREATE_USER,
        Page::Emergency(emergency::Page::CreateUser),
    ),
    (
        paths::EMERGENCY_RESET_PASSWORD,
        Page::Emergency(emergency::Page::ResetPassword),
    ),
    (
        paths::EMERGENCY_LOGOUT,
        Page::Emergency(emergency::Page::Logout),
    ),
];

fn lookup(path: &str) -> Option<Page> {
    TABLE
        .iter()
        .find(|(p, _)| *p == path)
        .map(|(_, page)| *page)
}

/// What answers a reserved request: decided from the page, the method and
/// what is configured, before any I/O.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Handler {
    Health,
    Style,
    Jwks,
    PasskeyScript,
    PasskeySignInForm,
    PasskeySignIn,
    PasskeyForm,
    LoginForm,
    Login,
    LogoutForm,
    Logout,
    SecondFactorForm,
    SecondFactor,
    TotpForm,
    OauthStart,
    OauthCallback,
    Invite,
    SignUp,
    ResetForm,
    Reset,
    Account(AccountPage),
    Admin(AdminPage),
    Emergency(emergency::Handler),
    /// The generic 404: no such page, not for this method, or its feature off.
    NotFound,
}

/// What the request may use, as far as dispatch cares.
#[derive(Debug, Clone, Copy)]
struct Facts {
    get: bool,
    post: bool,
    /// `secrets.session_keys` is set (sign-in and the gate's forms need it).
    sessions: bool,
    /// `[login] password`: the password form is offered.
    password: bool,
    /// At least one `[[login.provider]]`.
    providers: bool,
    /// `[login] signup = "invite"`.
    invitations: bool,
    /// `[login] passkeys`: sign-in with a passkey alone.
    passkeys: bool,
    /// The emergency gate is enabled for this client.
    gate: bool,
    /// The request carries a valid emergency session.
    grant: bool,
}

fn dispatch(page: Option<Page>, f: Facts) -> Handler {
    match page {
        Some(Page::Health) if f.get => Handler::Health,
        Some(Page::Style) if f.get => Handler::Style,
        Some(Page::Jwks) if f.get => Handler::Jwks,
        Some(Page::PasskeyScript) if f.sessions && f.get => Handler::PasskeyScript,
        Some(Page::LoginPasskey) if f.sessions && f.passkeys && f.get => Handler::PasskeySignInForm,
        // Also the second step of a sign-in, whatever `passkeys` says.
        Some(Page::LoginPasskey) if f.sessions && f.post => Handler::PasskeySignIn,
        Some(Page::Account(AccountPage::Passkey)) if f.sessions && f.get => Handler::PasskeyForm,
        Some(Page::Login) if f.sessions && f.get => Handler::LoginForm,
        Some(Page::Login) if f.sessions && f.post && f.password => Handler::Login,
        Some(Page::Logout) if f.sessions && f.get => Handler::LogoutForm,
        Some(Page::Logout) if f.sessions && f.post => Handler::Logout,
        Some(Page::SecondFactor) if f.sessions && f.get => Handler::SecondFactorForm,
        Some(Page::SecondFactor) if f.sessions && f.post => Handler::SecondFactor,
        Some(Page::Account(AccountPage::Totp)) if f.sessions && f.get => Handler::TotpForm,
        Some(Page::OauthStart) if f.sessions && f.providers && f.get => Handler::OauthStart,
        Some(Page::OauthCallback) if f.sessions && f.providers && f.get => Handler::OauthCallback,
        // Invitations: a password sign-up, or provider sign-ins that take them.
        Some(Page::Invite)
            if f.sessions && f.get && (f.password || f.providers && f.invitations) =>
        {
            Handler::Invite
        }
        Some(Page::Invite) if f.sessions && f.post && f.password => Handler::SignUp,
        Some(Page::Reset) if f.sessions && f.password && f.get => Handler::ResetForm,
        Some(Page::Reset) if f.sessions && f.password && f.post => Handler::Reset,
        Some(Page::Admin(AdminPage::Show)) if f.sessions && f.get => {
            Handler::Admin(AdminPage::Show)
        }
        Some(Page::Admin(page)) if f.sessions && f.post && page != AdminPage::Show => {
            Handler::Admin(page)
        }
        Some(Page::Account(AccountPage::Show)) if f.sessions && f.get => {
            Handler::Account(AccountPage::Show)
        }
        Some(Page::Account(form)) if f.sessions && f.post && form != AccountPage::Show => {
            Handler::Account(form)
        }
        Some(Page::Emergency(page)) if f.sessions && f.gate => {
            emergency::dispatch(page, f.get, f.post, f.grant)
                .map_or(Handler::NotFound, Handler::Emergency)
        }
        _ => Handler::NotFound,
    }
}

impl Handler {
    /// Handlers that read an urlencoded form body (too large or not a
    /// form: 400 before the handler runs).
    fn takes_form(self) -> bool {
        matches!(
            self,
            Handler::Login
                | Handler::Logout
                | Handler::SecondFactor
                | Handler::SignUp
                | Handler::Reset
                | Handler::PasskeySignIn
        ) || matches!(self, Handler::Admin(p) if p != AdminPage::Show)
            || matches!(self, Handler::Account(p) if p != AccountPage::Show)
            || matches!(self, Handler::Emergency(h) if h.takes_form())
    }
}

/// Answers a reserved `path` (lowercase when routes are case-insensitive).
pub async fn answer(shared: &Shared, session: &mut Session, ctx: &mut Ctx, path: &str) -> Answer {
    let rt = ctx.rt.clone();
    let method = &session.req_header().method;
    let gate = rt.emergency.as_ref().filter(|e| e.admits(ctx.client_ip()));
    let facts = Facts {
        get: method == http::Method::GET || method == http::Method::HEAD,
        post: method == http::Method::POST,
        sessions: rt.session.is_some(),
        password: rt.login.password,
        providers: !rt.login.list.is_empty(),
        invitations: rt.login.signup == crate::config::Signup::Invite,
        passkeys: rt.login.passkeys,
        gate: gate.is_some(),
        grant: ctx.emergency.is_some(),
    };
    let handler = dispatch(lookup(path), facts);
    let form = if handler.takes_form() {
        match forms::read(session).await {
            Ok(Some(form)) => form,
            Ok(None) => return Answer::Error(400),
            Err(e) => return Answer::Failed(e),
        }
    } else {
        forms::Form::default()
    };
    run(handler, form, shared, session, ctx).await
}

async fn run(
    handler: Handler,
    form: forms::Form,
    shared: &Shared,
    session: &Session,
    ctx: &mut Ctx,
) -> Answer {
    let rt = ctx.rt.clone();
    if handler == Handler::Jwks {
        return jwks(&rt);
    }
    let Some(srt) = rt.session.as_ref() else {
        return static_page(handler);
    };
    match handler {
        Handler::LoginForm => login::form(session, ctx, srt),
        Handler::Login => {
            login::Login { srt, shared }
                .submit(session, ctx, &form)
                .await
        }
        Handler::LogoutForm => login::logout_form(session, ctx, srt),
        Handler::SecondFactorForm => {
            second_factor::SecondFactor { srt, shared }
                .form(session, ctx)
                .await
        }
        Handler::SecondFactor => {
            second_factor::SecondFactor { srt, shared }
                .submit(session, ctx, &form)
                .await
        }
        Handler::TotpForm => totp::Factors { srt, shared }.form(session, ctx),
        Handler::PasskeyForm => {
            passkey::Passkeys { srt, shared }
                .add_form(session, ctx)
                .await
        }
        Handler::PasskeySignInForm => {
            passkey::Passkeys { srt, shared }
                .sign_in_form(session, ctx)
                .await
        }
        Handler::PasskeySignIn => {
            passkey::Passkeys { srt, shared }
                .sign_in(session, ctx, &form)
                .await
        }
        Handler::OauthStart => oauth::start(session, ctx, srt).await,
        Handler::OauthCallback => oauth::Callback { srt, shared }.answer(session, ctx).await,
        Handler::Invite => invite::show(session, ctx, srt, shared).await,
        Handler::SignUp => invite::sign_up(session, ctx, srt, shared, &form).await,
        Handler::ResetForm => reset::show(session, ctx, srt, shared).await,
        Handler::Reset => reset::submit(session, ctx, srt, shared, &form).await,
        Handler::Admin(page) => {
            let admin = admin::Admin { srt, shared };
            match page {
                AdminPage::Show => admin.show(session, ctx).await,
                AdminPage::Account => admin.account(session, ctx, &form).await,
                AdminPage::Invite => admin.invite(session, ctx, &form).await,
                AdminPage::Revoke => admin.revoke(session, ctx, &form).await,
            }
        }
        Handler::Account(page) => {
            let pages = account::AccountPages { srt, shared };
            let factors = totp::Factors { srt, shared };
            match page {
                AccountPage::Show => pages.show(session, ctx).await,
                AccountPage::Password => pages.change_password(session, ctx, &form).await,
                AccountPage::SignOut => pages.sign_out(session, ctx, &form).await,
                AccountPage::SignOutEverywhere => {
                    pages.sign_out_everywhere(session, ctx, &form).await
                }
                AccountPage::Totp => factors.confirm(session, ctx, &form).await,
                AccountPage::RemoveFactor => factors.remove(session, ctx, &form).await,
                AccountPage::RecoveryCodes => factors.new_codes(session, ctx, &form).await,
                AccountPage::Passkey => {
                    passkey::Passkeys { srt, shared }
                        .add(session, ctx, &form)
                        .await
                }
            }
        }
        Handler::Logout => {
            login::Login { srt, shared }
                .logout(session, ctx, &form)
                .await
        }
        Handler::Emergency(h) => match rt.emergency.as_ref() {
            Some(em) => {
                let gate = emergency::Gate { em, srt, shared };
                emergency::run(&gate, h, session, ctx, &form).await
            }
            None => Answer::Error(404),
        },
        _ => static_page(handler),
    }
}

/// `/.portcullis/jwks.json`: the keys an app verifies the assertion with;
/// 404 unless the assertion is signed with stored keys.
fn jwks(rt: &crate::runtime::Runtime) -> Answer {
    if !matches!(rt.identity.assertion, crate::runtime::AssertionRt::Keys(_)) {
        return Answer::Error(404);
    }
    let now = i64::try_from(crate::state::now_ms()).unwrap_or(i64::MAX);
    Answer::Page {
        status: 200,
        content_type: "application/json",
        body: Bytes::from(crate::assertion_keys::RING.load().jwks(now)),
    }
}

/// The pages that need nothing configured.
fn static_page(handler: Handler) -> Answer {
    match handler {
        Handler::Health => Answer::Page {
            status: 200,
            content_type: "text/plain; charset=utf-8",
            body: Bytes::from_static(b"ok\n"),
        },
        Handler::Style => Answer::Page {
            status: 200,
            content_type: "text/css; charset=utf-8",
            body: Bytes::from_static(pages::STYLE.as_bytes()),
        },
        Handler::PasskeyScript => Answer::Page {
            status: 200,
            content_type: "text/javascript; charset=utf-8",
            body: Bytes::from_static(pages::PASSKEY_JS.as_bytes()),
        },
        _ => Answer::Error(404),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_row_is_under_the_prefix_and_found() {
        for (path, page) in TABLE {
            assert!(paths::is_reserved(path, false), "{path}");
            assert_eq!(lookup(path), Some(page));
        }
        assert_eq!(lookup("/.portcullis/emergency/"), None);
        assert_eq!(lookup("/.portcullis/LOGIN"), None);
        assert_eq!(lookup(paths::ROOT), None);
    }

    #[test]
    fn dispatch_needs_the_method_and_the_feature() {
        use emergency::Handler as E;
        use emergency::Page as P;
        let all = Facts {
            get: false,
            post: false,
            sessions: true,
            password: true,
            providers: true,
            invitations: true,
            passkeys: true,
            gate: true,
            grant: false,
        };
        let get = Facts { get: true, ..all };
        let post = Facts { post: true, ..all };
        let cases = [
            (
                Page::Health,
                Facts {
                    sessions: false,
                    gate: false,
                    ..get
                },
                Handler::Health,
            ),
            (Page::Health, post, Handler::NotFound),
            (Page::Style, get, Handler::Style),
            (Page::Jwks, get, Handler::Jwks),
            (Page::Jwks, post, Handler::NotFound),
            (Page::Login, get, Handler::LoginForm),
            (Page::Login, post, Handler::Login),
            (
                Page::Login,
                Facts {
                    sessions: false,
                    ..post
                },
                Handler::NotFound,
            ),
            // `[login] password = false`: the form still renders (for the
            // provider buttons), its POST is the generic 404.
            (
                Page::Login,
                Facts {
                    password: false,
                    ..post
                },
                Handler::NotFound,
            ),
            (
                Page::Login,
                Facts {
                    password: false,
                    ..get
                },
                Handler::LoginForm,
            ),
            (Page::OauthStart, get, Handler::OauthStart),
            (Page::Invite, get, Handler::Invite),
            (
                Page::Account(AccountPage::Show),
                get,
                Handler::Account(AccountPage::Show),
            ),
            (Page::Account(AccountPage::Show), post, Handler::NotFound),
            (
                Page::Account(AccountPage::Password),
                post,
                Handler::Account(AccountPage::Password),
            ),
            (Page::Account(AccountPage::SignOut), get, Handler::NotFound),
            (
                Page::Account(AccountPage::SignOutEverywhere),
                Facts {
                    sessions: false,
                    ..post
                },
                Handler::NotFound,
            ),
            // Invitations: a password sign-up, or provider sign-ins.
            (Page::Invite, post, Handler::SignUp),
            (
                Page::Invite,
                Facts {
                    invitations: false,
                    ..get
                },
                Handler::Invite,
            ),
            (
                Page::Invite,
                Facts {
                    invitations: false,
                    password: false,
                    ..get
                },
                Handler::NotFound,
            ),
            (
                Page::Invite,
                Facts {
                    password: false,
                    ..post
                },
                Handler::NotFound,
            ),
            (Page::Reset, get, Handler::ResetForm),
            (Page::Reset, post, Handler::Reset),
            (
                Page::Reset,
                Facts {
                    password: false,
                    ..get
                },
                Handler::NotFound,
            ),
            (
                Page::Admin(AdminPage::Show),
                get,
                Handler::Admin(AdminPage::Show),
            ),
            (Page::Admin(AdminPage::Show), post, Handler::NotFound),
            (Page::Admin(AdminPage::Account), get, Handler::NotFound),
            (
                Page::Admin(AdminPage::Revoke),
                post,
                Handler::Admin(AdminPage::Revoke),
            ),
            (
                Page::Admin(AdminPage::Invite),
                Facts {
                    sessions: false,
                    ..post
                },
                Handler::NotFound,
            ),
            (Page::SecondFactor, get, Handler::SecondFactorForm),
            (Page::SecondFactor, post, Handler::SecondFactor),
            (Page::Account(AccountPage::Totp), get, Handler::TotpForm),
            (
                Page::Account(AccountPage::Totp),
                post,
                Handler::Account(AccountPage::Totp),
            ),
            (
                Page::Account(AccountPage::RemoveFactor),
                get,
                Handler::NotFound,
            ),
            (Page::OauthCallback, get, Handler::OauthCallback),
            (Page::OauthCallback, post, Handler::NotFound),
            (
                Page::OauthStart,
                Facts {
                    providers: false,
                    ..get
                },
                Handler::NotFound,
            ),
            (
                Page::OauthCallback,
                Facts {
                    providers: false,
                    ..get
                },
                Handler::NotFound,
            ),
            (Page::Logout, get, Handler::LogoutForm),
            (Page::Logout, post, Handler::Logout),
            (Page::Logout, all, Handler::NotFound),
            // The gate: the generic 404 while off or not for this client.
            (
                Page::Emergency(P::Form),
                Facts { gate: false, ..get },
                Handler::NotFound,
            ),
            (
                Page::Emergency(P::Form),
                get,
                Handler::Emergency(E::SecretForm),
            ),
            (
                Page::Emergency(P::Form),
                Facts { grant: true, ..get },
                Handler::Emergency(E::ToDashboard),
            ),
            (
                Page::Emergency(P::Form),
                post,
                Handler::Emergency(E::Submit),
            ),
            (
                Page::Emergency(P::Dashboard),
                get,
                Handler::Emergency(E::NoSession),
            ),
            (
                Page::Emergency(P::Dashboard),
                Facts { grant: true, ..get },
                Handler::Emergency(E::Dashboard),
            ),
            (
                Page::Emergency(P::Dashboard),
                Facts {
                    grant: true,
                    ..post
                },
                Handler::NotFound,
            ),
            (
                Page::Emergency(P::CreateUser),
                post,
                Handler::Emergency(E::NoSession),
            ),
            (
                Page::Emergency(P::CreateUser),
                Facts {
                    grant: true,
                    ..post
                },
                Handler::Emergency(E::CreateUser),
            ),
            (
                Page::Emergency(P::CreateUser),
                Facts { grant: true, ..get },
                Handler::NotFound,
            ),
            (
                Page::Emergency(P::ResetPassword),
                Facts {
                    grant: true,
                    ..post
                },
                Handler::Emergency(E::ResetPassword),
            ),
            (
                Page::Emergency(P::Logout),
                Facts {
                    grant: true,
                    ..post
                },
                Handler::Emergency(E::Logout),
            ),
            (Page::Emergency(P::Logout), all, Handler::NotFound),
        ];
        for (page, facts, want) in cases {
            assert_eq!(dispatch(Some(page), facts), want, "{page:?} {facts:?}");
        }
        assert_eq!(dispatch(None, get), Handler::NotFound);
        // Forms are read only for handlers that take one: a POST without an
        // emergency session is sent back without its body being read.
        assert!(Handler::Login.takes_form() && Handler::Emergency(E::Submit).takes_form());
        assert!(!Handler::Emergency(E::NoSession).takes_form() && !Handler::LoginForm.takes_form());
    }
}
