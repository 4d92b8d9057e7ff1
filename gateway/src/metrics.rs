//! Prometheus metrics (docs/configuration.md "Operations": the `ops` listener's `/metrics`).
//!
//! One process-wide registry. Label values come only from the config (route
//! labels, upstream names) or fixed sets (status codes, event names), so the
//! number of series is bounded whatever clients send.

use std::sync::LazyLock;

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGaugeVec, Opts, Registry,
    TextEncoder,
};

pub struct Metrics {
    registry: Registry,
    /// Requests by route label and status.
    pub requests: IntCounterVec,
    /// Request latency by route label, seconds.
    pub latency: HistogramVec,
    /// 429s by route label.
    pub rate_limited: IntCounterVec,
    /// Authentication and authorisation failures by reason.
    pub auth_failures: IntCounterVec,
    /// Emergency gate events by event and outcome.
    pub emergency: IntCounterVec,
    /// Failures talking to an upstream, by upstream and kind.
    pub upstream_errors: IntCounterVec,
    /// Seconds until each served certificate expires, by its first name.
    pub cert_expiry: IntGaugeVec,
    /// Config reloads by result.
    pub reloads: IntCounterVec,
    /// ACME certificate orders by result (`issued`, `renewed`, `failed`).
    pub acme_orders: IntCounterVec,
    /// Provider sign-ins by provider and outcome.
    pub sign_ins: IntCounterVec,
    /// Shared-store outages that began, and operations answered "store down".
    pub store_outages: IntCounter,
    pub store_failed_ops: IntCounter,
    /// Live instances on the shared Redis, by whether their config
    /// fingerprint equals this one's (`same`, this one included) or not.
    pub instances: IntGaugeVec,
}

/// Registers a metric defined by constants in this file. Both steps fail
/// only on a programming error (an invalid or duplicate name), caught by
/// the first test that renders the metrics, never by input.
#[allow(clippy::expect_used)]
fn register<C>(r: &Registry, metric: prometheus::Result<C>) -> C
where
    C: prometheus::core::Collector + Clone + 'static,
{
    let m = metric.expect("static metric definition");
    r.register(Box::new(m.clone())).expect("unique metric name");
    m
}

fn counter_vec(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    register(r, IntCounterVec::new(Opts::new(name, help), labels))
}

pub static METRICS: LazyLock<Metrics> = LazyLock::new(|| {
    let r = Registry::new();
    let latency = register(
        &r,
        HistogramVec::new(
            HistogramOpts::new(
                "portcullis_request_duration_seconds",
                "Time from request to the end of the response.",
            )
            .buckets(vec![
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ]),
            &["route"],
        ),
    );
    let cert_expiry = register(
        &r,
        IntGaugeVec::new(
            Opts::new(
                "portcullis_cert_expiry_seconds",
                "Seconds until the certificate expires (negative: expired).",
            ),
            &["name"],
        ),
    );
    let store_outages = register(
        &r,
        IntCounter::new(
            "portcullis_store_outages_total",
            "Times the shared store became unreachable.",
        ),
    );
    let store_failed_ops = register(
        &r,
        IntCounter::new(
            "portcullis_store_failed_operations_total",
            "Shared-store operations that followed on_store_error.",
        ),
    );
    let instances = register(
        &r,
        IntGaugeVec::new(
            Opts::new(
                "portcullis_instances",
                "Live instances on the shared Redis, by whether their policy fingerprint is this one's.",
            ),
            &["fingerprint"],
        ),
    );
    Metrics {
        instances,
        requests: counter_vec(
            &r,
            "portcullis_requests_total",
            "Requests by route and status.",
            &["route", "status"],
        ),
        latency,
        rate_limited: counter_vec(
            &r,
            "portcullis_rate_limited_total",
            "Requests refused with 429, by route.",
            &["route"],
        ),
        auth_failures: counter_vec(
            &r,
            "portcullis_auth_failures_total",
            "Failed logins and refused access, by reason.",
            &["reason"],
        ),
        emergency: counter_vec(
            &r,
            "portcullis_emergency_events_total",
            "Emergency gate events.",
            &["event", "outcome"],
        ),
        upstream_errors: counter_vec(
            &r,
            "portcullis_upstream_errors_total",
            "Upstream failures, by upstream and kind.",
            &["upstream", "kind"],
        ),
        cert_expiry,
        reloads: counter_vec(
            &r,
            "portcullis_config_reloads_total",
            "Config reloads, by result.",
            &["result"],
        ),
        sign_ins: counter_vec(
            &r,
            "portcullis_provider_sign_ins_total",
            "Provider sign-ins, by provider and outcome (start, ok, refused, unreachable).",
            &["provider", "outcome"],
        ),
        acme_orders: counter_vec(
            &r,
            "portcullis_acme_orders_total",
            "ACME certificate orders, by result.",
            &["result"],
        ),
        store_outages,
        store_failed_ops,
        registry: r,
    }
});

impl Metrics {
    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> Vec<u8> {
        let mut out = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        out
    }
}

/// Counts what an audit event says (called by `audit::event`).
pub fn audit_event(event: &str, fields: &serde_json::Value) {
    let m = &*METRICS;
    match event {
        "login_failed" | "login_limited" | "login_csrf_refused" => {
            m.auth_failures.with_label_values(&[event]).inc();
        }
        e if e.starts_with("emergency_") => {
            let outcome = fields
                .get("outcome")
                .or_else(|| fields.get("action"))
                .and_then(|v| v.as_str())
                .unwrap_or("");
            m.emergency.with_label_values(&[e, outcome]).inc();
        }
        e if e.starts_with("oauth2_") => {
            // The provider label comes from config (or a verified state),
            // never from raw input: at most one series per provider.
            let provider = fields
                .get("provider")
                .and_then(|v| v.as_str())
                .unwrap_or("");
            let outcome = e.trim_start_matches("oauth2_");
            m.sign_ins.with_label_values(&[provider, outcome]).inc();
        }
        "config_reload" => {
            let ok = fields.get("ok").and_then(|v| v.as_bool()).unwrap_or(false);
            m.reloads
                .with_label_values(&[if ok { "ok" } else { "failed" }])
                .inc();
        }
        _ => {}
    }
}

/// A status as a metric label, without allocating for the usual codes.
pub fn status_label(status: u16) -> &'static str {
    match status {
        200 => "200",
        201 => "201",
        204 => "204",
        206 => "206",
        301 => "301",
        302 => "302",
        303 => "303",
        304 => "304",
        307 => "307",
        308 => "308",
        400 => "400",
        401 => "401",
        403 => "403",
        404 => "404",
        405 => "405",
        408 => "408",
        413 => "413",
        429 => "429",
        500 => "500",
        502 => "502",
        503 => "503",
        504 => "504",
        0 => "0",
        s if s < 200 => "1xx",
        s if s < 300 => "2xx",
        s if s < 400 => "3xx",
        s if s < 500 => "4xx",
        _ => "5xx",
    }
}
