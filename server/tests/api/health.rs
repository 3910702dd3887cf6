use crate::helpers::*;

#[tokio::test]
async fn health_is_ok_with_the_checklist_shape() {
    let app = spawn_app().await;
    let res = app.get("/health").await;
    assert_eq!(res.status(), 200);
    let text = res.text().await.unwrap();
    // Step 1 of the debugging checklist, field order included.
    assert!(text.starts_with(r#"{"status":"ok","time":""#), "{text}");
    assert!(text.ends_with(r#"","db":"ok"}"#), "{text}");
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let time = v["time"].as_str().unwrap();
    assert_eq!(time.len(), 20, "RFC 3339 to the second, Z: {time}");
    assert!(time.ends_with('Z'));
}

#[tokio::test]
async fn database_loss_degrades_health_and_recovery_restores_it() {
    let app = spawn_app().await;
    assert_eq!(app.health().await.0, 200);

    let restore = lose_database(&app).await;
    eventually(10, "health degraded", || async {
        let (s, v) = app.health().await;
        s == 503 && v["status"] == "degraded" && v["db"] == "error"
    })
    .await;
    // Discovery does not depend on the database and keeps answering.
    assert_eq!(app.metadata().await["issuer"], "http://localhost:9000");

    restore.await;
    eventually(20, "health recovered", || async {
        let (s, v) = app.health().await;
        s == 200 && v["status"] == "ok" && v["db"] == "ok"
    })
    .await;
    eventually(5, "the outage and the recovery are logged", || async {
        let logs = app.logs();
        logs.iter().any(|l| l.contains("level=ERROR") && l.contains("error=ErrDatabaseUnavailable"))
            && logs.iter().any(|l| l.contains("database reachable again"))
    })
    .await;
}

/// Makes the database unusable for real and returns how to undo it:
/// SQLite — the file disappears (as when a volume is lost); Postgres — the
/// database refuses connections and the server's are terminated.
pub(crate) async fn lose_database(app: &TestApp) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + '_>> {
    if let Some(base) = postgres_base() {
        use sea_orm::ConnectionTrait;
        let name = app.db_url.rsplit('/').next().unwrap().to_owned();
        let admin = sea_orm::Database::connect(format!("{base}/postgres")).await.unwrap();
        admin.execute_unprepared(&format!("ALTER DATABASE \"{name}\" ALLOW_CONNECTIONS false")).await.unwrap();
        admin
            .execute_unprepared(&format!(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'"
            ))
            .await
            .unwrap();
        Box::pin(async move {
            admin.execute_unprepared(&format!("ALTER DATABASE \"{name}\" ALLOW_CONNECTIONS true")).await.unwrap();
        })
    } else {
        let db = app.dir.path().join("authplane.db");
        let away = app.dir.path().join("authplane.db.lost");
        std::fs::rename(&db, &away).unwrap();
        Box::pin(async move {
            std::fs::rename(&away, &db).unwrap();
        })
    }
}

#[tokio::test]
async fn sigterm_shuts_down_gracefully() {
    let mut app = spawn_app().await;
    assert_eq!(app.health().await.0, 200);
    let status = app.terminate();
    assert!(status.success(), "exit status {status}");
    let logs = app.logs();
    assert!(logs.iter().any(|l| l.contains("msg=\"shutting down: draining in-flight requests\"")));
    assert!(logs.iter().any(|l| l.contains("msg=\"authserver stopped\"")));
}
