//! The OAuth 2.1 / RFC 9700 rules, from the outside: one test per rule.

use serde_json::json;

use crate::helpers::*;

#[tokio::test]
async fn code_flow_issues_an_audience_bound_es256_token_and_rotates_refresh_tokens() {
    // Reuse detection at once (the reuse interval has its own test).
    let app = spawn_with(|dir, db| Spawn {
        config: Some(base_config(dir, db)),
        env: vec![("AUTHPLANE_OAUTH_REFRESH_REUSE_INTERVAL".into(), "0".into())],
    })
    .await;
    let b = Browser::new(&app);
    // The resource in a spelling clients send (MCP-CLIENTS.md quirk 3).
    let login =
        b.authorize(&[("resource", "HTTP://LOCALHOST:8080/mcp/"), ("scope", "tools/read offline_access")]).await;
    let consent = b.login(&login, "alice", "alice-password").await;
    let Landing::Page(200, html) = &consent else { panic!("{consent:?}") };
    assert!(
        html.contains("tools/read") && html.contains("Test MCP") && html.contains("127.0.0.1"),
        "consent shows scopes, resource and redirect host"
    );
    let back = b.decide(&consent, "approve").await;
    let Landing::Client(uri, q) = &back else { panic!("{back:?}") };
    assert_eq!(uri, REDIRECT);
    assert_eq!(q["state"], "st-1");
    assert_eq!(q["iss"], "http://localhost:9000", "RFC 9207");

    let (s, t) = app.exchange(&q["code"]).await;
    assert_eq!(s, 200, "{t}");
    assert_eq!(t["token_type"], "Bearer");
    assert_eq!(t["scope"], "tools/read");
    let at = t["access_token"].as_str().unwrap();
    let header = jwt_part(at, 0);
    assert_eq!((header["alg"].as_str(), header["typ"].as_str()), (Some("ES256"), Some("at+jwt")));
    assert!(app.jwks_kids().await.contains(&header["kid"].as_str().unwrap().to_owned()));
    let claims = jwt_part(at, 1);
    assert_eq!(claims["iss"], "http://localhost:9000");
    assert_eq!(claims["aud"], json!([RESOURCE]), "aud is the registered canonical URI");
    assert_eq!(claims["sub"], "user-42");
    assert_eq!(claims["client_id"], "test-client");
    assert_eq!(claims["scope"], "tools/read");
    assert_eq!(claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(), 3600);

    // Refresh rotates; down-scoping cannot widen.
    let rt1 = t["refresh_token"].as_str().unwrap().to_owned();
    let (s, t2) =
        app.token(&[("grant_type", "refresh_token"), ("refresh_token", &rt1), ("client_id", "test-client")]).await;
    assert_eq!(s, 200, "{t2}");
    let rt2 = t2["refresh_token"].as_str().unwrap().to_owned();
    assert_ne!(rt1, rt2);
    let (s, e) = app
        .token(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", &rt2),
            ("client_id", "test-client"),
            ("scope", "tools/write"),
        ])
        .await;
    assert_eq!((s, e["error"].as_str()), (400, Some("invalid_scope")));

    // Reusing the spent token revokes the family: the newest token dies too.
    let before = app.metric("authserver_auth_denied_total{reason=\"refresh_reuse\"}").await;
    let (s, e) =
        app.token(&[("grant_type", "refresh_token"), ("refresh_token", &rt1), ("client_id", "test-client")]).await;
    assert_eq!((s, e["error"].as_str()), (400, Some("invalid_grant")));
    let (s, _) =
        app.token(&[("grant_type", "refresh_token"), ("refresh_token", &rt2), ("client_id", "test-client")]).await;
    assert_eq!(s, 400, "the whole family is revoked");
    assert_eq!(app.metric("authserver_auth_denied_total{reason=\"refresh_reuse\"}").await, before + 1.0);
    assert_eq!(app.metric("authserver_tokens_issued_total{grant_type=\"authorization_code\"}").await, 1.0);
    assert_eq!(app.metric("authserver_tokens_issued_total{grant_type=\"refresh_token\"}").await, 1.0);
}

#[tokio::test]
async fn a_replayed_code_is_refused_and_revokes_what_it_issued() {
    let app = spawn_app().await;
    let introspector = app.confidential_client(&["client_credentials"]).await;
    let code = Browser::new(&app).code_for(&[]).await;
    let (s, t) = app.exchange(&code).await;
    assert_eq!(s, 200);
    let at = t["access_token"].as_str().unwrap();
    assert_eq!(app.introspect(&introspector, at).await["active"], true);

    let (s, e) = app.exchange(&code).await;
    assert_eq!((s, e["error"].as_str()), (400, Some("invalid_grant")));
    assert_eq!(
        app.introspect(&introspector, at).await,
        json!({"active": false}),
        "the access token it issued is revoked"
    );
    let (s, _) = app
        .token(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", t["refresh_token"].as_str().unwrap()),
            ("client_id", "test-client"),
        ])
        .await;
    assert_eq!(s, 400, "and so is the refresh token");
    assert_eq!(app.metric("authserver_auth_denied_total{reason=\"code_replay\"}").await, 1.0);
}

#[tokio::test]
async fn pkce_is_s256_only_and_verified() {
    let app = spawn_app().await;
    let b = Browser::new(&app);
    for (extra, needle) in [
        (vec![("code_challenge", "")], "code_challenge is required"),
        (vec![("code_challenge_method", "plain")], "plain is not supported"),
        (vec![("code_challenge_method", "")], "code_challenge_method is required"),
        (vec![("code_challenge", "too-short")], "43 characters"),
    ] {
        let q = b.authorize(&extra).await;
        let q = q.query();
        assert_eq!(q["error"], "invalid_request", "{extra:?}");
        assert!(q["error_description"].contains(needle), "{extra:?}: {q:?}");
        assert_eq!(q["iss"], "http://localhost:9000", "iss on error responses too");
        assert_eq!(q["state"], "st-1");
    }
    // A wrong or missing verifier at the token endpoint.
    let code = b.code_for(&[]).await;
    let (s, e) = app
        .token(&[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("code_verifier", &"x".repeat(43)),
            ("client_id", "test-client"),
        ])
        .await;
    assert_eq!((s, e["error"].as_str()), (400, Some("invalid_grant")));
    let (s, _) =
        app.token(&[("grant_type", "authorization_code"), ("code", &code), ("client_id", "test-client")]).await;
    assert_eq!(s, 400);
    assert_eq!(app.metric("authserver_auth_denied_total{reason=\"invalid_pkce\"}").await, 2.0);
    // The checklist's step-8 line.
    eventually(5, "ErrInvalidPKCE logged", || async {
        app.logs().iter().any(|l| {
            l.contains("level=ERROR msg=\"token issuance failed\" error=ErrInvalidPKCE code=invalid_grant client_id=test-client resource=http://localhost:8080/mcp")
                && l.contains("request_id=")
                && l.contains("trace_id=")
                && l.contains("span_id=")
        })
    })
    .await;
    // RFC 6749 §4.1.3: the redirect_uri must be the one of the request.
    let (s, e) = app
        .token(&[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("code_verifier", VERIFIER),
            ("client_id", "test-client"),
            ("redirect_uri", "http://127.0.0.1:9/callback"),
        ])
        .await;
    assert_eq!((s, e["error"].as_str()), (400, Some("invalid_grant")));
    // The code was not spent by the failed attempts.
    assert_eq!(app.exchange(&code).await.0, 200);
}

#[tokio::test]
async fn redirect_uris_match_exactly_and_a_mismatch_never_redirects() {
    let app = spawn_with(|dir, db| {
        let cfg = base_config(dir, db).replace(
            "    redirect_uris: [\"http://127.0.0.1/callback\"]",
            "    redirect_uris: [\"http://127.0.0.1/callback\", \"https://app.example.com/cb\", \"cursor://anysphere.cursor-retrieval/oauth/callback\"]",
        );
        Spawn { config: Some(cfg), env: vec![] }
    })
    .await;
    let b = Browser::new(&app);
    for bad in [
        "https://app.example.com/cb/..;/",
        "https://app.example.com/cb/../evil",
        "https://app.example.com@evil.example/cb",
        "https://APP.example.com/cb",
        "https://app.example.com/CB",
        "https://app.example.com/cb/extra",
        "https://app.example.com:8443/cb",
        "https://app.example.com/cb?x=1",
        "https://evil.example/cb",
        "http://app.example.com/cb",
        "http://localhost/callback",
        "javascript:alert(1)",
    ] {
        let l = b.authorize(&[("redirect_uri", bad)]).await;
        let Landing::Page(400, html) = &l else { panic!("{bad}: must not redirect, got {l:?}") };
        assert!(html.contains("invalid_request"), "{bad}");
    }
    // RFC 8252 §7.3: any port on a loopback redirect URI; private-use schemes.
    for ok in ["http://127.0.0.1:53817/callback", "cursor://anysphere.cursor-retrieval/oauth/callback"] {
        let l = b.authorize(&[("redirect_uri", ok)]).await;
        assert!(matches!(&l, Landing::Page(200, html) if html.contains("name=\"password\"")), "{ok}: {l:?}");
    }
    assert!(app.metric("authserver_auth_denied_total{reason=\"redirect_uri_mismatch\"}").await >= 11.0);
}

#[tokio::test]
async fn unknown_clients_and_oversized_parameters_get_an_error_page() {
    let app = spawn_app().await;
    let b = Browser::new(&app);
    for extra in [vec![("client_id", "nobody")], vec![("client_id", "")], vec![("state", &*"x".repeat(5000))]] {
        let l = b.authorize(&extra).await;
        assert!(matches!(&l, Landing::Page(400, _)), "{l:?}");
    }
    let l = b.visit("/oauth/authorize?client_id=test-client&client_id=other").await;
    assert!(matches!(&l, Landing::Page(400, html) if html.contains("repeated")), "{l:?}");
    let l = b.authorize(&[("response_type", "token")]).await;
    assert_eq!(l.query()["error"], "unsupported_response_type");
}

#[tokio::test]
async fn resources_and_scopes_follow_rfc_8707_and_the_config() {
    let app = spawn_with(|dir, db| Spawn {
        config: Some(base_config(dir, db).replace(
            "    scopes: [tools/read, tools/write]\n",
            "    scopes: [tools/read, tools/write]\n    default_scopes: [tools/read]\n",
        )),
        env: vec![],
    })
    .await;
    let b = Browser::new(&app);
    let l = b.authorize(&[("resource", "https://evil.example/mcp")]).await;
    assert_eq!(l.query()["error"], "invalid_target");
    let l = b.authorize(&[("resource", "https://x.example/mcp#frag")]).await;
    assert_eq!(l.query()["error"], "invalid_target");
    // No resource with one registered: that one. Unknown scopes dropped
    // (what was asked and known is granted); no scope → the defaults; only
    // unknown ones → invalid_scope, never the defaults (issue 11, finding 8).
    let code = b.code_for(&[("resource", ""), ("scope", "my-client-name tools/write")]).await;
    let (_, t) = app.exchange(&code).await;
    assert_eq!(t["scope"], "tools/write");
    let code = Browser::new(&app).code_for(&[("resource", ""), ("scope", "")]).await;
    let (_, t) = app.exchange(&code).await;
    assert_eq!(t["scope"], "tools/read");
    assert_eq!(b.authorize(&[("scope", "my-client-name")]).await.query()["error"], "invalid_scope");
    assert_eq!(jwt_part(t["access_token"].as_str().unwrap(), 1)["aud"], json!([RESOURCE]));

    let strict = spawn_with(|dir, db| Spawn {
        config: Some(base_config(dir, db)),
        env: vec![
            ("AUTHPLANE_OAUTH_REQUIRE_SCOPE".into(), "true".into()),
            ("AUTHPLANE_OAUTH_UNKNOWN_SCOPES".into(), "reject".into()),
        ],
    })
    .await;
    let b = Browser::new(&strict);
    assert_eq!(b.authorize(&[]).await.query()["error"], "invalid_scope");
    assert_eq!(b.authorize(&[("scope", "tools/read nope")]).await.query()["error"], "invalid_scope");
    let code = b.code_for(&[("scope", "tools/write")]).await;
    let (_, t) = strict.exchange(&code).await;
    // REQUIRE_SCOPE never changes the audience.
    assert_eq!(jwt_part(t["access_token"].as_str().unwrap(), 1)["aud"], json!([RESOURCE]));
}

#[tokio::test]
async fn consent_is_remembered_asked_again_when_scopes_grow_and_deny_is_access_denied() {
    let app = spawn_app().await;
    let b = Browser::new(&app);
    b.code_for(&[("scope", "tools/read")]).await;
    // Same scopes again: signed in and consented, straight back to the client.
    let l = b.authorize(&[("scope", "tools/read")]).await;
    assert!(l.query().contains_key("code"), "{l:?}");
    // More scopes: the page again, with the new one marked.
    let l = b.authorize(&[("scope", "tools/read tools/write")]).await;
    let Landing::Page(200, html) = &l else { panic!("{l:?}") };
    assert!(html.contains("tools/write</code> <span class=\"badge\">new</span>"), "{html}");
    let back = b.decide(&l, "deny").await;
    let q = back.query();
    assert_eq!(q["error"], "access_denied");
    assert_eq!(q["iss"], "http://localhost:9000");
    assert_eq!(q["state"], "st-1");
    assert_eq!(app.metric("authserver_auth_denied_total{reason=\"access_denied\"}").await, 1.0);
}

#[tokio::test]
async fn a_returning_user_gets_the_code_straight_from_authorize_without_a_request_row() {
    use sea_orm::{ConnectionTrait, Statement};
    let app = spawn_app().await;
    let b = Browser::new(&app);
    b.code_for(&[("scope", "tools/read")]).await;
    let db = sea_orm::Database::connect(&app.db_url).await.unwrap();
    let pending = || async {
        db.query_one_raw(Statement::from_string(db.get_database_backend(), "SELECT COUNT(*) AS n FROM auth_requests"))
            .await
            .unwrap()
            .unwrap()
            .try_get::<i64>("", "n")
            .unwrap()
    };
    assert_eq!(pending().await, 0);
    let url = |extra: &str| {
        format!(
            "{}/oauth/authorize?response_type=code&client_id=test-client&redirect_uri={}&code_challenge={CHALLENGE}&code_challenge_method=S256&state=st-2&resource={}&scope=tools%2Fread{extra}",
            app.public,
            urlencoding(REDIRECT),
            urlencoding(RESOURCE),
        )
    };
    // One redirect, to the client, with the code: no page, no request row.
    let res = b.http.get(url("")).send().await.unwrap();
    assert_eq!(res.status().as_u16(), 303);
    let loc = res.headers()["location"].to_str().unwrap().to_owned();
    assert!(loc.starts_with(REDIRECT) && loc.contains("code=") && loc.contains("state=st-2"), "{loc}");
    assert_eq!(pending().await, 0, "nothing stored but the code");
    let code = url::Url::parse(&loc).unwrap().query_pairs().find(|(k, _)| k == "code").unwrap().1.into_owned();
    let (s, _) = app.exchange(&code).await;
    assert_eq!(s, 200, "the code redeems");
    // prompt=consent and prompt=login still show their page.
    for (extra, page) in [("&prompt=consent", "/ui/consent?"), ("&prompt=login", "/ui/login?")] {
        let res = b.http.get(url(extra)).send().await.unwrap();
        let loc = res.headers()["location"].to_str().unwrap().to_owned();
        assert!(loc.starts_with(page), "{extra}: {loc}");
    }
    // Signed out (another browser): the login page, as before.
    let res = Browser::new(&app).http.get(url("")).send().await.unwrap();
    assert!(res.headers()["location"].to_str().unwrap().starts_with("/ui/login?"));
}

fn urlencoding(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

#[tokio::test]
async fn pages_refuse_csrf_other_browsers_and_framing() {
    let app = spawn_app().await;
    let b = Browser::new(&app);
    let login = b.authorize(&[]).await;
    let Landing::Page(_, html) = &login else { panic!() };
    // Clickjacking and script rules on the page itself.
    let res = b.http.get(format!("{}/ui/login?request={}", app.public, hidden(html, "request"))).send().await.unwrap();
    let csp = res.headers()["content-security-policy"].to_str().unwrap().to_owned();
    assert!(csp.contains("frame-ancestors 'none'") && !csp.contains("unsafe-inline"), "{csp}");
    assert_eq!(res.headers()["x-frame-options"], "DENY");
    assert!(!res.text().await.unwrap().contains("<script"), "no script on the page");

    // Wrong CSRF token on login.
    let l = b
        .post_form(
            "/ui/login",
            &[
                ("request", &hidden(html, "request")),
                ("csrf", "forged"),
                ("username", "alice"),
                ("password", "alice-password"),
            ],
        )
        .await;
    assert!(matches!(&l, Landing::Page(400, p) if p.contains("CSRF")), "{l:?}");
    // Another browser cannot continue this flow.
    let other = Browser::new(&app);
    let l = other
        .post_form(
            "/ui/login",
            &[
                ("request", &hidden(html, "request")),
                ("csrf", &hidden(html, "csrf")),
                ("username", "alice"),
                ("password", "alice-password"),
            ],
        )
        .await;
    assert!(matches!(&l, Landing::Page(400, p) if p.contains("another browser")), "{l:?}");
    // Wrong CSRF token on consent.
    let consent = b.login(&login, "alice", "alice-password").await;
    let Landing::Page(_, chtml) = &consent else { panic!() };
    let l = b
        .post_form(
            "/ui/consent",
            &[("request", &hidden(chtml, "request")), ("csrf", "forged"), ("decision", "approve")],
        )
        .await;
    assert!(matches!(&l, Landing::Page(400, _)), "no code without the CSRF token: {l:?}");
}

#[tokio::test]
async fn a_wrong_password_is_a_401_page_a_metric_and_an_audit_row() {
    let app = spawn_app().await;
    let b = Browser::new(&app);
    let login = b.authorize(&[]).await;
    for (user, pw) in [("alice", "wrong"), ("nobody", "alice-password")] {
        let l = b.login(&login, user, pw).await;
        let Landing::Page(401, html) = &l else { panic!("{l:?}") };
        assert!(html.contains("role=\"alert\"") && html.contains("Wrong username or password."));
    }
    assert_eq!(app.metric("authserver_auth_denied_total{reason=\"login_failed\"}").await, 2.0);
    use sea_orm::{ConnectionTrait, Statement};
    let db = sea_orm::Database::connect(&app.db_url).await.unwrap();
    let n = db
        .query_one_raw(Statement::from_string(
            db.get_database_backend(),
            "SELECT COUNT(*) AS n FROM audit_events WHERE event_type = 'login_failed'",
        ))
        .await
        .unwrap()
        .unwrap()
        .try_get::<i64>("", "n")
        .unwrap();
    assert_eq!(n, 2);
    assert!(!app.logs().iter().any(|l| l.contains("alice-password")), "no password in logs");
}

#[tokio::test]
async fn client_credentials_for_confidential_clients_only() {
    let app = spawn_app().await;
    let (id, secret) = app.confidential_client(&["client_credentials"]).await;
    let res = app
        .http
        .post(format!("{}/oauth/token", app.public))
        .basic_auth(&id, Some(&secret))
        .form(&[("grant_type", "client_credentials"), ("resource", RESOURCE), ("scope", "tools/read")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["cache-control"], "no-store");
    let t: serde_json::Value = res.json().await.unwrap();
    let c = jwt_part(t["access_token"].as_str().unwrap(), 1);
    assert_eq!((c["sub"].as_str(), c["client_id"].as_str()), (Some(id.as_str()), Some(id.as_str())));
    assert!(t.get("refresh_token").is_none());
    // client_secret_post works too; a wrong secret is 401 with the scheme tried.
    let (s, _) =
        app.token(&[("grant_type", "client_credentials"), ("client_id", &id), ("client_secret", &secret)]).await;
    assert_eq!(s, 200);
    let res = app
        .http
        .post(format!("{}/oauth/token", app.public))
        .basic_auth(&id, Some("wrong"))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    assert!(res.headers()["www-authenticate"].to_str().unwrap().starts_with("Basic"));
    let (s, e) = app.token(&[("grant_type", "client_credentials"), ("client_id", "test-client")]).await;
    assert_eq!((s, e["error"].as_str()), (400, Some("unauthorized_client")));
    let (s, e) = app.token(&[("grant_type", "password"), ("client_id", "test-client")]).await;
    assert_eq!((s, e["error"].as_str()), (400, Some("unsupported_grant_type")));
    let res = app
        .http
        .post(format!("{}/oauth/token", app.public))
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    assert_eq!(app.metric("authserver_tokens_issued_total{grant_type=\"client_credentials\"}").await, 2.0);
}

#[tokio::test]
async fn dynamic_registration_then_a_flow_and_its_policies() {
    let app = spawn_app().await;
    let res = app
        .http
        .post(format!("{}/oauth/register", app.public))
        .json(&json!({"client_name": "Claude Code", "redirect_uris": ["http://localhost:51234/callback"], "token_endpoint_auth_method": "none", "application_type": "native", "grant_types": ["authorization_code", "refresh_token"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    assert_eq!(res.headers()["access-control-allow-origin"], "*");
    let reg: serde_json::Value = res.json().await.unwrap();
    let id = reg["client_id"].as_str().unwrap().to_owned();
    assert!(reg["client_id_issued_at"].as_i64().unwrap() > 0);
    assert!(reg.get("client_secret").is_none());
    let b = Browser::new(&app);
    let code = b.code_for(&[("client_id", &id), ("redirect_uri", "http://localhost:60000/callback")]).await;
    let (s, t) = app
        .token(&[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("code_verifier", VERIFIER),
            ("client_id", &id),
        ])
        .await;
    assert_eq!(s, 200, "{t}");

    for (body, code) in [
        (json!({"redirect_uris": ["javascript:alert(1)"]}), "invalid_redirect_uri"),
        (json!({"redirect_uris": ["https://a.example/cb#f"]}), "invalid_redirect_uri"),
        (json!({"redirect_uris": ["https://*.example/cb"]}), "invalid_redirect_uri"),
        (
            json!({"redirect_uris": ["https://a.example/cb"], "token_endpoint_auth_method": "private_key_jwt"}),
            "invalid_client_metadata",
        ),
        (json!({"redirect_uris": ["https://a.example/cb"], "grant_types": ["implicit"]}), "invalid_client_metadata"),
        (json!({"redirect_uris": []}), "invalid_redirect_uri"),
    ] {
        let res = app.http.post(format!("{}/oauth/register", app.public)).json(&body).send().await.unwrap();
        assert_eq!(res.status(), 400, "{body}");
        let v: serde_json::Value = res.json().await.unwrap();
        assert_eq!(v["error"], code, "{body}: {v}");
    }
    // Confidential registration gets a secret (stored as a digest).
    let res = app
        .http
        .post(format!("{}/oauth/register", app.public))
        .json(&json!({"redirect_uris": ["https://a.example/cb"]}))
        .send()
        .await
        .unwrap();
    let v: serde_json::Value = res.json().await.unwrap();
    assert_eq!(v["token_endpoint_auth_method"], "client_secret_basic");
    assert!(v["client_secret"].as_str().unwrap().len() >= 43);

    let closed = spawn_with(|dir, db| Spawn {
        config: Some(base_config(dir, db)),
        env: vec![("AUTHPLANE_OAUTH_REGISTRATION".into(), "off".into())],
    })
    .await;
    let res = closed
        .http
        .post(format!("{}/oauth/register", closed.public))
        .json(&json!({"redirect_uris": ["https://a.example/cb"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);
    assert!(closed.metadata().await.get("registration_endpoint").is_none());
    let gated = spawn_with(|dir, db| Spawn {
        config: Some(base_config(dir, db)),
        env: vec![
            ("AUTHPLANE_OAUTH_REGISTRATION".into(), "token".into()),
            ("AUTHPLANE_OAUTH_INITIAL_ACCESS_TOKEN".into(), "initial-access-token-123".into()),
        ],
    })
    .await;
    let url = format!("{}/oauth/register", gated.public);
    let body = json!({"redirect_uris": ["https://a.example/cb"]});
    assert_eq!(gated.http.post(&url).json(&body).send().await.unwrap().status(), 401);
    assert_eq!(
        gated.http.post(&url).bearer_auth("initial-access-token-123").json(&body).send().await.unwrap().status(),
        201
    );
}

#[tokio::test]
async fn revocation_and_introspection() {
    let app = spawn_app().await;
    let me = app.confidential_client(&["client_credentials"]).await;
    let code = Browser::new(&app).code_for(&[]).await;
    let (_, t) = app.exchange(&code).await;
    let at = t["access_token"].as_str().unwrap().to_owned();
    let rt = t["refresh_token"].as_str().unwrap().to_owned();
    let i = app.introspect(&me, &at).await;
    assert_eq!(
        (i["active"].as_bool(), i["sub"].as_str(), i["client_id"].as_str()),
        (Some(true), Some("user-42"), Some("test-client"))
    );
    assert_eq!(app.introspect(&me, &rt).await["active"], true);
    assert_eq!(app.introspect(&me, "garbage").await, json!({"active": false}));

    // Public clients may revoke their own tokens but not introspect.
    let res = app
        .http
        .post(format!("{}/oauth/introspect", app.public))
        .form(&[("token", at.as_str()), ("client_id", "test-client")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    let res = app
        .http
        .post(format!("{}/oauth/revoke", app.public))
        .form(&[("token", at.as_str()), ("client_id", "test-client")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(app.introspect(&me, &at).await["active"], false, "revoked by jti");
    assert_eq!(app.introspect(&me, &rt).await["active"], true, "an access-token revocation leaves the refresh token");
    let res = app
        .http
        .post(format!("{}/oauth/revoke", app.public))
        .form(&[("token", rt.as_str()), ("client_id", "test-client"), ("token_type_hint", "refresh_token")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(app.introspect(&me, &rt).await["active"], false);
    let (s, _) =
        app.token(&[("grant_type", "refresh_token"), ("refresh_token", &rt), ("client_id", "test-client")]).await;
    assert_eq!(s, 400);
    // Another client's token is refused and stays valid (RFC 7009 §2.1).
    let code = Browser::new(&app).code_for(&[]).await;
    let (_, t) = app.exchange(&code).await;
    let res = app
        .http
        .post(format!("{}/oauth/revoke", app.public))
        .basic_auth(&me.0, Some(&me.1))
        .form(&[("token", t["access_token"].as_str().unwrap())])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    assert_eq!(res.json::<serde_json::Value>().await.unwrap()["error"], "unauthorized_client");
    assert_eq!(app.introspect(&me, t["access_token"].as_str().unwrap()).await["active"], true);
    // Unknown tokens are fine (RFC 7009 §2.2).
    let res = app
        .http
        .post(format!("{}/oauth/revoke", app.public))
        .form(&[("token", "unknown"), ("client_id", "test-client")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
}

#[tokio::test]
async fn client_id_metadata_documents_are_fetched_with_ssrf_rules() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let client_id = format!("http://127.0.0.1:{port}/oauth/client.json");
    let good = json!({"client_id": client_id, "client_name": "Metadata Client", "redirect_uris": ["http://127.0.0.1/cb"], "token_endpoint_auth_method": "none"}).to_string();
    let served = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let count = served.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else { break };
            let mut buf = [0u8; 4096];
            let n = sock.read(&mut buf).await.unwrap_or(0);
            let req = String::from_utf8_lossy(&buf[..n]).to_string();
            count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let body = if req.starts_with("GET /oauth/client.json") {
                good.clone()
            } else {
                json!({"client_id": "https://someone.else/x", "redirect_uris": ["http://127.0.0.1/cb"]}).to_string()
            };
            let resp = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncache-control: max-age=600\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{}",
                body.len(),
                body
            );
            let _ = sock.write_all(resp.as_bytes()).await;
        }
    });

    let dev = spawn_with(|dir, db| Spawn {
        config: Some(base_config(dir, db)),
        env: vec![("AUTHPLANE_OAUTH_CIMD_ALLOW_LOOPBACK".into(), "true".into())],
    })
    .await;
    let b = Browser::new(&dev);
    let login = b.authorize(&[("client_id", &client_id), ("redirect_uri", "http://127.0.0.1:4444/cb")]).await;
    let consent = b.login(&login, "alice", "alice-password").await;
    let Landing::Page(200, html) = &consent else { panic!("{consent:?}") };
    assert!(html.contains("Metadata Client"));
    let code = b.decide(&consent, "approve").await.code();
    let (s, _) = dev
        .token(&[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("code_verifier", VERIFIER),
            ("client_id", &client_id),
        ])
        .await;
    assert_eq!(s, 200);
    let fetched = served.load(std::sync::atomic::Ordering::SeqCst);
    assert!(fetched >= 1);
    // The document whose client_id differs from its URL is refused.
    let l = b
        .authorize(&[
            ("client_id", &format!("http://127.0.0.1:{port}/other.json")),
            ("redirect_uri", "http://127.0.0.1/cb"),
        ])
        .await;
    assert!(matches!(&l, Landing::Page(400, p) if p.contains("differs")), "{l:?}");

    // Without the dev setting, loopback (and http) client ids are never fetched.
    let prod = spawn_app().await;
    let before = served.load(std::sync::atomic::Ordering::SeqCst);
    let l = Browser::new(&prod).authorize(&[("client_id", &client_id), ("redirect_uri", "http://127.0.0.1/cb")]).await;
    assert!(matches!(&l, Landing::Page(400, _)), "{l:?}");
    let https_loopback = format!("https://127.0.0.1:{port}/oauth/client.json");
    let l =
        Browser::new(&prod).authorize(&[("client_id", &https_loopback), ("redirect_uri", "http://127.0.0.1/cb")]).await;
    // The caller is told nothing of addresses (issue 11, finding 7); the log is.
    assert!(
        matches!(&l, Landing::Page(400, p) if p.contains("could not be fetched") && !p.contains("127.0.0.1:")),
        "{l:?}"
    );
    eventually(5, "the refusal's detail in the log", || async {
        prod.logs().iter().any(|l| l.contains("forbidden address 127.0.0.1"))
    })
    .await;
    assert_eq!(served.load(std::sync::atomic::Ordering::SeqCst), before, "nothing was fetched");
}

#[tokio::test]
async fn expired_oauth_state_is_purged_and_live_state_is_kept() {
    use sea_orm::{ConnectionTrait, Statement};
    let app = spawn_app().await;
    let b = Browser::new(&app);
    let code = b.code_for(&[]).await;
    let (_, t) = app.exchange(&code).await;
    let _pending = b.authorize(&[("prompt", "consent")]).await; // a sign-in request left open
    let db = sea_orm::Database::connect(&app.db_url).await.unwrap();
    let count = |table: &'static str| {
        let db = db.clone();
        async move {
            db.query_one_raw(Statement::from_string(
                db.get_database_backend(),
                format!("SELECT COUNT(*) AS n FROM {table}"),
            ))
            .await
            .unwrap()
            .unwrap()
            .try_get::<i64>("", "n")
            .unwrap()
        }
    };
    let now = authplane_server::clock::now();
    assert_eq!(authplane_server::store::oauth::purge_expired(&db, now).await.unwrap(), 0, "nothing is expired yet");
    // A week later everything but the 30-day refresh family has expired.
    let purged = authplane_server::store::oauth::purge_expired(&db, now + 7 * 86_400).await.unwrap();
    assert!(purged >= 4, "{purged}");
    for table in ["auth_requests", "sessions", "authorization_codes", "access_tokens"] {
        assert_eq!(count(table).await, 0, "{table}");
    }
    assert_eq!(count("token_families").await, 1);
    let (s, _) = app
        .token(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", t["refresh_token"].as_str().unwrap()),
            ("client_id", "test-client"),
        ])
        .await;
    assert_eq!(s, 200, "the live grant still refreshes");
    authplane_server::store::oauth::purge_expired(&db, now + 40 * 86_400).await.unwrap();
    assert_eq!(count("token_families").await, 0);
    assert_eq!(count("refresh_tokens").await, 0);
}
