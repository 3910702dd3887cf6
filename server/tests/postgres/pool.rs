//! The pool under pressure: Postgres out of connection slots. Requests that
//! need the database get a clean 503 in the protocol's form, /health says
//! degraded, nothing is half-written, and the server recovers by itself.

use std::time::{Duration, Instant};

use reqwest::Method;
use sea_orm::sqlx::postgres::{PgConnectOptions, PgConnection};
use sea_orm::sqlx::{self, ConnectOptions, Connection};
use serde_json::{Value, json};

use crate::cluster::{Cluster, connect, scalar, shared};
use crate::helpers::{TestApp, base_config, eventually, launch};

const SLOTS: u32 = 12;
const BURST: usize = 60;

/// Takes every free connection slot and drops the app's sessions, so the
/// app's pool is empty and cannot reconnect. Returns the held sessions.
async fn exhaust(base: &str) -> Vec<PgConnection> {
    let opts: PgConnectOptions =
        format!("{base}/postgres").parse::<PgConnectOptions>().unwrap().application_name("hog");
    let mut held = Vec::new();
    for _ in 0..20 {
        while let Ok(c) = opts.connect().await {
            held.push(c);
        }
        let Some(first) = held.first_mut() else { panic!("could not take any connection slot") };
        let others: i64 = sqlx::query_scalar(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
             WHERE backend_type = 'client backend' AND application_name <> 'hog'",
        )
        .fetch_one(&mut *first)
        .await
        .unwrap();
        if others == 0 && opts.connect().await.is_err() {
            return held;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the app kept reconnecting; could not exhaust the server");
}

/// What the burst needs of the app, cheap to clone into tasks.
#[derive(Clone)]
struct Endpoints {
    public: String,
    admin: String,
    http: reqwest::Client,
}

impl Endpoints {
    fn of(app: &TestApp) -> Endpoints {
        Endpoints { public: app.public.clone(), admin: app.admin.clone(), http: app.http.clone() }
    }

    async fn health(&self) -> reqwest::Response {
        self.http.get(format!("{}/health", self.public)).send().await.unwrap()
    }
}

async fn create_client(app: &Endpoints) -> reqwest::Response {
    app.http
        .request(Method::POST, format!("{}/admin/clients", app.admin))
        .bearer_auth(crate::helpers::ADMIN_KEY)
        .json(&json!({"token_endpoint_auth_method": "client_secret_basic", "grant_types": ["client_credentials"], "redirect_uris": ["https://app.example.com/cb"]}))
        .send()
        .await
        .unwrap()
}

async fn bad_code(app: &Endpoints) -> reqwest::Response {
    app.http
        .post(format!("{}/oauth/token", app.public))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", "no-such-code"),
            ("code_verifier", crate::helpers::VERIFIER),
            ("client_id", "test-client"),
            ("redirect_uri", crate::helpers::REDIRECT),
        ])
        .send()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn out_of_connections_gives_503_and_the_server_recovers() {
    if shared().is_none() {
        return;
    }
    let pg = Cluster::start(None, &format!("-c max_connections={SLOTS} -c superuser_reserved_connections=0"));
    let db_url = format!("{}/postgres", pg.base);
    let dir = tempfile::tempdir().unwrap();
    let config = base_config(dir.path(), &db_url).replacen(
        "database:\n",
        "database:\n  max_connections: 4\n  acquire_timeout: 1s\n  connect_timeout: 1s\n",
        1,
    );
    let path = dir.path().join("config.yaml");
    std::fs::write(&path, config).unwrap();
    let mut app = launch(dir, path, db_url.clone(), &[]).wait().unwrap();
    let ep = Endpoints::of(&app);
    assert_eq!(create_client(&ep).await.status(), 201);
    assert_eq!(bad_code(&ep).await.status(), 400);
    let check = connect(&db_url).await;
    let clients_before = scalar(&check, "SELECT count(*) FROM clients").await;
    check.close().await.ok();

    let held = exhaust(&pg.base).await;
    // /health answers from a probe at most a second old.
    tokio::time::sleep(Duration::from_millis(1100)).await;

    // A bounded burst against endpoints that need the database.
    let started = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..BURST {
        let a = ep.clone();
        tasks.push(tokio::spawn(async move {
            let t = Instant::now();
            let res = match i % 3 {
                0 => a.health().await,
                1 => bad_code(&a).await,
                _ => create_client(&a).await,
            };
            let status = res.status().as_u16();
            let body: Value = res.json().await.unwrap_or(Value::Null);
            (i % 3, status, body, t.elapsed())
        }));
    }
    let mut created = 0;
    let mut unavailable = 0;
    let mut slowest = Duration::ZERO;
    for t in tasks {
        let (kind, status, body, took) = t.await.unwrap();
        slowest = slowest.max(took);
        assert!(status < 500 || status == 503, "a 5xx other than 503: {status} {body}");
        match (kind, status) {
            (0, 503) => assert_eq!(body["status"], "degraded", "{body}"),
            (0, s) => panic!("/health said {s} {body} while Postgres had no free slot"),
            (1, 503) | (2, 503) => {
                unavailable += 1;
                assert_eq!(body["error"], "temporarily_unavailable", "{body}");
            }
            (1, 400) => {}
            (2, 201) => created += 1,
            (_, s) => panic!("unexpected {s} {body}"),
        }
    }
    eprintln!(
        "burst of {BURST} with no free slot: {unavailable} answered 503, {created} clients created, slowest answer {} ms (whole burst {} ms)",
        slowest.as_millis(),
        started.elapsed().as_millis()
    );
    assert!(unavailable > 0, "no request was refused: the pool was not under pressure");
    assert!(slowest < Duration::from_secs(10), "answers must be bounded by the pool timeout, slowest {slowest:?}");
    assert!(app.is_running(), "the server died under pressure");

    // Postgres has room again: health and writes come back without a restart.
    for c in held {
        c.close().await.ok();
    }
    eventually(20, "/health back to ok", || async { app.health().await.0 == 200 }).await;
    let (s, v) = app.health().await;
    assert_eq!((s, v["status"].as_str(), v["db"].as_str()), (200, Some("ok"), Some("ok")));
    assert_eq!(create_client(&ep).await.status(), 201);
    assert_eq!(bad_code(&ep).await.status(), 400);

    // Nothing half-written: exactly the clients that got 201.
    let check = connect(&db_url).await;
    assert_eq!(scalar(&check, "SELECT count(*) FROM clients").await, clients_before + created + 1);
    assert!(app.is_running());
    assert!(!app.logs().iter().any(|l| l.contains("panicked")), "a panic was logged");
    assert!(app.logs().iter().any(|l| l.contains("database reachable again")), "recovery is logged");
}

#[tokio::test(flavor = "multi_thread")]
async fn requests_waiting_past_the_pool_timeout_get_503_and_the_rest_complete() {
    if shared().is_none() {
        return;
    }
    let pg = Cluster::start(None, "");
    let db_url = format!("{}/postgres", pg.base);
    let dir = tempfile::tempdir().unwrap();
    let config = base_config(dir.path(), &db_url).replacen(
        "database:\n",
        "database:\n  max_connections: 4\n  acquire_timeout: 1s\n",
        1,
    );
    let path = dir.path().join("config.yaml");
    std::fs::write(&path, config).unwrap();
    let mut app = launch(dir, path, db_url.clone(), &[]).wait().unwrap();
    let ep = Endpoints::of(&app);
    assert_eq!(create_client(&ep).await.status(), 201);
    let check = connect(&db_url).await;
    let clients_before = scalar(&check, "SELECT count(*) FROM clients").await;

    // A long-running writer elsewhere: every insert into clients blocks, so
    // the app's 4 connections stay busy and later requests queue for one.
    let mut blocker = PgConnection::connect(&db_url).await.unwrap();
    sqlx::query("BEGIN").execute(&mut blocker).await.unwrap();
    sqlx::query("LOCK TABLE clients IN ACCESS EXCLUSIVE MODE").execute(&mut blocker).await.unwrap();

    let mut tasks = Vec::new();
    for _ in 0..20 {
        let a = ep.clone();
        tasks.push(tokio::spawn(async move {
            let t = Instant::now();
            let res = create_client(&a).await;
            let status = res.status().as_u16();
            let body: Value = res.json().await.unwrap_or(Value::Null);
            (status, body, t.elapsed())
        }));
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    sqlx::query("ROLLBACK").execute(&mut blocker).await.unwrap();

    let (mut created, mut unavailable) = (0, 0);
    let mut fastest_503 = Duration::MAX;
    for t in tasks {
        let (status, body, took) = t.await.unwrap();
        match status {
            201 => created += 1,
            503 => {
                unavailable += 1;
                fastest_503 = fastest_503.min(took);
                assert_eq!(body["error"], "temporarily_unavailable", "{body}");
            }
            s => panic!("unexpected {s} {body}"),
        }
    }
    eprintln!(
        "20 writes behind a 3 s table lock, pool of 4, acquire_timeout 1s: {created} created after the lock, {unavailable} answered 503 (first after {} ms)",
        fastest_503.as_millis()
    );
    assert!(unavailable > 0, "no request waited past the pool timeout");
    assert!(created > 0, "the requests holding connections should complete once the lock goes");
    assert!(fastest_503 >= Duration::from_millis(900), "503 before the pool timeout: {fastest_503:?}");
    assert_eq!(scalar(&check, "SELECT count(*) FROM clients").await, clients_before + created);
    assert!(app.is_running());
    eventually(10, "/health ok", || async { app.health().await.0 == 200 }).await;
    assert_eq!(create_client(&ep).await.status(), 201);
}
