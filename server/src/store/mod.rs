//! Storage: sea-orm over SQLite (default, embedded) or Postgres. Plain
//! functions that take the connection; no SQL in handlers.

pub mod audit;
pub mod dpop;
pub mod entities;
pub mod entries;
pub mod oauth;
pub mod pg;

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

/// Whether the pooled SQLite connection may be handed out: true unless sqlx
/// still counts a transaction on it, which no caller owns once the
/// connection is back in the pool. That happens after a full disk: SQLite
/// rolls the whole transaction back when COMMIT fails with SQLITE_FULL,
/// sqlx's own ROLLBACK then fails and it keeps counting one open
/// transaction, so the next transaction would be a SAVEPOINT; if that one
/// failed too, ROLLBACK TO would leave a real transaction open for good, and
/// every later write (answered as a success) would sit uncommitted in it
/// until the process ends and loses them (found by the fault suite,
/// e2e/faults; see docs/operations/reliability.md). A connection in that
/// state is closed instead (nothing acknowledged is in it) and the pool
/// opens a fresh one. The count is read in memory: sqlx's ping on release
/// has already flushed the rollback of a transaction dropped without
/// commit, so a healthy connection reads zero. (This used to be a
/// `BEGIN`/`ROLLBACK` pair on every acquire: two round trips to the
/// connection's worker thread before each statement.)
async fn sqlite_usable(conn: &mut sea_orm::sqlx::sqlite::SqliteConnection) -> Result<bool, sea_orm::sqlx::Error> {
    use sea_orm::sqlx::Connection;
    if conn.is_in_transaction() {
        tracing::error!(
            error = "ErrDatabase",
            "SQLite connection left inside a transaction after a failed write; replacing it"
        );
        return Ok(false);
    }
    Ok(true)
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
        })
        .map_sqlx_sqlite_before_acquire(|conn, _| Box::pin(sqlite_usable(conn)));
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

/// A JSON column's value: an unreadable one is [`StoreError::Corrupt`]
/// naming the column, never an empty default.
pub fn json_column<T: serde::de::DeserializeOwned>(column: &str, text: &str) -> Result<T, StoreError> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt(format!("{column} is not readable JSON: {e}")))
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

#[cfg(test)]
mod tests {
    use super::*;
    use sea_orm::{ConnectionTrait, TransactionTrait};

    async fn count(db: &Db, sql: &str) -> i64 {
        let row = db.query_one_raw(sea_orm::Statement::from_string(db.get_database_backend(), sql)).await.unwrap();
        row.unwrap().try_get_by_index::<i64>(0).unwrap()
    }

    /// A tmpfs of `size` mounted for the test and unmounted on drop (root
    /// only: `None` elsewhere).
    struct SmallFs(tempfile::TempDir);

    impl SmallFs {
        fn mount(size: &str) -> Option<SmallFs> {
            let dir = tempfile::tempdir().unwrap();
            let ok = std::process::Command::new("mount")
                .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
                .arg(dir.path())
                .status()
                .is_ok_and(|s| s.success());
            ok.then_some(SmallFs(dir))
        }
    }

    impl Drop for SmallFs {
        fn drop(&mut self) {
            // Lazy: a failed assertion unwinds with the database still open.
            let _ = std::process::Command::new("umount").arg("-l").arg(self.0.path()).status();
        }
    }

    /// The fault suite's full-disk case (e2e/faults): writes fail while the
    /// filesystem is full, and once space returns every write answered as
    /// committed is visible to another connection. Before the fix a failed
    /// COMMIT left the pool's one connection inside a transaction for good,
    /// and every later "committed" write was lost at shutdown.
    #[tokio::test]
    async fn writes_after_a_full_disk_are_committed() {
        let Some(fs) = SmallFs::mount("2m") else {
            eprintln!("skipped: mounting a tmpfs needs root");
            return;
        };
        let url = format!("sqlite://{}/full.db?mode=rwc", fs.0.path().display());
        let cfg = DatabaseConfig { url: authplane_core::Secret::new(url.clone()), ..Default::default() };
        let (db, _) = connect(&cfg).await.unwrap();
        db.execute_unprepared("CREATE TABLE t (v BLOB)").await.unwrap();
        // Fill the filesystem.
        let filler = fs.0.path().join("filler");
        {
            use std::io::Write;
            let mut f = std::fs::File::create(&filler).unwrap();
            while f.write_all(&[0u8; 65536]).is_ok() {}
            let _ = f.write_all(&[0u8; 512]);
        }
        let mut failures = 0;
        for i in 0..40 {
            // Transactions of growing size (a failure at a statement or at
            // COMMIT), and single statements, as the handlers and the audit writer do.
            let Ok(txn) = db.begin().await else {
                failures += 1;
                continue;
            };
            let mut ok = true;
            for _ in 0..=(i % 4) {
                if txn.execute_unprepared("INSERT INTO t VALUES (randomblob(3000))").await.is_err() {
                    ok = false;
                    break;
                }
            }
            if ok {
                failures += usize::from(txn.commit().await.is_err());
            } else {
                failures += 1;
                drop(txn);
            }
            failures += usize::from(db.execute_unprepared("INSERT INTO t VALUES (randomblob(3000))").await.is_err());
        }
        assert!(failures > 0, "the filesystem never filled up");

        std::fs::remove_file(&filler).unwrap();
        let before = count(&db, "SELECT count(*) FROM t").await;
        for _ in 0..3 {
            let txn = db.begin().await.unwrap();
            txn.execute_unprepared("INSERT INTO t VALUES (x'01')").await.unwrap();
            txn.commit().await.unwrap();
            db.execute_unprepared("INSERT INTO t VALUES (x'02')").await.unwrap();
        }
        let here = count(&db, "SELECT count(*) FROM t").await;
        assert_eq!(here, before + 6);
        let other = Database::connect(url.as_str()).await.unwrap();
        assert_eq!(count(&other, "SELECT count(*) FROM t").await, here, "committed writes not visible elsewhere");
        other.close().await.unwrap();
        db.close().await.unwrap();
    }
}
