//! Prometheus metrics (`GET /metrics`): requests by operation and outcome, latency, login
//! failures, live sessions and the password-hashing queue. The recorder is process-wide, as
//! the `metrics` crate wants; `serve` installs it, and each `AppState` may hold the
//! `Telemetry` that renders it and counts that server's requests.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use http::StatusCode;
use metrics::{Counter, Histogram};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

use crate::graphql::field_types::FieldTypes;

pub const GRAPHQL_REQUESTS: &str = "gatehouse_graphql_requests_total";
pub const GRAPHQL_SECONDS: &str = "gatehouse_graphql_request_duration_seconds";
pub const WEBHOOK_REQUESTS: &str = "gatehouse_webhook_requests_total";
pub const LOGIN_FAILURES: &str = "gatehouse_login_failures_total";
pub const LIVE_SESSIONS: &str = "gatehouse_live_sessions";
pub const HASH_QUEUE: &str = "gatehouse_password_hash_queue_depth";

/// The `operation` label of a request that ran nothing.
pub const INVALID_OPERATION: &str = "invalid";

/// Latency buckets from 1 ms (a cached token check) to 5 s (the database timeout).
const SECONDS_BUCKETS: &[f64] = &[0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0];

/// Installs the process-wide recorder and returns what renders it and counts requests.
pub fn install() -> anyhow::Result<Telemetry> {
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(
            metrics_exporter_prometheus::Matcher::Full(GRAPHQL_SECONDS.into()),
            SECONDS_BUCKETS,
        )?
        .install_recorder()?;
    Ok(Telemetry::new(handle))
}

/// The recorder's handle and the series every request updates, looked up once: building a
/// series' key and finding it in the recorder costs more than counting.
#[derive(Clone)]
pub struct Telemetry(Arc<Series>);

struct Series {
    handle: PrometheusHandle,
    /// Every root field of the schema and `invalid`; each series is registered on first
    /// use, so that `/metrics` lists only what happened. The map itself never changes, so a
    /// lookup writes nothing that another core reads.
    operations: HashMap<String, OperationSeries, crate::SchemaNameHasher>,
    webhook: [OnceLock<Counter>; WEBHOOK_OUTCOMES.len()],
}

#[derive(Default)]
struct OperationSeries {
    ok: OnceLock<Counter>,
    error: OnceLock<Counter>,
    seconds: OnceLock<Histogram>,
}

/// The `outcome` label of a webhook check, in `webhook_request`'s order.
const WEBHOOK_OUTCOMES: [&str; 4] = ["allowed", "unauthorized", "forbidden", "error"];

impl Telemetry {
    /// Built after the recorder is installed: series taken before would count nowhere.
    fn new(handle: PrometheusHandle) -> Self {
        let fields = FieldTypes::from_sdl(&crate::graphql::sdl());
        let operations = fields
            .root_fields()
            .chain([INVALID_OPERATION])
            .map(|name| (name.to_owned(), OperationSeries::default()))
            .collect();
        Telemetry(Arc::new(Series {
            handle,
            operations,
            webhook: Default::default(),
        }))
    }

    pub fn render(&self) -> String {
        self.0.handle.render()
    }

    /// One GraphQL request: `operation` is the first root field it ran (a schema name, so
    /// the label set stays bounded), or `invalid` when nothing ran.
    pub fn graphql_request(&self, operation: &str, ok: bool, elapsed: Duration) {
        let outcome = if ok { "ok" } else { "error" };
        let counter = || metrics::counter!(GRAPHQL_REQUESTS, "operation" => operation.to_owned(), "outcome" => outcome);
        let histogram = || metrics::histogram!(GRAPHQL_SECONDS, "operation" => operation.to_owned());
        let seconds = elapsed.as_secs_f64();
        let Some(series) = self.0.operations.get(operation) else {
            // Not a name of the schema's: counted the slow way rather than not at all.
            counter().increment(1);
            histogram().record(seconds);
            return;
        };
        let count = if ok { &series.ok } else { &series.error };
        count.get_or_init(counter).increment(1);
        series.seconds.get_or_init(histogram).record(seconds);
    }

    /// One webhook check, by the outcome its answer's status tells.
    pub fn webhook_request(&self, status: StatusCode) {
        let index = match status {
            StatusCode::OK => 0,
            StatusCode::UNAUTHORIZED => 1,
            StatusCode::FORBIDDEN => 2,
            _ => 3,
        };
        let outcome = WEBHOOK_OUTCOMES[index];
        self.0.webhook[index]
            .get_or_init(|| metrics::counter!(WEBHOOK_REQUESTS, "outcome" => outcome))
            .increment(1);
    }
}
