use crate::helpers::*;

#[tokio::test]
async fn every_request_line_carries_request_trace_and_span_ids() {
    let app = spawn_app().await;
    let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let res = app
        .http
        .get(format!("{}/health", app.public))
        .header("x-request-id", "req-from-client-1")
        .header("traceparent", format!("00-{trace}-00f067aa0ba902b7-01"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.headers()["x-request-id"], "req-from-client-1");
    let tp = res.headers()["traceparent"].to_str().unwrap().to_owned();
    assert!(tp.starts_with(&format!("00-{trace}-")), "{tp}");
    let span_id = tp.split('-').nth(2).unwrap().to_owned();
    assert_ne!(span_id, "00f067aa0ba902b7", "our own span id");

    // A request without ids gets generated ones, echoed back.
    let res = app.get("/.well-known/jwks.json").await;
    let rid = res.headers()["x-request-id"].to_str().unwrap().to_owned();
    assert!(rid.starts_with("r_"));

    // A hostile request id is replaced, not logged.
    let res = app.http.get(format!("{}/health", app.public)).header("x-request-id", "a b\"c=d").send().await.unwrap();
    assert_ne!(res.headers()["x-request-id"], "a b\"c=d");

    // Not through admin_req: it already carries the right key, and a second
    // Authorization header would never be read.
    let refused =
        app.http.get(format!("{}/admin/clients", app.admin)).bearer_auth("wrong-key-xxxxxxxxxxx").send().await.unwrap();
    assert_eq!(refused.status(), 401, "a wrong admin key is refused");
    eventually(5, "the refusal is logged", || async { app.logs().iter().any(|l| l.contains("ErrAdminUnauthorized")) })
        .await;

    eventually(5, "access lines written", || async {
        app.logs().iter().filter(|l| l.contains("msg=request ")).count() >= 4
    })
    .await;
    let logs = app.logs();
    let line =
        logs.iter().find(|l| l.contains("request_id=req-from-client-1")).expect("the client's request id is logged");
    assert!(line.contains(&format!("trace_id={trace}")) && line.contains(&format!("span_id={span_id}")), "{line}");
    assert!(line.starts_with("time=") && line.contains(" level=INFO msg=request "), "{line}");
    assert!(logs.iter().any(|l| l.contains(&format!("request_id={rid}"))));
    for l in logs.iter().filter(|l| l.contains("msg=request ") || l.contains("ErrAdminUnauthorized")) {
        for f in ["request_id=", "trace_id=", "span_id="] {
            assert!(l.contains(f), "missing {f} in {l}");
        }
    }
    assert!(
        !logs.iter().any(|l| l.contains("wrong-key-xxxxxxxxxxx") || l.contains(ADMIN_KEY)),
        "no key in any log line"
    );
}

#[tokio::test]
async fn json_log_format_is_one_object_per_line() {
    let app = spawn_with(|dir, db| Spawn {
        config: Some(base_config(dir, db)),
        env: vec![("AUTHPLANE_LOG_FORMAT".into(), "json".into())],
    })
    .await;
    // The start-up line is JSON too; spawn_with found it by its msg text.
    let _ = app.get("/health").await;
    eventually(5, "json access line", || async { app.logs().iter().any(|l| l.contains("\"msg\":\"request\"")) }).await;
    for l in app.logs().iter().filter(|l| l.starts_with('{')) {
        let v: serde_json::Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"));
        assert!(v["time"].is_string() && v["level"].is_string() && v["msg"].is_string(), "{l}");
    }
    let line = app.logs().into_iter().find(|l| l.contains("\"msg\":\"request\"")).unwrap();
    let v: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(v["status"], 200);
    assert_eq!(v["trace_id"].as_str().unwrap().len(), 32);
}
