//! The conversation with the CA: restore or register the account, order,
//! answer the challenges, finalize, download and store ([`obtain`]); and a
//! look at the directory that changes nothing at the CA ([`probe_directory`]).

use std::net::IpAddr;
use std::time::Duration;

use instant_acme::{
    Account, AuthorizationStatus, BodyWrapper, ChallengeType, Identifier, NewAccount, NewOrder,
    Order, OrderStatus, RetryPolicy,
};

use super::challenges::{valid_token, ChallengeStore, Published};
use super::config::{AcmeConfig, Challenge};
use super::error::AcmeError;
use super::names::{directory_host, normalize_domains};
use super::store::AcmeStore;
use super::transport::{http_client, protocol, step, step_raw, Http, StepError, STEP_TIMEOUT};
use crate::loaded::Loaded;

/// How long the CA may take to validate the challenges / issue the certificate.
const POLL_TIMEOUT: Duration = Duration::from_secs(90);
/// How the order is polled while the CA validates and issues.
const POLL: RetryPolicy = RetryPolicy::new()
    .initial_delay(Duration::from_millis(250))
    .backoff(1.5)
    .timeout(POLL_TIMEOUT);
/// How long a challenge answer published to a shared backend is given to
/// reach every instance before the CA is told to validate.
const SHARED_PROPAGATION: Duration = Duration::from_secs(1);
/// Outer bound of a polling step: the polls plus one slow last request.
const POLL_STEP_TIMEOUT: Duration = Duration::from_secs(90 + 30);

/// Get a certificate for `cfg.domains`: load or register the account
/// (registering again if the CA forgot it), order, answer the configured
/// challenge through `challenges`, finalize with a fresh P-256 key, download
/// and store the chain, and return it.
pub async fn obtain(
    cfg: &AcmeConfig,
    store: &AcmeStore,
    challenges: &ChallengeStore,
) -> Result<Loaded, AcmeError> {
    let domains = normalize_domains(&cfg.domains)?;
    // Fail on a bad directory URL before any network traffic.
    directory_host(&cfg.directory)?;
    let http = http_client(cfg.ca_pem.as_deref())?;
    let identifiers: Vec<Identifier> = domains
        .iter()
        .map(|d| match d.parse::<IpAddr>() {
            Ok(ip) => Identifier::Ip(ip),
            Err(_) => Identifier::Dns(d.clone()),
        })
        .collect();
    let url = cfg.directory.as_str();

    let stored = match store.load_account(url).await {
        Ok(stored) => stored,
        // Accounts are cheap to make; a broken file must not block issuance.
        Err(e @ AcmeError::AccountFile { .. }) => {
            tracing::warn!(error = %e, "stored ACME account unusable; registering anew");
            None
        }
        Err(e) => return Err(e),
    };
    let restored = match stored {
        Some(credentials) => {
            let builder = Account::builder_with_http(Box::new(http.clone()));
            match step_raw(STEP_TIMEOUT, builder.from_credentials(credentials)).await {
                Ok(account) => Some(account),
                // A stored key we cannot use will never work: start over.
                Err(StepError::Acme(
                    instant_acme::Error::KeyRejected | instant_acme::Error::Crypto,
                )) => {
                    tracing::warn!(
                        directory = url,
                        "stored ACME account key unusable; registering anew"
                    );
                    None
                }
                Err(e) => return Err(e.into_error("account", url)),
            }
        }
        None => None,
    };
    let (mut account, mut fresh) = match restored {
        Some(account) => (account, false),
        None => (register(cfg, store, &http).await?, true),
    };

    let mut order = loop {
        match step_raw(
            STEP_TIMEOUT,
            account.new_order(&NewOrder::new(&identifiers)),
        )
        .await
        {
            Ok(order) => break order,
            Err(StepError::Acme(e)) if !fresh && account_gone(&e) => {
                tracing::warn!(
                    directory = url,
                    "ACME CA no longer knows the stored account; registering anew"
                );
                account = register(cfg, store, &http).await?;
                fresh = true;
            }
            Err(e) => return Err(e.into_error("new order", url)),
        }
    };

    let mut published = Published::new(challenges.clone(), store.backend().clone());
    let issued = validate_and_finalize(&mut order, cfg.challenge, &domains, &mut published).await;
    published.withdraw().await;
    let (chain_pem, key_pem) = issued?;

    let loaded = store.save_cert(url, &domains, &chain_pem, &key_pem).await?;
    tracing::info!(directory = url, domains = ?domains, "ACME certificate issued");
    Ok(loaded)
}

/// Answers the challenges, waits for the CA to validate, finalizes with a
/// fresh key and downloads the chain: (chain PEM, key PEM).
async fn validate_and_finalize(
    order: &mut Order,
    kind: Challenge,
    domains: &[String],
    published: &mut Published,
) -> Result<(String, String), AcmeError> {
    authorize(order, kind, published).await?;
    let order_url = order.url().to_owned();
    let status = match step_raw(POLL_STEP_TIMEOUT, order.poll_ready(&POLL)).await {
        Ok(status) => status,
        Err(StepError::Acme(instant_acme::Error::Api(problem))) => {
            return Err(validation_error(order, domains, problem.to_string()).await)
        }
        Err(e) => return Err(e.into_error("wait for validation", &order_url)),
    };
    if status != OrderStatus::Ready {
        return Err(validation_error(order, domains, format!("order is {status:?}")).await);
    }

    let key_pem = step("finalize", &order_url, order.finalize()).await?;
    let chain_pem = step_raw(POLL_STEP_TIMEOUT, order.poll_certificate(&POLL))
        .await
        .map_err(|e| e.into_error("download certificate", &order_url))?;
    Ok((chain_pem, key_pem))
}

/// What a CA's directory offers, as far as portcullis cares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DirectoryInfo {
    /// ACME Renewal Information (RFC 9773) is offered.
    pub renewal_info: bool,
}

/// Fetch the directory at `directory` the way [`obtain`] would reach it
/// (same trust, same timeouts) and check that it is an ACME directory: for
/// `portcullis check --online`. Changes nothing at the CA.
pub async fn probe_directory(
    directory: &str,
    ca_pem: Option<&[u8]>,
) -> Result<DirectoryInfo, AcmeError> {
    directory_host(directory)?;
    let http = http_client(ca_pem)?;
    let not_acme = |detail: String| AcmeError::Protocol {
        step: "directory",
        url: directory.to_owned(),
        detail,
    };
    let request = http::Request::get(directory)
        .body(BodyWrapper::default())
        .map_err(|e| not_acme(e.to_string()))?;
    let mut response = step(
        "directory",
        directory,
        instant_acme::HttpClient::request(&http, request),
    )
    .await?;
    if !response.parts.status.is_success() {
        return Err(not_acme(format!("HTTP status {}", response.parts.status)));
    }
    let body = match tokio::time::timeout(STEP_TIMEOUT, response.body.into_bytes()).await {
        Ok(Ok(body)) => body,
        Ok(Err(e)) => return Err(not_acme(format!("reading the body: {e}"))),
        Err(_) => {
            return Err(AcmeError::Timeout {
                step: "directory",
                url: directory.to_owned(),
                timeout: STEP_TIMEOUT,
            })
        }
    };
    let json: serde_json::Value = serde_json::from_slice(&body)
        .map_err(|_| not_acme("not an ACME directory (not JSON)".to_owned()))?;
    for key in ["newNonce", "newAccount", "newOrder"] {
        if !json.get(key).is_some_and(serde_json::Value::is_string) {
            return Err(not_acme(format!("not an ACME directory (no {key:?})")));
        }
    }
    Ok(DirectoryInfo {
        renewal_info: json
            .get("renewalInfo")
            .is_some_and(serde_json::Value::is_string),
    })
}

/// Publish the answer to the chosen challenge for every pending
/// authorization and tell the CA.
async fn authorize(
    order: &mut Order,
    kind: Challenge,
    published: &mut Published,
) -> Result<(), AcmeError> {
    let order_url = order.url().to_owned();
    let mut authorizations = order.authorizations();
    loop {
        let next = tokio::time::timeout(STEP_TIMEOUT, authorizations.next()).await;
        let result = match next {
            Ok(Some(result)) => result,
            Ok(None) => break,
            Err(_) => {
                return Err(AcmeError::Timeout {
                    step: "authorization",
                    url: order_url,
                    timeout: STEP_TIMEOUT,
                })
            }
        };
        let mut authz = result.map_err(|e| protocol("authorization", &order_url, &e))?;
        let domain = authz.identifier().to_string();
        match authz.status {
            AuthorizationStatus::Pending => {}
            AuthorizationStatus::Valid => continue,
            other => {
                return Err(AcmeError::Validation {
                    domain,
                    detail: format!("authorization is {other:?}"),
                })
            }
        }
        let authz_url = authz.url().to_owned();
        let (wanted, name) = match kind {
            Challenge::Http01 => (ChallengeType::Http01, "http-01"),
            Challenge::TlsAlpn01 => (ChallengeType::TlsAlpn01, "tls-alpn-01"),
        };
        let Some(mut challenge) = authz.challenge(wanted) else {
            return Err(AcmeError::Validation {
                domain,
                detail: format!("the CA offers no {name} challenge"),
            });
        };
        match kind {
            Challenge::Http01 => {
                if !valid_token(&challenge.token) {
                    return Err(AcmeError::Protocol {
                        step: "challenge",
                        url: authz_url,
                        detail: "the CA sent a token that is not base64url".to_owned(),
                    });
                }
                let key_authorization = challenge.key_authorization().as_str().to_owned();
                published
                    .add(challenge.token.clone(), key_authorization)
                    .await?;
            }
            Challenge::TlsAlpn01 => {
                let Identifier::Dns(dns) = challenge.identifier().identifier.clone() else {
                    return Err(AcmeError::Validation {
                        domain,
                        detail: "tls-alpn-01 is only done for DNS names here".to_owned(),
                    });
                };
                let dns = dns.to_ascii_lowercase();
                let digest = challenge.key_authorization().digest();
                published.add_alpn(dns, digest.as_ref()).await?;
            }
        }
        if published.is_shared() {
            // Every instance copies published answers every 250 ms: give
            // them time before the CA may knock on any of them.
            tokio::time::sleep(SHARED_PROPAGATION).await;
        }
        let challenge_url = challenge.url.clone();
        step("challenge ready", &challenge_url, challenge.set_ready()).await?;
    }
    Ok(())
}

/// Explain a failed validation by the per-domain errors the CA recorded.
async fn validation_error(order: &mut Order, domains: &[String], fallback: String) -> AcmeError {
    let mut details = Vec::new();
    let mut authorizations = order.authorizations();
    while let Some(Ok(mut authz)) = authorizations.next().await {
        let Ok(Ok(state)) = tokio::time::timeout(STEP_TIMEOUT, authz.refresh()).await else {
            continue;
        };
        let domain = state.identifier().to_string();
        for challenge in &state.challenges {
            if let Some(problem) = &challenge.error {
                details.push((domain.clone(), problem.to_string()));
            }
        }
    }
    match details.len() {
        0 => AcmeError::Validation {
            domain: domains.join(", "),
            detail: fallback,
        },
        _ => {
            let domain = details
                .iter()
                .map(|(d, _)| d.as_str())
                .collect::<Vec<_>>()
                .join(", ");
            let detail = match details.as_slice() {
                [(_, problem)] => problem.clone(),
                _ => details
                    .iter()
                    .map(|(d, p)| format!("{d}: {p}"))
                    .collect::<Vec<_>>()
                    .join("; "),
            };
            AcmeError::Validation { domain, detail }
        }
    }
}

/// A new account at the CA, stored so that later orders reuse it.
async fn register(cfg: &AcmeConfig, store: &AcmeStore, http: &Http) -> Result<Account, AcmeError> {
    let contact = cfg.email.as_ref().map(|e| format!("mailto:{e}"));
    let contacts: Vec<&str> = contact.iter().map(String::as_str).collect();
    let new_account = NewAccount {
        contact: &contacts,
        terms_of_service_agreed: true,
        only_return_existing: false,
    };
    let builder = Account::builder_with_http(Box::new(http.clone()));
    let (account, credentials) = step(
        "account registration",
        &cfg.directory,
        builder.create(&new_account, cfg.directory.clone(), None),
    )
    .await?;
    store.save_account(&cfg.directory, &credentials).await?;
    tracing::info!(directory = %cfg.directory, "ACME account registered");
    Ok(account)
}

/// RFC 8555 7.3.1: the CA no longer has the account our key signs for.
fn account_gone(e: &instant_acme::Error) -> bool {
    matches!(e, instant_acme::Error::Api(p)
        if p.r#type.as_deref() == Some("urn:ietf:params:acme:error:accountDoesNotExist"))
}
