//! Who a provider may sign in, and with which roles: `allowed_domains`,
//! `allowed_emails`, Google's `hd`, `github_orgs`, and `role_map` from the
//! provider's groups (GitHub: `org` and `org/team`).
//!
//! Only a verified address counts. An address the provider has not
//! verified is refused outright rather than ignored: a rule written for
//! addresses must not quietly pass someone through another path.
//! Comparisons fold ASCII case only; an address that differs by any other
//! character (a homoglyph, a trailing dot) is another address.

/// The rules of one provider (config `[[login.provider]]`).
#[derive(Debug, Clone, Copy, Default)]
pub struct Rules<'a> {
    /// Verified address domains allowed (empty: any).
    pub allowed_domains: &'a [String],
    /// Verified addresses allowed (empty: any). With both lists set, an
    /// address in either passes.
    pub allowed_emails: &'a [String],
    /// Google: the `hd` claim must be one of `allowed_domains` too.
    pub check_hosted_domain: bool,
    /// GitHub: membership of one of these orgs is required (empty: none).
    pub required_orgs: &'a [String],
}

/// What the provider said about the person.
#[derive(Debug, Clone, Copy, Default)]
pub struct Claims<'a> {
    /// The address, if any.
    pub email: Option<&'a str>,
    /// Whether the provider says it verified it.
    pub email_verified: bool,
    /// Google's hosted domain claim.
    pub hosted_domain: Option<&'a str>,
    /// Groups (OIDC `groups_claim`) or GitHub `org` and `org/team` names.
    pub groups: &'a [String],
}

/// Why a provider sign-in is refused by the rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The provider gave an address without verifying it.
    UnverifiedEmail,
    /// The rules need a verified address and there is none.
    NoEmail,
    /// The address is not in `allowed_emails` nor its domain in `allowed_domains`.
    EmailNotAllowed,
    /// Google's `hd` is missing or not an allowed domain.
    HostedDomain,
    /// Not a member of any of `github_orgs`.
    NotInOrg,
}

impl Refusal {
    /// The audit reason, one word.
    pub fn reason(self) -> &'static str {
        match self {
            Refusal::UnverifiedEmail => "email_unverified",
            Refusal::NoEmail => "email_missing",
            Refusal::EmailNotAllowed => "email_not_allowed",
            Refusal::HostedDomain => "hosted_domain_not_allowed",
            Refusal::NotInOrg => "org_not_allowed",
        }
    }
}

/// The verified address the sign-in may use, or why it is refused.
pub fn check<'a>(rules: &Rules<'_>, claims: &Claims<'a>) -> Result<Option<&'a str>, Refusal> {
    if claims.email.is_some() && !claims.email_verified {
        return Err(Refusal::UnverifiedEmail);
    }
    let email = claims.email;
    if !rules.allowed_domains.is_empty() || !rules.allowed_emails.is_empty() {
        let Some(address) = email else {
            return Err(Refusal::NoEmail);
        };
        let by_address = rules
            .allowed_emails
            .iter()
            .any(|a| a.eq_ignore_ascii_case(address));
        let by_domain = domain_of(address).is_some_and(|d| {
            rules
                .allowed_domains
                .iter()
                .any(|a| a.eq_ignore_ascii_case(d))
        });
        if !by_address && !by_domain {
            return Err(Refusal::EmailNotAllowed);
        }
    }
    if rules.check_hosted_domain && !rules.allowed_domains.is_empty() {
        let hd_ok = claims.hosted_domain.is_some_and(|hd| {
            rules
                .allowed_domains
                .iter()
                .any(|a| a.eq_ignore_ascii_case(hd))
        });
        if !hd_ok {
            return Err(Refusal::HostedDomain);
        }
    }
    if !rules.required_orgs.is_empty() {
        let member = claims.groups.iter().any(|g| {
            !g.contains('/')
                && rules
                    .required_orgs
                    .iter()
                    .any(|o| o.eq_ignore_ascii_case(g))
        });
        if !member {
            return Err(Refusal::NotInOrg);
        }
    }
    Ok(email)
}

/// The domain of an address: after its only `@`, non-empty.
fn domain_of(address: &str) -> Option<&str> {
    let (local, domain) = address.split_once('@')?;
    (!local.is_empty() && !domain.is_empty() && !domain.contains('@')).then_some(domain)
}

/// The roles `role_map` gives for `groups` (names compared case-
/// insensitively, as GitHub treats org and team slugs), sorted, each once.
pub fn mapped_roles(role_map: &[(String, Vec<String>)], groups: &[String]) -> Vec<String> {
    let mut out: Vec<String> = role_map
        .iter()
        .filter(|(group, _)| groups.iter().any(|g| g.eq_ignore_ascii_case(group)))
        .flat_map(|(_, roles)| roles.iter().cloned())
        .collect();
    out.sort();
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    fn verified(email: &str) -> Claims<'_> {
        Claims {
            email: Some(email),
            email_verified: true,
            ..Claims::default()
        }
    }

    #[test]
    fn only_verified_addresses_count() {
        let open = Rules::default();
        assert_eq!(
            check(&open, &verified("a@x.example")),
            Ok(Some("a@x.example"))
        );
        let unverified = Claims {
            email_verified: false,
            ..verified("a@x.example")
        };
        assert_eq!(check(&open, &unverified), Err(Refusal::UnverifiedEmail));
        // No address at all is fine while no rule needs one.
        assert_eq!(check(&open, &Claims::default()), Ok(None));
    }

    #[test]
    fn domains_and_addresses_match_exactly_but_for_ascii_case() {
        let domains = list(&["example.com"]);
        let emails = list(&["guest@partner.example"]);
        let rules = Rules {
            allowed_domains: &domains,
            allowed_emails: &emails,
            ..Rules::default()
        };
        for ok in [
            "a@example.com",
            "A@EXAMPLE.COM",
            "guest@partner.example",
            "Guest@Partner.Example",
        ] {
            assert!(check(&rules, &verified(ok)).is_ok(), "{ok}");
        }
        for bad in [
            "a@sub.example.com",
            "a@example.com.evil.example",
            "a@evilexample.com",
            "a@example.com.",
            "a@exampl\u{0435}.com",
            "a@example.com@evil.example",
            "@example.com",
            "example.com",
            "other@partner.example",
            "a@EXAMPLE.COM\u{0}",
        ] {
            assert_eq!(
                check(&rules, &verified(bad)),
                Err(Refusal::EmailNotAllowed),
                "{bad}"
            );
        }
        assert_eq!(check(&rules, &Claims::default()), Err(Refusal::NoEmail));
        let unverified = Claims {
            email_verified: false,
            ..verified("a@example.com")
        };
        assert_eq!(check(&rules, &unverified), Err(Refusal::UnverifiedEmail));
    }

    #[test]
    fn google_hosted_domain_must_be_allowed_too() {
        let domains = list(&["example.com"]);
        let rules = Rules {
            allowed_domains: &domains,
            check_hosted_domain: true,
            ..Rules::default()
        };
        let with_hd = |hd| Claims {
            hosted_domain: hd,
            ..verified("a@example.com")
        };
        assert!(check(&rules, &with_hd(Some("example.com"))).is_ok());
        assert_eq!(check(&rules, &with_hd(None)), Err(Refusal::HostedDomain));
        assert_eq!(
            check(&rules, &with_hd(Some("evil.example"))),
            Err(Refusal::HostedDomain)
        );
        // Without allowed_domains, hd is not required (a gmail.com account).
        let open = Rules {
            check_hosted_domain: true,
            ..Rules::default()
        };
        assert!(check(&open, &with_hd(None)).is_ok());
    }

    #[test]
    fn required_orgs_need_an_org_not_a_team() {
        let orgs = list(&["acme"]);
        let rules = Rules {
            required_orgs: &orgs,
            ..Rules::default()
        };
        let member_of = |g: &[&str]| list(g);
        let in_acme = member_of(&["other", "ACME"]);
        let team_only = member_of(&["acme/ops"]);
        let none = member_of(&[]);
        let with = |groups| Claims {
            groups,
            ..Claims::default()
        };
        assert!(check(&rules, &with(&in_acme)).is_ok());
        assert_eq!(check(&rules, &with(&team_only)), Err(Refusal::NotInOrg));
        assert_eq!(check(&rules, &with(&none)), Err(Refusal::NotInOrg));
    }

    #[test]
    fn role_map_unions_the_matching_groups() {
        let map = vec![
            ("platform-admins".to_string(), list(&["admin"])),
            ("acme/ops".to_string(), list(&["ops", "staff"])),
            ("acme".to_string(), list(&["staff"])),
        ];
        assert_eq!(
            mapped_roles(&map, &list(&["Platform-Admins", "acme/OPS", "acme"])),
            list(&["admin", "ops", "staff"])
        );
        assert!(mapped_roles(&map, &list(&["platform_admins", "acme/ops2"])).is_empty());
        assert!(mapped_roles(&[], &list(&["acme"])).is_empty());
    }
}
