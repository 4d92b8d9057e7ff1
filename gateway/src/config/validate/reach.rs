//! Which rules can apply to some request: `[access] default` only to
//! requests no route matches, a route only if no catch-all comes before it.
//! Matching is `policies::routes`' own: the first route whose host, path
//! prefix (on segment boundaries) and methods all match wins.

use policies::routes::RouteMatcher;

use super::super::Route;

/// Most paths or names one clause lists before "and N more".
const LIST_MAX: usize = 5;

fn matchers(routes: &[Route]) -> Vec<RouteMatcher> {
    // Every route here compiled in `read_route`; one that did not would have
    // an error already and could match nothing.
    routes
        .iter()
        .filter_map(|rt| RouteMatcher::new(rt.host.as_deref(), &rt.path, rt.methods.clone()).ok())
        .collect()
}

/// Matches every request: path `/`, no host, no methods.
fn is_catch_all(m: &RouteMatcher) -> bool {
    m.prefix() == "/" && m.host().is_none() && m.methods().is_none()
}

/// The index of the first catch-all route: routes after it never match.
pub(super) fn first_catch_all(routes: &[Route]) -> Option<usize> {
    routes.iter().position(|rt| {
        RouteMatcher::new(rt.host.as_deref(), &rt.path, rt.methods.clone())
            .is_ok_and(|m| is_catch_all(&m))
    })
}

/// The requests no route matches, in a few words; `None` when a catch-all
/// route leaves none.
pub(super) fn unmatched(routes: &[Route], case_insensitive: bool) -> Option<String> {
    let ms = matchers(routes);
    if ms.iter().any(is_catch_all) {
        return None;
    }
    if ms.is_empty() {
        return Some("every request (there is no [[route]])".to_string());
    }
    let p = Prefixes { case_insensitive };
    let mut clauses = Vec::new();
    let all = p.outermost(ms.iter().map(RouteMatcher::prefix));
    if !all.contains(&"/") {
        clauses.push(format!("every path outside {}", list(&all)));
    }
    // Under a prefix whose routes all filter on host or methods, requests
    // that fail those filters match nothing (unless a plain route covers it).
    let plain: Vec<&str> = ms
        .iter()
        .filter(|m| m.host().is_none() && m.methods().is_none())
        .map(RouteMatcher::prefix)
        .collect();
    let mut seen: Vec<&str> = Vec::new();
    for m in ms
        .iter()
        .filter(|m| m.host().is_some() || m.methods().is_some())
    {
        let prefix = m.prefix();
        if seen.iter().any(|s| p.eq(s, prefix)) || plain.iter().any(|u| p.covers(u, prefix)) {
            continue;
        }
        seen.push(prefix);
        let group: Vec<&RouteMatcher> = ms.iter().filter(|o| p.eq(o.prefix(), prefix)).collect();
        let mut clause = filtered(prefix, &group);
        // Plain routes further down still match those requests.
        let inside = p.outermost(
            plain
                .iter()
                .copied()
                .filter(|u| !p.eq(u, prefix) && p.covers(prefix, u)),
        );
        if !inside.is_empty() {
            clause = format!("{clause} outside {}", list(&inside));
        }
        clauses.push(clause);
    }
    Some(clauses.join("; "))
}

/// What passes a group of same-prefix routes that filter on host or methods.
fn filtered(prefix: &str, group: &[&RouteMatcher]) -> String {
    let under = if prefix == "/" {
        "on any path".to_string()
    } else {
        format!("under {prefix}")
    };
    if group.iter().all(|m| m.host().is_none()) {
        let mut methods: Vec<&str> = Vec::new();
        for m in group.iter().flat_map(|m| m.methods().unwrap_or_default()) {
            if !methods.contains(&m.as_str()) {
                methods.push(m);
            }
        }
        // `GET` covers `HEAD`.
        if methods.contains(&"GET") && !methods.contains(&"HEAD") {
            methods.push("HEAD");
        }
        return format!("methods other than {} {under}", list(&methods));
    }
    if group.iter().all(|m| m.methods().is_none()) {
        let mut hosts: Vec<&str> = Vec::new();
        for h in group.iter().filter_map(|m| m.host()) {
            if !hosts.contains(&h) {
                hosts.push(h);
            }
        }
        return format!("hosts other than {} {under}", list(&hosts));
    }
    format!("requests {under} that no route's host and methods match")
}

/// `a, b, c`, or the first few and "and N more".
fn list(items: &[&str]) -> String {
    let shown: Vec<&str> = items.iter().take(LIST_MAX).copied().collect();
    match items.len().checked_sub(LIST_MAX) {
        Some(more) if more > 0 => format!("{} and {more} more", shown.join(", ")),
        _ => shown.join(", "),
    }
}

/// Prefix comparisons as the route table makes them.
struct Prefixes {
    case_insensitive: bool,
}

impl Prefixes {
    fn eq(&self, a: &str, b: &str) -> bool {
        if self.case_insensitive {
            a.eq_ignore_ascii_case(b)
        } else {
            a == b
        }
    }

    /// Whether every path under `inner` is also under `outer`.
    fn covers(&self, outer: &str, inner: &str) -> bool {
        if outer == "/" {
            return true;
        }
        match inner.split_at_checked(outer.len()) {
            Some((head, rest)) => {
                self.eq(head, outer) && (rest.is_empty() || rest.starts_with('/'))
            }
            None => false,
        }
    }

    /// The distinct prefixes no other one covers, in file order.
    fn outermost<'a>(&self, prefixes: impl Iterator<Item = &'a str> + Clone) -> Vec<&'a str> {
        let mut out: Vec<&str> = Vec::new();
        for p in prefixes.clone() {
            let covered = prefixes
                .clone()
                .any(|o| !self.eq(o, p) && self.covers(o, p));
            if !covered && !out.iter().any(|o| self.eq(o, p)) {
                out.push(p);
            }
        }
        out
    }
}
