//! The HTTP application: routes, layers, background upkeep and graceful shutdown.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{header, HeaderName, HeaderValue, Method, Request, Response};
use axum::routing::get;
use axum::Router;
use tokio::net::TcpListener;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::trace::TraceLayer;
use tracing::Span;

use crate::domain;
use crate::graphql::field_types::FieldTypes;
use crate::graphql::{self, GatehouseSchema};
use crate::http;
use crate::state::AppState;

/// How often noted last-seen times are written.
const LAST_SEEN_FLUSH_EVERY: Duration = Duration::from_secs(5);
/// How often expired sessions are swept, and how many rows one statement deletes at most,
/// so the sweep never holds a long lock.
const EXPIRED_SWEEP_EVERY: Duration = Duration::from_secs(60);
const EXPIRED_SWEEP_BATCH: u64 = 1000;

/// What every handler gets: the application state and the schema built from its config.
#[derive(Clone)]
pub struct HttpState {
    pub app: AppState,
    pub schema: GatehouseSchema,
    /// The schema's field types, for the document limits and the null pass.
    pub field_types: Arc<FieldTypes>,
}

pub fn router(state: AppState) -> Router {
    let schema = graphql::build(&state.config);
    let field_types = Arc::new(FieldTypes::from_sdl(&schema.sdl()));
    let cors = cors_layer(&state);
    let mut router = Router::new().route("/graphql", get(http::graphql::get).post(http::graphql::post));
    if state.config.graphiql {
        router = router.route("/graphql/assets/{file}", get(http::graphiql::asset));
    }
    let router = router
        .route("/auth/webhook", get(http::webhook::get).post(http::webhook::post))
        .route("/.well-known/jwks.json", get(http::jwks::get))
        .route("/healthz", get(http::health::healthz))
        .route("/readyz", get(http::health::readyz))
        .route("/metrics", get(http::health::metrics))
        .with_state(HttpState {
            app: state,
            schema,
            field_types,
        })
        // One line per request: method, path (never the query string, which may hold
        // variables), status and latency.
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(|request: &Request<Body>| {
                    let id = request
                        .headers()
                        .get("x-request-id")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("");
                    tracing::info_span!("request", id, method = %request.method(), path = %request.uri().path())
                })
                .on_request(())
                .on_response(|response: &Response<Body>, latency: Duration, _span: &Span| {
                    let latency_ms = latency.as_secs_f64() * 1000.0;
                    tracing::info!(status = response.status().as_u16(), latency_ms, "served");
                })
                .on_body_chunk(())
                .on_eos(())
                .on_failure(()),
        )
        // A request id on every log line and response: the gateway's, or a fresh UUID.
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid));
    let router = match cors {
        Some(cors) => router.layer(cors),
        None => router,
    };
    // Browsers must take every answer as the type it says, never sniff one (JSON as HTML).
    router.layer(SetResponseHeaderLayer::overriding(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    ))
}

/// Serves until `shutdown` resolves, lets in-flight requests finish, then writes what is
/// still buffered.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let upkeep = tokio::spawn(upkeep(state.clone()));
    let listener_task = (!state.config.is_sqlite())
        .then(|| tokio::spawn(crate::auth::cache::listen(state.db.clone(), state.sessions.clone())));
    let app = router(state.clone()).into_make_service_with_connect_info::<SocketAddr>();
    let served = axum::serve(listener, app).with_graceful_shutdown(shutdown).await;
    upkeep.abort();
    if let Some(task) = listener_task {
        task.abort();
    }
    if let Err(e) = state.last_seen.flush(&state.db).await {
        tracing::warn!(error = %e, "could not write last-seen times at shutdown");
    }
    served
}

/// Periodic background work: last-seen batches, expired-session and old-attempt sweeps.
async fn upkeep(state: AppState) {
    let mut flush = tokio::time::interval(LAST_SEEN_FLUSH_EVERY);
    let mut sweep = tokio::time::interval(EXPIRED_SWEEP_EVERY);
    loop {
        tokio::select! {
            _ = flush.tick() => {
                if let Err(e) = state.last_seen.flush(&state.db).await {
                    tracing::warn!(error = %e, "could not write last-seen times");
                }
            }
            _ = sweep.tick() => {
                // Attempts that left the rate-limit window no longer count.
                if let Err(e) = domain::rate_limit::delete_old(&state).await {
                    tracing::warn!(error = %e, "could not delete old attempts");
                }
                loop {
                    match domain::session::delete_expired(&state, EXPIRED_SWEEP_BATCH).await {
                        Ok(n) if n == EXPIRED_SWEEP_BATCH => continue,
                        Ok(_) => break,
                        Err(e) => {
                            tracing::warn!(error = %e, "could not delete expired sessions");
                            break;
                        }
                    }
                }
                if let Ok(live) = domain::session::count_live(&state).await {
                    metrics::gauge!(crate::telemetry::LIVE_SESSIONS).set(live as f64);
                }
            }
        }
    }
}

/// Credentialed CORS for the configured origins only: never a wildcard with cookies.
fn cors_layer(state: &AppState) -> Option<CorsLayer> {
    let origins: Vec<HeaderValue> = state
        .config
        .cors_origins()
        .filter_map(|o| HeaderValue::from_str(o).ok())
        .collect();
    if origins.is_empty() {
        return None;
    }
    Some(
        CorsLayer::new()
            .allow_origin(AllowOrigin::list(origins))
            .allow_credentials(true)
            .allow_methods([Method::GET, Method::POST])
            .allow_headers([
                header::CONTENT_TYPE,
                header::AUTHORIZATION,
                HeaderName::from_static("apollo-require-preflight"),
                HeaderName::from_static("x-requested-with"),
            ])
            .max_age(Duration::from_secs(600)),
    )
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let interrupt = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = interrupt => {}
        _ = terminate => {}
    }
    tracing::info!("shutting down: finishing in-flight requests");
}
