//! The operations endpoint: `/healthz` (the database answers) and Prometheus
//! `/metrics`.

use crate::metrics::Metrics;
use crate::store::Store;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

#[derive(Clone)]
struct Ops {
    store: Store,
    metrics: Arc<Metrics>,
}

async fn healthz(State(ops): State<Ops>) -> (StatusCode, &'static str) {
    match ops.store.ping().await {
        Ok(_) => (StatusCode::OK, "ok\n"),
        Err(_) => (StatusCode::SERVICE_UNAVAILABLE, "database unavailable\n"),
    }
}

async fn metrics_page(
    State(ops): State<Ops>,
) -> ([(axum::http::HeaderName, &'static str); 1], String) {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        ops.metrics.render(&ops.store).await,
    )
}

/// Serves until cancelled.
pub async fn serve(
    listener: tokio::net::TcpListener,
    store: Store,
    metrics: Arc<Metrics>,
    cancel: CancellationToken,
) {
    let app = Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics_page))
        .with_state(Ops { store, metrics });
    if let Err(e) = axum::serve(listener, app)
        .with_graceful_shutdown(cancel.cancelled_owned())
        .await
    {
        tracing::error!(error = %e, "the operations endpoint stopped");
    }
}
