//! A rule's security headers, prepared once at load as header names and
//! values, so a response costs no parsing and no copying of them.
//!
//! What goes on a response is decided by [`HeaderSet::plan`] (policies); this
//! only caches its answer. `plan` lists every configured header except HSTS
//! over plain http and names in `remove`, and drops an `app_may_override`
//! header the app sent: so the two lists below are `plan` for https and http
//! with an app that sent nothing, each entry marked with whether the app's
//! own copy wins.

use http::{HeaderName, HeaderValue};
use pingora::http::ResponseHeader;
use pingora::prelude::*;
use policies::headers::{HeaderSet, SecurityHeader};

#[derive(Debug)]
struct Entry {
    /// A `&'static str`, not a `HeaderName`: pingora's `insert_header` copies
    /// a `HeaderName` it has no title-case spelling for, but not a static str.
    name: &'static str,
    value: HeaderValue,
    app_may_override: bool,
}

/// The security headers of one rule (a route, or the global `[headers]`).
#[derive(Debug)]
pub struct ResponseHeaders {
    remove: Vec<HeaderName>,
    https: Vec<Entry>,
    http: Vec<Entry>,
}

/// A configured header that is not a valid HTTP header after all.
#[derive(Debug, thiserror::Error)]
pub enum InvalidHeader {
    #[error("headers.remove {name:?}: {source}")]
    Name {
        name: String,
        source: http::header::InvalidHeaderName,
    },
    #[error("header {name}: {source}")]
    Value {
        name: &'static str,
        source: http::header::InvalidHeaderValue,
    },
}

impl ResponseHeaders {
    /// Prepares `set`. Its values were validated when the config was read;
    /// an error here means one is not a valid header value after all.
    pub fn new(set: &HeaderSet) -> Result<ResponseHeaders, InvalidHeader> {
        let remove = set
            .remove()
            .iter()
            .map(|n| {
                HeaderName::from_bytes(n.as_bytes()).map_err(|source| InvalidHeader::Name {
                    name: n.clone(),
                    source,
                })
            })
            .collect::<Result<_, _>>()?;
        let entries = |https: bool| -> Result<Vec<Entry>, InvalidHeader> {
            set.plan(https, &|_| false)
                .into_iter()
                .map(|(name, value)| {
                    let app_may_override = SecurityHeader::ALL
                        .iter()
                        .any(|h| h.header_name() == name && set.app_may_override(*h));
                    Ok(Entry {
                        name,
                        value: HeaderValue::from_str(value)
                            .map_err(|source| InvalidHeader::Value { name, source })?,
                        app_may_override,
                    })
                })
                .collect()
        };
        Ok(ResponseHeaders {
            remove,
            https: entries(true)?,
            http: entries(false)?,
        })
    }

    /// Removes the `remove` names, then sets every header, replacing the
    /// app's copy unless the app may override it and sent one.
    pub fn apply(&self, https: bool, h: &mut ResponseHeader) -> Result<()> {
        for name in &self.remove {
            h.remove_header(name);
        }
        let entries = if https { &self.https } else { &self.http };
        for e in entries {
            if e.app_may_override && h.headers.contains_key(e.name) {
                continue;
            }
            h.insert_header(e.name, e.value.clone())?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn response(headers: &[(&str, &str)]) -> ResponseHeader {
        let mut r = ResponseHeader::build(200, None).unwrap();
        for (n, v) in headers {
            r.append_header(n.to_string(), *v).unwrap();
        }
        r
    }

    fn value(r: &ResponseHeader, name: &str) -> Option<String> {
        let all: Vec<_> = r.headers.get_all(name).iter().collect();
        assert!(all.len() <= 1, "{name} set {} times", all.len());
        all.first().map(|v| v.to_str().unwrap().to_string())
    }

    /// The prepared headers do exactly what `plan` says, for every
    /// combination of scheme and app-sent headers.
    #[test]
    fn matches_the_plan() {
        use SecurityHeader::*;
        let sets = [
            HeaderSet::defaults(),
            HeaderSet::configure(
                &[
                    (Csp, "default-src 'none'".into()),
                    (FrameOptions, String::new()),
                    (ContentTypeOptions, String::new()),
                ],
                Some(&[Hsts, ReferrerPolicy]),
                Some(vec!["server".into(), "x-content-type-options".into()]),
            )
            .unwrap(),
        ];
        for set in &sets {
            let prepared = ResponseHeaders::new(set).unwrap();
            for https in [false, true] {
                for app_sends_all in [false, true] {
                    let sent: Vec<(&str, &str)> = if app_sends_all {
                        SecurityHeader::ALL
                            .iter()
                            .map(|h| (h.header_name(), "from-app"))
                            .chain([("Server", "app/1"), ("X-Powered-By", "php")])
                            .collect()
                    } else {
                        vec![("Server", "app/1")]
                    };
                    let mut r = response(&sent);
                    prepared.apply(https, &mut r).unwrap();
                    let app_sent = |n: &str| sent.iter().any(|(s, _)| s.eq_ignore_ascii_case(n));
                    let plan = set.plan(https, &app_sent);
                    for h in SecurityHeader::ALL {
                        let name = h.header_name();
                        let want = match plan.iter().find(|(n, _)| *n == name) {
                            Some((_, v)) => Some(v.to_string()),
                            None if set.remove().iter().any(|r| r == name) => None,
                            None if app_sent(name) => Some("from-app".to_string()),
                            None => None,
                        };
                        assert_eq!(
                            value(&r, name),
                            want,
                            "{name}, https {https}, app sent all {app_sends_all}"
                        );
                    }
                    for gone in set.remove() {
                        assert_eq!(value(&r, gone), None, "{gone} removed");
                    }
                }
            }
        }
    }
}
