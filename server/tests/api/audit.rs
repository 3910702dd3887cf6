use serde_json::json;

use crate::helpers::*;

async fn audit(app: &TestApp, query: &str) -> (u16, serde_json::Value) {
    app.admin_json(reqwest::Method::GET, &format!("/admin/audit{query}"), None).await
}

#[tokio::test]
async fn a_users_flow_reads_back_as_an_event_sequence() {
    let app = spawn_app().await;
    let b = Browser::new(&app);
    let code = b.code_for(&[]).await;
    let (_, t) = app.exchange(&code).await;
    let rt = t["refresh_token"].as_str().unwrap();
    let (_, t2) =
        app.token(&[("grant_type", "refresh_token"), ("refresh_token", rt), ("client_id", "test-client")]).await;
    let res = app
        .http
        .post(format!("{}/oauth/revoke", app.public))
        .form(&[("token", t2["refresh_token"].as_str().unwrap()), ("client_id", "test-client")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);

    // The checklist's step-10 command, as printed.
    let (s, v) = audit(&app, "?since=2026-07-01T00:00:00Z&user_id=user-42&limit=20").await;
    assert_eq!(s, 200, "{v}");
    let types: Vec<&str> = v["events"].as_array().unwrap().iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(types, vec!["consent_granted", "token_issued", "token_refreshed", "token_revoked"]);
    let first = &v["events"][0];
    assert_eq!(first["client_id"], "test-client");
    assert_eq!(first["resource"], RESOURCE);
    assert_eq!(first["trace_id"].as_str().unwrap().len(), 32);
    assert!(first["time"].as_str().unwrap().ends_with('Z'));
    assert_eq!(v["next_cursor"], serde_json::Value::Null);

    // Keyset pages of one.
    let (_, p1) = audit(&app, "?user_id=user-42&limit=1").await;
    let cursor = p1["next_cursor"].as_str().unwrap().to_owned();
    let (_, p2) = audit(&app, &format!("?user_id=user-42&limit=1&cursor={cursor}")).await;
    assert_eq!(p2["events"][0]["type"], "token_issued");
    let (_, only) = audit(&app, "?type=token_refreshed").await;
    assert_eq!(only["events"].as_array().unwrap().len(), 1);
    let (_, none) = audit(&app, "?until=2026-07-01T00:00:00Z").await;
    assert_eq!(none["events"], json!([]));

    for bad in ["?since=yesterday", "?limit=0", "?limit=5000", "?cursor=abc", "?surprise=1"] {
        let (s, v) = audit(&app, bad).await;
        assert_eq!((s, v["error"].as_str()), (400, Some("invalid_request")), "{bad}: {v}");
    }
    let res = app.http.get(format!("{}/admin/audit", app.admin)).send().await.unwrap();
    assert_eq!(res.status(), 401);
}

#[tokio::test]
async fn a_bad_pkce_failure_has_one_trace_id_in_response_log_metric_and_audit() {
    let app = spawn_app().await;
    let code = Browser::new(&app).code_for(&[]).await;
    let trace = "0af7651916cd43dd8448eb211c80319c";
    let res = app
        .http
        .post(format!("{}/oauth/token", app.public))
        .header("traceparent", format!("00-{trace}-b7ad6b7169203331-01"))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
            ("code_verifier", &"w".repeat(43)),
            ("client_id", "test-client"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    assert!(res.headers()["traceparent"].to_str().unwrap().starts_with(&format!("00-{trace}-")));
    assert_eq!(app.metric("authserver_auth_denied_total{reason=\"invalid_pkce\"}").await, 1.0);
    eventually(5, "the step-8 line with the trace id", || async {
        app.logs().iter().any(|l| {
            l.contains("msg=\"token issuance failed\" error=ErrInvalidPKCE code=invalid_grant")
                && l.contains(&format!("trace_id={trace}"))
        })
    })
    .await;
    let (_, v) = audit(&app, "?type=token_failed").await;
    let e = &v["events"][0];
    assert_eq!(e["trace_id"], trace);
    assert_eq!(e["user_id"], "user-42");
    assert_eq!(e["outcome"], "failure");
    assert_eq!(e["detail"]["error"], "ErrInvalidPKCE");
}
