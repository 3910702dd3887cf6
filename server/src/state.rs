//! The state the HTTP handlers share: the OAuth service's [`Deps`] plus what
//! only the listeners and the admin API use. Built by the composition root
//! (`app.rs`); handlers hand `&state.deps` to `oauth/`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use authplane_core::Secret;
use tokio::sync::Mutex;

use crate::clock;
use crate::metrics::Metrics;
use crate::oauth::Deps;
use crate::store::{self, DbInfo};

/// Everything a handler may need, shared by both listeners.
pub struct AppState {
    /// What the OAuth service needs (`oauth::Deps`): handlers pass `&state.deps`.
    pub deps: Deps,
    pub config_path: Option<PathBuf>,
    /// `--registry-dir`: fragments that extend the config file.
    pub registry_dir: Option<PathBuf>,
    pub db_info: DbInfo,
    pub metrics: Arc<Metrics>,
    pub admin_key: ArcSwap<Option<Secret<String>>>,
    pub(crate) health: Mutex<Option<(Instant, bool)>>,
}

const HEALTH_CACHE: Duration = Duration::from_secs(1);
const HEALTH_TIMEOUT: Duration = Duration::from_secs(2);

impl AppState {
    /// The DB health, probed at most once a second; logs transitions.
    pub async fn db_healthy(&self) -> bool {
        let mut cached = self.health.lock().await;
        if let Some((at, ok)) = *cached
            && at.elapsed() < HEALTH_CACHE
        {
            return ok;
        }
        let result = store::probe(&self.deps.db, &self.db_info, clock::now(), HEALTH_TIMEOUT).await;
        let ok = result.is_ok();
        let was = cached.map(|(_, ok)| ok);
        match (&result, was) {
            (Err(e), Some(true) | None) => {
                tracing::error!(error = "ErrDatabaseUnavailable", detail = %e, db = %self.db_info.kind, "database health check failed")
            }
            (Ok(()), Some(false)) => tracing::info!(db = %self.db_info.kind, "database reachable again"),
            _ => {}
        }
        self.metrics.db_up.set(i64::from(ok));
        *cached = Some((Instant::now(), ok));
        ok
    }
}
