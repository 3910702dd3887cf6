use reqwest::Method;
use serde_json::json;

use crate::helpers::*;

#[tokio::test]
async fn resources_crud_changes_discovery() {
    let app = spawn_app().await;
    let (s, created) = app
        .admin_json(Method::POST, "/admin/resources", Some(json!({"resource": "https://Files.Example.com/mcp/", "scopes": ["files/read", "files/write"], "default_scopes": ["files/read"]})))
        .await;
    assert_eq!(s, 201, "{created}");
    assert_eq!(created["resource"], "https://files.example.com/mcp", "stored canonical");
    assert_eq!(created["source"], "admin");
    assert_eq!(
        app.metadata().await["scopes_supported"],
        json!(["files/read", "files/write", "tools/read", "tools/write"])
    );

    let (s, list) = app.admin_json(Method::GET, "/admin/resources", None).await;
    assert_eq!(s, 200);
    assert_eq!(list.as_array().unwrap().len(), 2);

    let (s, v) = app
        .admin_json(
            Method::POST,
            "/admin/resources",
            Some(json!({"resource": "https://files.example.com/mcp", "scopes": ["x"]})),
        )
        .await;
    assert_eq!((s, v["error"].as_str()), (409, Some("conflict")));

    let (s, _) = app
        .admin_json(Method::DELETE, "/admin/resources/one?resource=https%3A%2F%2Ffiles.example.com%2Fmcp", None)
        .await;
    assert_eq!(s, 204);
    assert_eq!(app.metadata().await["scopes_supported"], json!(["tools/read", "tools/write"]));

    // A config-owned resource is changed in the file, not through the API.
    let (s, v) =
        app.admin_json(Method::DELETE, "/admin/resources/one?resource=http%3A%2F%2Flocalhost%3A8080%2Fmcp", None).await;
    assert_eq!(s, 409, "{v}");
    assert!(v["error_description"].as_str().unwrap().contains("config file"));
}

#[tokio::test]
async fn confidential_clients_get_a_secret_once_and_only_its_digest_is_kept() {
    let app = spawn_app().await;
    let (s, c) = app
        .admin_json(
            Method::POST,
            "/admin/clients",
            Some(json!({"client_name": "Batch job", "token_endpoint_auth_method": "client_secret_basic", "grant_types": ["client_credentials"]})),
        )
        .await;
    assert_eq!(s, 201, "{c}");
    let id = c["client_id"].as_str().unwrap().to_owned();
    let secret = c["client_secret"].as_str().unwrap().to_owned();
    assert!(secret.len() >= 43, "256-bit secret");
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, secret.as_bytes());
    let hexd: String = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(c["client_secret_sha256"], hexd);

    let (s, got) = app.admin_json(Method::GET, &format!("/admin/clients/{id}"), None).await;
    assert_eq!(s, 200);
    assert!(got.get("client_secret").is_none(), "the secret is never returned again");

    // Public client with a loopback redirect; then bad redirect URIs.
    let (s, _) = app
        .admin_json(
            Method::POST,
            "/admin/clients",
            Some(json!({"client_id": "cli-tool", "redirect_uris": ["http://127.0.0.1:3000/cb"]})),
        )
        .await;
    assert_eq!(s, 201);
    for (body, needle) in [
        (json!({"redirect_uris": ["javascript:alert(1)"]}), "scheme"),
        (json!({"redirect_uris": ["https://app.example.com/cb#x"]}), "fragment"),
        (json!({"redirect_uris": ["https://*.example.com/cb"]}), "wildcard"),
        (json!({"grant_types": ["client_credentials"]}), "confidential"),
        (
            json!({"redirect_uris": ["https://a.example/cb"], "allowed_resources": ["https://unknown.example/mcp"]}),
            "not a declared resource",
        ),
        (json!({"redirect_uris": ["https://a.example/cb"], "grant_types": ["password"]}), "unknown variant"),
        (json!({"redirect_uris": ["https://a.example/cb"], "surprise": 1}), "unknown field"),
    ] {
        let (s, v) = app.admin_json(Method::POST, "/admin/clients", Some(body.clone())).await;
        assert_eq!(s, 400, "{body} -> {v}");
        assert_eq!(v["error"], "invalid_request");
        assert!(v["error_description"].as_str().unwrap().contains(needle), "{body} -> {v}");
    }
    let (_, list) = app.admin_json(Method::GET, "/admin/clients", None).await;
    assert_eq!(list["clients"].as_array().unwrap().len(), 3, "nothing half-written by the refused requests: {list}");

    let (s, _) = app.admin_json(Method::DELETE, &format!("/admin/clients/{id}"), None).await;
    assert_eq!(s, 204);
    let (s, _) = app.admin_json(Method::GET, &format!("/admin/clients/{id}"), None).await;
    assert_eq!(s, 404);
    assert!(!app.logs().iter().any(|l| l.contains(&secret)), "the secret never reaches a log line");
}

#[tokio::test]
async fn users_are_created_with_argon2id_and_never_returned_with_hashes() {
    let app = spawn_app().await;
    let (s, u) = app
        .admin_json(Method::POST, "/admin/users", Some(json!({"username": "bob", "password": "correct horse battery"})))
        .await;
    assert_eq!(s, 201, "{u}");
    assert!(u["id"].as_str().unwrap().starts_with("u_"));
    assert!(u.get("password_hash").is_none() && u.get("password").is_none());
    let (_, list) = app.admin_json(Method::GET, "/admin/users", None).await;
    let names: Vec<&str> = list.as_array().unwrap().iter().map(|u| u["username"].as_str().unwrap()).collect();
    assert_eq!(names, vec!["alice", "bob"]);
    let (s, _) = app
        .admin_json(Method::POST, "/admin/users", Some(json!({"username": "bob", "password": "another password"})))
        .await;
    assert_eq!(s, 409);
    let (s, v) =
        app.admin_json(Method::POST, "/admin/users", Some(json!({"username": "carol", "password": "short"}))).await;
    assert_eq!(s, 400, "{v}");
    let (s, _) = app.admin_json(Method::DELETE, "/admin/users/bob", None).await;
    assert_eq!(s, 204);
    let (s, _) = app.admin_json(Method::DELETE, "/admin/users/alice", None).await;
    assert_eq!(s, 409, "config-owned");
    assert!(!app.logs().iter().any(|l| l.contains("correct horse battery")));
}

#[tokio::test]
async fn admin_api_refuses_wrong_keys_bad_bodies_and_is_off_without_a_key() {
    let app = spawn_app().await;
    for auth in [None, Some("Bearer nope"), Some("Basic dGVzdDp0ZXN0"), Some(&*format!("Bearer {ADMIN_KEY}x"))] {
        let mut r = app.http.get(format!("{}/admin/resources", app.admin));
        if let Some(a) = auth {
            r = r.header("authorization", a);
        }
        let res = r.send().await.unwrap();
        assert_eq!(res.status(), 401, "{auth:?}");
        assert!(res.headers()["www-authenticate"].to_str().unwrap().starts_with("Bearer"));
        let v: serde_json::Value = res.json().await.unwrap();
        assert_eq!(v["error"], "unauthorized");
    }
    // Oversized, malformed and mistyped bodies.
    let big = json!({"resource": "https://x.example/mcp", "scopes": ["a"], "name": "x".repeat(70 * 1024)});
    let (s, v) = app.admin_json(Method::POST, "/admin/resources", Some(big)).await;
    assert_eq!(s, 413, "{v}");
    let res = app
        .admin_req(Method::POST, "/admin/resources")
        .header("content-type", "application/json")
        .body("{\"resource\": ")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    let v: serde_json::Value = res.json().await.unwrap();
    assert_eq!(v["error"], "invalid_request");
    let res = app
        .admin_req(Method::POST, "/admin/resources")
        .header("content-type", "text/plain")
        .body("hi")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 415);
    let (s, _) = app
        .admin_json(
            Method::POST,
            "/admin/resources",
            Some(json!({"resource": "https://x.example/mcp#f", "scopes": ["a"]})),
        )
        .await;
    assert_eq!(s, 400);
    let (_, list) = app.admin_json(Method::GET, "/admin/resources", None).await;
    assert_eq!(list.as_array().unwrap().len(), 1, "nothing was written");

    // Metrics and liveness need no key.
    let res = app.http.get(format!("{}/metrics", app.admin)).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let text = res.text().await.unwrap();
    assert!(text.contains("authplane_http_requests_total{listener=\"admin\",method=\"POST\",route=\"/admin/resources\",status=\"413\"}"), "{text}");
    // The checklist's step-7 series exist from the first scrape.
    for series in [
        "authserver_tokens_issued_total{grant_type=\"client_credentials\"} 0",
        "authserver_auth_denied_total{reason=\"invalid_pkce\"} 0",
        "authplane_dpop_proofs_validated_total 0",
        "authplane_dpop_proofs_rejected_total{reason=\"replay\"} 0",
        "authplane_upstream_token_refresh_total{outcome=\"failed\"} 0",
    ] {
        assert!(text.contains(series), "missing {series}");
    }
    assert!(text.contains("authplane_build_info{"));
    assert!(text.contains("process_resident_memory_bytes"));
    let (s, _) = (app.http.get(format!("{}/healthz", app.admin)).send().await.unwrap().status(), ());
    assert_eq!(s, 200);

    // Without a key the admin API is off, and says so at start.
    let off = spawn_with(|dir, db| Spawn {
        config: Some(base_config(dir, db).replace(&format!("  api_key: {ADMIN_KEY}\n"), "")),
        env: vec![],
    })
    .await;
    let res = off.http.get(format!("{}/admin/resources", off.admin)).bearer_auth(ADMIN_KEY).send().await.unwrap();
    assert_eq!(res.status(), 503);
    assert!(off.logs().iter().any(|l| l.contains("level=WARN") && l.contains("admin API is off")));
}

#[tokio::test]
async fn admin_writes_leave_an_audit_row_in_the_same_transaction() {
    let app = spawn_app().await;
    let res = app
        .admin_req(Method::POST, "/admin/resources")
        .header("traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
        .json(&json!({"resource": "https://audit.example/mcp", "scopes": ["a"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let rid = res.headers()["x-request-id"].to_str().unwrap().to_owned();
    use sea_orm::{ConnectionTrait, Statement};
    let db = sea_orm::Database::connect(&app.db_url).await.unwrap();
    let row = db
        .query_one_raw(Statement::from_string(
            db.get_database_backend(),
            "SELECT event_type, resource, request_id, trace_id FROM audit_events ORDER BY id DESC LIMIT 1",
        ))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(row.try_get::<String>("", "event_type").unwrap(), "resource_created");
    assert_eq!(row.try_get::<String>("", "resource").unwrap(), "https://audit.example/mcp");
    assert_eq!(row.try_get::<String>("", "request_id").unwrap(), rid);
    assert_eq!(row.try_get::<String>("", "trace_id").unwrap(), "0af7651916cd43dd8448eb211c80319c");
}
