//! Real MCP clients' habits, each sent as the client sends it (from the
//! clients' public issue trackers; docs/compatibility.md has the table).

use serde_json::{Value, json};

use crate::helpers::*;

async fn register(app: &TestApp, body: Value) -> Value {
    let res = app.http.post(format!("{}/oauth/register", app.public)).json(&body).send().await.unwrap();
    assert_eq!(res.status(), 201);
    res.json().await.unwrap()
}

/// Claude Code, Claude Desktop and Cursor send no `resource` (claude-code
/// #10572): with one resource registered, it is the audience.
#[tokio::test]
async fn no_resource_sent_gets_the_only_resource_as_audience() {
    let app = spawn_app().await;
    let code = Browser::new(&app).code_for(&[("resource", "")]).await;
    let (s, t) = app.exchange(&code).await;
    assert_eq!(s, 200, "{t}");
    assert_eq!(jwt_part(t["access_token"].as_str().unwrap(), 1)["aud"], json!([RESOURCE]));
}

/// Clients omit `scope` (claude-code #4540): the resource's default scopes.
/// And they ask for `offline_access` whether advertised or not: a refresh
/// token, and `offline_access` never in the token's scope.
#[tokio::test]
async fn no_scope_gets_the_defaults_and_offline_access_gets_a_refresh_token() {
    let app = spawn_app().await;
    let code = Browser::new(&app).code_for(&[("scope", "")]).await;
    let (_, t) = app.exchange(&code).await;
    assert_eq!(t["scope"], "tools/read tools/write", "no default_scopes declared: all of the resource's");
    let code = Browser::new(&app).code_for(&[("scope", "offline_access")]).await;
    let (_, t) = app.exchange(&code).await;
    assert!(t["refresh_token"].is_string());
    assert!(!t["scope"].as_str().unwrap().contains("offline_access"));
}

/// A trailing slash or another spelling of the resource (claude-ai-mcp #234):
/// compared canonically, the registered URI in `aud`.
#[tokio::test]
async fn a_trailing_slash_on_the_resource_is_the_same_resource() {
    let app = spawn_app().await;
    for spelling in ["http://localhost:8080/mcp/", "HTTP://LOCALHOST:8080/mcp", "http://localhost:8081/mcp"] {
        let b = Browser::new(&app);
        let landing = b.authorize(&[("resource", spelling)]).await;
        if spelling.contains("8081") {
            assert_eq!(landing.query()["error"], "invalid_target", "a different port is another resource");
            continue;
        }
        let consent = b.login(&landing, "alice", "alice-password").await;
        // Consent is remembered per resource: asked once for all spellings.
        let code = match consent {
            Landing::Client(..) => consent.code(),
            page => b.decide(&page, "approve").await.code(),
        };
        let (_, t) = app.exchange(&code).await;
        assert_eq!(jwt_part(t["access_token"].as_str().unwrap(), 1)["aud"], json!([RESOURCE]), "{spelling}");
    }
}

/// claude.ai registers with `client_secret_post` (claude-ai-mcp #1043) and
/// then authenticates in the form body.
#[tokio::test]
async fn dcr_with_client_secret_post_then_the_code_flow() {
    let app = spawn_app().await;
    let reg = register(
        &app,
        json!({"client_name": "claude.ai", "redirect_uris": ["https://claude.ai/api/mcp/auth_callback"], "token_endpoint_auth_method": "client_secret_post", "grant_types": ["authorization_code", "refresh_token"], "response_types": ["code"]}),
    )
    .await;
    let (id, secret) = (reg["client_id"].as_str().unwrap(), reg["client_secret"].as_str().unwrap());
    let code = Browser::new(&app)
        .code_for(&[("client_id", id), ("redirect_uri", "https://claude.ai/api/mcp/auth_callback")])
        .await;
    let (s, t) =
        app.exchange_as(&code, id, "https://claude.ai/api/mcp/auth_callback", &[("client_secret", secret)]).await;
    assert_eq!(s, 200, "{t}");
}

/// VS Code registers one loopback port and uses another when it is busy
/// (vscode #278512): RFC 8252 §7.3 any-port loopback matching.
#[tokio::test]
async fn vs_code_loopback_port_fallback() {
    let app = spawn_app().await;
    let reg = register(
        &app,
        json!({"client_name": "Visual Studio Code", "redirect_uris": ["http://127.0.0.1:33418/", "https://vscode.dev/redirect"], "token_endpoint_auth_method": "none"}),
    )
    .await;
    let id = reg["client_id"].as_str().unwrap();
    let b = Browser::new(&app);
    let code = b.code_for(&[("client_id", id), ("redirect_uri", "http://127.0.0.1:51234/")]).await;
    let (s, t) = app.exchange_as(&code, id, "http://127.0.0.1:51234/", &[]).await;
    assert_eq!(s, 200, "{t}");
}

/// Cursor registers a private-use scheme beside https in one request
/// (plane-mcp-server #159) and is sent back to `cursor://…` with the code.
#[tokio::test]
async fn cursor_private_use_redirect_scheme() {
    let app = spawn_app().await;
    let cb = "cursor://anysphere.cursor-retrieval/oauth/user-authplane/callback";
    let reg = register(
        &app,
        json!({"client_name": "Cursor", "redirect_uris": [cb, "https://cursor.com/oauth/callback"], "token_endpoint_auth_method": "none", "grant_types": ["authorization_code", "refresh_token"]}),
    )
    .await;
    assert_eq!(reg["application_type"], "native");
    let id = reg["client_id"].as_str().unwrap();
    let b = Browser::new(&app);
    let login = b.authorize(&[("client_id", id), ("redirect_uri", cb)]).await;
    let consent = b.login(&login, "alice", "alice-password").await;
    let back = b.decide(&consent, "approve").await;
    let Landing::Client(uri, q) = &back else { panic!("{back:?}") };
    assert!(uri.starts_with("cursor://anysphere.cursor-retrieval/"), "{uri}");
    assert_eq!(q["iss"], "http://localhost:9000");
    assert!(q.contains_key("code"));
}

/// The Inspector's callbacks (http://localhost:6274/oauth/callback and
/// /debug) and a CLI's random `http://localhost:<port>/callback`.
#[tokio::test]
async fn inspector_and_cli_callbacks_register_and_match() {
    let app = spawn_app().await;
    let reg = register(
        &app,
        json!({"client_name": "MCP Inspector", "redirect_uris": ["http://localhost:6274/oauth/callback", "http://localhost:6274/oauth/callback/debug"], "token_endpoint_auth_method": "none"}),
    )
    .await;
    let id = reg["client_id"].as_str().unwrap();
    let b = Browser::new(&app);
    let code = b.code_for(&[("client_id", id), ("redirect_uri", "http://localhost:6274/oauth/callback/debug")]).await;
    assert!(!code.is_empty());
    let landing =
        Browser::new(&app).authorize(&[("client_id", id), ("redirect_uri", "http://localhost:6274/oauth/other")]).await;
    assert!(matches!(landing, Landing::Page(400, _)), "another path never matches: {landing:?}");
}
