//! `/metrics` (Prometheus text format) and `/health`.

use axum::Router;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus_client::registry::Registry;
use std::sync::Arc;

pub async fn serve(listener: tokio::net::TcpListener, registry: Arc<Registry>) {
    let app = Router::new()
        .route("/metrics", get(move || metrics(registry.clone())))
        .route(
            "/health",
            get(|| async {
                (
                    [(CONTENT_TYPE, "application/json")],
                    "{\"status\":\"ok\"}\n",
                )
            }),
        );
    if let Err(e) = axum::serve(listener, app).await {
        tracing::error!(error = %e, "telemetry server stopped");
    }
}

async fn metrics(registry: Arc<Registry>) -> impl IntoResponse {
    let mut body = String::new();
    if let Err(e) = prometheus_client::encoding::text::encode(&mut body, &registry) {
        tracing::error!(error = %e, "cannot encode metrics");
    }
    (
        [(
            CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        body,
    )
}
