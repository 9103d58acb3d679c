//! Serving: the router on a listener, background upkeep and graceful shutdown.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::TcpListener;

use axum::ServiceExt;

use crate::http::{app, metrics_router};
use crate::state::AppState;

/// How often noted last-seen times are written.
const LAST_SEEN_FLUSH_EVERY: Duration = Duration::from_secs(5);
/// How often expired sessions are swept, and how many rows one statement deletes at most,
/// so the sweep never holds a long lock.
const EXPIRED_SWEEP_EVERY: Duration = Duration::from_secs(60);
const EXPIRED_SWEEP_BATCH: u64 = 1000;

/// Serves until `shutdown` resolves, lets in-flight requests finish, then writes what is
/// still buffered.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let metrics = match state.config.metrics_address() {
        Some(address) => Some(serve_metrics(address, state.clone()).await?),
        None => None,
    };
    let upkeep = tokio::spawn(upkeep(state.clone()));
    let discovery = tokio::spawn(state.oidc.clone().keep_discovering());
    let listener_task = state.sessions.listen().map(tokio::spawn);
    let service = app(state.clone()).into_make_service_with_connect_info::<SocketAddr>();
    let served = axum::serve(listener, service).with_graceful_shutdown(shutdown).await;
    upkeep.abort();
    discovery.abort();
    for task in listener_task.into_iter().chain(metrics) {
        task.abort();
    }
    if let Err(e) = state.sessions.flush_last_seen().await {
        tracing::warn!(error = %e, "could not write last-seen times at shutdown");
    }
    served
}

/// Serves `/metrics` on its own address (METRICS_BIND), so it can stay off the public one.
async fn serve_metrics(address: SocketAddr, state: AppState) -> std::io::Result<tokio::task::JoinHandle<()>> {
    let listener = TcpListener::bind(address).await?;
    tracing::info!(address = %listener.local_addr()?, "metrics listening at /metrics");
    Ok(tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, metrics_router(state)).await {
            tracing::error!(error = %e, "the metrics listener stopped");
        }
    }))
}

/// Periodic background work: last-seen batches, expired-session and old-attempt sweeps.
async fn upkeep(state: AppState) {
    let mut flush = tokio::time::interval(LAST_SEEN_FLUSH_EVERY);
    let mut sweep = tokio::time::interval(EXPIRED_SWEEP_EVERY);
    loop {
        tokio::select! {
            _ = flush.tick() => {
                if let Err(e) = state.sessions.flush_last_seen().await {
                    tracing::warn!(error = %e, "could not write last-seen times");
                }
            }
            _ = sweep.tick() => {
                // Attempts that left the rate-limit window no longer count.
                if let Err(e) = state.limiter.delete_old().await {
                    tracing::warn!(error = %e, "could not delete old attempts");
                }
                loop {
                    match state.sessions.delete_expired(EXPIRED_SWEEP_BATCH, idle_margin()).await {
                        Ok(n) if n == EXPIRED_SWEEP_BATCH => continue,
                        Ok(_) => break,
                        Err(e) => {
                            tracing::warn!(error = %e, "could not delete expired sessions");
                            break;
                        }
                    }
                }
                if let Ok(live) = state.sessions.count_live().await {
                    metrics::gauge!(crate::telemetry::LIVE_SESSIONS).set(live as f64);
                }
            }
        }
    }
}

/// How long past the idle timeout a session waits before the sweep deletes it: two batches
/// of last-seen times, so every instance's uses of it are in the database by then.
fn idle_margin() -> chrono::Duration {
    chrono::Duration::from_std(LAST_SEEN_FLUSH_EVERY * 2).unwrap_or_default()
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
