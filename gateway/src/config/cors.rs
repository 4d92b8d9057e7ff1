//! `[cors]`: the gateway answers preflights and owns the CORS headers.

use std::time::Duration;

use super::reader::duration;
use super::{CorsPolicy, Report, Section};

pub(super) fn read_cors(sec: &mut Section<'_>, r: &mut Report) -> Option<Option<CorsPolicy>> {
    let owned = |l: Option<Vec<&str>>| {
        l.unwrap_or_default()
            .into_iter()
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    let origins = owned(sec.str_list("allow_origins", r));
    let methods = sec
        .str_list("allow_methods", r)
        .map(|l| l.into_iter().map(str::to_string).collect::<Vec<_>>());
    let methods = methods.unwrap_or_else(|| vec!["GET".into(), "HEAD".into(), "POST".into()]);
    let headers = owned(sec.str_list("allow_headers", r));
    let credentials = sec.bool("allow_credentials", r).unwrap_or(false);
    let max_age = duration(sec, "max_age", r).unwrap_or(Duration::from_secs(600));
    if origins.is_empty() {
        return Some(None);
    }
    match CorsPolicy::new(&origins, &methods, &headers, credentials, max_age.as_secs()) {
        Ok(p) => Some(Some(p)),
        Err(e) => {
            r.error("cors", e.to_string());
            None
        }
    }
}
