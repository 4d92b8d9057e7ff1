//! Reserved paths: everything under `/.portcullis/` is answered by the
//! gateway and never forwarded (docs/behaviour.md, "Reserved paths").
//!
//! [`TABLE`] is the one list of what exists there; anything else under the
//! prefix, or a page whose feature is off, is the generic 404. New pages
//! (account, admin, provider sign-in) get a row and a handler module.

mod emergency;
mod emergency_users;
mod forms;
mod login;
mod pages;
pub mod paths;

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
    /// The pages' stylesheet (they load nothing else).
    Style,
    Login,
    Logout,
    /// Only while `[emergency]` is enabled for this client.
    Emergency(emergency::Page),
}

/// Every reserved page, by exact (normalised, lowercase) path.
const TABLE: [(&str, Page); 9] = [
    (paths::HEALTH, Page::Health),
    (paths::STYLE, Page::Style),
    (paths::LOGIN, Page::Login),
    (paths::LOGOUT, Page::Logout),
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

/// Answers a reserved `path` (lowercase when routes are case-insensitive).
pub async fn answer(shared: &Shared, session: &mut Session, ctx: &mut Ctx, path: &str) -> Answer {
    let method = &session.req_header().method;
    let get = method == http::Method::GET || method == http::Method::HEAD;
    let post = method == http::Method::POST;
    let rt = ctx.rt.clone();
    let srt = rt.session.as_ref();
    let answer = match (lookup(path), srt) {
        (Some(Page::Health), _) if get => Ok(Answer::Page {
            status: 200,
            content_type: "text/plain; charset=utf-8",
            body: Bytes::from_static(b"ok\n"),
        }),
        (Some(Page::Style), _) if get => Ok(Answer::Page {
            status: 200,
            content_type: "text/css; charset=utf-8",
            body: Bytes::from_static(pages::STYLE.as_bytes()),
        }),
        (Some(Page::Login), Some(srt)) if get => Ok(login::form(session, ctx, srt)),
        (Some(Page::Login), Some(srt)) if post => login::submit(session, ctx, srt, shared).await,
        (Some(Page::Logout), Some(srt)) if get => Ok(login::logout_form(session, ctx, srt)),
        (Some(Page::Logout), Some(srt)) if post => login::logout(session, ctx, srt, shared).await,
        (Some(Page::Emergency(page)), Some(srt)) => {
            // Disabled, or not for this client: exactly the generic 404.
            let ip = ctx.client_ip();
            let Some(em) = rt.emergency.as_ref().filter(|e| e.admits(ip)) else {
                return Answer::Error(404);
            };
            let gate = emergency::Gate { em, srt, shared };
            match emergency::handle(&gate, session, ctx, page, get, post).await {
                Some(answer) => answer,
                None => Ok(Answer::Error(404)),
            }
        }
        _ => Ok(Answer::Error(404)),
    };
    answer.unwrap_or_else(Answer::Failed)
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
}
