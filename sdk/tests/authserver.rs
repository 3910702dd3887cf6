//! The SDK against the real `authserver`: discovery, JWKS caching, key
//! rotation, and a matrix of defective tokens minted by `jose` (npm), checked
//! at the verifier and through the axum and actix middleware.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed step should panic

mod support;

use std::time::Duration;

use authplane_sdk::{FetchError, ManualClock, ProtectedResource, Verifier, VerifyError};
use serde_json::{Value, json};
use support::{AuthServer, RESOURCE, capture_logs, claims, logs_text, mint, now, token};

fn resource(issuer: &str) -> ProtectedResource {
    ProtectedResource::new(RESOURCE, issuer)
        .unwrap()
        .with_scopes(["tools/read", "tools/write"])
        .unwrap()
        .with_default_scopes(["tools/read"])
        .unwrap()
        .with_resource_name("Example MCP server")
}

const PRM_URL: &str = "http://localhost:8080/.well-known/oauth-protected-resource/mcp";

/// A crafted token and how the resource must answer it.
struct Case {
    name: &'static str,
    /// `None`: accepted.
    err_name: Option<&'static str>,
}

fn matrix_tokens(auth: &AuthServer) -> (Vec<Case>, std::collections::HashMap<String, String>) {
    let key = &auth.keys()[0];
    let kid = key.kid.as_str();
    let iss = auth.issuer.as_str();
    let at = |extra: Value| {
        let mut h = json!({"typ": "at+jwt", "kid": kid});
        h.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        h
    };
    let with = |edit: &dyn Fn(&mut Value)| {
        let mut c = claims(iss, "tools/read");
        edit(&mut c);
        c
    };
    let n = now();
    let tokens = vec![
        token("valid", "key", at(json!({})), claims(iss, "tools/read")),
        token("valid-read-write", "key", at(json!({})), claims(iss, "tools/read tools/write")),
        token("expired-within-skew", "key", at(json!({})), with(&|c| c["exp"] = json!(n - 10))),
        token("expired-beyond-skew", "key", at(json!({})), with(&|c| c["exp"] = json!(n - 120))),
        token("not-yet-valid", "key", at(json!({})), with(&|c| c["nbf"] = json!(n + 120))),
        token("wrong-aud", "key", at(json!({})), with(&|c| c["aud"] = json!(["http://localhost:8080/other"]))),
        token("wrong-iss", "key", at(json!({})), with(&|c| c["iss"] = json!("http://evil.example"))),
        token("alg-none", "none", json!({}), claims(iss, "tools/read")),
        token("alg-none-typed", "none-raw", at(json!({})), claims(iss, "tools/read")),
        token("hs256-with-public-key", "hs256-public", at(json!({})), claims(iss, "tools/read")),
        token(
            "unknown-kid",
            "fresh",
            json!({"typ": "at+jwt", "kid": "not-a-published-kid"}),
            claims(iss, "tools/read"),
        ),
        token("forged-with-known-kid", "fresh", at(json!({})), claims(iss, "tools/read")),
        token("missing-typ", "key", json!({"kid": kid}), claims(iss, "tools/read")),
        token("typ-jwt", "key", at(json!({"typ": "JWT"})), claims(iss, "tools/read")),
        token("jku-header", "key", at(json!({"jku": "http://127.0.0.1:1/jwks.json"})), claims(iss, "tools/read")),
        token("missing-kid", "key", json!({"typ": "at+jwt"}), claims(iss, "tools/read")),
        token("missing-sub", "key", at(json!({})), with(&|c| _ = c.as_object_mut().unwrap().remove("sub"))),
    ];
    let minted = mint(Some(key), &tokens);
    let cases = vec![
        Case { name: "valid", err_name: None },
        Case { name: "valid-read-write", err_name: None },
        Case { name: "expired-within-skew", err_name: None },
        Case { name: "expired-beyond-skew", err_name: Some("ErrTokenExpired") },
        Case { name: "not-yet-valid", err_name: Some("ErrTokenNotYetValid") },
        Case { name: "wrong-aud", err_name: Some("ErrWrongAudience") },
        Case { name: "wrong-iss", err_name: Some("ErrWrongIssuer") },
        Case { name: "alg-none", err_name: Some("ErrUnsupportedAlg") },
        Case { name: "alg-none-typed", err_name: Some("ErrUnsupportedAlg") },
        Case { name: "hs256-with-public-key", err_name: Some("ErrUnsupportedAlg") },
        Case { name: "unknown-kid", err_name: Some("ErrUnknownKid") },
        Case { name: "forged-with-known-kid", err_name: Some("ErrInvalidSignature") },
        Case { name: "missing-typ", err_name: Some("ErrWrongTokenType") },
        Case { name: "typ-jwt", err_name: Some("ErrWrongTokenType") },
        Case { name: "jku-header", err_name: Some("ErrForbiddenHeader") },
        Case { name: "missing-kid", err_name: Some("ErrMissingKid") },
        Case { name: "missing-sub", err_name: Some("ErrMissingClaim") },
    ];
    (cases, minted)
}

fn expected_challenge(error: Option<&str>, scope: &str) -> String {
    let mut s = format!(r#"Bearer resource_metadata="{PRM_URL}", scope="{scope}""#);
    if let Some(e) = error {
        s.push_str(&format!(r#", error="{e}""#));
    }
    s
}

#[tokio::test]
async fn discovers_the_authserver_and_verifies_offline() {
    let auth = AuthServer::start();
    let key = auth.keys().remove(0);
    let verifier = Verifier::new(resource(&auth.issuer));
    verifier.warm_up().await.unwrap();
    let stats = verifier.stats();
    assert_eq!((stats.discoveries, stats.jwks_fetches), (1, 1));
    assert_eq!(stats.kids, vec![key.kid.clone()]);
    assert_eq!(auth.jwks_requests(), 1);

    let minted = mint(
        Some(&key),
        &[token("t", "key", json!({"typ": "at+jwt", "kid": key.kid}), claims(&auth.issuer, "tools/read"))],
    );
    let (guard, logs) = capture_logs();
    for _ in 0..20 {
        let c = verifier.verify(&minted["t"]).await.unwrap();
        assert_eq!((c.sub.as_str(), c.client_id.as_str()), ("user-42", "dev-client"));
        assert_eq!(c.scope, ["tools/read"]);
    }
    drop(guard);
    // Steady state: no network call per request.
    assert_eq!(verifier.stats().jwks_fetches, 1);
    assert_eq!(auth.jwks_requests(), 1);

    // The debugging checklist's step 6 line, and never the token.
    let text = logs_text(&logs);
    assert!(
        text.contains(r#"level=INFO msg="verified" sub=user-42 scope=tools/read aud=http://localhost:8080/mcp client_id=dev-client"#),
        "{text}"
    );
    let signature = minted["t"].rsplit('.').next().unwrap();
    assert!(!text.contains(signature), "a token leaked into the logs");
}

#[tokio::test]
async fn an_issuer_that_differs_from_the_metadata_is_reported_at_start() {
    let auth = AuthServer::start();
    let verifier = Verifier::new(resource(&format!("{}/", auth.issuer)));
    let err = verifier.warm_up().await.unwrap_err();
    assert!(matches!(err, FetchError::IssuerMismatch { .. }), "{err}");
    assert!(err.to_string().contains("AUTHPLANE_SERVER_ISSUER"), "{err}");
}

#[tokio::test]
async fn crafted_defects_are_refused_by_the_verifier() {
    let auth = AuthServer::start();
    let (cases, minted) = matrix_tokens(&auth);
    let verifier = Verifier::new(resource(&auth.issuer));
    for case in &cases {
        let got = verifier.verify(&minted[case.name]).await.map(|_| ()).map_err(|e| e.err_name());
        assert_eq!(got, case.err_name.map_or(Ok(()), Err), "{}", case.name);
    }
}

mod axum_layer {
    use super::*;
    use authplane_sdk::Claims;
    use authplane_sdk::axum::{BearerAuthLayer, prm_router, require_scope};
    use axum::body::Body;
    use axum::routing::{get, post};
    use http::{Request, StatusCode};
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    fn app(verifier: Verifier) -> axum::Router {
        let resource = verifier.resource().clone();
        axum::Router::new()
            .route("/mcp", post(|c: Claims| async move { c.sub }).get(|c: Claims| async move { c.sub }))
            .route("/admin", get(|| async { "admin" }).route_layer(require_scope("tools/write")))
            .layer(BearerAuthLayer::new(verifier).tool_scope("add_note", "tools/write"))
            .merge(prm_router(&resource))
    }

    async fn send(app: &axum::Router, req: Request<Body>) -> (StatusCode, Option<String>, String) {
        let res = app.clone().oneshot(req).await.unwrap();
        let status = res.status();
        let www = res.headers().get("www-authenticate").map(|v| v.to_str().unwrap().to_owned());
        if www.is_some() {
            assert_eq!(res.headers()["access-control-expose-headers"], "WWW-Authenticate");
        }
        let body = String::from_utf8(res.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap();
        (status, www, body)
    }

    fn get_with(auth: Option<&str>) -> Request<Body> {
        let mut b = Request::get("/mcp");
        if let Some(a) = auth {
            b = b.header("authorization", a);
        }
        b.body(Body::empty()).unwrap()
    }

    fn call_tool(token: &str, tool: &str) -> Request<Body> {
        let body =
            json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": tool, "arguments": {}}});
        Request::post("/mcp")
            .header("authorization", format!("Bearer {token}"))
            .header("content-type", "application/json")
            .body(Body::from(body.to_string()))
            .unwrap()
    }

    #[tokio::test]
    async fn crafted_defects_get_the_right_status_and_challenge() {
        let auth = AuthServer::start();
        let (cases, minted) = matrix_tokens(&auth);
        let app = app(Verifier::new(resource(&auth.issuer)));

        for case in &cases {
            let (status, www, body) = send(&app, get_with(Some(&format!("Bearer {}", minted[case.name])))).await;
            match case.err_name {
                None => assert_eq!((status, body.as_str()), (StatusCode::OK, "user-42"), "{}", case.name),
                Some(_) => {
                    assert_eq!(status, StatusCode::UNAUTHORIZED, "{}", case.name);
                    let www = www.unwrap();
                    assert!(
                        www.starts_with(&expected_challenge(Some("invalid_token"), "tools/read")),
                        "{}: {www}",
                        case.name
                    );
                    assert!(www.contains("error_description=\""), "{www}");
                    let body: Value = serde_json::from_str(&body).unwrap();
                    assert_eq!(body["error"], "invalid_token");
                }
            }
        }

        // No token: a challenge without an error (RFC 6750 §3.1).
        let (status, www, _) = send(&app, get_with(None)).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert_eq!(www.unwrap(), expected_challenge(None, "tools/read"));
        let (status, www, _) = send(&app, get_with(Some("Basic dXNlcjpwYXNz"))).await;
        assert_eq!((status, www.unwrap()), (StatusCode::UNAUTHORIZED, expected_challenge(None, "tools/read")));
        let (status, www, _) = send(&app, get_with(Some("Bearer "))).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(www.unwrap().contains(r#"error="invalid_request""#));

        // Scopes: 403 insufficient_scope names what the token has plus what it lacks.
        let (status, www, _) = send(&app, call_tool(&minted["valid"], "add_note")).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        let www = www.unwrap();
        assert!(
            www.starts_with(&format!(
                r#"Bearer resource_metadata="{PRM_URL}", scope="tools/read tools/write", error="insufficient_scope""#
            )),
            "{www}"
        );
        let (status, _, body) = send(&app, call_tool(&minted["valid-read-write"], "add_note")).await;
        assert_eq!((status, body.as_str()), (StatusCode::OK, "user-42"));
        let (status, _, _) = send(&app, call_tool(&minted["valid"], "list_notes")).await;
        assert_eq!(status, StatusCode::OK);
        let bad = Request::post("/mcp")
            .header("authorization", format!("Bearer {}", minted["valid"]))
            .body(Body::from("{not json"))
            .unwrap();
        assert_eq!(send(&app, bad).await.0, StatusCode::BAD_REQUEST);
        // require_scope on a route.
        let admin = |t: &str| {
            Request::get("/admin").header("authorization", format!("Bearer {t}")).body(Body::empty()).unwrap()
        };
        assert_eq!(send(&app, admin(&minted["valid"])).await.0, StatusCode::FORBIDDEN);
        assert_eq!(send(&app, admin(&minted["valid-read-write"])).await.0, StatusCode::OK);
    }

    #[tokio::test]
    async fn serves_protected_resource_metadata_with_cors() {
        let auth = AuthServer::start();
        let app = app(Verifier::new(resource(&auth.issuer)));
        for path in ["/.well-known/oauth-protected-resource/mcp", "/.well-known/oauth-protected-resource"] {
            let res = app
                .clone()
                .oneshot(Request::get(path).header("origin", "http://localhost:6274").body(Body::empty()).unwrap())
                .await
                .unwrap();
            assert_eq!(res.status(), StatusCode::OK, "{path}");
            assert_eq!(res.headers()["access-control-allow-origin"], "*");
            let body: Value = serde_json::from_slice(&res.into_body().collect().await.unwrap().to_bytes()).unwrap();
            assert_eq!(
                body,
                json!({
                    "resource": RESOURCE,
                    "authorization_servers": [auth.issuer],
                    "scopes_supported": ["tools/read", "tools/write"],
                    "bearer_methods_supported": ["header"],
                    "resource_name": "Example MCP server",
                    "dpop_signing_alg_values_supported": ["ES256", "ES384", "EdDSA", "Ed25519", "RS256", "PS256"],
                })
            );
            let preflight = Request::options(path)
                .header("origin", "http://localhost:6274")
                .header("access-control-request-method", "GET")
                .body(Body::empty())
                .unwrap();
            let res = app.clone().oneshot(preflight).await.unwrap();
            assert_eq!(res.status(), StatusCode::NO_CONTENT);
        }
    }

    #[tokio::test]
    async fn without_any_key_set_the_answer_is_503_not_401() {
        // Nothing listens on this port: the AS is down and nothing was ever cached.
        let verifier = Verifier::new(resource("http://127.0.0.1:9"));
        let app = app(verifier.clone());
        let token = "eyJhbGciOiJFUzI1NiIsInR5cCI6ImF0K2p3dCIsImtpZCI6ImsifQ.e30.".to_owned() + &"A".repeat(86);
        let (status, www, _) = send(&app, get_with(Some(&format!("Bearer {token}")))).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(www.is_none());
        assert_eq!(verifier.stats().jwks_fetch_failures, 1);
    }
}

mod actix {
    use super::*;
    use actix_web::{App, HttpResponse, test, web};
    use authplane_sdk::Claims;
    use authplane_sdk::actix::{BearerAuth, prm, require_scope};

    fn hdr<B>(res: &actix_web::dev::ServiceResponse<B>, name: &str) -> String {
        res.headers().get(name).map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default()
    }

    async fn sub(c: Claims) -> String {
        c.sub
    }

    #[actix_web::test]
    async fn crafted_defects_get_the_right_status_and_challenge() {
        let auth = AuthServer::start();
        let (cases, minted) = matrix_tokens(&auth);
        let verifier = Verifier::new(resource(&auth.issuer));
        let res = verifier.resource().clone();
        let app = test::init_service(
            App::new()
                .configure(prm(&res))
                .service(
                    web::resource("/mcp")
                        .wrap(BearerAuth::new(verifier.clone()).tool_scope("add_note", "tools/write"))
                        .route(web::get().to(sub))
                        .route(web::post().to(|c: Claims, body: web::Bytes| async move {
                            HttpResponse::Ok().body(format!("{} {}", c.sub, body.len()))
                        })),
                )
                .service(
                    web::resource("/admin")
                        .wrap(require_scope("tools/write"))
                        .wrap(BearerAuth::new(verifier))
                        .route(web::get().to(sub)),
                ),
        )
        .await;

        for case in &cases {
            let req = test::TestRequest::get()
                .uri("/mcp")
                .insert_header(("authorization", format!("Bearer {}", minted[case.name])))
                .to_request();
            let res = test::call_service(&app, req).await;
            match case.err_name {
                None => assert_eq!(res.status(), 200, "{}", case.name),
                Some(_) => {
                    assert_eq!(res.status(), 401, "{}", case.name);
                    let www = hdr(&res, "www-authenticate");
                    assert!(www.starts_with(&expected_challenge(Some("invalid_token"), "tools/read")), "{www}");
                    assert_eq!(hdr(&res, "access-control-expose-headers"), "WWW-Authenticate");
                }
            }
        }

        let res = test::call_service(&app, test::TestRequest::get().uri("/mcp").to_request()).await;
        assert_eq!(res.status(), 401);
        assert_eq!(hdr(&res, "www-authenticate"), expected_challenge(None, "tools/read"));

        let call = |t: &str, tool: &str| {
            test::TestRequest::post()
                .uri("/mcp")
                .insert_header(("authorization", format!("Bearer {t}")))
                .set_payload(
                    json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": tool}}).to_string(),
                )
                .to_request()
        };
        let res = test::call_service(&app, call(&minted["valid"], "add_note")).await;
        assert_eq!(res.status(), 403);
        assert!(hdr(&res, "www-authenticate").contains(r#"error="insufficient_scope""#));
        // The body read for the scope check is handed on intact.
        let res = test::call_service(&app, call(&minted["valid-read-write"], "add_note")).await;
        assert_eq!(res.status(), 200);
        let body = test::read_body(res).await;
        assert!(String::from_utf8_lossy(&body).starts_with("user-42 "), "{body:?}");

        let admin = |t: &str| {
            test::TestRequest::get().uri("/admin").insert_header(("authorization", format!("Bearer {t}"))).to_request()
        };
        assert_eq!(test::call_service(&app, admin(&minted["valid"])).await.status(), 403);
        assert_eq!(test::call_service(&app, admin(&minted["valid-read-write"])).await.status(), 200);

        let res = test::call_service(
            &app,
            test::TestRequest::get().uri("/.well-known/oauth-protected-resource/mcp").to_request(),
        )
        .await;
        assert_eq!(res.status(), 200);
        assert_eq!(hdr(&res, "access-control-allow-origin"), "*");
        let body: Value = test::read_body_json(res).await;
        assert_eq!(body["resource"], RESOURCE);
        assert_eq!(body["authorization_servers"], json!([auth.issuer]));
    }
}

mod rotation {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn requests_keep_verifying_and_an_unknown_kid_refetches_once() {
        let auth = AuthServer::start();
        let old = auth.keys().remove(0);
        let clock = ManualClock::at_system_time();
        let verifier = Verifier::builder(resource(&auth.issuer)).clock(clock.clone()).build();
        verifier.warm_up().await.unwrap();
        let hdr = |kid: &str| json!({"typ": "at+jwt", "kid": kid});
        let t_old = mint(Some(&old), &[token("t", "key", hdr(&old.kid), claims(&auth.issuer, "tools/read"))])
            .remove("t")
            .unwrap();
        verifier.verify(&t_old).await.unwrap();

        let new = auth.rotate();
        let polls = auth.wait_for_kid_in_jwks(&new.kid);
        let baseline = auth.jwks_requests();
        assert_eq!(baseline, 1 + polls, "only the warm-up and our own polls so far");

        let t_new = mint(Some(&new), &[token("t", "key", hdr(&new.kid), claims(&auth.issuer, "tools/read"))])
            .remove("t")
            .unwrap();
        // Many concurrent requests with the new kid share one refetch.
        let mut tasks = Vec::new();
        for i in 0..16 {
            let v = verifier.clone();
            let t = if i % 4 == 0 { t_old.clone() } else { t_new.clone() };
            tasks.push(tokio::spawn(async move { v.verify(&t).await }));
        }
        for t in tasks {
            t.await.unwrap().unwrap();
        }
        assert_eq!(auth.jwks_requests(), baseline + 1, "exactly one JWKS refetch");
        assert_eq!(verifier.stats().jwks_fetches, 2);
        let mut kids = vec![old.kid.clone(), new.kid.clone()];
        kids.sort();
        assert_eq!(verifier.stats().kids, kids);

        // Both keys keep verifying with no further fetch.
        for _ in 0..5 {
            verifier.verify(&t_old).await.unwrap();
            verifier.verify(&t_new).await.unwrap();
        }
        assert_eq!(auth.jwks_requests(), baseline + 1);

        // An unknown kid within 30 s of the last refetch: refused, no fetch.
        let stranger = mint(None, &[token("t", "fresh", hdr("stranger"), claims(&auth.issuer, "tools/read"))])
            .remove("t")
            .unwrap();
        assert_eq!(verifier.verify(&stranger).await.unwrap_err(), VerifyError::UnknownKid("stranger".into()));
        assert_eq!(auth.jwks_requests(), baseline + 1, "rate-limited");
        // 30 s later one more refetch is allowed, and only one.
        clock.advance(30);
        assert!(verifier.verify(&stranger).await.is_err());
        assert!(verifier.verify(&stranger).await.is_err());
        assert_eq!(auth.jwks_requests(), baseline + 2);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_five_minute_refresh_runs_in_the_background() {
        let auth = AuthServer::start();
        let old = auth.keys().remove(0);
        let clock = ManualClock::at_system_time();
        let verifier = Verifier::builder(resource(&auth.issuer)).clock(clock.clone()).build();
        verifier.warm_up().await.unwrap();
        let new = auth.rotate();
        auth.wait_for_kid_in_jwks(&new.kid);
        let mut c = claims(&auth.issuer, "tools/read");
        c["exp"] = json!(now() + 3600);
        let t_old = mint(Some(&old), &[token("t", "key", json!({"typ": "at+jwt", "kid": old.kid}), c.clone())])
            .remove("t")
            .unwrap();
        let t_new =
            mint(Some(&new), &[token("t", "key", json!({"typ": "at+jwt", "kid": new.kid}), c)]).remove("t").unwrap();

        clock.advance(299);
        verifier.verify(&t_old).await.unwrap();
        assert_eq!(verifier.stats().jwks_fetches, 1, "not due yet");
        clock.advance(1);
        // Due: this request is served from the cache and starts a refresh.
        verifier.verify(&t_old).await.unwrap();
        wait_until(|| verifier.stats().jwks_fetches == 2).await;
        wait_until(|| verifier.stats().kids.len() == 2).await;
        verifier.verify(&t_new).await.unwrap();
        assert_eq!(verifier.stats().jwks_fetches, 2, "the new kid was already known");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_last_good_keys_are_served_while_the_authserver_is_down() {
        let mut auth = AuthServer::start();
        let key = auth.keys().remove(0);
        let clock = ManualClock::at_system_time();
        let verifier = Verifier::builder(resource(&auth.issuer)).clock(clock.clone()).build();
        verifier.warm_up().await.unwrap();
        let mut c = claims(&auth.issuer, "tools/read");
        c["exp"] = json!(now() + 3600);
        let t = mint(Some(&key), &[token("t", "key", json!({"typ": "at+jwt", "kid": key.kid}), c.clone())])
            .remove("t")
            .unwrap();
        let stranger =
            mint(None, &[token("t", "fresh", json!({"typ": "at+jwt", "kid": "stranger"}), c)]).remove("t").unwrap();

        auth.stop();
        verifier.verify(&t).await.unwrap();
        clock.advance(300);
        verifier.verify(&t).await.unwrap();
        wait_until(|| verifier.stats().jwks_fetch_failures == 1).await;
        verifier.verify(&t).await.unwrap();
        // An unknown kid while the AS is down: the refetch failed, so nobody
        // can say the kid is unknown to the AS; 503, not 401 (issue 20).
        let err = verifier.verify(&stranger).await.unwrap_err();
        assert!(matches!(err, VerifyError::KeysUnavailable(_)), "{err:?}");
        assert!(err.is_unavailable());
        assert_eq!(verifier.stats().jwks_fetch_failures, 2);
        assert_eq!(verifier.stats().kids, vec![key.kid.clone()]);
    }

    async fn wait_until(cond: impl Fn() -> bool) {
        for _ in 0..200 {
            if cond() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("condition not reached");
    }
}
