//! Storage: sea-orm over SQLite (default, embedded) or Postgres. Plain
//! functions that take the connection; no SQL in handlers.

pub mod audit;
pub mod entities;
pub mod oauth;
pub mod pg;
pub mod registry;

use std::path::PathBuf;
use std::time::Duration;

use authplane_core::config::{DatabaseConfig, DatabaseKind};
use authplane_migration::{Migrator, MigratorTrait};
use sea_orm::sea_query::OnConflict;
use sea_orm::{ActiveValue::Set, ConnectOptions, Database, DbErr, EntityTrait};

pub use sea_orm::DatabaseConnection as Db;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Db(#[from] DbErr),
    #[error("{0} already exists")]
    Conflict(String),
    #[error("{0} not found")]
    NotFound(String),
    #[error("{0}")]
    Corrupt(String),
}

/// Where the database lives, for start-up lines and the SQLite health check.
#[derive(Debug, Clone)]
pub struct DbInfo {
    pub kind: DatabaseKind,
    pub redacted_url: String,
    /// The SQLite file, when there is one (not `:memory:`).
    pub sqlite_path: Option<PathBuf>,
    /// Postgres only: whether the session is encrypted and how it was verified.
    pub tls: Option<pg::Tls>,
}

/// The file behind a `sqlite:` URL, if any.
pub fn sqlite_path(url: &str) -> Option<PathBuf> {
    let rest = url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:"))?;
    let path = rest.split('?').next().unwrap_or_default();
    if path.is_empty() || path.starts_with(":memory:") {
        return None;
    }
    Some(PathBuf::from(path))
}

/// Connects (creating the SQLite file and its directory on first start) and
/// returns the connection with what is safe to log about it.
pub async fn connect(cfg: &DatabaseConfig) -> Result<(Db, DbInfo), String> {
    let url = cfg.url.expose().clone();
    let kind = cfg.kind();
    let mut info = DbInfo { kind, redacted_url: cfg.redacted_url(), sqlite_path: sqlite_path(&url), tls: None };
    let pg_opts = if kind == DatabaseKind::Postgres { Some(pg::connect_options(cfg)?) } else { None };
    if let Some(path) = &info.sqlite_path
        && let Some(dir) = path.parent()
        && !dir.as_os_str().is_empty()
    {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create the database directory {}: {e}", dir.display()))?;
    }
    // SQLite has one writer at a time. One connection serialises our short
    // statements in a fair async queue instead of sleeping in SQLite's busy
    // handler, and a read-then-write transaction can never fail to upgrade
    // its lock. `database.max_connections` sizes the Postgres pool.
    let pool = if kind == DatabaseKind::Sqlite { 1 } else { cfg.max_connections };
    let mut opts = ConnectOptions::new(url);
    opts.max_connections(pool)
        .min_connections(1)
        .connect_timeout(cfg.connect_timeout.to_std())
        .acquire_timeout(cfg.acquire_timeout.to_std())
        .sqlx_logging(false)
        .map_sqlx_sqlite_opts(|o| {
            use sea_orm::sqlx::sqlite::{SqliteJournalMode, SqliteSynchronous};
            // WAL: readers never block the writer. NORMAL: a commit survives a
            // process crash; only an OS crash or power loss can lose the last ones.
            o.journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal)
                .busy_timeout(Duration::from_secs(5))
        });
    if pg_opts.is_some() {
        let tls = pg::TlsOverrides::from_config(cfg)?;
        opts.map_sqlx_postgres_opts(move |o| tls.apply(o));
    }
    let db = Database::connect(opts).await.map_err(|e| match &pg_opts {
        Some(pg) => format!(
            "cannot connect to the database at {}: {}",
            info.redacted_url,
            pg::explain_connect_error(&e.to_string(), pg.get_ssl_mode())
        ),
        None => format!(
            "cannot connect to the database at {}: {} (fix: check AUTHPLANE_DATABASE_URL / database.url and that the database is reachable)",
            info.redacted_url,
            one_line(&e.to_string())
        ),
    })?;
    if let Some(pg) = &pg_opts {
        info.tls = Some(pg::tls_in_use(&db, pg.get_ssl_mode()).await?);
    }
    Ok((db, info))
}

/// Times every SQL statement into the query metrics and, while traces are
/// exported, into a storage span (see [`crate::telemetry::otel`]).
pub fn instrument(db: &mut Db, info: &DbInfo, metrics: std::sync::Arc<crate::metrics::Metrics>) {
    crate::telemetry::otel::set_db_system(match info.kind {
        DatabaseKind::Sqlite => "sqlite",
        DatabaseKind::Postgres => "postgresql",
    });
    db.set_metric_callback(move |q| {
        let sql = q.statement.sql.as_str();
        metrics.query(sql, q.elapsed, q.failed);
        crate::telemetry::otel::record_query(sql, q.elapsed, q.failed);
    });
}

/// (open, idle, max) connections of the pool, for `/metrics`.
pub fn pool_stats(db: &Db) -> Option<(u32, usize, u32)> {
    match db.get_database_backend() {
        sea_orm::DbBackend::Sqlite => {
            let p = db.get_sqlite_connection_pool();
            Some((p.size(), p.num_idle(), p.options().get_max_connections()))
        }
        sea_orm::DbBackend::Postgres => {
            let p = db.get_postgres_connection_pool();
            Some((p.size(), p.num_idle(), p.options().get_max_connections()))
        }
        _ => None,
    }
}

/// Takes the Postgres start-up lock (see [`pg::StartupLock`]); `None` for
/// SQLite, where one file has one writer and replicas are not supported.
/// Hold it across [`migrate`], the config sync and opening the key store,
/// then [`pg::StartupLock::release`] it.
pub async fn startup_lock(cfg: &DatabaseConfig) -> Result<Option<pg::StartupLock>, String> {
    if cfg.kind() != DatabaseKind::Postgres {
        return Ok(None);
    }
    let opts = pg::connect_options(cfg)?;
    pg::StartupLock::acquire(&opts).await.map(Some)
}

/// Refuses a schema newer than this build, then applies pending migrations.
/// Call under [`startup_lock`]: concurrent `CREATE TABLE`s on Postgres
/// fail with a duplicate key in `pg_type`.
pub async fn migrate(db: &Db) -> Result<usize, String> {
    let failed = |e: DbErr| format!("database migration failed: {}", one_line(&e.to_string()));
    let applied = Migrator::get_migration_models(db).await.map_err(failed)?;
    let known: Vec<String> = Migrator::migrations().iter().map(|m| m.name().to_owned()).collect();
    if let Some(newer) = applied.iter().find(|m| !known.contains(&m.version)) {
        return Err(format!(
            "the database schema is newer than this authserver {}: migration {} was applied by a later version (fix: run that version or newer; to roll back, restore the database backup taken before the upgrade)",
            crate::build_info::VERSION,
            newer.version
        ));
    }
    let pending = known.len().saturating_sub(applied.len());
    Migrator::up(db, None).await.map_err(failed)?;
    Ok(pending)
}

/// A real write, so a read-only file system, a full disk or a lost Postgres
/// all show up; for SQLite, also that the file is still where it should be.
pub async fn probe(db: &Db, info: &DbInfo, now: i64, timeout: Duration) -> Result<(), String> {
    if let Some(path) = &info.sqlite_path
        && !path.exists()
    {
        return Err(format!("database file {} is missing", path.display()));
    }
    let write = entities::health_probe::Entity::insert(entities::health_probe::ActiveModel {
        id: Set(1),
        checked_at: Set(now),
    })
    .on_conflict(
        OnConflict::column(entities::health_probe::Column::Id)
            .update_column(entities::health_probe::Column::CheckedAt)
            .to_owned(),
    )
    .exec_without_returning(db);
    match tokio::time::timeout(timeout, write).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(one_line(&e.to_string())),
        Err(_) => Err(format!("no answer within {} ms", timeout.as_millis())),
    }
}

pub fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Maps a unique-key violation to [`StoreError::Conflict`].
pub(crate) fn conflict_or(e: DbErr, what: impl Into<String>) -> StoreError {
    let text = e.to_string().to_ascii_lowercase();
    if text.contains("unique") || text.contains("duplicate") {
        StoreError::Conflict(what.into())
    } else {
        StoreError::Db(e)
    }
}
