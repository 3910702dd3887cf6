//! The findings of the black-box probe of issue 20, each as a test against
//! the real `authserver` (tokens minted by `jose`): MCP sessions bound to the
//! principal that created them and bounded, the unknown-`kid` refetch against
//! an AS that hangs (a real TCP listener that accepts and never answers),
//! the maximum age of cached keys, sampled and clipped log lines, CORS
//! preflights, and the audience rule.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed step should panic

mod support;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use authplane_core::keyfile::SigningKeyFile;
use authplane_sdk::{
    CachePolicy, Cors, ManualClock, ProtectedResource, SessionLimits, Sessions, Verifier, VerifyError,
};
use serde_json::{Value, json};
use support::{AuthServer, RESOURCE, capture_logs, claims, logs_text, mint, now, token};

fn resource(issuer: &str) -> ProtectedResource {
    ProtectedResource::new(RESOURCE, issuer)
        .unwrap()
        .with_scopes(["tools/read", "tools/write"])
        .unwrap()
        .with_default_scopes(["tools/read"])
        .unwrap()
}

fn header(key: &SigningKeyFile) -> Value {
    json!({"typ": "at+jwt", "kid": key.kid})
}

/// Tokens of several principals: `probe` (the creator), `mallory` (another
/// subject, another client), `probe-other-client` (same subject, another
/// client) and `user-N` for N in 0..n.
fn principals(auth: &AuthServer, n: usize) -> std::collections::HashMap<String, String> {
    let key = &auth.keys()[0];
    let mut specs = Vec::new();
    let mut add = |name: &str, sub: &str, client: &str| {
        let mut c = claims(&auth.issuer, "tools/read");
        c["sub"] = json!(sub);
        c["client_id"] = json!(client);
        specs.push(token(name, "key", header(key), c));
    };
    add("probe", "probe", "dev-client");
    add("mallory", "mallory", "other");
    add("probe-other-client", "probe", "other");
    for i in 0..n {
        add(&format!("user-{i}"), &format!("user-{i}"), "dev-client");
    }
    mint(Some(key), &specs)
}

mod axum_sessions {
    use super::*;
    use authplane_sdk::Claims;
    use authplane_sdk::axum::BearerAuthLayer;
    use axum::body::Body;
    use axum::response::Response;
    use http::{Method, Request, StatusCode};
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    static NEXT: AtomicU64 = AtomicU64::new(1);

    /// The part of an MCP streamable-HTTP server the registry relies on: a
    /// POST without `Mcp-Session-Id` creates a session and names it in the
    /// response; DELETE ends it.
    async fn mcp(c: Claims, req: Request<Body>) -> Response {
        let session = req.headers().get("mcp-session-id").map(|v| v.to_str().unwrap().to_owned());
        let mut b = Response::builder();
        let body = match (req.method().clone(), session) {
            (Method::POST, None) => {
                let id = format!("session-{:08}", NEXT.fetch_add(1, Ordering::Relaxed));
                b = b.header("mcp-session-id", id.clone());
                format!("created {id}")
            }
            (Method::DELETE, Some(_)) => {
                b = b.status(StatusCode::ACCEPTED);
                String::new()
            }
            (_, Some(id)) => format!("{} in {id}", c.sub),
            (_, None) => "no session".into(),
        };
        b.body(Body::from(body)).unwrap()
    }

    fn app(verifier: Verifier, sessions: Sessions) -> axum::Router {
        axum::Router::new()
            .route("/mcp", axum::routing::any(mcp))
            .layer(BearerAuthLayer::new(verifier).sessions(sessions).cors(Cors::any_origin()))
    }

    async fn call(
        app: &axum::Router,
        method: Method,
        token: &str,
        session: Option<&str>,
    ) -> (StatusCode, Option<String>, String) {
        let mut b = Request::builder().method(method).uri("/mcp").header("authorization", format!("Bearer {token}"));
        if let Some(s) = session {
            b = b.header("mcp-session-id", s);
        }
        let res = app.clone().oneshot(b.body(Body::from("{}")).unwrap()).await.unwrap();
        let status = res.status();
        let sid = res.headers().get("mcp-session-id").map(|v| v.to_str().unwrap().to_owned());
        let body = String::from_utf8(res.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap();
        (status, sid, body)
    }

    async fn initialize(app: &axum::Router, token: &str) -> String {
        let (status, sid, _) = call(app, Method::POST, token, None).await;
        assert_eq!(status, StatusCode::OK);
        sid.expect("a session id")
    }

    #[tokio::test]
    async fn a_session_answers_only_the_principal_that_created_it() {
        let auth = AuthServer::start();
        let t = principals(&auth, 0);
        let sessions = Sessions::default();
        let app = app(Verifier::new(resource(&auth.issuer)), sessions.clone());
        let (guard, logs) = capture_logs();

        let s = initialize(&app, &t["probe"]).await;
        let (status, _, body) = call(&app, Method::POST, &t["probe"], Some(&s)).await;
        assert_eq!((status, body), (StatusCode::OK, format!("probe in {s}")));

        // Another subject and client; the same subject through another client.
        let (status, _, not_yours) = call(&app, Method::POST, &t["mallory"], Some(&s)).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        let (status, _, _) = call(&app, Method::GET, &t["probe-other-client"], Some(&s)).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        let (status, _, _) = call(&app, Method::DELETE, &t["mallory"], Some(&s)).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "nor may another principal end it");
        // As if it did not exist: the same answer as for an unknown id.
        let (status, _, unknown) = call(&app, Method::POST, &t["mallory"], Some("session-never")).await;
        assert_eq!((status, &unknown), (StatusCode::NOT_FOUND, &not_yours));
        assert_eq!(not_yours, "Not Found: Session not found");

        // The creator still has it; DELETE ends it for good.
        assert_eq!(call(&app, Method::GET, &t["probe"], Some(&s)).await.0, StatusCode::OK);
        assert_eq!(call(&app, Method::DELETE, &t["probe"], Some(&s)).await.0, StatusCode::ACCEPTED);
        assert_eq!(call(&app, Method::GET, &t["probe"], Some(&s)).await.0, StatusCode::NOT_FOUND);
        drop(guard);

        let text = logs_text(&logs);
        let warns: Vec<&str> = text.lines().filter(|l| l.contains(r#"msg="session principal mismatch""#)).collect();
        assert_eq!(warns.len(), 3, "{text}");
        assert!(warns[0].contains("level=WARN"), "{}", warns[0]);
        assert!(warns[0].contains("error=ErrSessionPrincipalMismatch sub=mallory client_id=other"), "{}", warns[0]);
        assert!(warns[0].contains("session_sub=probe session_client_id=dev-client"), "{}", warns[0]);
        assert!(!text.contains(&s), "the full session id is not logged");
        assert_eq!(sessions.stats().principal_mismatches, 3);
    }

    #[tokio::test]
    async fn sessions_are_bounded_per_principal_globally_and_in_time() {
        let auth = AuthServer::start();
        let t = principals(&auth, 3);
        let closed = Arc::new(Mutex::new(Vec::<String>::new()));
        let c2 = closed.clone();
        let clock = ManualClock::at_system_time();
        let sessions = Sessions::new(SessionLimits {
            per_principal: 2,
            max_sessions: 3,
            idle_timeout_secs: 60,
            retry_after_secs: 7,
        })
        .with_clock(clock.clone())
        .on_close(move |id| c2.lock().unwrap().push(id));
        let app = app(Verifier::new(resource(&auth.issuer)), sessions.clone());

        // Per principal: a storm of initializes by one token holds two sessions.
        let mut ids = Vec::new();
        let (guard, logs) = capture_logs();
        for _ in 0..50 {
            ids.push(initialize(&app, &t["probe"]).await);
        }
        drop(guard);
        let evicted_lines = logs_text(&logs).lines().filter(|l| l.contains(r#"msg="session evicted""#)).count();
        assert_eq!(evicted_lines, 10, "sampled: 10 lines for 48 evictions");
        assert_eq!(sessions.stats().open, 2);
        assert_eq!(sessions.stats().evicted_per_principal, 48);
        assert_eq!(closed.lock().unwrap().len(), 48, "the MCP server is told to close each evicted session");
        assert_eq!(call(&app, Method::GET, &t["probe"], Some(&ids[0])).await.0, StatusCode::NOT_FOUND);
        assert_eq!(call(&app, Method::GET, &t["probe"], Some(&ids[49])).await.0, StatusCode::OK);

        // Globally: the third principal's first session fills the registry.
        initialize(&app, &t["user-0"]).await;
        let res = app
            .clone()
            .oneshot(
                Request::post("/mcp")
                    .header("authorization", format!("Bearer {}", t["user-1"]))
                    .body(Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(res.headers()["retry-after"], "7");

        // In time: idle sessions close, and the slots are free again.
        clock.advance(61);
        assert_eq!(sessions.reap_idle(), 3);
        assert_eq!(sessions.stats().open, 0);
        initialize(&app, &t["user-1"]).await;
        initialize(&app, &t["user-2"]).await;
        assert_eq!(call(&app, Method::GET, &t["probe"], Some(&ids[49])).await.0, StatusCode::NOT_FOUND);
    }

    #[tokio::test]
    async fn cors_preflights_are_answered_without_a_token() {
        let auth = AuthServer::start();
        let app = app(Verifier::new(resource(&auth.issuer)), Sessions::default());
        let preflight = Request::options("/mcp")
            .header("origin", "http://localhost:6274")
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", "authorization, content-type, mcp-protocol-version")
            .body(Body::empty())
            .unwrap();
        let res = app.clone().oneshot(preflight).await.unwrap();
        assert_eq!(res.status(), StatusCode::NO_CONTENT);
        assert_eq!(res.headers()["access-control-allow-origin"], "*");
        let allowed = res.headers()["access-control-allow-headers"].to_str().unwrap();
        assert!(allowed.contains("authorization") && allowed.contains("mcp-session-id"), "{allowed}");

        // The 401 a page then gets is readable by it.
        let res = app
            .clone()
            .oneshot(Request::post("/mcp").header("origin", "http://localhost:6274").body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(res.headers()["access-control-allow-origin"], "*");
        let exposed = res.headers()["access-control-expose-headers"].to_str().unwrap();
        assert!(exposed.contains("WWW-Authenticate") && exposed.contains("Mcp-Session-Id"), "{exposed}");

        // An OPTIONS that is not a preflight is an ordinary request.
        let res = app.clone().oneshot(Request::options("/mcp").body(Body::empty()).unwrap()).await.unwrap();
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    }
}

mod actix_sessions {
    use super::*;
    use actix_web::{App, HttpRequest, HttpResponse, test, web};
    use authplane_sdk::Claims;
    use authplane_sdk::actix::BearerAuth;

    static NEXT: AtomicU64 = AtomicU64::new(1);

    async fn mcp(c: Claims, req: HttpRequest) -> HttpResponse {
        match req.headers().get("mcp-session-id") {
            None => {
                let id = format!("actix-{:08}", NEXT.fetch_add(1, Ordering::Relaxed));
                HttpResponse::Ok().insert_header(("mcp-session-id", id.clone())).body(format!("created {id}"))
            }
            Some(id) => HttpResponse::Ok().body(format!("{} in {}", c.sub, id.to_str().unwrap())),
        }
    }

    #[actix_web::test]
    async fn a_session_answers_only_the_principal_that_created_it_and_is_bounded() {
        let auth = AuthServer::start();
        let t = principals(&auth, 0);
        let sessions = Sessions::new(SessionLimits { per_principal: 2, ..SessionLimits::default() });
        let verifier = Verifier::new(resource(&auth.issuer));
        let app = test::init_service(
            App::new().service(
                web::resource("/mcp")
                    .wrap(BearerAuth::new(verifier).sessions(sessions.clone()).cors(Cors::any_origin()))
                    .route(web::to(mcp)),
            ),
        )
        .await;
        let req = |token: &str, session: Option<&str>| {
            let mut r =
                test::TestRequest::post().uri("/mcp").insert_header(("authorization", format!("Bearer {token}")));
            if let Some(s) = session {
                r = r.insert_header(("mcp-session-id", s.to_owned()));
            }
            r.to_request()
        };
        let res = test::call_service(&app, req(&t["probe"], None)).await;
        assert_eq!(res.status(), 200);
        let s = res.headers().get("mcp-session-id").unwrap().to_str().unwrap().to_owned();

        assert_eq!(test::call_service(&app, req(&t["probe"], Some(&s))).await.status(), 200);
        let res = test::call_service(&app, req(&t["mallory"], Some(&s))).await;
        assert_eq!(res.status(), 404);
        assert_eq!(test::read_body(res).await, "Not Found: Session not found");
        assert_eq!(test::call_service(&app, req(&t["probe-other-client"], Some(&s))).await.status(), 404);
        assert_eq!(sessions.stats().principal_mismatches, 2);

        // Per-principal cap: two more sessions push out the first.
        for _ in 0..2 {
            assert_eq!(test::call_service(&app, req(&t["probe"], None)).await.status(), 200);
        }
        assert_eq!(test::call_service(&app, req(&t["probe"], Some(&s))).await.status(), 404);
        assert_eq!(sessions.stats().open, 2);

        // CORS preflight without a token.
        let preflight = test::TestRequest::default()
            .method(actix_web::http::Method::OPTIONS)
            .uri("/mcp")
            .insert_header(("origin", "http://localhost:6274"))
            .insert_header(("access-control-request-method", "POST"))
            .to_request();
        let res = test::call_service(&app, preflight).await;
        assert_eq!(res.status(), 204);
        assert_eq!(res.headers().get("access-control-allow-origin").unwrap(), "*");
        let res = test::call_service(
            &app,
            test::TestRequest::post().uri("/mcp").insert_header(("origin", "http://localhost:6274")).to_request(),
        )
        .await;
        assert_eq!(res.status(), 401);
        let exposed = res.headers().get("access-control-expose-headers").unwrap().to_str().unwrap();
        assert!(exposed.contains("WWW-Authenticate"), "{exposed}");
    }
}

/// A loopback TCP proxy in front of the AS that can be switched to hang:
/// it then accepts connections and never answers, and stops passing requests
/// on connections already open (a real fault, as an AS stuck on a lock or a
/// dead upstream behind a load balancer).
struct HangableProxy {
    addr: std::net::SocketAddr,
    hang: Arc<AtomicBool>,
}

impl HangableProxy {
    async fn start(upstream: &str) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let hang = Arc::new(AtomicBool::new(false));
        let h = hang.clone();
        let upstream = upstream.trim_start_matches("http://").to_owned();
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((mut conn, _)) = listener.accept().await {
                if h.load(Ordering::SeqCst) {
                    held.push(conn); // accepted, never answered, never closed
                    continue;
                }
                let up = upstream.clone();
                let h = h.clone();
                tokio::spawn(async move {
                    use tokio::io::{AsyncReadExt, AsyncWriteExt};
                    let Ok(u) = tokio::net::TcpStream::connect(up).await else { return };
                    let (mut cr, mut cw) = conn.split();
                    let (mut ur, mut uw) = u.into_split();
                    let requests = async {
                        let mut buf = vec![0u8; 16 * 1024];
                        loop {
                            let n = match cr.read(&mut buf).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => n,
                            };
                            while h.load(Ordering::SeqCst) {
                                tokio::time::sleep(Duration::from_millis(20)).await;
                            }
                            if uw.write_all(&buf[..n]).await.is_err() {
                                return;
                            }
                        }
                    };
                    let responses = tokio::io::copy(&mut ur, &mut cw);
                    tokio::select! {
                        _ = requests => {}
                        _ = responses => {}
                    }
                });
            }
        });
        HangableProxy { addr, hang }
    }

    fn jwks_uri(&self) -> String {
        format!("http://{}/.well-known/jwks.json", self.addr)
    }
}

mod jwks_faults {
    use super::*;

    fn short_http() -> reqwest::Client {
        reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(1))
            .timeout(Duration::from_secs(3))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_unknown_kid_against_a_hanging_authserver_is_503_within_the_timeout() {
        let auth = AuthServer::start();
        let key = auth.keys().remove(0);
        let proxy = HangableProxy::start(&auth.issuer).await;
        let clock = ManualClock::at_system_time();
        let policy = CachePolicy { unknown_kid_timeout_ms: 300, ..CachePolicy::default() };
        let verifier = Verifier::builder(resource(&auth.issuer).with_jwks_uri(&proxy.jwks_uri()).unwrap())
            .clock(clock.clone())
            .http_client(short_http())
            .cache_policy(policy)
            .build();
        verifier.warm_up().await.unwrap();
        let mut c = claims(&auth.issuer, "tools/read");
        c["exp"] = json!(now() + 3600);
        let minted = mint(
            Some(&key),
            &[
                token("known", "key", header(&key), c.clone()),
                token("stranger", "fresh", json!({"typ": "at+jwt", "kid": "stranger"}), c.clone()),
            ],
        );

        proxy.hang.store(true, Ordering::SeqCst);
        let started = Instant::now();
        let err = verifier.verify(&minted["stranger"]).await.unwrap_err();
        let waited = started.elapsed();
        assert_eq!(err, VerifyError::KeysRefreshTimeout { timeout_ms: 300 });
        assert!(waited >= Duration::from_millis(300) && waited < Duration::from_secs(2), "{waited:?}");
        // Through the middleware: 503 with Retry-After, no challenge.
        let app = axum::Router::new()
            .route("/mcp", axum::routing::post(|| async { "ok" }))
            .layer(authplane_sdk::axum::BearerAuthLayer::new(verifier.clone()));
        clock.advance(30);
        let res = tower::ServiceExt::oneshot(
            app,
            http::Request::post("/mcp")
                .header("authorization", format!("Bearer {}", minted["stranger"]))
                .body(axum::body::Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
        assert_eq!(res.status(), http::StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(res.headers()["retry-after"], "30");
        assert!(res.headers().get("www-authenticate").is_none());
        // Known keys keep working while the AS hangs.
        verifier.verify(&minted["known"]).await.unwrap();

        // The AS answers again: once the refetch completes and lacks the
        // kid, the answer is 401 ErrUnknownKid.
        proxy.hang.store(false, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_secs(3)).await; // the hung fetches time out
        clock.advance(30);
        assert_eq!(verifier.verify(&minted["stranger"]).await.unwrap_err(), VerifyError::UnknownKid("stranger".into()));
        // Within the rate limit, the completed refetch still answers for it.
        assert_eq!(verifier.verify(&minted["stranger"]).await.unwrap_err(), VerifyError::UnknownKid("stranger".into()));
    }

    // One thread: the refresh task's WARN goes to this thread's log capture.
    #[tokio::test]
    async fn cached_keys_are_served_with_a_warn_until_the_maximum_age() {
        let mut auth = AuthServer::start();
        let key = auth.keys().remove(0);
        let clock = ManualClock::at_system_time();
        let policy = CachePolicy { max_key_age: 900, ..CachePolicy::default() };
        let verifier = Verifier::builder(resource(&auth.issuer)).clock(clock.clone()).cache_policy(policy).build();
        verifier.warm_up().await.unwrap();
        let mut c = claims(&auth.issuer, "tools/read");
        c["exp"] = json!(now() + 7200);
        let t = mint(Some(&key), &[token("t", "key", header(&key), c)]).remove("t").unwrap();
        auth.stop();

        let (guard, logs) = capture_logs();
        clock.advance(300);
        verifier.verify(&t).await.unwrap();
        for _ in 0..200 {
            if verifier.stats().jwks_fetch_failures == 1 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        assert_eq!(verifier.stats().jwks_fetch_failures, 1);
        verifier.verify(&t).await.unwrap();
        clock.advance(600); // 900 s since the last good fetch: still trusted
        verifier.verify(&t).await.unwrap();
        clock.advance(1);
        let err = verifier.verify(&t).await.unwrap_err();
        assert_eq!(err, VerifyError::KeysStale { age: 901, max_age: 900 });
        assert_eq!(err.err_name(), "ErrJwksStale");
        drop(guard);
        let text = logs_text(&logs);
        assert!(
            text.lines().any(|l| l.contains("level=WARN")
                && l.contains(r#"msg="jwks refresh failed""#)
                && l.contains(r#"action="serving cached keys until max_key_age""#)
                && l.contains("max_key_age_secs=900")),
            "{text}"
        );
    }
}

mod log_lines {
    use super::*;

    #[tokio::test]
    async fn refusals_are_sampled_per_reason_and_counted() {
        let auth = AuthServer::start();
        let key = auth.keys().remove(0);
        let verifier = Verifier::new(resource(&auth.issuer));
        let mut expired = claims(&auth.issuer, "tools/read");
        expired["exp"] = json!(now() - 3600);
        let mut wrong_aud = claims(&auth.issuer, "tools/read");
        wrong_aud["aud"] = json!(["http://localhost:8080/other"]);
        let minted = mint(
            Some(&key),
            &[token("expired", "key", header(&key), expired), token("wrong-aud", "key", header(&key), wrong_aud)],
        );
        let (guard, logs) = capture_logs();
        for _ in 0..50 {
            assert!(verifier.verify(&minted["expired"]).await.is_err());
        }
        assert!(verifier.verify(&minted["wrong-aud"]).await.is_err());
        drop(guard);
        let text = logs_text(&logs);
        let lines = |e: &str| text.lines().filter(|l| l.contains(&format!("error={e} "))).count();
        assert_eq!(lines("ErrTokenExpired"), 10, "{text}");
        assert_eq!(lines("ErrWrongAudience"), 1, "another reason has its own budget");
        let counts = verifier.stats().rejections;
        assert_eq!(counts["ErrTokenExpired"], 50);
        assert_eq!(counts["ErrWrongAudience"], 1);
    }

    #[tokio::test]
    async fn middleware_refusals_are_sampled_and_counted_too() {
        use axum::body::Body;
        use tower::ServiceExt;
        let auth = AuthServer::start();
        let key = auth.keys().remove(0);
        let verifier = Verifier::new(resource(&auth.issuer));
        let read = mint(Some(&key), &[token("t", "key", header(&key), claims(&auth.issuer, "tools/read"))])
            .remove("t")
            .unwrap();
        let app = axum::Router::new()
            .route("/mcp", axum::routing::post(|| async { "ok" }))
            .layer(authplane_sdk::axum::BearerAuthLayer::new(verifier.clone()).tool_scope("add_note", "tools/write"));
        let call = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "add_note"}});
        let (guard, logs) = capture_logs();
        for i in 0..30 {
            let auth_header = if i % 2 == 0 { format!("Bearer {read}") } else { "Bearer ".to_owned() };
            let req = http::Request::post("/mcp")
                .header("authorization", auth_header)
                .body(Body::from(call.to_string()))
                .unwrap();
            let status = app.clone().oneshot(req).await.unwrap().status();
            assert!(status == 403 || status == 400, "{status}");
        }
        drop(guard);
        let text = logs_text(&logs);
        let lines = |e: &str| text.lines().filter(|l| l.contains(&format!("error={e} "))).count();
        assert_eq!(lines("ErrInsufficientScope"), 10, "{text}");
        assert_eq!(lines("ErrInvalidRequest"), 10, "{text}");
        let counts = verifier.stats().rejections;
        assert_eq!((counts["ErrInsufficientScope"], counts["ErrInvalidRequest"]), (15, 15));
    }

    #[tokio::test]
    async fn a_token_with_331_audiences_prints_a_short_line() {
        let auth = AuthServer::start();
        let key = auth.keys().remove(0);
        let verifier = Verifier::new(resource(&auth.issuer));
        let mut c = claims(&auth.issuer, "tools/read");
        // Short values: the whole token must stay under the 8 KiB cap.
        let mut aud: Vec<String> = (0..330).map(|i| format!("urn:a:{i:03}")).collect();
        aud.push(RESOURCE.into());
        c["aud"] = json!(aud);
        let mut wrong = c.clone();
        wrong["aud"] = json!(aud[..330]);
        let minted =
            mint(Some(&key), &[token("many", "key", header(&key), c), token("wrong", "key", header(&key), wrong)]);
        let (guard, logs) = capture_logs();
        let claims = verifier.verify(&minted["many"]).await.unwrap();
        assert_eq!(claims.aud.len(), 331);
        assert!(verifier.verify(&minted["wrong"]).await.is_err());
        drop(guard);
        let text = logs_text(&logs);
        assert!(text.contains("msg=\"token rejected\""), "{text}");
        for line in text.lines() {
            assert!(line.len() < 700, "{} bytes: {line}", line.len());
        }
        assert!(text.contains("msg=\"verified\""));
        assert!(text.contains("more)"), "{text}");
    }
}

mod audience {
    use super::*;

    #[tokio::test]
    async fn the_audience_rule_is_the_one_in_core() {
        let auth = AuthServer::start();
        let key = auth.keys().remove(0);
        let verifier = Verifier::new(resource(&auth.issuer));
        let same = [
            "http://localhost:8080/mcp/",
            "http://LOCALHOST:8080/mcp",
            "HTTP://localhost:8080/mcp",
            "http://localhost:8080/./mcp",
            "  http://localhost:8080/mcp ",
        ];
        let other = ["http://localhost:8080/MCP", "https://localhost:8080/mcp", "http://localhost:8080/mcp//"];
        let canonical = authplane_core::ResourceUri::parse(RESOURCE).unwrap();
        let mut specs = Vec::new();
        for (i, a) in same.iter().chain(other.iter()).enumerate() {
            let mut c = claims(&auth.issuer, "tools/read");
            c["aud"] = json!([a]);
            specs.push(token(&format!("t{i}"), "key", header(&key), c));
        }
        let minted = mint(Some(&key), &specs);
        for (i, a) in same.iter().chain(other.iter()).enumerate() {
            let got = verifier.verify(&minted[&format!("t{i}")]).await;
            // The SDK agrees with core's rule, whatever that rule says.
            assert_eq!(got.is_ok(), canonical.is_same_resource(a), "{a:?}: {got:?}");
            assert_eq!(got.is_ok(), same.contains(a), "{a:?}");
        }
    }
}
