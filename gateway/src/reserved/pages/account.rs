//! `/.portcullis/account`: the signed-in person's own page.

use maud::html;

use super::{layout_class, paths};

/// One of the account's sessions, as listed.
pub struct SessionRow<'a> {
    /// The record id (the sign-out form names it).
    pub id: &'a str,
    /// How it was established: `password`, a provider id.
    pub method: &'a str,
    pub client_ip: &'a str,
    pub user_agent: &'a str,
    /// When it was established and last seen, as text (UTC).
    pub created: String,
    pub last_seen: String,
    /// The session this page is shown in.
    pub current: bool,
}

/// What the account page shows.
pub struct AccountPage<'a> {
    pub csrf: &'a str,
    pub user: &'a str,
    pub email: Option<&'a str>,
    pub roles: &'a [String],
    /// The account has a password (the change form is offered).
    pub has_password: bool,
    pub sessions: &'a [SessionRow<'a>],
    pub factors: &'a [super::FactorRow<'a>],
    /// Unused recovery codes.
    pub codes_left: i64,
    /// The account must keep a second factor (`[login] mfa`).
    pub factor_required: bool,
    /// A fixed sentence: `(ok, text)`.
    pub notice: Option<(bool, &'a str)>,
}

/// A short name for a `User-Agent` ("Chrome on Linux"); the whole string
/// is the cell's title.
fn device(ua: &str) -> String {
    const BROWSERS: [(&str, &str); 7] = [
        ("Edg/", "Edge"),
        ("OPR/", "Opera"),
        ("Firefox/", "Firefox"),
        ("Chrome/", "Chrome"),
        ("Safari/", "Safari"),
        ("curl/", "curl"),
        ("python", "Python"),
    ];
    const SYSTEMS: [(&str, &str); 6] = [
        ("Android", "Android"),
        ("iPhone", "iOS"),
        ("iPad", "iOS"),
        ("Windows", "Windows"),
        ("Mac OS X", "macOS"),
        ("Linux", "Linux"),
    ];
    let find = |list: &[(&str, &'static str)]| {
        list.iter()
            .find(|(needle, _)| ua.contains(needle))
            .map(|(_, name)| *name)
    };
    match (find(&BROWSERS), find(&SYSTEMS)) {
        (Some(b), Some(s)) => format!("{b} on {s}"),
        (Some(b), None) => b.to_string(),
        _ => ua.chars().take(32).collect(),
    }
}

pub fn account(p: &AccountPage<'_>) -> String {
    layout_class(
        "Your account",
        "wide",
        html! {
            h1 { "Your account" }
            @if let Some((ok, text)) = p.notice {
                @if ok { p.ok role="status" { (text) } } @else { p.error role="alert" { (text) } }
            }
            p {
                "Signed in as " strong { (p.user) }
                @if let Some(e) = p.email { " (" (e) ")" }
                @if !p.roles.is_empty() { ", roles: " (p.roles.join(", ")) }
                "."
            }
            section aria-labelledby="sessions-title" {
                h2 id="sessions-title" { "Where you are signed in" }
                table {
                    thead { tr { th { "Device" } th { "Address" } th { "Since (UTC)" } th { "Last seen" } th { span.visually-hidden { "Action" } } } }
                    tbody {
                        @for s in p.sessions {
                            tr {
                                td title=(s.user_agent) { (device(s.user_agent)) " · " (s.method) @if s.current { " " strong { "(this browser)" } } }
                                td { (s.client_ip) }
                                td.when { (s.created) }
                                td.when { (s.last_seen) }
                                td {
                                    form method="post" action=(paths::ACCOUNT_SIGN_OUT) {
                                        input type="hidden" name="csrf" value=(p.csrf);
                                        input type="hidden" name="session" value=(s.id);
                                        button.secondary type="submit" id={ "sign-out-" (s.id) } { "Sign out" }
                                    }
                                }
                            }
                        }
                    }
                }
                form method="post" action=(paths::ACCOUNT_SIGN_OUT_EVERYWHERE) {
                    input type="hidden" name="csrf" value=(p.csrf);
                    button id="sign-out-everywhere" type="submit" { "Sign out everywhere" }
                }
            }
            (super::factors::section(p.csrf, p.factors, p.codes_left, p.factor_required))
            @if p.has_password {
                section aria-labelledby="password-title" {
                    h2 id="password-title" { "Change your password" }
                    p { "Your other sessions end; this one stays signed in." }
                    form method="post" action=(paths::ACCOUNT_PASSWORD) {
                        input type="hidden" name="csrf" value=(p.csrf);
                        label for="current" { "Current password" }
                        input id="current" name="current" type="password" autocomplete="current-password" required;
                        label for="new" { "New password (8+ characters)" }
                        input id="new" name="new" type="password" autocomplete="new-password" required minlength="8";
                        label for="confirm" { "New password again" }
                        input id="confirm" name="confirm" type="password" autocomplete="new-password" required minlength="8";
                        button id="change-password" type="submit" { "Change password" }
                    }
                }
            } @else {
                p { "This account signs in through a provider; it has no password here." }
            }
            p { a href=(paths::LOGOUT) { "Sign out of this browser" } }
        },
    )
}

#[cfg(test)]
mod tests {
    use super::device;

    #[test]
    fn devices_get_short_names() {
        let chrome = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/156.0.0.0 Safari/537.36";
        assert_eq!(device(chrome), "Chrome on Linux");
        let safari = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.0 Mobile/15E148 Safari/604.1";
        assert_eq!(device(safari), "Safari on iOS");
        assert_eq!(device("unknown browser"), "unknown browser");
        assert_eq!(device(&"x".repeat(100)).len(), 32);
    }
}
