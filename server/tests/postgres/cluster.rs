//! Throw-away Postgres servers configured per test (TLS on, few connection
//! slots), started by `scripts/postgres.sh` like the suite's shared one, and
//! small SQL helpers.

use std::path::{Path, PathBuf};
use std::process::Command;

use sea_orm::{ConnectionTrait, Database, DatabaseConnection, DbBackend, Statement};

/// The suite's shared Postgres, or `None` (the test then says it is skipped).
pub fn shared() -> Option<String> {
    let base = crate::helpers::postgres_base();
    if base.is_none() {
        eprintln!("skipped: AUTHPLANE_TEST_POSTGRES_URL is not set (make test sets it in its PostgreSQL step)");
    }
    base
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/postgres.sh")
}

/// One more Postgres server on a free loopback port; stopped on drop.
pub struct Cluster {
    /// `postgres://postgres@127.0.0.1:PORT` (trust auth, loopback only).
    pub base: String,
    state: tempfile::TempDir,
}

impl Cluster {
    /// `ssl_dir` holds `server.crt` and `server.key`; `extra` are more
    /// server options (`-c max_connections=8`).
    pub fn start(ssl_dir: Option<&Path>, extra: &str) -> Cluster {
        let state = tempfile::tempdir().unwrap();
        let mut cmd = Command::new(script());
        cmd.arg("start").env("AUTHPLANE_PG_STATE", state.path()).env("AUTHPLANE_PG_EXTRA_OPTS", extra);
        if let Some(dir) = ssl_dir {
            cmd.env("AUTHPLANE_PG_SSL_DIR", dir);
        }
        let out = cmd.output().unwrap();
        assert!(out.status.success(), "postgres.sh start failed: {}", String::from_utf8_lossy(&out.stderr));
        let stdout = String::from_utf8_lossy(&out.stdout);
        let base = stdout
            .lines()
            .find_map(|l| l.strip_prefix("export AUTHPLANE_TEST_POSTGRES_URL="))
            .unwrap_or_else(|| panic!("no URL from postgres.sh: {stdout}"))
            .trim()
            .to_owned();
        Cluster { base, state }
    }

    pub fn port(&self) -> u16 {
        self.base.rsplit(':').next().unwrap().parse().unwrap()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = Command::new(script()).arg("stop").env("AUTHPLANE_PG_STATE", self.state.path()).output();
    }
}

/// A CA, a server certificate it signs for `localhost` only, and a second,
/// unrelated CA: PEM files in one directory (openssl, as people make them).
pub struct Certs {
    pub dir: tempfile::TempDir,
}

impl Certs {
    pub fn make() -> Certs {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
        for (name, cn) in [("ca", "authplane test CA"), ("other-ca", "some other CA")] {
            openssl(
                d,
                &[
                    &["req", "-x509"],
                    &ec[..],
                    &[
                        "-keyout",
                        &format!("{name}.key"),
                        "-out",
                        &format!("{name}.crt"),
                        "-days",
                        "2",
                        "-subj",
                        &format!("/CN={cn}"),
                    ],
                ]
                .concat(),
            );
        }
        openssl(
            d,
            &[&["req"], &ec[..], &["-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=localhost"]].concat(),
        );
        std::fs::write(
            d.join("server.ext"),
            "subjectAltName=DNS:localhost\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n",
        )
        .unwrap();
        openssl(
            d,
            &[
                "x509",
                "-req",
                "-in",
                "server.csr",
                "-CA",
                "ca.crt",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                "server.crt",
                "-days",
                "2",
                "-extfile",
                "server.ext",
            ],
        );
        Certs { dir }
    }

    pub fn path(&self, name: &str) -> String {
        self.dir.path().join(name).display().to_string()
    }
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl").args(args).current_dir(dir).output().unwrap();
    assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

pub async fn connect(url: &str) -> DatabaseConnection {
    Database::connect(url).await.unwrap_or_else(|e| panic!("connect {url}: {e}"))
}

pub async fn scalar(db: &DatabaseConnection, sql: &str) -> i64 {
    let row = db.query_one_raw(Statement::from_string(DbBackend::Postgres, sql)).await.unwrap().unwrap();
    row.try_get_by_index::<i64>(0).unwrap()
}

pub async fn strings(db: &DatabaseConnection, sql: &str) -> Vec<String> {
    let rows = db.query_all_raw(Statement::from_string(DbBackend::Postgres, sql)).await.unwrap();
    rows.iter().map(|r| r.try_get_by_index::<String>(0).unwrap()).collect()
}

pub async fn exec(db: &DatabaseConnection, sql: &str) {
    db.execute_unprepared(sql).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
}
