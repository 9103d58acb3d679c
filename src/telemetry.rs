//! Prometheus metrics (`GET /metrics`): requests by operation and outcome, latency, login
//! failures, live sessions and the password-hashing queue. The recorder is process-wide, as
//! the `metrics` crate wants; `serve` installs it, and each `AppState` may hold a handle.

use std::time::Duration;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

pub const GRAPHQL_REQUESTS: &str = "gatehouse_graphql_requests_total";
pub const GRAPHQL_SECONDS: &str = "gatehouse_graphql_request_duration_seconds";
pub const WEBHOOK_REQUESTS: &str = "gatehouse_webhook_requests_total";
pub const LOGIN_FAILURES: &str = "gatehouse_login_failures_total";
pub const LIVE_SESSIONS: &str = "gatehouse_live_sessions";
pub const HASH_QUEUE: &str = "gatehouse_password_hash_queue_depth";

/// Latency buckets from 1 ms (a cached token check) to 5 s (the database timeout).
const SECONDS_BUCKETS: &[f64] = &[0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0];

/// Installs the process-wide recorder and returns the handle `/metrics` renders.
pub fn install() -> anyhow::Result<PrometheusHandle> {
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(
            metrics_exporter_prometheus::Matcher::Full(GRAPHQL_SECONDS.into()),
            SECONDS_BUCKETS,
        )?
        .install_recorder()?;
    Ok(handle)
}

/// One GraphQL request: `operation` is the first root field it ran (a schema name, so the
/// label set stays bounded), or `invalid` when nothing ran.
pub fn graphql_request(operation: String, ok: bool, elapsed: Duration) {
    let outcome = if ok { "ok" } else { "error" };
    metrics::counter!(GRAPHQL_REQUESTS, "operation" => operation.clone(), "outcome" => outcome).increment(1);
    metrics::histogram!(GRAPHQL_SECONDS, "operation" => operation).record(elapsed.as_secs_f64());
}

pub fn webhook_request(outcome: &'static str) {
    metrics::counter!(WEBHOOK_REQUESTS, "outcome" => outcome).increment(1);
}
