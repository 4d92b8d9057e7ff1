//! HTML the gateway renders itself. maud escapes every interpolation, so no
//! value (a `next`, a user name) can inject markup. Styles come from
//! `/.portcullis/style.css` so the pages work under a strict CSP.

use maud::{html, Markup, DOCTYPE};

/// The stylesheet served at `/.portcullis/style.css`.
pub const STYLE: &str = include_str!("style.css");

fn layout(title: &str, content: Markup) -> String {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta name="robots" content="noindex";
                title { (title) }
                link rel="stylesheet" href="/.portcullis/style.css";
            }
            body {
                main {
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
            form method="post" action="/.portcullis/login" {
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
            form method="post" action="/.portcullis/logout" {
                input type="hidden" name="csrf" value=(csrf);
                button id="sign-out" type="submit" { "Sign out" }
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
