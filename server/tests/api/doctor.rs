//! `authserver doctor` on planted faults: each must be named by the right
//! checklist step with the page's fix, against real servers.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::helpers::*;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// An AS whose issuer is the URL it is reached at, protecting `resource`.
async fn app_with_own_issuer(resource: &str, extra: &str) -> (TestApp, String) {
    let port = free_port();
    let issuer = format!("http://127.0.0.1:{port}");
    let i = issuer.clone();
    let resource = resource.to_owned();
    let app = spawn_with(move |dir, db| Spawn {
        config: Some(format!(
            "{}{extra}",
            base_config(dir, db)
                .replace("issuer: http://localhost:9000", &format!("issuer: {i}"))
                .replacen("listen: 127.0.0.1:0", &format!("listen: 127.0.0.1:{port}"), 1)
                .replace("resource: http://localhost:8080/mcp", &format!("resource: {resource}"))
        )),
        env: vec![],
    })
    .await;
    (app, issuer)
}

fn mcp_server_bin() -> PathBuf {
    if let Ok(p) = std::env::var("MCP_SERVER_BIN") {
        return p.into();
    }
    let target = std::env::var("CARGO_TARGET_DIR")
        .map_or_else(|_| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"), PathBuf::from);
    let bin = target.join("debug/mcp-server");
    assert!(bin.exists(), "{} is missing: run scripts/build-test-bins.sh (make test does)", bin.display());
    bin
}

/// The example MCP server (authplane-sdk) on `port`, trusting `issuer`.
struct McpServer(Child);

impl McpServer {
    async fn start(port: u16, resource: &str, issuer: &str, jwks: &str) -> McpServer {
        let child = Command::new(mcp_server_bin())
            .args([
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--resource",
                resource,
                "--issuer",
                issuer,
                "--jwks-uri",
                jwks,
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let http = reqwest::Client::new();
        eventually(20, "the MCP server answers", || {
            let http = http.clone();
            async move {
                http.get(format!("http://127.0.0.1:{port}/.well-known/oauth-protected-resource/mcp"))
                    .send()
                    .await
                    .is_ok()
            }
        })
        .await;
        McpServer(child)
    }
}

impl Drop for McpServer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs the doctor; returns (exit ok, JSON report).
fn doctor(app: &TestApp, args: &[&str]) -> (bool, Value) {
    let mut all = vec!["doctor", "-o", "json"];
    all.extend_from_slice(args);
    let out = app.cli(&all, &[("AUTHPLANE_ADMIN_API_KEY".into(), ADMIN_KEY.into())]);
    let report: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!("{e}: {}\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
    });
    assert_eq!(out.status.success(), report["ok"] == true, "exit status follows the verdict");
    (out.status.success(), report)
}

/// The failing step `n` whose fix mentions `needle`.
fn assert_names(report: &Value, n: u64, needle: &str) {
    let steps = report["steps"].as_array().unwrap();
    let hit = steps
        .iter()
        .any(|s| s["step"] == n && s["verdict"] == "fail" && s["fix"].as_str().is_some_and(|f| f.contains(needle)));
    assert!(hit, "step {n} should fail with a fix mentioning {needle:?}:\n{report:#}");
    let first_fail = steps.iter().find(|s| s["verdict"] == "fail").unwrap();
    assert!(first_fail["step"].as_u64().unwrap() <= n, "an earlier step is named first: {report:#}");
}

fn unsigned_token(kid: &str, claims: Value) -> String {
    use base64::Engine;
    let b64 = |v: &Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
    format!("{}.{}.c2ln", b64(&serde_json::json!({"alg": "ES256", "typ": "at+jwt", "kid": kid})), b64(&claims))
}

#[tokio::test]
async fn a_healthy_deployment_passes_every_step_and_the_token_is_never_printed() {
    let mport = free_port();
    let resource = format!("http://127.0.0.1:{mport}/mcp");
    let (app, issuer) = app_with_own_issuer(&resource, "").await;
    let _mcp = McpServer::start(mport, &resource, &issuer, &format!("{issuer}/.well-known/jwks.json")).await;
    let (s, c) = app
        .admin_json(
            reqwest::Method::POST,
            "/admin/clients",
            Some(serde_json::json!({"token_endpoint_auth_method": "client_secret_basic", "grant_types": ["client_credentials"], "allowed_resources": [resource]})),
        )
        .await;
    assert_eq!(s, 201, "{c}");
    let me = (c["client_id"].as_str().unwrap().to_owned(), c["client_secret"].as_str().unwrap().to_owned());
    let (s, t) =
        app.token(&[("grant_type", "client_credentials"), ("client_id", &me.0), ("client_secret", &me.1)]).await;
    assert_eq!(s, 200, "{t}");
    let token = t["access_token"].as_str().unwrap();
    let (ok, report) =
        doctor(&app, &["--issuer", &issuer, "--admin-url", &app.admin, "--mcp-url", &resource, "--token", token]);
    assert!(ok, "{report:#}");
    for n in [1, 2, 3, 4, 5, 6, 7, 10] {
        assert!(
            report["steps"].as_array().unwrap().iter().any(|s| s["step"] == n && s["verdict"] == "pass"),
            "step {n} passes: {report:#}"
        );
    }
    assert!(!report.to_string().contains(token), "the token is never printed in full");
    assert!(!report.to_string().contains(&me.1), "nor a secret");
}

#[tokio::test]
async fn planted_faults_are_named_by_the_right_step() {
    // A wrong AUTHPLANE_SERVER_ISSUER: the test app's issuer is
    // http://localhost:9000 while it is reached elsewhere.
    let app = spawn_app().await;
    let (ok, r) = doctor(&app, &["--issuer", &app.public]);
    assert!(!ok);
    assert_names(&r, 2, "AUTHPLANE_SERVER_ISSUER");
    // Discovery asked on the admin port.
    let (_, r) = doctor(&app, &["--issuer", &app.admin]);
    assert_names(&r, 1, "not 9001");

    // No resources registered.
    let port = free_port();
    let bare = spawn_with(move |dir, db| Spawn {
        config: Some({
            let c = base_config(dir, db)
                .replace("issuer: http://localhost:9000", &format!("issuer: http://127.0.0.1:{port}"))
                .replacen("listen: 127.0.0.1:0", &format!("listen: 127.0.0.1:{port}"), 1);
            let start = c.find("resources:").unwrap();
            let end = c.find("clients:").unwrap();
            format!("{}{}", &c[..start], &c[end..])
        }),
        env: vec![],
    })
    .await;
    let (_, r) = doctor(&bare, &["--issuer", &format!("http://127.0.0.1:{port}")]);
    assert_names(&r, 3, "no resources registered");

    let (app, issuer) = app_with_own_issuer(RESOURCE, "").await;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    // A token signed by a key the JWKS does not have (retired, or another server).
    let foreign = unsigned_token(
        "retired-kid",
        serde_json::json!({"iss": issuer, "aud": [RESOURCE], "sub": "u", "scope": "tools/read", "iat": now, "exp": now + 600}),
    );
    let (_, r) = doctor(&app, &["--issuer", &issuer, "--resource", RESOURCE, "--token", &foreign]);
    assert_names(&r, 4, "retired key");
    // The client sent no `resource`: the token's aud is another resource.
    let me = app.confidential_client(&["client_credentials"]).await;
    let (_, t) =
        app.token(&[("grant_type", "client_credentials"), ("client_id", &me.0), ("client_secret", &me.1)]).await;
    let token = t["access_token"].as_str().unwrap();
    let (_, r) = doctor(&app, &["--issuer", &issuer, "--resource", "http://other.example/mcp", "--token", token]);
    assert_names(&r, 5, "AUTHPLANE_OAUTH_REQUIRE_SCOPE only affects scope defaulting");
    // Expired, and issued by a clock that runs ahead.
    let kid = app.current_kid().await;
    let expired = unsigned_token(
        &kid,
        serde_json::json!({"iss": issuer, "aud": [RESOURCE], "sub": "u", "iat": now - 7200, "exp": now - 3600}),
    );
    let (_, r) = doctor(&app, &["--issuer", &issuer, "--resource", RESOURCE, "--token", &expired]);
    assert_names(&r, 5, "get a new token");
    let ahead = unsigned_token(
        &kid,
        serde_json::json!({"iss": issuer, "aud": [RESOURCE], "sub": "u", "iat": now + 600, "exp": now + 4200}),
    );
    let (_, r) = doctor(&app, &["--issuer", &issuer, "--resource", RESOURCE, "--token", &ahead]);
    assert_names(&r, 5, "clock skew");

    // An MCP URL where no SDK runs (here: the AS itself): no PRM, no challenge.
    let (_, r) = doctor(&app, &["--issuer", &issuer, "--mcp-url", &format!("{issuer}/mcp")]);
    assert_names(&r, 2, "didn't mount the PRM handler");
    assert_names(&r, 6, "SDK isn't wired");

    // The SDK configured with another issuer: PRM authorization_servers elsewhere.
    let mport = free_port();
    let resource = format!("http://127.0.0.1:{mport}/mcp");
    let _mcp =
        McpServer::start(mport, &resource, "http://elsewhere.example", &format!("{issuer}/.well-known/jwks.json"))
            .await;
    let (_, r) = doctor(&app, &["--issuer", &issuer, "--mcp-url", &resource]);
    assert_names(&r, 2, "wrong issuer passed to your SDK");

    // The database gone: step 1, and step 8 says what to grep.
    let _restore = crate::health::lose_database(&app).await;
    let started = std::time::Instant::now();
    let mut named = false;
    while started.elapsed() < Duration::from_secs(15) && !named {
        let (_, r) = doctor(&app, &["--issuer", &issuer]);
        named = r["steps"][0]["verdict"] == "fail"
            && r["steps"][0]["fix"].as_str().is_some_and(|f| f.contains("DB unreachable"));
        if named {
            let step8 = r["steps"].as_array().unwrap().iter().find(|s| s["step"] == 8).unwrap();
            assert!(
                step8["evidence"]
                    .as_str()
                    .unwrap()
                    .contains("kubectl logs -l app=authplane --tail=1000 | grep trace_id="),
                "{step8}"
            );
        } else {
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
    assert!(named, "a lost database is named by step 1");
}
