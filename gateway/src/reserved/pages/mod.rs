//! HTML the gateway renders itself. maud escapes every interpolation, so no
//! value (a `next`, a user name) can inject markup. Styles come from
//! `/.portcullis/style.css` so the pages work under a strict CSP.

use maud::{html, Markup, DOCTYPE};

use super::paths;

/// The stylesheet served at `/.portcullis/style.css`.
pub const STYLE: &str = include_str!("style.css");

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

/// The login form. `error` and `note` are fixed sentences chosen by the gateway.
pub fn login(
    csrf: &str,
    next: &str,
    username: &str,
    error: Option<&str>,
    note: Option<&str>,
) -> String {
    layout(
        "Sign in",
        html! {
            h1 { "Sign in" }
            @if let Some(e) = error { p.error role="alert" { (e) } }
            @if let Some(n) = note { p.note role="status" { (n) } }
            form method="post" action=(paths::LOGIN) {
                input type="hidden" name="csrf" value=(csrf);
                input type="hidden" name="next" value=(next);
                label for="username" { "Username" }
                input id="username" name="username" type="text" autocomplete="username" required autofocus value=(username);
                label for="password" { "Password" }
                input id="password" name="password" type="password" autocomplete="current-password" required;
                button id="sign-in" type="submit" { "Sign in" }
            }
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
        let page = login(
            "t\"><script>",
            "/x\"><script>alert(1)</script>",
            "<b>",
            Some("Wrong"),
            None,
        );
        assert!(!page.contains("<script>"), "{page}");
        assert!(!page.contains("<b>"), "{page}");
        assert!(page.contains("&quot;&gt;&lt;script&gt;"), "{page}");
    }
}
