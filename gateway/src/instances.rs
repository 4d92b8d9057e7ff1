//! Instances that share one Redis tell each other what policy they run.
//!
//! Every [`HEARTBEAT`] each instance writes a short record (id, host, pid,
//! version, listener, and its config fingerprint per section) under its own
//! key, expiring after [`TTL`], then reads everyone's. Instances whose
//! fingerprint differs are counted in `portcullis_instances{fingerprint=
//! "other"}` and logged once per change; `portcullis check --online` reads
//! the same records and names the sections that differ.

use std::sync::Mutex;
use std::time::Duration;

use policies::fingerprint::Fingerprint;
use serde::{Deserialize, Serialize};

use crate::store::RedisStore;

/// How often an instance publishes its record.
pub const HEARTBEAT: Duration = Duration::from_secs(5);
/// How long a record outlives its last heartbeat: three missed beats.
pub const TTL: Duration = Duration::from_secs(15);

/// One instance's published record.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Beat {
    pub id: String,
    pub host: String,
    pub pid: u32,
    pub version: String,
    /// Unix seconds at start.
    pub started: u64,
    /// Where it listens (for the operator; not part of the fingerprint).
    pub listen: String,
    /// [`Fingerprint::encode`].
    pub fingerprint: String,
}

impl Beat {
    /// The fingerprint, if the record carries a well-formed one.
    pub fn fingerprint(&self) -> Option<Fingerprint> {
        Fingerprint::decode(&self.fingerprint)
    }

    /// How this record compares with `mine`: `None` when equal, else the
    /// sections that differ (`["unreadable"]` for a fingerprint that does
    /// not parse).
    pub fn differs_from(&self, mine: &Fingerprint) -> Option<Vec<String>> {
        let Some(theirs) = self.fingerprint() else {
            return Some(vec!["unreadable".to_string()]);
        };
        let sections = mine.differing(&theirs);
        (!sections.is_empty()).then(|| sections.into_iter().map(str::to_string).collect())
    }
}

/// Reads every live record; records that do not parse are skipped.
pub async fn live(redis: &RedisStore) -> Option<Vec<Beat>> {
    let raw = redis.instances().await.ok()?;
    let mut beats: Vec<Beat> = raw
        .iter()
        .filter_map(|r| serde_json::from_str(r).ok())
        .collect();
    beats.sort_by(|a, b| (&a.host, a.started, &a.id).cmp(&(&b.host, b.started, &b.id)));
    Some(beats)
}

/// This process's identity among the instances, and what it last reported.
pub struct Peers {
    id: String,
    host: String,
    started: u64,
    listen: String,
    /// The differing instances at the last beat (id and digest), to log
    /// only changes.
    last: Mutex<Option<Vec<String>>>,
}

impl Peers {
    /// `started`: unix seconds at start.
    pub fn new(listen: String, started: u64) -> Peers {
        let id: String = rand::random::<[u8; 6]>()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        Peers {
            id,
            host: host_name(),
            started,
            listen,
            last: Mutex::new(None),
        }
    }

    /// This process's random id (also its name in ACME order leases).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Publishes this instance's record and compares everyone's with it.
    pub async fn beat(&self, redis: &RedisStore, mine: &Fingerprint) {
        let beat = Beat {
            id: self.id.clone(),
            host: self.host.clone(),
            pid: std::process::id(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            started: self.started,
            listen: self.listen.clone(),
            fingerprint: mine.encode(),
        };
        let Ok(record) = serde_json::to_string(&beat) else {
            return;
        };
        if redis
            .publish_instance(&self.id, &record, TTL.as_secs())
            .await
            .is_err()
        {
            return;
        }
        let Some(beats) = live(redis).await else {
            return;
        };
        let mut differing = Vec::new();
        let mut same = 0i64;
        for b in &beats {
            match b.differs_from(mine) {
                None => same += 1,
                Some(sections) => differing.push((b, sections)),
            }
        }
        let m = &crate::metrics::METRICS.instances;
        m.with_label_values(&["same"]).set(same);
        m.with_label_values(&["other"])
            .set(i64::try_from(differing.len()).unwrap_or(i64::MAX));
        let now: Vec<String> = differing
            .iter()
            .map(|(b, _)| format!("{}:{}", b.id, b.fingerprint))
            .collect();
        let Ok(mut last) = self.last.lock() else {
            return;
        };
        if last.as_ref() == Some(&now) {
            return;
        }
        if differing.is_empty() {
            if last.is_some() {
                tracing::info!(instances = same, "every live instance runs this policy");
            }
        } else {
            for (b, sections) in &differing {
                tracing::warn!(
                    instance = %b.id,
                    host = %b.host,
                    listen = %b.listen,
                    differs_in = %sections.join(","),
                    "another instance on this Redis runs a different policy (see `portcullis check --online`)"
                );
            }
        }
        *last = Some(now);
    }
}

/// The machine's name, for the operator's eyes only.
fn host_name() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unknown".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fp(routes: &str) -> Fingerprint {
        Fingerprint::new([("routes", routes.to_string()), ("cors", "x".to_string())])
    }

    #[test]
    fn a_record_says_which_sections_differ() {
        let mine = fp("a");
        let mut beat = Beat {
            id: "1".into(),
            host: "h".into(),
            pid: 1,
            version: "0".into(),
            started: 0,
            listen: "0.0.0.0:443".into(),
            fingerprint: mine.encode(),
        };
        assert_eq!(beat.differs_from(&mine), None);
        beat.fingerprint = fp("b").encode();
        assert_eq!(beat.differs_from(&mine), Some(vec!["routes".to_string()]));
        beat.fingerprint = "junk".into();
        assert_eq!(
            beat.differs_from(&mine),
            Some(vec!["unreadable".to_string()])
        );
        let json = serde_json::to_string(&beat).expect("json");
        assert_eq!(serde_json::from_str::<Beat>(&json).expect("back"), beat);
    }
}
