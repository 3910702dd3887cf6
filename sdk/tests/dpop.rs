//! DPoP at the resource server (RFC 9449 §7) against the real `authserver`'s
//! keys: access tokens minted by `jose` with `cnf.jkt`, proofs signed with a
//! client key, through the axum and actix middleware.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed step should panic

mod support;

use authplane_core::dpop::{Es256Signer, ProofClaims};
use authplane_sdk::{ProtectedResource, Verifier};
use serde_json::{Value, json};
use support::{AuthServer, RESOURCE, capture_logs, claims, logs_text, mint, now, token};

const HTU: &str = "http://localhost:8080/mcp";

fn resource(issuer: &str) -> ProtectedResource {
    ProtectedResource::new(RESOURCE, issuer).unwrap().with_scopes(["tools/read", "tools/write"]).unwrap()
}

/// Tokens signed by the AS's key: `bound` to `key`, and a plain `bearer` one.
fn tokens(auth: &AuthServer, key: &Es256Signer) -> (String, String) {
    let k = &auth.keys()[0];
    let h = json!({"typ": "at+jwt", "kid": k.kid});
    let mut bound = claims(&auth.issuer, "tools/read");
    bound["cnf"] = json!({"jkt": key.jkt()});
    let minted = mint(
        Some(k),
        &[token("bound", "key", h.clone(), bound), token("bearer", "key", h, claims(&auth.issuer, "tools/read"))],
    );
    (minted["bound"].clone(), minted["bearer"].clone())
}

fn jti() -> String {
    format!("p-{}-{}", now(), rand())
}

fn rand() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

fn proof(key: &Es256Signer, htm: &str, htu: &str, iat: i64, token: &str) -> String {
    key.sign(&ProofClaims { htm, htu, iat, jti: &jti(), access_token: Some(token), nonce: None }).unwrap()
}

mod axum_layer {
    use super::*;
    use authplane_sdk::Claims;
    use authplane_sdk::axum::{BearerAuthLayer, prm_router};
    use axum::body::Body;
    use axum::routing::post;
    use http::{Request, StatusCode};
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    fn app(verifier: Verifier) -> axum::Router {
        let resource = verifier.resource().clone();
        axum::Router::new()
            .route("/mcp", post(|c: Claims| async move { format!("{} {}", c.sub, c.token_type()) }))
            .layer(BearerAuthLayer::new(verifier))
            .merge(prm_router(&resource))
    }

    struct Answer {
        status: StatusCode,
        challenges: Vec<String>,
        body: String,
    }

    async fn send(app: &axum::Router, auth: &str, proofs: &[&str]) -> Answer {
        let mut b = Request::post("/mcp").header("authorization", auth);
        for p in proofs {
            b = b.header("dpop", *p);
        }
        let res = app.clone().oneshot(b.body(Body::empty()).unwrap()).await.unwrap();
        let status = res.status();
        let challenges =
            res.headers().get_all("www-authenticate").iter().map(|v| v.to_str().unwrap().to_owned()).collect();
        let body = String::from_utf8(res.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap();
        Answer { status, challenges, body }
    }

    fn dpop_error(a: &Answer) -> Option<&str> {
        let c = a.challenges.iter().find(|c| c.starts_with("DPoP "))?;
        let v = c.split("error=\"").nth(1)?;
        v.split('"').next()
    }

    #[tokio::test]
    async fn a_bound_token_with_its_proof_passes_and_every_broken_rule_is_refused() {
        let (_guard, logs) = capture_logs();
        let auth = AuthServer::start();
        let key = Es256Signer::generate().unwrap();
        let (bound, bearer) = tokens(&auth, &key);
        let app = app(Verifier::new(resource(&auth.issuer)));
        let n = now();

        let ok = send(&app, &format!("DPoP {bound}"), &[&proof(&key, "POST", HTU, n, &bound)]).await;
        assert_eq!((ok.status, ok.body.as_str()), (StatusCode::OK, "user-42 DPoP"), "{:?}", ok.challenges);
        assert!(
            logs_text(&logs).lines().any(|l| l.contains("msg=\"verified\"") && l.contains("token_type=DPoP")),
            "{}",
            logs_text(&logs)
        );
        // The query is not part of htu; a proof per request, the same one twice passes
        // too (no jti cache by default: the iat window bounds replay).
        let p = proof(&key, "POST", "http://localhost:8080/mcp?x=1", n, &bound);
        assert_eq!(send(&app, &format!("DPoP {bound}"), &[&p]).await.status, StatusCode::OK);
        assert_eq!(send(&app, &format!("DPoP {bound}"), &[&p]).await.status, StatusCode::OK);

        // RFC 9449 §7.1: a bound token as Bearer.
        let a = send(&app, &format!("Bearer {bound}"), &[]).await;
        assert_eq!(a.status, StatusCode::UNAUTHORIZED);
        assert!(a.body.contains("DPoP-bound"), "{}", a.body);
        assert!(a.challenges[0].starts_with("Bearer ") && a.challenges[0].contains("error=\"invalid_token\""));
        // Bearer tokens still work where DPoP is not required, and 401s offer both schemes.
        assert_eq!(send(&app, &format!("Bearer {bearer}"), &[]).await.status, StatusCode::OK);
        let none = app.clone().oneshot(Request::post("/mcp").body(Body::empty()).unwrap()).await.unwrap();
        let schemes: Vec<_> = none.headers().get_all("www-authenticate").iter().map(|v| v.to_str().unwrap()).collect();
        assert_eq!(schemes.len(), 2, "{schemes:?}");
        assert!(schemes[1].starts_with("DPoP algs=\"ES256 ES384 EdDSA Ed25519 RS256 PS256\", resource_metadata="));

        let other = Es256Signer::generate().unwrap();
        let cases: Vec<(&str, String, Vec<String>)> = vec![
            ("ErrDpopKeyMismatch", format!("DPoP {bound}"), vec![proof(&other, "POST", HTU, n, &bound)]),
            ("ErrDpopAth", format!("DPoP {bound}"), vec![proof(&key, "POST", HTU, n, &bearer)]),
            (
                "ErrDpopHtuMismatch",
                format!("DPoP {bound}"),
                vec![proof(&key, "POST", "http://localhost:8080/other", n, &bound)],
            ),
            ("ErrDpopHtmMismatch", format!("DPoP {bound}"), vec![proof(&key, "GET", HTU, n, &bound)]),
            ("ErrDpopIat", format!("DPoP {bound}"), vec![proof(&key, "POST", HTU, n - 600, &bound)]),
            ("ErrDpopIat", format!("DPoP {bound}"), vec![proof(&key, "POST", HTU, n + 600, &bound)]),
            ("ErrDpopMalformed", format!("DPoP {bound}"), vec![]),
            (
                "ErrDpopMalformed",
                format!("DPoP {bound}"),
                vec![proof(&key, "POST", HTU, n, &bound), proof(&key, "POST", HTU, n, &bound)],
            ),
            // An unbound token with the DPoP scheme.
            ("ErrDpopKeyMismatch", format!("DPoP {bearer}"), vec![proof(&key, "POST", HTU, n, &bearer)]),
        ];
        for (want, auth_header, proofs) in &cases {
            let p: Vec<&str> = proofs.iter().map(String::as_str).collect();
            let a = send(&app, auth_header, &p).await;
            assert_eq!(a.status, StatusCode::UNAUTHORIZED, "{want}");
            assert_eq!(dpop_error(&a), Some("invalid_dpop_proof"), "{want}: {:?}", a.challenges);
            assert!(!a.challenges[0].contains("error="), "{want}: the Bearer challenge stays clean");
            let body: Value = serde_json::from_str(&a.body).unwrap();
            assert_eq!(body["error"], "invalid_dpop_proof", "{want}");
            assert!(logs_text(&logs).contains(&format!("error={want}")), "{want} not logged");
        }
    }

    #[tokio::test]
    async fn a_dpop_required_resource_refuses_bearer_and_says_so_in_prm() {
        // Every test of this binary has a subscriber: tracing caches a
        // callsite's interest process-wide, and a thread without one would
        // turn the log lines off for the test that reads them.
        let (_guard, _) = capture_logs();
        let auth = AuthServer::start();
        let key = Es256Signer::generate().unwrap();
        let (bound, bearer) = tokens(&auth, &key);
        let app = app(Verifier::new(resource(&auth.issuer).with_dpop_required(true)));
        let a = send(&app, &format!("Bearer {bearer}"), &[]).await;
        assert_eq!(a.status, StatusCode::UNAUTHORIZED);
        assert_eq!(a.challenges.len(), 1, "DPoP only: {:?}", a.challenges);
        assert!(a.challenges[0].starts_with("DPoP algs=") && a.challenges[0].contains("error=\"invalid_token\""));
        assert!(
            a.challenges[0]
                .contains("resource_metadata=\"http://localhost:8080/.well-known/oauth-protected-resource/mcp\"")
        );
        let a = send(&app, &format!("DPoP {bound}"), &[&proof(&key, "POST", HTU, now(), &bound)]).await;
        assert_eq!(a.status, StatusCode::OK, "{:?}", a.challenges);
        let prm = app
            .clone()
            .oneshot(Request::get("/.well-known/oauth-protected-resource/mcp").body(Body::empty()).unwrap())
            .await
            .unwrap();
        let v: Value = serde_json::from_slice(&prm.into_body().collect().await.unwrap().to_bytes()).unwrap();
        assert_eq!(v["dpop_bound_access_tokens_required"], true);
    }

    #[tokio::test]
    async fn the_optional_jti_cache_refuses_a_proof_seen_before() {
        let (_guard, _) = capture_logs();
        let auth = AuthServer::start();
        let key = Es256Signer::generate().unwrap();
        let (bound, _) = tokens(&auth, &key);
        let app = app(Verifier::builder(resource(&auth.issuer)).dpop_jti_cache(1000).build());
        let p = proof(&key, "POST", HTU, now(), &bound);
        assert_eq!(send(&app, &format!("DPoP {bound}"), &[&p]).await.status, StatusCode::OK);
        let a = send(&app, &format!("DPoP {bound}"), &[&p]).await;
        assert_eq!((a.status, dpop_error(&a)), (StatusCode::UNAUTHORIZED, Some("invalid_dpop_proof")));
        assert!(a.body.contains("already used"), "{}", a.body);
        // A fresh proof passes.
        let p = proof(&key, "POST", HTU, now(), &bound);
        assert_eq!(send(&app, &format!("DPoP {bound}"), &[&p]).await.status, StatusCode::OK);
    }
}

mod actix {
    use super::*;
    use actix_web::{App, test, web};
    use authplane_sdk::Claims;
    use authplane_sdk::actix::BearerAuth;

    #[actix_web::test]
    async fn the_actix_middleware_checks_the_same_rules() {
        let (_guard, _) = capture_logs();
        let auth = AuthServer::start();
        let key = Es256Signer::generate().unwrap();
        let (bound, _) = tokens(&auth, &key);
        let app = test::init_service(
            App::new().service(
                web::resource("/mcp")
                    .wrap(BearerAuth::new(Verifier::new(resource(&auth.issuer))))
                    .route(web::post().to(|c: Claims| async move { c.token_type().to_owned() })),
            ),
        )
        .await;
        let req = test::TestRequest::post()
            .uri("/mcp")
            .insert_header(("authorization", format!("DPoP {bound}")))
            .insert_header(("dpop", proof(&key, "POST", HTU, now(), &bound)))
            .to_request();
        let res = test::call_service(&app, req).await;
        assert_eq!(res.status(), 200);
        assert_eq!(test::read_body(res).await, "DPoP");
        for (auth_header, expect) in
            [(format!("Bearer {bound}"), "invalid_token"), (format!("DPoP {bound}"), "invalid_dpop_proof")]
        {
            let req = test::TestRequest::post().uri("/mcp").insert_header(("authorization", auth_header)).to_request();
            let res = test::call_service(&app, req).await;
            assert_eq!(res.status(), 401);
            let all: Vec<_> =
                res.headers().get_all("www-authenticate").map(|v| v.to_str().unwrap().to_owned()).collect();
            assert!(all.iter().any(|c| c.contains(&format!("error=\"{expect}\""))), "{all:?}");
        }
    }
}
