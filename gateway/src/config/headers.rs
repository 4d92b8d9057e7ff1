//! `[headers]`: the security headers set on every response.

use super::{HeaderSet, Report, Section, SecurityHeader};

/// The seven header keys of a `[headers]` table or a route's `headers`.
pub(super) fn header_values(
    sec: &mut Section<'_>,
    r: &mut Report,
) -> Vec<(SecurityHeader, String)> {
    SecurityHeader::ALL
        .iter()
        .filter_map(|h| sec.str(h.key(), r).map(|v| (*h, v.to_string())))
        .collect()
}

pub(super) fn read_headers(sec: &mut Section<'_>, r: &mut Report) -> HeaderSet {
    let values = header_values(sec, r);
    let app_may_override = sec.str_list("app_may_override", r).map(|keys| {
        keys.iter()
            .filter_map(|k| {
                let h = SecurityHeader::from_key(k);
                if h.is_none() {
                    let known: Vec<&str> = SecurityHeader::ALL.iter().map(|h| h.key()).collect();
                    r.error(
                        sec.key("app_may_override"),
                        format!("{k:?} is not one of {}", known.join(", ")),
                    );
                }
                h
            })
            .collect::<Vec<_>>()
    });
    let remove = sec
        .str_list("remove", r)
        .map(|l| l.into_iter().map(str::to_string).collect());
    HeaderSet::configure(&values, app_may_override.as_deref(), remove).unwrap_or_else(|e| {
        r.error("headers", e.to_string());
        HeaderSet::defaults()
    })
}
