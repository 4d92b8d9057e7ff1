//! The second-factor pages: the code form of a sign-in (or step up), adding
//! an authenticator app, and recovery codes shown once.

use maud::{html, Markup, PreEscaped};

use super::{layout, layout_class, paths};

/// The second step of a sign-in.
pub struct CodePage<'a> {
    pub csrf: &'a str,
    pub next: &'a str,
    pub user: &'a str,
    /// A fixed sentence.
    pub error: Option<&'a str>,
    /// The account has passkeys: the options of the ceremony begun for them.
    pub passkey: Option<&'a str>,
}

/// The server's options as a JSON data block (never executed). `<` is
/// escaped so no value can close the element.
fn options_block(options: &str) -> Markup {
    html! {
        script type="application/json" id="passkey-options" { (PreEscaped(options.replace('<', "\\u003c"))) }
    }
}

/// The ceremony: the button, the form the script fills and posts, where it
/// says what went wrong.
fn ceremony(
    csrf: &str,
    next: &str,
    action: &str,
    kind: &str,
    options: &str,
    label: bool,
) -> Markup {
    html! {
        (options_block(options))
        form #passkey-form method="post" action=(action) data-ceremony=(kind) {
            input type="hidden" name="csrf" value=(csrf);
            input type="hidden" name="next" value=(next);
            input type="hidden" name="credential" value="";
            @if label {
                label for="passkey-label" { "Name of this passkey" }
                input #passkey-label name="label" type="text" maxlength="40" value="Passkey";
            }
        }
        button #passkey-button type="button" { @if kind == "create" { "Create a passkey" } @else { "Use a passkey" } }
        p #passkey-status role="status" aria-live="polite" {}
        script src=(paths::PASSKEY_JS) {}
    }
}

/// A page whose work is a passkey ceremony.
pub struct PasskeyPage<'a> {
    pub csrf: &'a str,
    pub title: &'a str,
    pub intro: &'a str,
    /// Where the form posts.
    pub action: &'a str,
    /// `create` (registration) or `get` (authentication).
    pub ceremony: &'a str,
    /// The options (JSON) of the ceremony begun.
    pub options: &'a str,
    pub next: &'a str,
    /// Ask for a name (registration).
    pub label: bool,
    pub forced: bool,
    pub error: Option<&'a str>,
}

pub fn passkey(p: &PasskeyPage<'_>) -> String {
    layout(
        p.title,
        html! {
            h1 { (p.title) }
            @if p.forced { p.warn role="status" { "Your account needs a second factor before you go on." } }
            @if let Some(e) = p.error { p.error role="alert" { (e) } }
            p { (p.intro) }
            (ceremony(p.csrf, p.next, p.action, p.ceremony, p.options, p.label))
            @if p.ceremony == "get" {
                p { a href=(paths::with_next(paths::LOGIN, p.next)) { "Sign in another way" } }
            } @else {
                p { a href=(paths::ACCOUNT_TOTP) { "Use an authenticator app instead" } }
            }
        },
    )
}

pub fn second_factor(p: &CodePage<'_>) -> String {
    layout(
        "Second factor",
        html! {
            h1 { "Second factor" }
            @if let Some(e) = p.error { p.error role="alert" { (e) } }
            p { "Signed in as " strong { (p.user) } ". Enter the 6-digit code from your authenticator app, or one of your recovery codes." }
            @if let Some(options) = p.passkey {
                (ceremony(p.csrf, p.next, paths::LOGIN_PASSKEY, "get", options, false))
                p.or { "or" }
            }
            form method="post" action=(paths::SECOND_FACTOR) {
                input type="hidden" name="csrf" value=(p.csrf);
                input type="hidden" name="next" value=(p.next);
                label for="code" { "Code" }
                input id="code" name="code" type="text" inputmode="text" autocomplete="one-time-code" required autofocus spellcheck="false" autocapitalize="off";
                button id="verify" type="submit" { "Verify" }
            }
            p { a href=(paths::LOGOUT) { "Sign out" } }
        },
    )
}

/// Adding an authenticator app: the QR code, the secret as text, and the
/// first code that proves the app has it.
pub struct EnrolPage<'a> {
    pub csrf: &'a str,
    pub next: &'a str,
    /// Base32, shown for typing and sent back in the form.
    pub secret: &'a str,
    /// An `<svg>` element (rendered by the qrcode crate from the URL).
    pub qr_svg: &'a str,
    /// The account must have a factor before anything else.
    pub forced: bool,
    pub error: Option<&'a str>,
}

/// The secret in groups of four, for reading aloud and typing.
fn grouped(secret: &str) -> String {
    let chars: Vec<char> = secret.chars().collect();
    chars
        .chunks(4)
        .map(|c| c.iter().collect::<String>())
        .collect::<Vec<_>>()
        .join(" ")
}

pub fn enrol(p: &EnrolPage<'_>) -> String {
    layout(
        "Add an authenticator app",
        html! {
            h1 { "Add an authenticator app" }
            @if p.forced { p.warn role="status" { "Your account needs a second factor before you go on." } }
            @if let Some(e) = p.error { p.error role="alert" { (e) } }
            p { "Scan this code with an authenticator app (any app that supports TOTP), or type the key below." }
            figure.qr aria-label="QR code of the key" { (PreEscaped(p.qr_svg)) }
            p { "Key: " code #secret { (grouped(p.secret)) } }
            form method="post" action=(paths::ACCOUNT_TOTP) {
                input type="hidden" name="csrf" value=(p.csrf);
                input type="hidden" name="next" value=(p.next);
                input type="hidden" name="secret" value=(p.secret);
                label for="label" { "Name of this authenticator" }
                input id="label" name="label" type="text" maxlength="40" value="Authenticator app";
                label for="code" { "The 6-digit code it shows now" }
                input id="code" name="code" type="text" inputmode="numeric" autocomplete="one-time-code" required autofocus;
                button id="confirm-totp" type="submit" { "Add" }
            }
            p { a #add-passkey-instead href=(paths::with_next(paths::ACCOUNT_PASSKEY, p.next)) { "Use a passkey instead" } }
            @if p.forced { p { a href=(paths::LOGOUT) { "Sign out" } } }
        },
    )
}

/// Recovery codes, shown once; `added`: the sentence about the factor that
/// came with them (empty for a new set).
pub fn recovery_codes(codes: &[String], next: &str, added: &str) -> String {
    layout_class(
        "Recovery codes",
        "wide",
        html! {
            h1 { "Recovery codes" }
            @if !added.is_empty() { p.ok role="status" { (added) } }
            p { "Keep these somewhere safe. Each works once, in place of a code, if you lose your authenticator. They are shown only now; new ones replace them all." }
            ol.codes #recovery-codes { @for c in codes { li { code { (c) } } } }
            p { a.button #continue href=(next) { "Continue" } }
        },
    )
}

/// One factor in the account page's list.
pub struct FactorRow<'a> {
    pub id: i64,
    pub kind: &'a str,
    pub label: &'a str,
    pub created: String,
}

/// The account page's section on second factors.
pub(super) fn section(
    csrf: &str,
    factors: &[FactorRow<'_>],
    codes_left: i64,
    required: bool,
) -> Markup {
    html! {
        section aria-labelledby="factors-title" {
            h2 id="factors-title" { "Second factors" }
            @if factors.is_empty() {
                p { "None yet: a password alone signs in to this account." }
            } @else {
                table {
                    thead { tr { th { "Kind" } th { "Name" } th { "Added (UTC)" } th { span.visually-hidden { "Action" } } } }
                    tbody {
                        @for f in factors {
                            tr {
                                td { (if f.kind == "totp" { "Authenticator app" } else { "Passkey" }) }
                                td { (f.label) }
                                td.when { (f.created) }
                                td {
                                    form method="post" action=(paths::ACCOUNT_REMOVE_FACTOR) {
                                        input type="hidden" name="csrf" value=(csrf);
                                        input type="hidden" name="factor" value=(f.id);
                                        button.secondary type="submit" id={ "remove-factor-" (f.id) } { "Remove" }
                                    }
                                }
                            }
                        }
                    }
                }
                @if required && factors.len() == 1 { p { "Your account must keep a second factor: add another before removing this one." } }
                p { (codes_left) " unused recovery codes." }
                form method="post" action=(paths::ACCOUNT_RECOVERY_CODES) {
                    input type="hidden" name="csrf" value=(csrf);
                    button.secondary id="new-recovery-codes" type="submit" { "New recovery codes" }
                }
            }
            p { a.button #add-totp href=(paths::ACCOUNT_TOTP) { "Add an authenticator app" } }
            p { a.button #add-passkey href=(paths::ACCOUNT_PASSKEY) { "Add a passkey" } }
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn secrets_are_grouped_by_four() {
        assert_eq!(super::grouped("ABCDEFGHIJ"), "ABCD EFGH IJ");
    }
}
