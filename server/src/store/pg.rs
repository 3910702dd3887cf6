//! What only Postgres needs: TLS (`sslmode`, `sslrootcert`) and the start-up
//! lock that lets any number of replicas start at once on one database.

use std::str::FromStr;

use authplane_core::config::{DatabaseConfig, SslMode};
use sea_orm::sqlx::postgres::{PgConnectOptions, PgConnection, PgSslMode};
use sea_orm::sqlx::{self, Connection};

use super::one_line;

/// The advisory-lock key every authserver takes around start-up writes
/// (migrations, config sync, the first signing key): "authplan" in ASCII.
/// One key per database, so replicas of different deployments sharing a
/// Postgres server but not a database never wait for each other.
pub const STARTUP_LOCK_KEY: i64 = 0x6175_7468_706c_616e;

/// `database.sslmode` / `database.sslrootcert`, checked; they win over the
/// URL's query.
#[derive(Debug, Clone, Default)]
pub struct TlsOverrides {
    mode: Option<PgSslMode>,
    root_cert: Option<String>,
}

impl TlsOverrides {
    pub fn from_config(cfg: &DatabaseConfig) -> Result<TlsOverrides, String> {
        let mode = cfg.sslmode.map(|m| match m {
            SslMode::Disable => PgSslMode::Disable,
            SslMode::Prefer => PgSslMode::Prefer,
            SslMode::Require => PgSslMode::Require,
            SslMode::VerifyCa => PgSslMode::VerifyCa,
            SslMode::VerifyFull => PgSslMode::VerifyFull,
        });
        if let Some(path) = &cfg.sslrootcert {
            // Read it now so a missing Secret mount is one clear line at
            // start, not a TLS error on the first connection.
            let pem = std::fs::read(path).map_err(|e| {
                format!("database.sslrootcert {path}: cannot read the CA file: {e} (fix: mount the CA certificate's PEM file at that path)")
            })?;
            if !String::from_utf8_lossy(&pem).contains("-----BEGIN CERTIFICATE-----") {
                return Err(format!(
                    "database.sslrootcert {path}: no PEM certificate in the file (fix: point it at the CA bundle, e.g. RDS's global-bundle.pem or Cloud SQL's server-ca.pem)"
                ));
            }
        }
        Ok(TlsOverrides { mode, root_cert: cfg.sslrootcert.clone() })
    }

    pub fn apply(&self, mut opts: PgConnectOptions) -> PgConnectOptions {
        if let Some(mode) = self.mode {
            opts = opts.ssl_mode(mode);
        }
        if let Some(path) = &self.root_cert {
            opts = opts.ssl_root_cert(path);
        }
        opts
    }
}

/// The transaction-scoped advisory lock around writing the config file's
/// rows ("authsync"); distinct from [`STARTUP_LOCK_KEY`], which the same
/// process holds on another connection while it syncs at start.
pub const CONFIG_SYNC_LOCK_KEY: i64 = 0x6175_7468_7379_6e63;

/// `pg_advisory_xact_lock`: held until `txn` commits or rolls back. A no-op
/// on SQLite, whose writers are serialised already.
pub async fn lock_for_transaction(txn: &sea_orm::DatabaseTransaction, key: i64) -> Result<(), super::StoreError> {
    use sea_orm::ConnectionTrait;
    if txn.get_database_backend() != sea_orm::DbBackend::Postgres {
        return Ok(());
    }
    txn.execute_raw(sea_orm::Statement::from_sql_and_values(
        sea_orm::DbBackend::Postgres,
        "SELECT pg_advisory_xact_lock($1)",
        [key.into()],
    ))
    .await?;
    Ok(())
}

/// The URL's connect options with the config's TLS keys applied.
pub fn connect_options(cfg: &DatabaseConfig) -> Result<PgConnectOptions, String> {
    let opts = PgConnectOptions::from_str(cfg.url.expose()).map_err(|e| {
        format!(
            "database.url {}: {} (fix: write postgres://USER:PASSWORD@HOST:5432/DB)",
            cfg.redacted_url(),
            one_line(&e.to_string())
        )
    })?;
    Ok(TlsOverrides::from_config(cfg)?.apply(opts))
}

/// How the connection is protected, as the start-up line says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tls {
    /// Plain text.
    Off,
    /// Encrypted, but the server's certificate is not checked (`prefer`,
    /// `require`): an active attacker on the path can still read it.
    Unverified,
    /// Certificate chain checked, host name not (`verify-ca`).
    VerifiedCa,
    /// Certificate chain and host name checked (`verify-full`).
    VerifiedFull,
}

impl Tls {
    pub fn as_str(self) -> &'static str {
        match self {
            Tls::Off => "off",
            Tls::Unverified => "unverified",
            Tls::VerifiedCa => "verified-ca",
            Tls::VerifiedFull => "verified-full",
        }
    }
}

/// Whether the server says this session is encrypted (`pg_stat_ssl`), read
/// rather than inferred because `prefer` falls back to plain text silently.
pub async fn tls_in_use(db: &super::Db, mode: PgSslMode) -> Result<Tls, String> {
    let pool = db.get_postgres_connection_pool();
    let ssl: Option<bool> = sqlx::query_scalar("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
        .fetch_optional(pool)
        .await
        .map_err(|e| format!("cannot read pg_stat_ssl: {}", one_line(&e.to_string())))?;
    Ok(match (ssl.unwrap_or(false), mode) {
        (false, _) => Tls::Off,
        (true, PgSslMode::VerifyFull) => Tls::VerifiedFull,
        (true, PgSslMode::VerifyCa) => Tls::VerifiedCa,
        (true, _) => Tls::Unverified,
    })
}

/// A connect failure as one line that names the cause and the fix.
pub fn explain_connect_error(raw: &str, mode: PgSslMode) -> String {
    let text = one_line(raw);
    let lower = text.to_ascii_lowercase();
    let hint = if lower.contains("unknownissuer") || lower.contains("unknown issuer") || lower.contains("badsignature")
    {
        "TLS: the server certificate is not signed by a CA in database.sslrootcert (fix: set database.sslrootcert to your provider's CA bundle)"
    } else if lower.contains("notvalidforname") || lower.contains("not valid for name") {
        "TLS: the server certificate is not valid for the host name in database.url (fix: connect with the host name the certificate names, or use sslmode=verify-ca)"
    } else if lower.contains("server does not support tls") {
        "TLS: the server does not offer TLS but sslmode requires it (fix: enable ssl on the Postgres server, or set database.sslmode=disable on a trusted network)"
    } else if lower.contains("expired") {
        "TLS: the server certificate has expired or is not yet valid (fix: renew the server certificate)"
    } else if lower.contains("no pg_hba.conf entry") && lower.contains("no encryption") {
        "the server requires TLS (fix: set database.sslmode=verify-full and database.sslrootcert)"
    } else if lower.contains("too many clients") || lower.contains("remaining connection slots") {
        "Postgres has no free connection slots (fix: lower database.max_connections per replica or raise the server's max_connections)"
    } else {
        "fix: check AUTHPLANE_DATABASE_URL / database.url and that the database is reachable"
    };
    let mode = match mode {
        PgSslMode::Disable => "disable",
        PgSslMode::Allow => "allow",
        PgSslMode::Prefer => "prefer",
        PgSslMode::Require => "require",
        PgSslMode::VerifyCa => "verify-ca",
        PgSslMode::VerifyFull => "verify-full",
    };
    format!("{text} [sslmode={mode}] ({hint})")
}

/// A session-level advisory lock on its own connection (not one of the
/// pool's, so a pool of one cannot deadlock against it). Postgres drops the
/// lock when the session ends, so a replica killed mid-migration does not
/// leave it held.
pub struct StartupLock {
    conn: PgConnection,
}

impl StartupLock {
    /// Waits for the lock, saying so once if another replica holds it.
    pub async fn acquire(opts: &PgConnectOptions) -> Result<StartupLock, String> {
        let mut conn = PgConnection::connect_with(opts).await.map_err(|e| {
            format!("start-up lock: cannot connect: {}", explain_connect_error(&e.to_string(), opts.get_ssl_mode()))
        })?;
        let got: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
            .bind(STARTUP_LOCK_KEY)
            .fetch_one(&mut conn)
            .await
            .map_err(|e| format!("start-up lock: {}", one_line(&e.to_string())))?;
        if !got {
            tracing::info!(
                lock = STARTUP_LOCK_KEY,
                "another authserver holds the start-up lock (migrating or creating the first key): waiting"
            );
            sqlx::query("SELECT pg_advisory_lock($1)")
                .bind(STARTUP_LOCK_KEY)
                .execute(&mut conn)
                .await
                .map_err(|e| format!("start-up lock: {}", one_line(&e.to_string())))?;
        }
        Ok(StartupLock { conn })
    }

    /// Unlocks and closes. Dropping the lock without this also frees it, when
    /// the connection closes.
    pub async fn release(mut self) {
        let unlocked =
            sqlx::query("SELECT pg_advisory_unlock($1)").bind(STARTUP_LOCK_KEY).execute(&mut self.conn).await;
        if let Err(e) = unlocked {
            tracing::warn!(detail = %one_line(&e.to_string()), "start-up lock: unlock failed; closing the session frees it");
        }
        let _ = self.conn.close().await;
    }
}
