//! `/metrics`, `/healthz` (the process answers) and `/readyz` (the caches
//! are filling and, when leading, the controllers run; a standby is ready).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;

use crate::metrics::Metrics;

/// Lifecycle of this replica, as `/readyz` reports it.
#[derive(Debug, Default)]
pub struct Readiness(AtomicU8);

impl Readiness {
    pub const STARTING: u8 = 0;
    pub const STANDBY: u8 = 1;
    pub const LEADING: u8 = 2;
    pub const STOPPING: u8 = 3;

    pub fn set(&self, v: u8) {
        self.0.store(v, Ordering::Relaxed);
    }

    fn get(&self) -> u8 {
        self.0.load(Ordering::Relaxed)
    }
}

#[derive(Clone)]
struct AppState {
    metrics: Metrics,
    ready: Arc<Readiness>,
}

pub async fn serve(
    listener: tokio::net::TcpListener,
    metrics: Metrics,
    ready: Arc<Readiness>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = Router::new()
        .route("/metrics", get(metrics_handler))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .with_state(AppState { metrics, ready });
    axum::serve(listener, app).with_graceful_shutdown(shutdown).await
}

pub async fn bind(addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr).await
}

async fn metrics_handler(State(s): State<AppState>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], s.metrics.encode())
}

async fn readyz(State(s): State<AppState>) -> impl IntoResponse {
    match s.ready.get() {
        Readiness::LEADING => (StatusCode::OK, "ok: leading\n"),
        Readiness::STANDBY => (StatusCode::OK, "ok: standby\n"),
        Readiness::STOPPING => (StatusCode::SERVICE_UNAVAILABLE, "stopping\n"),
        _ => (StatusCode::SERVICE_UNAVAILABLE, "starting\n"),
    }
}
