//! `portcullis keys rotate|list`: the public-key assertion's keys in the
//! identity store the config names (`[identity] assertion = "es256"` or
//! `"eddsa"`). Running gateways read the keys every few seconds.

use std::process::ExitCode;
use std::time::Duration;

use identity::Store;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::assertion_keys::{self, KeysError};
use crate::cli::KeysCommand;
use crate::config::{AssertionAlg, IdentityConf};
use crate::state::now_ms;

/// Why a `portcullis keys` command changed nothing.
#[derive(Debug, thiserror::Error)]
enum KeysCmdError {
    /// The config (every mistake, one per line).
    #[error("{0}")]
    Config(String),
    #[error(
        "identity.assertion is not \"es256\" or \"eddsa\": there are no stored keys to rotate"
    )]
    NoKeys,
    #[error(transparent)]
    Keys(#[from] KeysError),
    #[error(transparent)]
    Store(#[from] identity::StoreError),
}

pub fn run(cmd: KeysCommand) -> ExitCode {
    crate::run_store_command(exec(cmd))
}

fn when(ms: i64) -> String {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_else(|| ms.to_string())
}

fn human(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        s if s % 86_400 == 0 && s > 0 => format!("{}d", s / 86_400),
        s if s % 3_600 == 0 && s > 0 => format!("{}h", s / 3_600),
        s if s % 60 == 0 && s > 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

async fn exec(cmd: KeysCommand) -> Result<String, KeysCmdError> {
    let config = match &cmd {
        KeysCommand::Rotate { config } | KeysCommand::List { config } => config.path(),
    };
    let loaded = crate::config::load(&config, &crate::env_lookup).map_err(|r| {
        KeysCmdError::Config(
            r.errors
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("\n"),
        )
    })?;
    let cfg = loaded.config;
    let id: &IdentityConf = &cfg.identity;
    let Some(AssertionAlg::Keys(alg)) = id.assertion else {
        return Err(KeysCmdError::NoKeys);
    };
    let store = Store::open(&cfg.store.url.value).await?;
    match cmd {
        KeysCommand::Rotate { .. } => {
            let (kid, from) =
                assertion_keys::rotate(&store, alg, id.key_grace, id.old_key_published).await?;
            Ok(format!(
                "new {} key {kid}: published now, signs from {} (in {}); the keys before it stay published until {}",
                alg.as_str(),
                when(from),
                human(id.key_grace),
                when(from.saturating_add(i64::try_from(id.old_key_published.as_millis()).unwrap_or(i64::MAX))),
            ))
        }
        KeysCommand::List { .. } => {
            let now = i64::try_from(now_ms()).unwrap_or(i64::MAX);
            let rows = store.signing_keys().await?;
            let ring = assertion_keys::KeyRing::from_rows(&rows);
            let signer = ring.signer(alg, now).map(|k| k.kid().to_string());
            let mut out = vec!["KID  ALG  STATE".to_string()];
            for k in &rows {
                let state = if signer.as_deref() == Some(k.kid.as_str()) {
                    "signing".to_string()
                } else if k.sign_from > now {
                    format!("signs from {}", when(k.sign_from))
                } else {
                    match k.published_until {
                        Some(t) if t <= now => "retired".to_string(),
                        Some(t) => format!("published until {}", when(t)),
                        None => "published".to_string(),
                    }
                };
                out.push(format!("{}  {}  {state}", k.kid, k.alg));
            }
            Ok(out.join("\n"))
        }
    }
}
