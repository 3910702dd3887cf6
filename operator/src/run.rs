//! `authplane-operator run`: metrics server, leader election, the three
//! controllers, graceful shutdown.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::controller::{self, Context};
use crate::http::{self, Readiness};
use crate::leader::{self, LeaseConfig};
use crate::metrics::Metrics;
use crate::render::shards::Sharding;

#[derive(Debug, Clone)]
pub struct Settings {
    /// Watch one namespace; `None` = all.
    pub namespace: Option<String>,
    pub metrics_addr: SocketAddr,
    pub server_image: String,
    pub lease: Option<LeaseConfig>,
    pub sharding: Sharding,
    /// Time between two fetches of the same diagnostic URL (PRM, discovery).
    pub probe_interval: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("cannot reach the Kubernetes API: {0}")]
    Client(#[source] kube::Error),
    #[error("cannot listen on {0}: {1}")]
    Listen(SocketAddr, #[source] std::io::Error),
    #[error(transparent)]
    Leader(#[from] leader::LeaderError),
}

pub async fn run(settings: Settings) -> Result<(), RunError> {
    let Settings { namespace, metrics_addr, server_image, lease, sharding, probe_interval } = settings;
    let metrics = Metrics::default();
    let client = crate::client::build(&metrics).await.map_err(RunError::Client)?;
    let ready = Arc::new(Readiness::default());

    let (stop_tx, stop_rx) = watch::channel(false);
    let stop = move || {
        let mut rx = stop_rx.clone();
        async move {
            let _ = rx.wait_for(|s| *s).await;
        }
    };

    let listener = http::bind(metrics_addr).await.map_err(|e| RunError::Listen(metrics_addr, e))?;
    let bound = listener.local_addr().unwrap_or(metrics_addr);
    let http_task = tokio::spawn(http::serve(listener, metrics.clone(), ready.clone(), stop()));
    tracing::info!(
        metrics = %bound,
        namespace = namespace.as_deref().unwrap_or("*"),
        image = %server_image,
        version = env!("CARGO_PKG_VERSION"),
        "authplane-operator started"
    );

    let signal_tx = stop_tx.clone();
    tokio::spawn(async move {
        authplane_telemetry::shutdown_signal().await;
        tracing::info!("shutting down");
        let _ = signal_tx.send(true);
    });

    if let Some(cfg) = &lease {
        ready.set(Readiness::STANDBY);
        tokio::select! {
            () = leader::acquire(client.clone(), cfg) => {}
            () = stop() => {
                ready.set(Readiness::STOPPING);
                let _ = http_task.await;
                return Ok(());
            }
        }
    }
    metrics.leader.set(1);
    ready.set(Readiness::LEADING);

    let instance = lease.as_ref().map(|l| l.identity.clone());
    let ctx = Arc::new(Context::new(client.clone(), metrics.clone(), server_image, instance, sharding));
    // One cache of each kind for every controller that reads it: Secrets,
    // OAuthClients, AuthServers and ProtectedResources (at 10,000 clients a
    // second copy costs tens of MiB).
    let (secrets, secret_stream) = controller::shared_secrets(&client, namespace.as_deref());
    // The credential Secrets apart, kept small (see controller::credentials).
    let (credentials, credential_stream) = controller::credentials::Credentials::watch(&client, namespace.as_deref());
    let (clients, client_stream) = controller::shared_clients(&client, namespace.as_deref());
    let (servers, server_stream) = controller::shared::<authplane_crds::AuthServer>(&client, namespace.as_deref());
    let (resources, resource_stream) =
        controller::shared::<authplane_crds::ProtectedResource>(&client, namespace.as_deref());
    // One HTTP client and one concurrency cap for every diagnostic fetch.
    let probes = crate::probe::Probes::new(probe_interval);
    let controllers = futures_util::future::join3(
        controller::authserver::run(
            ctx.clone(),
            namespace.clone(),
            secrets,
            secret_stream,
            credentials.clone(),
            clients.clone(),
            (servers.clone(), server_stream),
            resources.clone(),
            probes.clone(),
            stop(),
        ),
        controller::protectedresource::run(
            ctx.clone(),
            namespace.clone(),
            (resources.clone(), resource_stream),
            servers.clone(),
            probes,
            stop(),
        ),
        controller::oauthclient::run(
            ctx.clone(),
            namespace.clone(),
            (credentials, credential_stream),
            (clients, client_stream),
            servers,
            resources,
            stop(),
        ),
    );

    let lost = async {
        match &lease {
            Some(cfg) => Some(leader::keep(client.clone(), cfg.clone()).await),
            None => std::future::pending().await,
        }
    };
    let result = tokio::select! {
        _ = controllers => Ok(()),
        e = lost => {
            // Someone else may act now: stop at once, without a graceful drain.
            ready.set(Readiness::STOPPING);
            metrics.leader.set(0);
            e.map_or(Ok(()), |e| Err(RunError::Leader(e)))
        }
    };
    ready.set(Readiness::STOPPING);
    let _ = stop_tx.send(true);
    if result.is_ok()
        && let Some(cfg) = &lease
    {
        let _ = tokio::time::timeout(Duration::from_secs(3), leader::release(client.clone(), cfg)).await;
    }
    let _ = tokio::time::timeout(Duration::from_secs(3), http_task).await;
    tracing::info!("authplane-operator stopped");
    result
}
