//! The composition root: start-up (storage, keys, the shared state), background
//! maintenance, config reloads and graceful shutdown.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use actix_web::{App, HttpServer, web};
use arc_swap::ArcSwap;
use authplane_core::config::{KeyStoreKind, Loaded};
use tokio::sync::Mutex;

use crate::http::observe::Observer;
use crate::keys::{KeyManager, KeyStore, Timings};
use crate::metrics::{Metrics, OutcomeLabels};
use crate::resource_index::ResourceIndex;
use crate::state::AppState;
use crate::store;
use crate::{clock, configfile, http};

/// Sets up storage and keys (failing with one line on any problem), then
/// serves until SIGTERM/SIGINT.
pub async fn serve(loaded: Loaded, config_path: Option<PathBuf>, registry_dir: Option<PathBuf>) -> Result<(), String> {
    let cfg = loaded.config;
    let broker_keys = crate::oauth::broker::Keyring::load(&cfg)?;
    let metrics = Metrics::new();
    let (mut db, db_info) = store::connect(&cfg.database).await?;
    store::instrument(&mut db, &db_info, metrics.clone());
    if db_info.tls == Some(store::pg::Tls::Unverified) {
        tracing::warn!(
            db_tls = "unverified",
            "Postgres TLS is on but the server certificate is not verified: set database.sslmode=verify-full and database.sslrootcert"
        );
    }
    // Replicas starting together take turns here: the schema, the config's
    // rows and the first signing key are written by one at a time.
    let lock = store::startup_lock(&cfg.database).await?;
    let applied = store::migrate(&db).await?;
    if applied > 0 {
        tracing::info!(applied, db = %db_info.kind, "migrations applied");
    }
    let report = store::entries::sync_config(&db, &cfg, clock::now())
        .await
        .map_err(|e| format!("cannot store the config file's resources, clients and users: {e}"))?;
    tracing::debug!(upserted = report.upserted, removed = report.removed, "config entries synced");

    let key_store = match cfg.signing.key_store {
        KeyStoreKind::File => KeyStore::File { dir: PathBuf::from(&cfg.signing.key_dir) },
        KeyStoreKind::Db => KeyStore::Db { db: db.clone() },
    };
    let keys = KeyManager::open(key_store, Timings::from_config(&cfg), clock::now()).await.map_err(|e| {
        format!("signing keys: {e} (fix: repair or remove the key, or check signing.key_store / signing.key_dir)")
    })?;
    if let Some(lock) = lock {
        lock.release().await;
    }

    let admin_key = configfile::admin_key(&cfg)?;
    let resources = ResourceIndex::default();
    resources.refresh(&db).await.map_err(|e| format!("cannot read resources: {e}"))?;

    let audit = crate::store::audit::Sink::spawn(db.clone());
    let dpop_replay = crate::store::dpop::ReplayStore::spawn(db.clone());
    let state = Arc::new(AppState {
        deps: crate::oauth::Deps {
            config: ArcSwap::from_pointee(cfg.clone()),
            db,
            keys,
            resources,
            cimd: Default::default(),
            clients: Default::default(),
            audit,
            throttle: Default::default(),
            cimd_rate: Default::default(),
            registration_rate: Default::default(),
            dpop_replay,
            dpop_nonce_key: crate::random::bytes::<32>(),
            hash_gate: crate::limits::HashGate::new(cfg.limits.password_hash_concurrency),
            password_memory: Default::default(),
            clock: crate::oauth::deps::Clock::System,
            ids: crate::oauth::deps::Ids::Random,
            upstream: Default::default(),
            broker: crate::oauth::broker::Broker::new(
                metrics.upstream_refresh.clone(),
                metrics.broker_grants_old_key.clone(),
                broker_keys,
            ),
        },
        config_path,
        registry_dir,
        db_info,
        metrics: metrics.clone(),
        admin_key: ArcSwap::from_pointee(admin_key),
        health: Mutex::new(None),
    });
    state.db_healthy().await;

    let public_addr: SocketAddr = cfg.server.listen.parse().map_err(|e| format!("server.listen: {e}"))?;
    let admin_addr: SocketAddr = cfg.admin.listen.parse().map_err(|e| format!("admin.listen: {e}"))?;
    let shutdown = cfg.server.shutdown_timeout.as_secs();

    let data = web::Data::from(state.clone());
    let obs = Observer {
        listener: "public",
        metrics: metrics.clone(),
        access_log: cfg.log.access_log,
        body_deadline: Some(cfg.server.request_read_timeout.to_std()),
        hsts: cfg.server.issuer.starts_with("https://"),
    };
    let d = data.clone();
    let workers = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2);
    let public = HttpServer::new(move || {
        let obs = obs.clone();
        App::new().app_data(d.clone()).configure(http::public::routes).wrap_fn(move |req, srv| obs.call(req, srv))
    })
    .workers(workers)
    // actix counts connections per worker; the setting is for all of them.
    .max_connections((cfg.server.max_connections as usize).div_ceil(workers))
    .client_request_timeout(cfg.server.request_read_timeout.to_std())
    .disable_signals()
    .shutdown_timeout(shutdown)
    .bind(public_addr)
    .map_err(|e| format!("cannot listen on {public_addr} (server.listen / AUTHPLANE_SERVER_LISTEN): {e}"))?;
    let obs = Observer {
        listener: "admin",
        metrics: metrics.clone(),
        access_log: cfg.log.access_log,
        body_deadline: None,
        hsts: false,
    };
    let d = data.clone();
    let admin = HttpServer::new(move || {
        let obs = obs.clone();
        App::new().app_data(d.clone()).configure(http::admin::routes).wrap_fn(move |req, srv| obs.call(req, srv))
    })
    .workers(1)
    .disable_signals()
    .shutdown_timeout(shutdown)
    .bind(admin_addr)
    .map_err(|e| format!("cannot listen on {admin_addr} (admin.listen / AUTHPLANE_ADMIN_LISTEN): {e}"))?;

    let public_bound = public.addrs().first().copied().unwrap_or(public_addr);
    let admin_bound = admin.addrs().first().copied().unwrap_or(admin_addr);
    let public = public.run();
    let admin = admin.run();
    let (public_handle, admin_handle) = (public.handle(), admin.handle());

    let kid = state.deps.keys.signer(clock::now()).map(|k| k.kid.clone()).unwrap_or_default();
    tracing::info!(
        public = %public_bound,
        admin = %admin_bound,
        issuer = %cfg.server.issuer,
        db = %state.db_info.kind,
        db_url = %state.db_info.redacted_url,
        db_tls = state.db_info.tls.map_or("n/a", store::pg::Tls::as_str),
        key_store = %state.deps.keys.describe_store(),
        kid = %kid,
        version = crate::build_info::VERSION,
        "authserver started"
    );
    if state.admin_key.load().is_none() {
        tracing::warn!(
            "admin API is off: no admin.api_key / AUTHPLANE_ADMIN_API_KEY configured (metrics and /healthz still served)"
        );
    }

    let maintenance = tokio::spawn(maintain(state.clone()));
    let servers = tokio::spawn(async move {
        let _ = futures_util::future::join(public, admin).await;
    });

    authplane_telemetry::shutdown_signal().await;
    tracing::info!(timeout_s = shutdown, "shutting down: draining in-flight requests");
    maintenance.abort();
    futures_util::future::join(public_handle.stop(true), admin_handle.stop(true)).await;
    let _ = servers.await;
    state.deps.db.clone().close().await.ok();
    tracing::info!("authserver stopped");
    Ok(())
}

/// Background work: key-store and config-file reloads (every 2 s), resource
/// refresh and key rotation (every 10 s), DB health (every 5 s).
async fn maintain(state: Arc<AppState>) {
    let mut tick = tokio::time::interval(Duration::from_secs(2));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut config_fp =
        state.config_path.as_deref().and_then(|p| configfile::fingerprint(p, state.registry_dir.as_deref()));
    let mut n: u64 = 0;
    loop {
        tick.tick().await;
        n += 1;
        let now = clock::now();
        if let Some(k) = state.deps.keys.signer(now) {
            state.metrics.key_age.set(now - k.active_from.min(now));
        }

        match state.deps.keys.reload_if_changed().await {
            Ok(true) => {
                state.metrics.key_reloads.get_or_create(&OutcomeLabels { outcome: "changed" }).inc();
                let kid = state.deps.keys.signer(clock::now()).map(|k| k.kid.clone()).unwrap_or_default();
                tracing::info!(kid = %kid, keys = state.deps.keys.current().keys.len(), "signing keys reloaded");
            }
            Ok(false) => {}
            Err(e) => {
                state.metrics.key_reloads.get_or_create(&OutcomeLabels { outcome: "failed" }).inc();
                tracing::error!(error = "ErrKeyReload", detail = %e, "signing-key reload failed; keeping the last good keys");
            }
        }

        if let Some(path) = &state.config_path {
            let fp = configfile::fingerprint(path, state.registry_dir.as_deref());
            if fp.is_some() && fp != config_fp {
                config_fp = fp;
                reload_config(&state).await;
            }
        }

        if n == 1 || n.is_multiple_of(1800) {
            match crate::store::oauth::purge_expired(&state.deps.db, clock::now()).await {
                Ok(0) => {}
                Ok(purged) => tracing::info!(purged, "expired OAuth state deleted"),
                Err(e) => tracing::warn!(detail = %crate::store::one_line(&e.to_string()), "OAuth state purge failed"),
            }
            let unused_for = state.deps.config.load().oauth.registration_unused_ttl.as_secs() as i64;
            if unused_for > 0 {
                match crate::store::entries::purge_unused_dcr(&state.deps.db, clock::now(), unused_for).await {
                    Ok(0) => {}
                    Ok(purged) => {
                        state.deps.clients.clear();
                        tracing::info!(purged, "unused dynamically registered clients deleted")
                    }
                    Err(e) => tracing::warn!(detail = %crate::store::one_line(&e.to_string()), "client purge failed"),
                }
            }
            // After a new broker key went on top: move stored grants to it.
            match crate::oauth::broker::reseal(&state.deps, 1000).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(grants = n, "stored upstream grants re-encrypted with the current broker key"),
                Err(e) => tracing::warn!(detail = %e.description, "broker re-encryption failed"),
            }
            let retention = state.deps.config.load().audit.retention.as_secs() as i64;
            if retention > 0 {
                match crate::store::audit::purge(&state.deps.db, clock::now_ms() - retention * 1000).await {
                    Ok(0) => {}
                    Ok(purged) => tracing::info!(purged, "audit rows past retention deleted"),
                    Err(e) => tracing::warn!(detail = %crate::store::one_line(&e.to_string()), "audit purge failed"),
                }
            }
        }
        if n.is_multiple_of(5) {
            state.db_healthy().await;
            if let Err(e) = state.deps.resources.refresh(&state.deps.db).await {
                tracing::debug!(detail = %e, "resource refresh failed");
            }
            match state.deps.keys.maintain(clock::now()).await {
                Ok(Some(k)) => {
                    tracing::info!(kid = %k.kid, active_from = %clock::rfc3339(k.active_from), "signing key rotated: new key published")
                }
                Ok(None) => {}
                Err(crate::keys::KeysError::Store(crate::keys::KeyStoreError::ReadOnly(dir))) => {
                    if state.deps.keys.first_read_only_warning() {
                        tracing::warn!(dir = %dir, "automatic key rotation skipped: the key directory is read-only");
                    }
                }
                Err(e) => tracing::error!(error = "ErrKeyRotation", detail = %e, "automatic key rotation failed"),
            }
        }
    }
}

/// Applies a changed config file. A file that does not validate is refused as
/// a whole and the running config stays; listeners, database and key store
/// need a restart and say so.
pub async fn reload_config(state: &AppState) {
    let Some(path) = state.config_path.as_deref() else { return };
    let loaded = match configfile::load(Some(path), state.registry_dir.as_deref()) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(error = "ErrConfigReload", detail = %e, "config reload refused; keeping the running config");
            return;
        }
    };
    let new = loaded.config;
    let old = state.deps.config.load_full();
    if new.server.listen != old.server.listen
        || new.admin.listen != old.admin.listen
        || new.database.url != old.database.url
        || new.signing.key_store != old.signing.key_store
        || new.signing.key_dir != old.signing.key_dir
        || new.log.format != old.log.format
    {
        tracing::warn!(
            "config changed listeners, database, key store or log format: those take effect after a restart"
        );
    }
    let admin_key = match configfile::admin_key(&new) {
        Ok(k) => k,
        Err(e) => {
            tracing::error!(error = "ErrConfigReload", detail = %e, "config reload refused; keeping the running config");
            return;
        }
    };
    // The broker's keys are re-read too: a rotated key file takes effect now.
    let broker_keys = match crate::oauth::broker::Keyring::load(&new) {
        Ok(k) => k,
        Err(e) => {
            tracing::error!(error = "ErrConfigReload", detail = %e, "config reload refused; keeping the running config");
            return;
        }
    };
    match store::entries::sync_config(&state.deps.db, &new, clock::now()).await {
        Ok(r) => tracing::info!(upserted = r.upserted, removed = r.removed, "config reloaded"),
        Err(e) => {
            tracing::error!(error = "ErrConfigReload", detail = %e, "config reload could not be stored; will retry on the next change");
            return;
        }
    }
    state.deps.clients.clear();
    state.deps.keys.set_timings(Timings::from_config(&new));
    state.admin_key.store(Arc::new(admin_key));
    state.deps.broker.set_keys(broker_keys);
    state.deps.config.store(Arc::new(new));
    if let Err(e) = state.deps.resources.refresh(&state.deps.db).await {
        tracing::warn!(detail = %e, "resource refresh after reload failed");
    }
}
