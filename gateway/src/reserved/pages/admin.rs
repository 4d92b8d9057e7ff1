//! `/.portcullis/admin`: accounts, invitations and recent events, every
//! action a small CSRF-protected form (no script; `<details>` folds the
//! actions of each account).

use maud::html;

use super::{layout_class, paths};

/// One account as the console lists it.
pub struct AccountRow<'a> {
    pub name: &'a str,
    pub email: &'a str,
    /// Given roles (editable).
    pub roles: String,
    /// Roles from provider groups (shown, not editable here).
    pub mapped: String,
    pub disabled: bool,
    pub factors: u32,
    pub last_sign_in: String,
}

/// One invitation as listed.
pub struct InvitationRow<'a> {
    /// The token's hash: what the revoke form names.
    pub id: &'a str,
    pub email: &'a str,
    pub roles: String,
    pub created: String,
    pub expires: String,
    /// "open", "used" or "expired".
    pub state: &'static str,
}

/// One audit event as listed.
pub struct EventRow {
    pub time: String,
    pub event: String,
    pub user: String,
    pub by: String,
    pub client_ip: String,
}

/// What the console shows.
pub struct AdminPage<'a> {
    pub csrf: &'a str,
    pub me: &'a str,
    pub query: &'a str,
    pub accounts: &'a [AccountRow<'a>],
    pub invitations: &'a [InvitationRow<'a>],
    pub events: &'a [EventRow],
    /// A fixed sentence: `(ok, text)`.
    pub notice: Option<(bool, &'a str)>,
    /// A one-time link (invitation or password reset) to copy, shown once.
    pub link: Option<&'a str>,
}

fn action(csrf: &str, account: &str, what: &str, label: &str, id: String) -> maud::Markup {
    html! {
        form method="post" action=(paths::ADMIN_ACCOUNT) {
            input type="hidden" name="csrf" value=(csrf);
            input type="hidden" name="account" value=(account);
            input type="hidden" name="action" value=(what);
            button.secondary type="submit" id=(id) { (label) }
        }
    }
}

pub fn admin(p: &AdminPage<'_>) -> String {
    layout_class(
        "Administration",
        "wide",
        html! {
            h1 { "Administration" }
            p { "Signed in as " strong { (p.me) } ". " a href=(paths::ACCOUNT) { "Your account" } }
            @if let Some((ok, text)) = p.notice {
                @if ok { p.ok role="status" { (text) } } @else { p.error role="alert" { (text) } }
            }
            @if let Some(link) = p.link {
                label for="new-link" { "Copy this link now; it is shown only once and works once:" }
                input #new-link type="text" readonly value=(link);
            }
            section aria-labelledby="accounts-title" {
                h2 #accounts-title { "Accounts" }
                form method="get" action=(paths::ADMIN) role="search" {
                    label for="q" { "Search by name or address" }
                    input #q name="q" type="search" value=(p.query);
                    button.secondary #search type="submit" { "Search" }
                }
                table {
                    thead { tr { th { "Name" } th { "Roles" } th { "State" } th { "Last sign-in (UTC)" } } }
                    tbody {
                        @for a in p.accounts {
                            tr.account data-name=(a.name) {
                                td {
                                    strong { (a.name) }
                                    @if !a.email.is_empty() { br; small { (a.email) } }
                                    details {
                                        summary { "Manage " span.visually-hidden { (a.name) } }
                                        form method="post" action=(paths::ADMIN_ACCOUNT) {
                                            input type="hidden" name="csrf" value=(p.csrf);
                                            input type="hidden" name="account" value=(a.name);
                                            input type="hidden" name="action" value="roles";
                                            label for={ "roles-" (a.name) } { "Roles (space-separated)" }
                                            input id={ "roles-" (a.name) } name="roles" type="text" value=(a.roles);
                                            button.secondary type="submit" id={ "save-roles-" (a.name) } { "Save roles" }
                                        }
                                        @if a.disabled {
                                            (action(p.csrf, a.name, "enable", "Enable", format!("enable-{}", a.name)))
                                        } @else {
                                            (action(p.csrf, a.name, "disable", "Disable", format!("disable-{}", a.name)))
                                        }
                                        (action(p.csrf, a.name, "sign-out", "Sign out everywhere", format!("sign-out-{}", a.name)))
                                        (action(p.csrf, a.name, "reset-link", "Make a password-reset link", format!("reset-link-{}", a.name)))
                                        @if a.factors > 0 {
                                            (action(p.csrf, a.name, "clear-factors", "Remove second factors", format!("clear-factors-{}", a.name)))
                                        }
                                        form method="post" action=(paths::ADMIN_ACCOUNT) {
                                            input type="hidden" name="csrf" value=(p.csrf);
                                            input type="hidden" name="account" value=(a.name);
                                            input type="hidden" name="action" value="delete";
                                            label.inline { input type="checkbox" name="confirm" value="yes" required; " Delete " (a.name) " for good" }
                                            button.secondary type="submit" id={ "delete-" (a.name) } { "Delete" }
                                        }
                                    }
                                }
                                td { (a.roles) @if !a.mapped.is_empty() { " " small { "(from provider: " (a.mapped) ")" } } }
                                td { @if a.disabled { "disabled" } @else { "active" } @if a.factors > 0 { ", 2FA" } }
                                td.when { (a.last_sign_in) }
                            }
                        }
                    }
                }
            }
            section aria-labelledby="invitations-title" {
                h2 #invitations-title { "Invitations" }
                form method="post" action=(paths::ADMIN_INVITE) {
                    input type="hidden" name="csrf" value=(p.csrf);
                    label for="invite-email" { "Address (optional: only this address may use it with a provider)" }
                    input #invite-email name="email" type="email";
                    label for="invite-roles" { "Roles (space-separated)" }
                    input #invite-roles name="roles" type="text";
                    label for="invite-days" { "Valid for (days)" }
                    input #invite-days name="days" type="number" min="1" max="90" value="7";
                    button #invite type="submit" { "Make an invitation link" }
                }
                @if !p.invitations.is_empty() {
                    table {
                        thead { tr { th { "Roles" } th { "Address" } th { "Made (UTC)" } th { "Expires (UTC)" } th { "State" } th { span.visually-hidden { "Action" } } } }
                        tbody {
                            @for i in p.invitations {
                                tr {
                                    td { (i.roles) }
                                    td { (i.email) }
                                    td.when { (i.created) }
                                    td.when { (i.expires) }
                                    td { (i.state) }
                                    td {
                                        @if i.state == "open" {
                                            form method="post" action=(paths::ADMIN_REVOKE) {
                                                input type="hidden" name="csrf" value=(p.csrf);
                                                input type="hidden" name="invitation" value=(i.id);
                                                button.secondary type="submit" id={ "revoke-" (i.id) } { "Revoke" }
                                            }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
            section aria-labelledby="events-title" {
                h2 #events-title { "Recent events (this instance)" }
                table #events {
                    thead { tr { th { "Time (UTC)" } th { "Event" } th { "Account" } th { "By" } th { "Address" } } }
                    tbody {
                        @for e in p.events {
                            tr { td.when { (e.time) } td { (e.event) } td { (e.user) } td { (e.by) } td { (e.client_ip) } }
                        }
                    }
                }
            }
        },
    )
}

/// Creating an account with an invitation link.
pub struct SignUpPage<'a> {
    pub csrf: &'a str,
    pub token: &'a str,
    pub username: &'a str,
    pub error: Option<&'a str>,
    /// `(id, label)` of providers that can use the invitation.
    pub providers: &'a [(&'a str, &'a str)],
}

pub fn sign_up(p: &SignUpPage<'_>) -> String {
    layout_class(
        "Create your account",
        "",
        html! {
            h1 { "Create your account" }
            p.note role="status" { "You are invited." }
            @if let Some(e) = p.error { p.error role="alert" { (e) } }
            form method="post" action=(paths::INVITE) {
                input type="hidden" name="csrf" value=(p.csrf);
                input type="hidden" name="token" value=(p.token);
                label for="username" { "Username" }
                input #username name="username" type="text" autocomplete="username" required autofocus value=(p.username);
                label for="password" { "Password (8+ characters)" }
                input #password name="password" type="password" autocomplete="new-password" required minlength="8";
                label for="confirm" { "Password again" }
                input #confirm name="confirm" type="password" autocomplete="new-password" required minlength="8";
                button #sign-up type="submit" { "Create account" }
            }
            @if !p.providers.is_empty() {
                p.or { "or" }
                ul.providers {
                    @for (id, label) in p.providers {
                        li { a.button id={ "provider-" (id) } href={ (paths::OAUTH_START) "?provider=" (id) "&next=%2F" } { "Sign up with " (label) } }
                    }
                }
            }
        },
    )
}

/// Setting a new password with a reset link.
pub fn reset(csrf: &str, token: &str, user: &str, error: Option<&str>) -> String {
    layout_class(
        "Set a new password",
        "",
        html! {
            h1 { "Set a new password" }
            p { "For " strong { (user) } ". Every session of this account ends." }
            @if let Some(e) = error { p.error role="alert" { (e) } }
            form method="post" action=(paths::RESET) {
                input type="hidden" name="csrf" value=(csrf);
                input type="hidden" name="token" value=(token);
                label for="new" { "New password (8+ characters)" }
                input #new name="new" type="password" autocomplete="new-password" required minlength="8" autofocus;
                label for="confirm" { "New password again" }
                input #confirm name="confirm" type="password" autocomplete="new-password" required minlength="8";
                button #set-password type="submit" { "Set password" }
            }
        },
    )
}

/// After a reset: sign in with the new password.
pub fn reset_done(user: &str) -> String {
    layout_class(
        "Password set",
        "",
        html! {
            h1 { "Password set" }
            p.ok role="status" { "The password of " (user) " is set." }
            p { a.button #to-login href=(paths::LOGIN) { "Sign in" } }
        },
    )
}
