//! HTML the gateway renders itself. maud escapes every interpolation, so no
//! value (a `next`, a user name) can inject markup. Styles come from
//! `/.portcullis/style.css` so the pages work under a strict CSP.

use maud::{html, Markup, DOCTYPE};

use super::paths;

mod account;
mod admin;
mod factors;
pub use account::{account, AccountPage, SessionRow};
pub use admin::{
    admin, reset, reset_done, sign_up, AccountRow, AdminPage, EventRow, InvitationRow, SignUpPage,
};
pub use factors::{
    enrol, passkey, recovery_codes, second_factor, CodePage, EnrolPage, FactorRow, PasskeyPage,
};

/// The stylesheet served at `/.portcullis/style.css`.
pub const STYLE: &str = include_str!("style.css");
/// The passkey ceremony, served at `/.portcullis/passkey.js`.
pub const PASSKEY_JS: &str = include_str!("passkey.js");

fn layout(title: &str, content: Markup) -> String {
    layout_class(title, "", content)
}

fn layout_class(title: &str, class: &str, content: Markup) -> String {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta name="robots" content="noindex";
                title { (title) }
                link rel="stylesheet" href=(paths::STYLE);
            }
            body {
                main class=[(!class.is_empty()).then_some(class)] {
                    (content)
                    footer { "Protected by portcullis" }
                }
            }
        }
    }
    .into_string()
}

/// What the login page offers.
pub struct LoginPage<'a> {
    pub csrf: &'a str,
    pub next: &'a str,
    pub username: &'a str,
    /// A fixed sentence chosen by the gateway.
    pub error: Option<&'a str>,
    /// A fixed sentence chosen by the gateway.
    pub note: Option<&'a str>,
    /// `[login] password`: the form is shown.
    pub password: bool,
    /// `(id, label)` of every provider: one link each (no script needed).
    pub providers: &'a [(&'a str, &'a str)],
    /// `[login] passkeys`: a link to sign in with a passkey.
    pub passkeys: bool,
}

/// The login page: the password form and one button per provider.
pub fn login(p: &LoginPage<'_>) -> String {
    let start = |id: &str| {
        let query: String = form_urlencoded::Serializer::new(String::new())
            .append_pair("provider", id)
            .append_pair("next", p.next)
            .finish();
        format!("{}?{query}", paths::OAUTH_START)
    };
    layout(
        "Sign in",
        html! {
            h1 { "Sign in" }
            @if let Some(e) = p.error { p.error role="alert" { (e) } }
            @if let Some(n) = p.note { p.note role="status" { (n) } }
            @if p.password {
                form method="post" action=(paths::LOGIN) {
                    input type="hidden" name="csrf" value=(p.csrf);
                    input type="hidden" name="next" value=(p.next);
                    label for="username" { "Username" }
                    input id="username" name="username" type="text" autocomplete="username" required autofocus value=(p.username);
                    label for="password" { "Password" }
                    input id="password" name="password" type="password" autocomplete="current-password" required;
                    button id="sign-in" type="submit" { "Sign in" }
                }
            }
            @if p.passkeys {
                p.or { "or" }
                a.button #passkey-sign-in href=(paths::with_next(paths::LOGIN_PASSKEY, p.next)) { "Sign in with a passkey" }
            }
            @if !p.providers.is_empty() {
                @if p.password { p.or { "or" } }
                ul.providers {
                    @for (id, label) in p.providers {
                        li { a.button id={ "provider-" (id) } href=(start(id)) { "Sign in with " (label) } }
                    }
                }
            }
        },
    )
}

/// A provider sign-in that did not complete: a fixed sentence, never the
/// provider's text, and the way back.
pub fn sign_in_failed(sentence: &str, next: &str) -> String {
    let back = format!(
        "{}?{}",
        paths::LOGIN,
        form_urlencoded::Serializer::new(String::new())
            .append_pair("next", next)
            .finish()
    );
    layout(
        "Sign-in failed",
        html! {
            h1 { "Sign-in failed" }
            p.error role="alert" { (sentence) }
            p { a href=(back) { "Back to sign in" } }
        },
    )
}

/// The logout confirmation: apps link to `GET /.portcullis/logout`.
pub fn logout(csrf: &str, user: Option<&str>) -> String {
    layout(
        "Sign out",
        html! {
            h1 { "Sign out" }
            @if let Some(u) = user { p { "Signed in as " strong { (u) } "." } }
            form method="post" action=(paths::LOGOUT) {
                input type="hidden" name="csrf" value=(csrf);
                button id="sign-out" type="submit" { "Sign out" }
            }
        },
    )
}

/// `GET /.portcullis/emergency`: the form for the emergency secret.
pub fn emergency(csrf: &str, error: Option<&str>, note: Option<&str>) -> String {
    layout(
        "Emergency access",
        html! {
            h1 { "Emergency access" }
            p.warn { "Break-glass access for when no administrator can sign in. Every attempt is logged." }
            @if let Some(e) = error { p.error role="alert" { (e) } }
            @if let Some(n) = note { p.note role="status" { (n) } }
            form method="post" action=(paths::EMERGENCY) {
                input type="hidden" name="csrf" value=(csrf);
                label for="secret" { "Emergency secret" }
                input id="secret" name="secret" type="password" autocomplete="off" required autofocus;
                button id="grant" type="submit" { "Grant emergency access" }
            }
        },
    )
}

/// One row of the dashboard's user list.
pub struct UserRow<'a> {
    pub name: &'a str,
    pub roles: &'a [String],
    pub disabled: bool,
}

/// A result line on the dashboard: a fixed sentence plus, maybe, a name.
pub struct Notice<'a> {
    pub ok: bool,
    pub text: &'a str,
}

/// `GET /.portcullis/emergency/dashboard`.
pub fn emergency_dashboard(
    csrf: &str,
    users: &[UserRow<'_>],
    minutes_left: u64,
    notice: Option<Notice<'_>>,
) -> String {
    layout_class(
        "Emergency dashboard",
        "wide",
        html! {
            h1 { "Emergency dashboard" }
            p.warn {
                "Emergency session: " (minutes_left) " min left. When you are done, end it "
                "and disable the gate (" code { "PORTCULLIS_EMERGENCY_ENABLED=false" } ")."
            }
            @if let Some(n) = notice {
                @if n.ok { p.ok role="status" { (n.text) } } @else { p.error role="alert" { (n.text) } }
            }
            section {
                h2 { "Users" }
                @if users.is_empty() { p { "The identity store has no accounts yet." } }
                @else {
                    table {
                        thead { tr { th { "Name" } th { "Roles" } th { "State" } } }
                        tbody {
                            @for u in users {
                                tr {
                                    td { (u.name) }
                                    td { (u.roles.join(", ")) }
                                    td { @if u.disabled { "disabled" } @else { "active" } }
                                }
                            }
                        }
                    }
                }
            }
            section {
                h2 { "Create a user" }
                form method="post" action=(paths::EMERGENCY_CREATE_USER) {
                    input type="hidden" name="csrf" value=(csrf);
                    label for="new-name" { "User name" }
                    input id="new-name" name="username" type="text" autocomplete="off" required;
                    label for="new-password" { "Password (8+ characters)" }
                    input id="new-password" name="password" type="password" autocomplete="new-password" required minlength="8";
                    label for="new-roles" { "Roles (comma-separated)" }
                    input id="new-roles" name="roles" type="text" value="admin";
                    button id="create-user" type="submit" { "Create user" }
                }
            }
            @if !users.is_empty() {
                section {
                    h2 { "Reset a password" }
                    p { "Also enables the account and ends its existing sessions." }
                    form method="post" action=(paths::EMERGENCY_RESET_PASSWORD) {
                        input type="hidden" name="csrf" value=(csrf);
                        label for="reset-name" { "User" }
                        select id="reset-name" name="username" {
                            @for u in users { option value=(u.name) { (u.name) } }
                        }
                        label for="reset-password" { "New password (8+ characters)" }
                        input id="reset-password" name="password" type="password" autocomplete="new-password" required minlength="8";
                        button id="reset" type="submit" { "Reset password" }
                    }
                }
            }
            section {
                form method="post" action=(paths::EMERGENCY_LOGOUT) {
                    input type="hidden" name="csrf" value=(csrf);
                    button.secondary id="end-emergency" type="submit" { "End emergency session" }
                }
            }
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_escaped() {
        let providers = [("corp", "Corp <b>SSO</b>")];
        let page = login(&LoginPage {
            csrf: "t\"><script>",
            next: "/x\"><script>alert(1)</script>",
            username: "<b>",
            error: Some("Wrong"),
            note: None,
            password: true,
            providers: &providers,
            passkeys: false,
        });
        assert!(!page.contains("<script>"), "{page}");
        assert!(!page.contains("<b>"), "{page}");
        assert!(page.contains("&quot;&gt;&lt;script&gt;"), "{page}");
        // The provider link carries `next` URL-encoded inside the query.
        assert!(
            page.contains("/.portcullis/oauth2/start?provider=corp&amp;next=%2Fx%22%3E%3Cscript%3Ealert%281%29%3C%2Fscript%3E"),
            "{page}"
        );
    }

    #[test]
    fn password_off_shows_only_the_providers() {
        let providers = [("corp", "Corp"), ("github", "GitHub")];
        let page = login(&LoginPage {
            csrf: "t",
            next: "/",
            username: "",
            error: None,
            note: None,
            password: false,
            providers: &providers,
            passkeys: false,
        });
        assert!(
            !page.contains("<form") && !page.contains("password"),
            "{page}"
        );
        assert!(page.contains("Sign in with Corp") && page.contains("Sign in with GitHub"));
        let no_providers = login(&LoginPage {
            providers: &[],
            password: true,
            ..LoginPage {
                csrf: "t",
                next: "/",
                username: "",
                error: None,
                note: None,
                password: true,
                providers: &[],
                passkeys: false,
            }
        });
        assert!(no_providers.contains("<form") && !no_providers.contains("Sign in with"));
    }

    #[test]
    fn a_failed_sign_in_shows_only_the_fixed_sentence() {
        let page = sign_in_failed("Fixed.", "/back?x=\"<i>");
        assert!(page.contains("Fixed.") && !page.contains("<i>"), "{page}");
        assert!(
            page.contains("/.portcullis/login?next=%2Fback%3Fx%3D%22%3Ci%3E"),
            "{page}"
        );
    }
}
