//! TLS to Postgres with a CA and server certificate this test makes:
//! verify-full connects; a wrong CA, a wrong host name and a plain-text
//! server are refused with one line naming the cause; require without
//! verification works and says so.

use std::path::Path;

use crate::cluster::{Certs, Cluster, shared};
use crate::helpers::{TestApp, base_config, field, launch};

/// The test config with `database.*` TLS keys (`extra` lines, indented).
fn start(db_url: &str, extra: &[&str]) -> Result<TestApp, String> {
    let dir = tempfile::tempdir().unwrap();
    let keys: String = extra.iter().map(|l| format!("  {l}\n")).collect();
    let config = base_config(dir.path(), db_url).replacen("database:\n", &format!("database:\n{keys}"), 1);
    let path = dir.path().join("config.yaml");
    std::fs::write(&path, config).unwrap();
    let result = launch(dir, path, db_url.to_owned(), &[]).wait();
    // Every URL here carries a password (trust auth ignores it): never logged.
    let log = match &result {
        Ok(app) => app.logs().join("\n"),
        Err(log) => log.clone(),
    };
    assert!(!log.contains(PASSWORD), "the database password was logged:\n{log}");
    result
}

const PASSWORD: &str = "hunter2-db-password";

fn started_line(app: &TestApp) -> String {
    app.logs().into_iter().find(|l| l.contains("authserver started")).unwrap()
}

/// The one ErrStartup line of a refused start, checked to name `cause`.
fn refused(result: Result<TestApp, String>, cause: &str) -> String {
    let log = match result {
        Ok(app) => panic!("started, expected a refusal naming {cause:?}:\n{}", app.logs().join("\n")),
        Err(log) => log,
    };
    let line = log
        .lines()
        .find(|l| l.contains("authserver cannot start"))
        .unwrap_or_else(|| panic!("no ErrStartup line:\n{log}"))
        .to_owned();
    eprintln!("refused as expected: {line}");
    assert!(line.contains(cause), "expected {cause:?} in: {line}");
    assert!(line.contains("fix:"), "no fix named in: {line}");
    // The plain stderr line says the same on one line too.
    assert!(log.lines().any(|l| l.starts_with("authserver: ") && l.contains(cause)), "{log}");
    line
}

#[tokio::test(flavor = "multi_thread")]
async fn tls_modes_against_a_server_with_a_test_ca() {
    let Some(plain_base) = shared() else { return };
    let certs = Certs::make();
    let pg = Cluster::start(Some(certs.dir.path()), "");
    let port = pg.port();
    let by_name = format!("postgres://postgres:{PASSWORD}@localhost:{port}/postgres");
    let by_ip = format!("postgres://postgres:{PASSWORD}@127.0.0.1:{port}/postgres");
    let ca = certs.path("ca.crt");
    let other_ca = certs.path("other-ca.crt");
    assert!(Path::new(&ca).exists());

    // verify-full with the right CA and host name.
    let app = start(&by_name, &["sslmode: verify-full", &format!("sslrootcert: {ca}")]).unwrap();
    let line = started_line(&app);
    assert_eq!(field(&line, "db_tls").as_deref(), Some("verified-full"), "{line}");
    assert!(!app.logs().iter().any(|l| l.contains("not verified")));
    assert_eq!(app.health().await.0, 200);
    drop(app);

    // The same, written in the URL as libpq users do.
    let app = start(&format!("{by_name}?sslmode=verify-full&sslrootcert={ca}"), &[]).unwrap();
    assert_eq!(field(&started_line(&app), "db_tls").as_deref(), Some("verified-full"));
    drop(app);

    // verify-ca checks the chain only, so the IP address is fine.
    let app = start(&by_ip, &["sslmode: verify-ca", &format!("sslrootcert: {ca}")]).unwrap();
    assert_eq!(field(&started_line(&app), "db_tls").as_deref(), Some("verified-ca"));
    drop(app);

    // require: encrypted, not verified, and the log says so.
    let app = start(&by_ip, &["sslmode: require"]).unwrap();
    let line = started_line(&app);
    assert_eq!(field(&line, "db_tls").as_deref(), Some("unverified"), "{line}");
    let warn = app.logs().into_iter().find(|l| l.contains("not verified")).expect("a warning that TLS is unverified");
    assert!(warn.contains("level=WARN") && warn.contains("verify-full"), "{warn}");
    drop(app);

    // A CA that did not sign the server's certificate.
    refused(
        start(&by_name, &["sslmode: verify-full", &format!("sslrootcert: {other_ca}")]),
        "not signed by a CA in database.sslrootcert",
    );
    // The certificate names localhost, not 127.0.0.1.
    refused(start(&by_ip, &["sslmode: verify-full", &format!("sslrootcert: {ca}")]), "not valid for the host name");
    // A CA file that is not there (a Secret not mounted).
    refused(
        start(&by_name, &["sslmode: verify-full", "sslrootcert: /nonexistent/ca.crt"]),
        "database.sslrootcert /nonexistent/ca.crt: cannot read the CA file",
    );

    // A plain-text server: require and verify-full refuse, prefer falls back and says off.
    let plain = format!("{}/postgres", plain_base.replacen("postgres@", &format!("postgres:{PASSWORD}@"), 1));
    refused(start(&plain, &["sslmode: require"]), "does not offer TLS");
    refused(start(&plain, &["sslmode: verify-full", &format!("sslrootcert: {ca}")]), "does not offer TLS");
    let app = start(&plain, &[]).unwrap();
    assert_eq!(field(&started_line(&app), "db_tls").as_deref(), Some("off"));
}
