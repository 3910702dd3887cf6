//! Any number of replicas may start at once on one database: the start-up
//! lock makes one migrate (and create the first signing key) while the
//! others wait; a binary older than the schema refuses to start.

use std::path::Path;

use authplane_migration::{Migrator, MigratorTrait};

use crate::cluster::{connect, exec, scalar, shared, strings};
use crate::helpers::{TestApp, base_config, command, fresh_database, launch};

const REPLICAS: usize = 4;
const TRIALS: usize = 10;
const WAITED: &str = "holds the start-up lock";

/// Replicas keep their signing keys in the shared database, as on Kubernetes
/// with more than one replica and `signing.key_store: db`.
fn replica_config(dir: &Path, db: &str) -> String {
    base_config(dir, db).replace("key_store: file", "key_store: db")
}

/// Writes every replica's config first, then starts them back to back (a
/// few ms apart) and waits for each.
fn start_together(db: &str, n: usize) -> Vec<Result<TestApp, String>> {
    let prepared: Vec<_> = (0..n)
        .map(|_| {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("config.yaml");
            std::fs::write(&path, replica_config(dir.path(), db)).unwrap();
            (dir, path)
        })
        .collect();
    let launching: Vec<_> = prepared.into_iter().map(|(dir, path)| launch(dir, path, db.to_owned(), &[])).collect();
    launching.into_iter().map(|l| l.wait()).collect()
}

/// Runs `authserver ARGS` against `db` with a replica config.
fn cli(db: &str, args: &[&str]) -> std::process::Output {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.yaml");
    std::fs::write(&path, replica_config(dir.path(), db)).unwrap();
    let mut all = vec!["--config", path.to_str().unwrap()];
    all.extend_from_slice(args);
    command(&all, &[]).current_dir(dir.path()).output().unwrap()
}

fn tables_sql() -> &'static str {
    "SELECT table_name::text FROM information_schema.tables WHERE table_schema = 'public' ORDER BY 1"
}

/// The tables one `authserver migrate` makes on an empty database.
async fn reference_tables() -> Vec<String> {
    let dir = tempfile::tempdir().unwrap();
    let db = fresh_database(dir.path()).await;
    let out = cli(&db, &["migrate"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    strings(&connect(&db).await, tables_sql()).await
}

/// All started, one schema, one row per migration, one signing key that
/// every replica signs with. Returns how many replicas waited for the lock.
async fn assert_one_outcome(
    db: &str,
    apps: Vec<Result<TestApp, String>>,
    tables: &[String],
    kid: Option<&str>,
) -> usize {
    let apps: Vec<TestApp> = apps.into_iter().map(|a| a.unwrap_or_else(|e| panic!("a replica failed: {e}"))).collect();
    let conn = connect(db).await;
    assert_eq!(strings(&conn, tables_sql()).await, tables, "schema differs from one migrate's");
    let versions = strings(&conn, "SELECT version FROM seaql_migrations ORDER BY 1").await;
    let known: Vec<String> = Migrator::migrations().iter().map(|m| m.name().to_owned()).collect();
    assert_eq!(versions, known, "each migration recorded once");
    let kids = strings(&conn, "SELECT kid FROM signing_keys").await;
    assert_eq!(kids.len(), 1, "exactly one signing key, got {kids:?}");
    if let Some(kid) = kid {
        assert_eq!(kids[0], kid, "the existing key stays in force");
    }
    for app in &apps {
        assert_eq!(app.current_kid().await, kids[0], "every replica signs with the one key");
        assert_eq!(app.health().await.0, 200);
    }
    conn.close().await.ok();
    apps.iter().filter(|a| a.logs().iter().any(|l| l.contains(WAITED))).count()
}

#[tokio::test(flavor = "multi_thread")]
async fn four_replicas_start_together_on_an_empty_database() {
    if shared().is_none() {
        return;
    }
    let tables = reference_tables().await;
    let mut waited = 0;
    for trial in 0..TRIALS {
        let dir = tempfile::tempdir().unwrap();
        let db = fresh_database(dir.path()).await;
        let apps = start_together(&db, REPLICAS);
        let w = assert_one_outcome(&db, apps, &tables, None).await;
        eprintln!("trial {trial}: {w} of {REPLICAS} replicas waited for the start-up lock");
        waited += w;
    }
    // Proof that the replicas really overlapped: some had to wait.
    assert!(waited > 0, "no replica ever waited for the lock: the test did not start them together");
}

#[tokio::test(flavor = "multi_thread")]
async fn four_replicas_start_together_on_an_outdated_database() {
    if shared().is_none() {
        return;
    }
    let tables = reference_tables().await;
    let mut waited = 0;
    for trial in 0..TRIALS {
        let dir = tempfile::tempdir().unwrap();
        let db = fresh_database(dir.path()).await;
        // An existing database with a signing key, one release behind: the
        // newest migration rolled back by its own down() (its tables dropped,
        // its row deleted), as a database made by the previous version is.
        let out = cli(&db, &["keys", "list", "--output", "json"]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let conn = connect(&db).await;
        let kid = strings(&conn, "SELECT kid FROM signing_keys").await.pop().unwrap();
        Migrator::down(&conn, Some(1)).await.unwrap();
        assert_eq!(
            scalar(&conn, "SELECT count(*) FROM seaql_migrations").await as usize,
            Migrator::migrations().len() - 1
        );
        conn.close().await.ok();

        let apps = start_together(&db, REPLICAS);
        let w = assert_one_outcome(&db, apps, &tables, Some(&kid)).await;
        eprintln!("trial {trial}: {w} of {REPLICAS} replicas waited for the start-up lock");
        waited += w;
    }
    assert!(waited > 0, "no replica ever waited for the lock: the test did not start them together");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_schema_newer_than_the_binary_refuses_to_start() {
    if shared().is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let db = fresh_database(dir.path()).await;
    let out = cli(&db, &["migrate"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // What a later version leaves behind: a migration this binary does not know.
    let future = "m20991231_000001_from_a_later_version";
    let conn = connect(&db).await;
    exec(&conn, &format!("INSERT INTO seaql_migrations (version, applied_at) VALUES ('{future}', 0)")).await;
    let tables_before = strings(&conn, tables_sql()).await;

    let refused = start_together(&db, 1).pop().unwrap();
    let Err(log) = refused else { panic!("an older binary started on a newer schema") };
    let line = log
        .lines()
        .find(|l| l.contains("authserver cannot start"))
        .unwrap_or_else(|| panic!("no ErrStartup line:\n{log}"));
    assert!(line.contains("error=ErrStartup"), "{line}");
    assert!(line.contains("schema is newer than this authserver"), "{line}");
    assert!(line.contains(future), "names the unknown migration: {line}");
    assert!(line.contains("fix:"), "names the fix: {line}");

    let out = cli(&db, &["migrate"]);
    assert!(!out.status.success(), "migrate went ahead on a newer schema");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("schema is newer") && stderr.contains(future), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");

    // Nothing was touched.
    assert_eq!(strings(&conn, tables_sql()).await, tables_before);
    assert_eq!(scalar(&conn, "SELECT count(*) FROM signing_keys").await, 0);
}

/// RFC 9449 §11.1 across replicas: the replay store is a unique key in the
/// shared database, so of two replicas handed the same proof at the same
/// moment exactly one accepts it.
#[tokio::test(flavor = "multi_thread")]
async fn two_replicas_never_both_accept_one_dpop_proof() {
    use authplane_core::dpop::{Es256Signer, ProofClaims};
    if shared().is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let db = fresh_database(dir.path()).await;
    // A confidential client whose secret is "secret" (SHA-256 below).
    let client = "clients:\n  - client_id: machine\n    token_endpoint_auth_method: client_secret_post\n    client_secret_sha256: 2bb80d537b1da3e38bd30361aa855686bde0eacd7162fef6a25fe97bf527a25b\n    grant_types: [client_credentials]\n    allowed_resources: [http://localhost:8080/mcp]\n";
    let prepared: Vec<_> = (0..2)
        .map(|_| {
            let d = tempfile::tempdir().unwrap();
            let path = d.path().join("config.yaml");
            std::fs::write(&path, replica_config(d.path(), &db).replace("clients:\n", client)).unwrap();
            (d, path)
        })
        .collect();
    let apps: Vec<TestApp> = prepared
        .into_iter()
        .map(|(d, path)| launch(d, path, db.clone(), &[]))
        .collect::<Vec<_>>()
        .into_iter()
        .map(|l| l.wait().unwrap())
        .collect();
    let key = Es256Signer::generate().unwrap();
    let form = [("grant_type", "client_credentials"), ("client_id", "machine"), ("client_secret", "secret")];
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    for round in 0..20 {
        let jti = format!("round-{round}");
        let proof = key
            .sign(&ProofClaims {
                htm: "POST",
                htu: "http://localhost:9000/oauth/token",
                iat: now,
                jti: &jti,
                access_token: None,
                nonce: None,
            })
            .unwrap();
        let send = |app: &TestApp| {
            app.http.post(format!("{}/oauth/token", app.public)).header("DPoP", proof.clone()).form(&form).send()
        };
        let (a, b) = tokio::join!(send(&apps[0]), send(&apps[1]));
        let statuses = [a.unwrap().status().as_u16(), b.unwrap().status().as_u16()];
        assert_eq!(statuses.iter().filter(|s| **s == 200).count(), 1, "round {round}: {statuses:?}");
        assert!(statuses.contains(&400), "round {round}: {statuses:?}");
    }
    let conn = connect(&db).await;
    assert_eq!(scalar(&conn, "SELECT count(*) FROM dpop_proofs").await, 20, "one row per accepted proof");
}
