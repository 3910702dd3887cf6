//! What a stranger on the network can and cannot do (docs/security.md): one
//! test per finding of the black-box probe, each failing before its fix.

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::*;

async fn register(app: &TestApp, body: Value) -> (u16, Value) {
    let res = app.http.post(format!("{}/oauth/register", app.public)).json(&body).send().await.unwrap();
    let s = res.status().as_u16();
    (s, res.json().await.unwrap_or(Value::Null))
}

async fn client_count(app: &TestApp) -> usize {
    let (_, v) = app.admin_json(Method::GET, "/admin/clients?limit=1000", None).await;
    v["clients"].as_array().unwrap().len()
}

/// Finding 1 (HIGH): open registration gave confidential clients that got
/// machine tokens for every resource.
#[tokio::test]
async fn open_registration_never_yields_machine_tokens() {
    let app = spawn_app().await;
    let before = client_count(&app).await;
    for body in [
        json!({"grant_types": ["client_credentials"]}),
        json!({"grant_types": ["client_credentials"], "token_endpoint_auth_method": "client_secret_post"}),
        json!({"grant_types": ["authorization_code", "client_credentials"], "redirect_uris": ["https://a.example/cb"]}),
    ] {
        let (s, v) = register(&app, body.clone()).await;
        assert_eq!((s, v["error"].as_str()), (400, Some("invalid_client_metadata")), "{body} -> {v}");
        assert!(v["error_description"].as_str().unwrap().contains("administrator"), "says why: {v}");
    }
    assert_eq!(client_count(&app).await, before, "nothing registered");

    // A client an administrator made, with no allowed_resources, gets no
    // implicit access: machine tokens need the resource listed.
    let (s, v) = app
        .admin_json(
            Method::POST,
            "/admin/clients",
            Some(json!({"token_endpoint_auth_method": "client_secret_basic", "grant_types": ["client_credentials"]})),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    let (id, secret) = (v["client_id"].as_str().unwrap(), v["client_secret"].as_str().unwrap());
    let (s, e) = app
        .token(&[
            ("grant_type", "client_credentials"),
            ("client_id", id),
            ("client_secret", secret),
            ("resource", RESOURCE),
        ])
        .await;
    assert_eq!((s, e["error"].as_str()), (400, Some("unauthorized_client")), "{e}");
    // With the resource listed, it works.
    let me = app.confidential_client(&["client_credentials"]).await;
    let (s, t) =
        app.token(&[("grant_type", "client_credentials"), ("client_id", &me.0), ("client_secret", &me.1)]).await;
    assert_eq!(s, 200, "{t}");
}

/// `registration: token`: the initial access token may allow machine clients.
#[tokio::test]
async fn an_initial_access_token_can_allow_machine_clients() {
    let iat = "initial-access-token-0123456789";
    let app = spawn_with_extra(&format!(
        "oauth:\n  registration: token\n  initial_access_token: {iat}\n  initial_access_token_grant_types: [client_credentials]\n"
    ))
    .await;
    let body = json!({"grant_types": ["client_credentials"], "allowed_resources": ["http://LOCALHOST:8080/mcp"]});
    let res = app.http.post(format!("{}/oauth/register", app.public)).json(&body).send().await.unwrap();
    assert_eq!(res.status(), 401, "no initial access token");
    let res =
        app.http.post(format!("{}/oauth/register", app.public)).bearer_auth(iat).json(&body).send().await.unwrap();
    assert_eq!(res.status(), 201);
    let v: Value = res.json().await.unwrap();
    assert_eq!(v["allowed_resources"], json!([RESOURCE]), "canonicalised: {v}");
    let (s, t) = app
        .token(&[
            ("grant_type", "client_credentials"),
            ("client_id", v["client_id"].as_str().unwrap()),
            ("client_secret", v["client_secret"].as_str().unwrap()),
        ])
        .await;
    assert_eq!(s, 200, "{t}");
    // A resource that is not registered is refused at registration.
    let body = json!({"grant_types": ["client_credentials"], "allowed_resources": ["https://other.example/mcp"]});
    let res =
        app.http.post(format!("{}/oauth/register", app.public)).bearer_auth(iat).json(&body).send().await.unwrap();
    assert_eq!(res.status(), 400);
}

/// Finding 8: an unknown scope never widens the grant into the defaults.
#[tokio::test]
async fn an_unknown_scope_never_widens_what_is_granted() {
    let app = spawn_app().await;
    let me = app.confidential_client(&["client_credentials"]).await;
    let cc = |scope: &'static str| {
        let me = me.clone();
        let app = &app;
        async move {
            let mut form = vec![
                ("grant_type", "client_credentials"),
                ("client_id", me.0.as_str()),
                ("client_secret", me.1.as_str()),
            ];
            if !scope.is_empty() {
                form.push(("scope", scope));
            }
            app.token(&form).await
        }
    };
    let (s, e) = cc("admin:everything").await;
    assert_eq!((s, e["error"].as_str()), (400, Some("invalid_scope")), "{e}");
    let (s, t) = cc("tools/read admin:everything").await;
    assert_eq!((s, t["scope"].as_str()), (200, Some("tools/read")), "asked and known only: {t}");
    let (s, t) = cc("").await;
    assert_eq!(s, 200, "nothing asked: the defaults ({t})");
}

/// Findings 2 and 3: password guessing is throttled per (account, address)
/// with a 429, Retry-After, a readable page, a metric and an audit row; the
/// right password from another address still works.
#[tokio::test]
async fn repeated_wrong_passwords_are_throttled_without_locking_the_user_out() {
    let app = spawn_with(|dir, db| Spawn {
        config: Some(
            base_config(dir, db)
                .replace("  shutdown_timeout: 5s\n", "  shutdown_timeout: 5s\n  trusted_proxies: [127.0.0.1]\n"),
        ),
        env: vec![],
    })
    .await;
    let attempt = |from: &'static str, password: &'static str| sign_in_from(&app, from, "alice", password);
    for i in 0..5 {
        let (s, retry, _) = attempt("198.51.100.7", "wrong").await;
        assert_eq!((s, retry), (401, None), "attempt {i} is free");
    }
    let (s, _, _) = attempt("198.51.100.7", "wrong").await;
    assert_eq!(s, 401, "the 6th failure is answered, and starts the delay");
    let (s, retry, page) = attempt("198.51.100.7", "alice-password").await;
    assert_eq!(s, 429, "throttled, even with the right password");
    assert!(retry.is_some_and(|r| (1..=2).contains(&r)), "Retry-After {retry:?}");
    assert!(page.contains("Too many failed sign-in attempts"), "a page a person understands");
    // The real user, from elsewhere, is not locked out.
    let (s, _, _) = attempt("203.0.113.20", "alice-password").await;
    assert_eq!(s, 303, "right password from another address signs in");
    assert_eq!(app.metric("authserver_auth_denied_total{reason=\"login_throttled\"}").await, 1.0);
    use sea_orm::ConnectionTrait;
    let db = sea_orm::Database::connect(&app.db_url).await.unwrap();
    let row = db
        .query_one_raw(sea_orm::Statement::from_string(
            db.get_database_backend(),
            "SELECT detail FROM audit_events WHERE event_type = 'login_throttled'",
        ))
        .await
        .unwrap()
        .expect("an audit row for the throttled attempt");
    let detail: String = row.try_get("", "detail").unwrap();
    assert!(detail.contains("alice") && detail.contains("retry_after_s"), "{detail}");
    // Without trusted_proxies the header is not believed: see the next test.
}

/// A fresh browser's sign-in claiming to come from `from` (X-Forwarded-For):
/// (status, Retry-After, page).
async fn sign_in_from(app: &TestApp, from: &str, username: &str, password: &str) -> (u16, Option<u64>, String) {
    let b = Browser::new(app);
    let login = b.authorize(&[]).await;
    let Landing::Page(_, html) = &login else { panic!("{login:?}") };
    let res = b
        .http
        .post(format!("{}/ui/login", b.base))
        .header("x-forwarded-for", from)
        .form(&[
            ("request", hidden(html, "request").as_str()),
            ("csrf", hidden(html, "csrf").as_str()),
            ("username", username),
            ("password", password),
        ])
        .send()
        .await
        .unwrap();
    let status = res.status().as_u16();
    let retry = res.headers().get("retry-after").map(|v| v.to_str().unwrap().parse::<u64>().unwrap());
    (status, retry, res.text().await.unwrap())
}

/// X-Forwarded-For is ignored unless the peer is a trusted proxy, so a
/// client cannot dodge the throttle by inventing addresses.
#[tokio::test]
async fn forwarded_addresses_from_untrusted_peers_are_ignored() {
    let app = spawn_app().await;
    let mut statuses = Vec::new();
    for i in 0..7 {
        statuses.push(sign_in_from(&app, &format!("192.0.2.{i}"), "alice", "wrong").await.0);
    }
    assert_eq!(statuses[..6], [401; 6]);
    assert_eq!(statuses[6], 429, "one address (the peer) whatever the header says: {statuses:?}");
}

/// Finding 3 at the token endpoint: wrong client secrets are throttled too.
#[tokio::test]
async fn repeated_wrong_client_secrets_are_throttled() {
    let app = spawn_app().await;
    let me = app.confidential_client(&["client_credentials"]).await;
    let try_secret = |secret: &str| {
        let form = vec![
            ("grant_type", "client_credentials".to_owned()),
            ("client_id", me.0.clone()),
            ("client_secret", secret.to_owned()),
        ];
        let app = &app;
        async move {
            let res = app.http.post(format!("{}/oauth/token", app.public)).form(&form).send().await.unwrap();
            let s = res.status().as_u16();
            let retry = res.headers().get("retry-after").map(|v| v.to_str().unwrap().to_owned());
            (s, retry, res.json::<Value>().await.unwrap())
        }
    };
    for _ in 0..6 {
        let (s, _, v) = try_secret("wrong-secret").await;
        assert_eq!((s, v["error"].as_str()), (401, Some("invalid_client")));
    }
    let (s, retry, v) = try_secret(&me.1).await;
    assert_eq!((s, v["error"].as_str()), (429, Some("temporarily_unavailable")), "{v}");
    assert!(retry.is_some(), "Retry-After");
    assert_eq!(app.metric("authserver_auth_denied_total{reason=\"client_auth_throttled\"}").await, 1.0);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (s, _, v) = try_secret(&me.1).await;
    assert_eq!(s, 200, "after the delay the right secret works: {v}");
}

/// Finding 2: password hashing is bounded; past the queue timeout a sign-in
/// gets 503 with Retry-After instead of another 19 MiB hashing thread.
#[tokio::test]
async fn password_hashing_is_bounded_and_the_queue_times_out() {
    let app = spawn_with_extra(
        "limits:\n  password_hash_concurrency: 1\n  password_hash_queue_timeout: 1s\n  failure_throttle: false\n",
    )
    .await;
    // Pages first (cheap), then all the password posts at once (the
    // throttle is off so that every post reaches the hasher). An argon2
    // verification takes 25 ms or more even in an optimised build, so 80 of
    // them through one slot take 2 s or more.
    let mut forms = Vec::new();
    for i in 0..80 {
        let b = Browser::new(&app);
        let login = b.authorize(&[]).await;
        let Landing::Page(_, html) = &login else { panic!("{login:?}") };
        forms.push((b, hidden(html, "request"), hidden(html, "csrf"), format!("user{i}")));
    }
    let posts = forms.iter().map(|(b, request, csrf, user)| async move {
        let res = b
            .http
            .post(format!("{}/ui/login", b.base))
            .form(&[("request", request.as_str()), ("csrf", csrf.as_str()), ("username", user), ("password", "x")])
            .send()
            .await
            .unwrap();
        (res.status().as_u16(), res.headers().get("retry-after").is_some())
    });
    let results = futures_util::future::join_all(posts).await;
    let busy = results.iter().filter(|(s, _)| *s == 503).count();
    assert!(results.iter().all(|(s, _)| *s == 401 || *s == 503), "{results:?}");
    assert!(busy > 0, "80 hashes through one slot cannot all finish within 1 s: {results:?}");
    assert!(results.iter().filter(|(s, _)| *s == 503).all(|(_, retry)| *retry), "503 carries Retry-After");
    assert_eq!(app.metric("authserver_auth_denied_total{reason=\"overloaded\"}").await, busy as f64);
}

/// Finding 4: a body that never finishes arriving is cut at the read
/// timeout with a 408 and a closed connection.
#[tokio::test]
async fn a_slow_body_is_cut_at_the_read_timeout() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let app = spawn_with(|dir, db| Spawn {
        config: Some(
            base_config(dir, db)
                .replace("  shutdown_timeout: 5s\n", "  shutdown_timeout: 5s\n  request_read_timeout: 1s\n"),
        ),
        env: vec![],
    })
    .await;
    let addr = app.public.trim_start_matches("http://").to_owned();
    for path in ["/oauth/token", "/oauth/register", "/ui/login", "/oauth/introspect"] {
        let mut s = tokio::net::TcpStream::connect(&addr).await.unwrap();
        let ct = if path == "/oauth/register" { "application/json" } else { "application/x-www-form-urlencoded" };
        s.write_all(
            format!("POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: {ct}\r\nContent-Length: 1000\r\n\r\nabc")
                .as_bytes(),
        )
        .await
        .unwrap();
        let started = std::time::Instant::now();
        let mut buf = Vec::new();
        // The server must answer and close; bound our own wait generously.
        let read = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut buf)).await;
        assert!(read.is_ok(), "{path}: connection still open after 10 s");
        let text = String::from_utf8_lossy(&buf);
        assert!(text.starts_with("HTTP/1.1 408"), "{path}: {text}");
        assert!(started.elapsed() < Duration::from_secs(5), "{path}: cut near the 1 s bound, not later");
        if path.starts_with("/oauth/") {
            assert!(text.contains("\"error\":\"invalid_request\""), "{path}: OAuth JSON: {text}");
        }
    }
    // A normal request on the same server is unaffected.
    let (s, _) = app.get_json("/.well-known/oauth-authorization-server").await;
    assert_eq!(s, 200);
}

/// Finding 9: a too-large body at an OAuth endpoint is OAuth JSON.
#[tokio::test]
async fn a_too_large_body_is_answered_in_oauth_json() {
    let app = spawn_app().await;
    let res = app
        .http
        .post(format!("{}/oauth/token", app.public))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(vec![b'a'; 300 * 1024])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 413);
    let v: Value = res.json().await.unwrap();
    assert_eq!(v["error"], "invalid_request");
}

/// Finding 5: registration input is parsed strictly.
#[tokio::test]
async fn registration_refuses_malformed_uris_and_content_types() {
    // Refused registrations count against the rate limit too: off here.
    let app = spawn_with_extra("limits:\n  registrations_per_minute: 0\n").await;
    let before = client_count(&app).await;
    for uri in [
        "https://app.example.com/c\rb",
        "https://app.example.com/c\nb",
        "https://app.example.com/c\u{0}b",
        "https://app.example.com/c\u{7f}b",
        "https://bücher.example/cb",
        "https:cb",
        "ftp://files.example.com/cb",
        "ws://127.0.0.1/cb",
        "https://good.com\\@evil.com/cb",
    ] {
        let (s, v) = register(&app, json!({"redirect_uris": [uri]})).await;
        assert_eq!((s, v["error"].as_str()), (400, Some("invalid_redirect_uri")), "{uri:?} -> {v}");
    }
    let (s, v) = register(&app, json!({"redirect_uris": ["cursor://x/cb"], "application_type": "web"})).await;
    assert_eq!((s, v["error"].as_str()), (400, Some("invalid_redirect_uri")), "web: no private-use scheme: {v}");
    for (k, bad) in [
        ("tos_uri", "javascript:alert(3)"),
        ("logo_uri", "http://evil.example/x.png"),
        ("client_uri", "data:text/html,hi"),
        ("policy_uri", "https://a.example/p\nq"),
    ] {
        let (s, v) = register(&app, json!({"redirect_uris": ["https://a.example/cb"], k: bad})).await;
        assert_eq!((s, v["error"].as_str()), (400, Some("invalid_client_metadata")), "{k}={bad:?} -> {v}");
    }
    let many: Vec<String> = (0..21).map(|i| format!("https://a.example/cb{i}")).collect();
    let (s, v) = register(&app, json!({"redirect_uris": many})).await;
    assert_eq!((s, v["error"].as_str()), (400, Some("invalid_client_metadata")), "21 redirect URIs: {v}");
    for ct in [None, Some("text/plain")] {
        let mut r = app
            .http
            .post(format!("{}/oauth/register", app.public))
            .body(r#"{"redirect_uris":["https://a.example/cb"]}"#);
        if let Some(ct) = ct {
            r = r.header("content-type", ct);
        }
        let res = r.send().await.unwrap();
        assert_eq!(res.status(), 400, "content type {ct:?}");
    }
    assert_eq!(client_count(&app).await, before, "nothing registered");
    // What MCP clients send is still fine.
    let (s, v) = register(
        &app,
        json!({"redirect_uris": ["cursor://anysphere.cursor-retrieval/oauth/callback", "https://a.example/cb"], "token_endpoint_auth_method": "none", "tos_uri": "https://a.example/tos"}),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    assert_eq!(v["application_type"], "native");
}

/// Finding 6: registration is rate-limited per address and capped, and the
/// admin list pages.
#[tokio::test]
async fn registration_is_rate_limited_capped_and_listed_in_pages() {
    let app = spawn_with_extra("oauth:\n  registration_max_clients: 6\nlimits:\n  registrations_per_minute: 4\n").await;
    let body = json!({"redirect_uris": ["https://a.example/cb"], "token_endpoint_auth_method": "none"});
    let mut statuses = Vec::new();
    for _ in 0..6 {
        let res = app.http.post(format!("{}/oauth/register", app.public)).json(&body).send().await.unwrap();
        statuses.push((res.status().as_u16(), res.headers().get("retry-after").is_some()));
    }
    assert_eq!(statuses[..4], [(201, false); 4], "{statuses:?}");
    assert_eq!(statuses[4..], [(429, true); 2], "{statuses:?}");
    assert_eq!(app.metric("authserver_auth_denied_total{reason=\"rate_limited\"}").await, 2.0);

    // Paging: 1 config client + 4 registered, 2 per page.
    let mut ids = Vec::new();
    let mut cursor = String::new();
    for _ in 0..5 {
        let q = if cursor.is_empty() { "limit=2".to_owned() } else { format!("limit=2&cursor={cursor}") };
        let (s, v) = app.admin_json(Method::GET, &format!("/admin/clients?{q}"), None).await;
        assert_eq!(s, 200);
        ids.extend(v["clients"].as_array().unwrap().iter().map(|c| c["client_id"].as_str().unwrap().to_owned()));
        match v["next_cursor"].as_str() {
            Some(c) => cursor = c.to_owned(),
            None => break,
        }
    }
    let mut sorted = ids.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!((ids.len(), sorted.len()), (5, 5), "every client once, in order: {ids:?}");
    assert_eq!(ids, sorted);
    let (s, _) = app.admin_json(Method::GET, "/admin/clients?limit=0", None).await;
    assert_eq!(s, 400);
}

/// Finding 6: the cap on dynamically registered clients.
#[tokio::test]
async fn registration_stops_at_the_client_cap() {
    let app = spawn_with_extra("oauth:\n  registration_max_clients: 2\nlimits:\n  registrations_per_minute: 0\n").await;
    let body = json!({"redirect_uris": ["https://a.example/cb"], "token_endpoint_auth_method": "none"});
    let mut statuses = Vec::new();
    for _ in 0..3 {
        statuses.push(register(&app, body.clone()).await.0);
    }
    assert_eq!(statuses, [201, 201, 429]);
}

/// Finding 6: DCR clients unused for `registration_unused_ttl`, with no live
/// token, are deleted; used ones and admin-made ones stay.
#[tokio::test]
async fn unused_registered_clients_expire() {
    let app = spawn_with_extra("oauth:\n  registration_unused_ttl: 1s\n").await;
    let dcr = json!({"redirect_uris": ["http://127.0.0.1/callback"], "token_endpoint_auth_method": "none"});
    let (s, unused) = register(&app, dcr.clone()).await;
    assert_eq!(s, 201);
    let (s, used) = register(&app, dcr).await;
    assert_eq!(s, 201);
    let used_id = used["client_id"].as_str().unwrap();
    // The used client gets a refresh-token family that stays alive.
    let b = Browser::new(&app);
    let code = b.code_for(&[("client_id", used_id), ("scope", "tools/read offline_access")]).await;
    let (s, _) = app.exchange_as(&code, used_id, REDIRECT, &[]).await;
    assert_eq!(s, 200);
    tokio::time::sleep(Duration::from_millis(2100)).await;
    // The purge runs at start and hourly: a restart on the same database
    // runs it now.
    let mut app = app;
    let config = std::fs::read_to_string(&app.config_path).unwrap();
    app.terminate();
    let again = spawn_with(|_, _| Spawn { config: Some(config), env: vec![] }).await;
    let unused_id = unused["client_id"].as_str().unwrap().to_owned();
    eventually(5, "the unused client is deleted", || {
        let again = &again;
        let path = format!("/admin/clients/{unused_id}");
        async move { again.admin_json(Method::GET, &path, None).await.0 == 404 }
    })
    .await;
    let (s, _) = again.admin_json(Method::GET, &format!("/admin/clients/{used_id}"), None).await;
    assert_eq!(s, 200, "client with a live token family kept");
    let (s, _) = again.admin_json(Method::GET, "/admin/clients/test-client", None).await;
    assert_eq!(s, 200, "config clients are never purged");
}

/// Finding 7: CIMD failures give the caller a generic error (no internal
/// address), are cached, and fetches are rate-limited per address.
#[tokio::test]
async fn metadata_document_failures_tell_nothing_internal_and_are_cached() {
    let app = spawn_with_extra("limits:\n  cimd_fetches_per_minute: 3\n").await;
    let b = Browser::new(&app);
    let mut pages = Vec::new();
    for id in [
        "https://10.0.0.1/client.json",
        "https://[::ffff:10.0.0.1]/client.json",
        "https://[64:ff9b::a00:1]/client.json",
        "https://[2002:a00:1::1]/client.json",
        "https://[::10.0.0.1]/client.json",
    ] {
        pages.push((id, b.authorize(&[("client_id", id)]).await));
    }
    for (id, page) in &pages[..3] {
        let Landing::Page(s, html) = page else { panic!("{id}: {page:?}") };
        assert_eq!(*s, 400, "{id}");
        assert!(html.contains("could not be fetched"), "{id}: generic error\n{html}");
        assert!(!html.contains("10.0.0.1") && !html.contains("forbidden"), "{id}: nothing internal: {html}");
    }
    // Past three fetches a minute from this address: 429-style refusal.
    let Landing::Page(s, _) = &pages[3].1 else { panic!() };
    assert_eq!(*s, 400, "the authorize page shows the refusal as an error page");
    assert!(app.metric("authserver_auth_denied_total{reason=\"rate_limited\"}").await >= 1.0);
    // The same failing id again is answered from the failure cache: no new
    // fetch, so no new log line about it.
    let refused = || app.logs().iter().filter(|l| l.contains("client metadata document refused")).count();
    // Log lines arrive through a pipe: wait for the three fetches' lines.
    eventually(5, "three refusals logged", || async { refused() == 3 }).await;
    assert!(app.logs().iter().any(|l| l.contains("forbidden address 10.0.0.1")), "the detail is in the log");
    let n = refused();
    let again = b.authorize(&[("client_id", "https://10.0.0.1/client.json")]).await;
    let Landing::Page(400, html) = &again else { panic!("{again:?}") };
    assert!(html.contains("failed recently"), "{html}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(refused(), n, "no second fetch");
}

/// Finding 9: the admin listener binds loopback unless configured, and an
/// https issuer sends HSTS.
#[tokio::test]
async fn admin_listener_defaults_to_loopback_and_https_issuers_send_hsts() {
    assert_eq!(authplane_core::config::AdminConfig::default().listen, "127.0.0.1:9001");
    let app = spawn_with(|dir, db| Spawn {
        config: Some(base_config(dir, db).replace("issuer: http://localhost:9000", "issuer: https://as.example.com")),
        env: vec![],
    })
    .await;
    let res = app.http.get(format!("{}/health", app.public)).send().await.unwrap();
    assert_eq!(res.headers()["strict-transport-security"], "max-age=31536000");
    let plain = spawn_app().await;
    let res = plain.http.get(format!("{}/health", plain.public)).send().await.unwrap();
    assert!(res.headers().get("strict-transport-security").is_none(), "not on http issuers");
}

async fn refresh(app: &TestApp, token: &str) -> (u16, Value) {
    app.token(&[("grant_type", "refresh_token"), ("refresh_token", token), ("client_id", "test-client")]).await
}

/// `oauth.refresh_reuse_interval`: MCP clients race on refresh from several
/// sessions; within the interval every racer gets the same successor (no
/// new branch), after it a reuse revokes the family as before.
#[tokio::test]
async fn concurrent_refreshes_within_the_reuse_interval_share_one_successor() {
    let app = spawn_with_extra("oauth:\n  refresh_reuse_interval: 1s\n").await;
    let code = Browser::new(&app).code_for(&[("scope", "tools/read offline_access")]).await;
    let (s, t) = app.exchange(&code).await;
    assert_eq!(s, 200);
    let rt0 = t["refresh_token"].as_str().unwrap().to_owned();
    let results = futures_util::future::join_all((0..20).map(|_| refresh(&app, &rt0))).await;
    let mut successors: Vec<String> = results
        .iter()
        .map(|(s, v)| {
            assert_eq!(*s, 200, "{v}");
            v["refresh_token"].as_str().unwrap().to_owned()
        })
        .collect();
    successors.dedup();
    assert_eq!(successors.len(), 1, "one successor for all 20");
    assert_eq!(app.metric("authserver_auth_denied_total{reason=\"refresh_reuse\"}").await, 0.0);
    let rt1 = successors.remove(0);
    assert_ne!(rt1, rt0);
    // After the interval a reuse revokes the family, the successor with it.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let (s, e) = refresh(&app, &rt0).await;
    assert_eq!((s, e["error"].as_str()), (400, Some("invalid_grant")), "{e}");
    let (s, _) = refresh(&app, &rt1).await;
    assert_eq!(s, 400, "the family is revoked");
    assert_eq!(app.metric("authserver_auth_denied_total{reason=\"refresh_reuse\"}").await, 1.0);
}

/// Within the interval, but once the successor itself was used, the old
/// token is reuse: the interval never revives a spent chain.
#[tokio::test]
async fn the_reuse_interval_never_revives_a_spent_successor() {
    let app = spawn_with_extra("oauth:\n  refresh_reuse_interval: 30s\n").await;
    let code = Browser::new(&app).code_for(&[("scope", "tools/read offline_access")]).await;
    let rt0 = app.exchange(&code).await.1["refresh_token"].as_str().unwrap().to_owned();
    let rt1 = refresh(&app, &rt0).await.1["refresh_token"].as_str().unwrap().to_owned();
    let (s, v) = refresh(&app, &rt1).await;
    assert_eq!(s, 200, "{v}");
    let (s, e) = refresh(&app, &rt0).await;
    assert_eq!((s, e["error"].as_str()), (400, Some("invalid_grant")));
    let rt2 = v["refresh_token"].as_str().unwrap();
    assert_eq!(refresh(&app, rt2).await.0, 400, "revoked with the family");
}

/// Compare-and-swap rotation across two processes on one Postgres: racing
/// replicas agree on one successor. (SQLite is one process by design.)
#[tokio::test]
async fn two_replicas_on_one_postgres_agree_on_one_successor() {
    if postgres_base().is_none() {
        eprintln!("two_replicas_on_one_postgres_agree_on_one_successor: runs in the Postgres pass of make test");
        return;
    }
    let a = spawn_with_extra("oauth:\n  refresh_reuse_interval: 30s\n").await;
    let config = std::fs::read_to_string(&a.config_path).unwrap();
    let b = spawn_with(|_, _| Spawn { config: Some(config), env: vec![] }).await;
    let code = Browser::new(&a).code_for(&[("scope", "tools/read offline_access")]).await;
    let rt0 = a.exchange(&code).await.1["refresh_token"].as_str().unwrap().to_owned();
    let results =
        futures_util::future::join_all((0..20).map(|i| refresh(if i % 2 == 0 { &a } else { &b }, &rt0))).await;
    let mut successors: Vec<String> = results
        .iter()
        .map(|(s, v)| {
            assert_eq!(*s, 200, "{v}");
            v["refresh_token"].as_str().unwrap().to_owned()
        })
        .collect();
    successors.sort();
    successors.dedup();
    assert_eq!(successors.len(), 1, "both replicas hand out the same successor");
}

/// Guesses at the initial access token count against the registration rate.
#[tokio::test]
async fn initial_access_token_guesses_are_rate_limited() {
    let app = spawn_with_extra("oauth:\n  registration: token\n  initial_access_token: initial-access-token-0123456789\nlimits:\n  registrations_per_minute: 3\n")
    .await;
    let mut statuses = Vec::new();
    for i in 0..5 {
        let res = app
            .http
            .post(format!("{}/oauth/register", app.public))
            .bearer_auth(format!("guess-{i}"))
            .json(&json!({"redirect_uris": ["https://a.example/cb"]}))
            .send()
            .await
            .unwrap();
        statuses.push(res.status().as_u16());
    }
    assert_eq!(statuses, [401, 401, 401, 429, 429]);
}
