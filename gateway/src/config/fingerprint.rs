//! The effective policy as canonical text per section, for
//! `policies::fingerprint`: what instances behind one load balancer must
//! agree on. Listener addresses, ports, thread counts, upstream addresses
//! and local paths (certificate storage, the store's file) are left out:
//! they differ between instances by design.

use policies::fingerprint::{secrets_digest, Fingerprint};

use super::Config;

/// Every section instances must agree on, digested.
pub fn fingerprint(cfg: &Config) -> Fingerprint {
    let routes = cfg
        .routes
        .iter()
        .map(|r| {
            let upstream = cfg.upstreams.get(r.upstream).map(|u| u.name.as_str());
            format!(
                "id={:?} host={:?} path={:?} methods={:?} access={:?} mfa={} upstream={upstream:?} \
                 max_body={} headers={:?} rate_limit={:?} method_override={} buffer_body={}\n",
                r.id,
                r.host,
                r.path,
                r.methods,
                r.access,
                r.mfa,
                r.max_body,
                r.headers,
                r.rate_limit,
                r.method_override,
                r.buffer_body
            )
        })
        .collect::<String>();
    let upstreams = cfg
        .upstreams
        .iter()
        .map(|u| {
            format!(
                "{:?} health={:?} tls={} sni={:?} connect={:?} read={:?}\n",
                u.name, u.health, u.tls, u.sni, u.connect_timeout, u.read_timeout
            )
        })
        .collect::<String>();
    let s = &cfg.server;
    let server = format!(
        "trusted_proxies={:?} max_body={} case_insensitive_paths={} pass_client_headers={:?} \
         buffer_body={} body_timeout={:?} body_min_rate={} domains={:?}",
        s.trusted_proxies,
        s.max_body,
        s.case_insensitive_paths,
        s.pass_client_headers,
        s.buffer_body,
        s.body_timeout,
        s.body_min_rate,
        cfg.tls.domains
    );
    let rl = &cfg.rate_limit;
    let limits = format!(
        "default={:?} login={:?} shared={} on_store_error={:?}",
        rl.default,
        rl.login,
        rl.redis.is_some(),
        rl.redis.as_ref().map(|r| r.on_error)
    );
    let secrets = &cfg.secrets;
    let keys: Vec<&[u8]> = secrets
        .session_keys
        .iter()
        .flat_map(|k| k.value.iter().map(Vec::as_slice))
        .collect();
    let secrets = secrets_digest(
        &keys,
        secrets.emergency.as_ref().map(|e| e.value.commitment()),
        secrets.assertion_key.as_ref().map(|k| k.value.as_slice()),
    );
    Fingerprint::new([
        ("routes", routes),
        ("upstreams", upstreams),
        ("server", server),
        ("access", format!("{:?}", cfg.access_default)),
        ("headers", format!("{:?}", cfg.headers)),
        ("cors", format!("{:?}", cfg.cors)),
        ("limits", limits),
        ("session", format!("{:?}", cfg.session)),
        ("identity", format!("{:?}", cfg.identity)),
        ("login", format!("{:?}", cfg.login)),
        ("emergency", format!("{:?}", cfg.emergency)),
        ("secrets", secrets),
    ])
}
