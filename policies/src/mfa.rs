//! Second factors: which accounts must have one, which sessions count as
//! having used one, and what a request from a session that has not is
//! sent to (docs/sign-in.md, "Second factors").
//!
//! A session's record says how it was established, as `first[+second]`:
//! `password`, `password+totp`, `password+recovery`, `passkey`, a provider
//! id (`google`), `google+amr` when the provider's `amr` says it used more
//! than one factor. Provider ids are `[a-z0-9-]`, so `+` never occurs in one.

/// `[login] mfa`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Requirement {
    /// A factor is never demanded (routes with `mfa = true` still do).
    #[default]
    Optional,
    /// Every account must have one.
    Required,
    /// Accounts holding one of these roles must have one.
    Roles(Vec<String>),
}

impl Requirement {
    /// Whether an account with `roles` must have a second factor.
    pub fn applies_to(&self, roles: &[String]) -> bool {
        match self {
            Requirement::Optional => false,
            Requirement::Required => true,
            Requirement::Roles(wanted) => roles.iter().any(|r| wanted.contains(r)),
        }
    }
}

/// The second step of a sign-in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Second {
    /// A TOTP code.
    Totp,
    /// A recovery code.
    Recovery,
    /// A passkey after a password.
    Passkey,
    /// The provider says it used more than one factor (`amr`).
    Amr,
}

impl Second {
    fn name(self) -> &'static str {
        match self {
            Second::Totp => "totp",
            Second::Recovery => "recovery",
            Second::Passkey => "passkey",
            Second::Amr => "amr",
        }
    }
}

/// A passkey alone: possession plus the authenticator's user verification.
pub const PASSKEY: &str = "passkey";

/// The method of a session whose sign-in `method` was completed by `second`
/// (an earlier second step is replaced, not stacked).
pub fn completed(method: &str, second: Second) -> String {
    let first = method.split_once('+').map_or(method, |(first, _)| first);
    format!("{first}+{}", second.name())
}

/// Whether a session established by `method` used a second factor (or a
/// passkey, which is one on its own).
pub fn is_multi_factor(method: &str) -> bool {
    if method == PASSKEY {
        return true;
    }
    matches!(
        method.split_once('+'),
        Some((first, "totp" | "recovery" | "passkey" | "amr")) if !first.is_empty()
    )
}

/// Whether a provider's `amr` values (RFC 8176) say the sign-in used more
/// than one factor: `mfa`, or a possession factor next to a knowledge or
/// inherence one. Unknown values count for nothing.
pub fn amr_is_multi_factor<'a>(amr: impl IntoIterator<Item = &'a str>) -> bool {
    const HAVE: [&str; 6] = ["otp", "hwk", "swk", "sms", "sc", "tel"];
    const KNOW_OR_ARE: [&str; 7] = ["pwd", "pin", "fpt", "face", "iris", "retina", "vbm"];
    let (mut have, mut other) = (false, false);
    for v in amr {
        if v == "mfa" {
            return true;
        }
        have |= HAVE.contains(&v);
        other |= KNOW_OR_ARE.contains(&v);
    }
    have && other
}

/// What happens to a request from a valid session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gate {
    /// On as usual.
    Pass,
    /// The account has a factor this session has not used: ask for it.
    StepUp,
    /// The account must have a factor and has none: enrolment first.
    Enrol,
}

/// The gate for a session established by a multi-factor method or not,
/// whose account has `factors` second factors and `roles`; `route_mfa` when
/// the route demands a second factor (`mfa = true`).
///
/// An account with a factor always uses it: a session established without
/// it (a password sign-in not finished, or a session from before the factor
/// was added) is sent to step up for anything that needs an account.
pub fn gate(
    requirement: &Requirement,
    roles: &[String],
    factors: u32,
    multi_factor: bool,
    route_mfa: bool,
) -> Gate {
    if multi_factor {
        Gate::Pass
    } else if factors > 0 {
        Gate::StepUp
    } else if route_mfa || requirement.applies_to(roles) {
        Gate::Enrol
    } else {
        Gate::Pass
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roles(r: &[&str]) -> Vec<String> {
        r.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn methods_that_count_as_multi_factor() {
        for yes in [
            "password+totp",
            "password+recovery",
            "password+passkey",
            "passkey",
            "google+amr",
            "google+totp",
        ] {
            assert!(is_multi_factor(yes), "{yes}");
        }
        // Spellings that must not pass: case, other separators, empty parts,
        // a suffix alone, unknown seconds, stacked seconds.
        for no in [
            "password",
            "emergency",
            "google",
            "Password+TOTP",
            "password+Totp",
            "password-totp",
            "password_totp",
            "password+",
            "+totp",
            "totp",
            "recovery",
            "password+totp+x",
            "password+pwd",
            "PASSKEY",
            "passkey ",
            "password+totp\u{0}",
            "",
        ] {
            assert!(!is_multi_factor(no), "{no:?}");
        }
    }

    #[test]
    fn completing_replaces_an_earlier_second_step() {
        assert_eq!(completed("password", Second::Totp), "password+totp");
        assert_eq!(
            completed("password+recovery", Second::Totp),
            "password+totp"
        );
        assert_eq!(completed("github", Second::Recovery), "github+recovery");
        assert!(is_multi_factor(&completed("password", Second::Passkey)));
    }

    #[test]
    fn amr_needs_mfa_or_two_kinds() {
        assert!(amr_is_multi_factor(["mfa"]));
        assert!(amr_is_multi_factor(["pwd", "otp"]));
        assert!(amr_is_multi_factor(["hwk", "fpt"]));
        for no in [
            &[][..],
            &["pwd"],
            &["otp"],
            &["pwd", "pin"],
            &["MFA"],
            &["otp", "hwk"],
            &["x-mfa"],
        ] {
            assert!(!amr_is_multi_factor(no.iter().copied()), "{no:?}");
        }
    }

    #[test]
    fn the_gate() {
        use Gate::*;
        let admin = roles(&["admin"]);
        let guest = roles(&["guest"]);
        let by_role = Requirement::Roles(roles(&["admin"]));
        // (requirement, roles, factors, multi-factor session, route mfa) -> gate
        let cases = [
            (&Requirement::Optional, &guest, 0, false, false, Pass),
            (&Requirement::Optional, &guest, 0, false, true, Enrol),
            (&Requirement::Optional, &guest, 1, false, false, StepUp),
            (&Requirement::Optional, &guest, 1, true, true, Pass),
            (&Requirement::Required, &guest, 0, false, false, Enrol),
            (&Requirement::Required, &guest, 2, false, false, StepUp),
            (&Requirement::Required, &guest, 2, true, false, Pass),
            (&by_role, &guest, 0, false, false, Pass),
            (&by_role, &admin, 0, false, false, Enrol),
            (&by_role, &admin, 1, false, false, StepUp),
            (&by_role, &admin, 1, true, false, Pass),
            // A role named like the wanted one in another case is another role.
            (&by_role, &roles(&["Admin"]), 0, false, false, Pass),
        ];
        for (req, r, factors, multi, route, want) in cases {
            assert_eq!(
                gate(req, r, factors, multi, route),
                want,
                "{req:?} {r:?} {factors} {multi} {route}"
            );
        }
    }
}
