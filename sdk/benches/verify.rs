//! What the SDK adds per request over raw ES256 signature verification.
//!
//! - `raw_es256_verify`: aws-lc ECDSA P-256 verify of a prepared signing
//!   input and signature, the lower bound for any verifier;
//! - `verifier_verify`: `Verifier::verify` on a warmed cache (parse, header
//!   rules, key lookup, signature, claims);
//! - `middleware_request`: a full request through the axum `BearerAuthLayer`
//!   to a trivial handler (`router_without_auth` is the same request with
//!   no layer: axum's share).
//!
//! The key set is served once by a loopback HTTP server; the benchmark
//! asserts that the steady state made no further JWKS request.
#![allow(clippy::unwrap_used, clippy::expect_used)] // benchmark set-up

use std::time::Duration;

use authplane_sdk::axum::BearerAuthLayer;
use authplane_sdk::{Claims, ProtectedResource, Verifier};
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED, ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair, ParsedPublicKey,
};
use axum::body::Body;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use criterion::{Criterion, criterion_group, criterion_main};
use tower::ServiceExt;

const RESOURCE: &str = "http://localhost:8080/mcp";

struct Fixture {
    rt: tokio::runtime::Runtime,
    token: String,
    signing_input: Vec<u8>,
    signature: Vec<u8>,
    public: ParsedPublicKey,
    verifier: Verifier,
}

fn fixture() -> Fixture {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let pair = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).unwrap();
    let point = pair.public_key().as_ref().to_vec();
    let (x, y) = (URL_SAFE_NO_PAD.encode(&point[1..33]), URL_SAFE_NO_PAD.encode(&point[33..65]));
    let kid = "bench-key";

    // A loopback AS serving metadata and JWKS.
    let listener = rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
    let issuer = format!("http://{}", listener.local_addr().unwrap());
    let meta = serde_json::json!({"issuer": issuer, "jwks_uri": format!("{issuer}/jwks")});
    let jwks = serde_json::json!({"keys": [{"kty": "EC", "crv": "P-256", "x": x, "y": y, "kid": kid, "alg": "ES256", "use": "sig"}]});
    let app = axum::Router::new()
        .route("/.well-known/oauth-authorization-server", axum::routing::get(move || async move { axum::Json(meta) }))
        .route("/jwks", axum::routing::get(move || async move { axum::Json(jwks) }));
    rt.spawn(async move { axum::serve(listener, app).await });

    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let header = serde_json::json!({"alg": "ES256", "typ": "at+jwt", "kid": kid});
    let claims = serde_json::json!({
        "iss": issuer, "sub": "user-42", "aud": [RESOURCE], "client_id": "dev-client",
        "scope": "tools/read tools/write", "iat": now, "exp": now + 3600, "jti": "bench-jti-0123456789",
    });
    let signing_input =
        format!("{}.{}", URL_SAFE_NO_PAD.encode(header.to_string()), URL_SAFE_NO_PAD.encode(claims.to_string()));
    let signature = pair.sign(&SystemRandom::new(), signing_input.as_bytes()).unwrap().as_ref().to_vec();
    let token = format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(&signature));

    let resource =
        ProtectedResource::new(RESOURCE, &issuer).unwrap().with_scopes(["tools/read", "tools/write"]).unwrap();
    let verifier = Verifier::new(resource);
    rt.block_on(verifier.warm_up()).unwrap();
    let public = ParsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, point).unwrap();
    Fixture { rt, token, signing_input: signing_input.into_bytes(), signature, public, verifier }
}

fn bench(c: &mut Criterion) {
    let f = fixture();
    let mut g = c.benchmark_group("per_request");

    g.bench_function("raw_es256_verify", |b| {
        b.iter(|| f.public.verify_sig(std::hint::black_box(&f.signing_input), &f.signature).unwrap())
    });

    g.bench_function("verifier_verify", |b| {
        b.iter(|| f.rt.block_on(f.verifier.verify(std::hint::black_box(&f.token))).unwrap())
    });

    let app = axum::Router::new()
        .route("/mcp", axum::routing::get(|c: Claims| async move { c.sub }))
        .layer(BearerAuthLayer::new(f.verifier.clone()));
    let auth = format!("Bearer {}", f.token);
    g.bench_function("middleware_request", |b| {
        b.iter(|| {
            let req = http::Request::get("/mcp").header("authorization", &auth).body(Body::empty()).unwrap();
            let res = f.rt.block_on(app.clone().oneshot(req)).unwrap();
            assert_eq!(res.status(), 200);
        })
    });

    // axum's own cost for the same request without the SDK, to separate it
    // from what the layer adds.
    let bare = axum::Router::new().route("/mcp", axum::routing::get(|| async { "user-42" }));
    g.bench_function("router_without_auth", |b| {
        b.iter(|| {
            let req = http::Request::get("/mcp").header("authorization", &auth).body(Body::empty()).unwrap();
            let res = f.rt.block_on(bare.clone().oneshot(req)).unwrap();
            assert_eq!(res.status(), 200);
        })
    });
    g.finish();

    // Zero network calls per request in the steady state.
    let stats = f.verifier.stats();
    assert_eq!((stats.discoveries, stats.jwks_fetches), (1, 1), "{stats:?}");
    println!("steady state: {} JWKS fetch(es) in total (the warm-up)", stats.jwks_fetches);
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(4)).sample_size(60);
    targets = bench
}
criterion_main!(benches);
