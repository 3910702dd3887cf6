//! DPoP at the token endpoint (RFC 9449): bound tokens on every grant, the
//! replay store, nonces, code and refresh-token binding, mandatory proofs,
//! and what an operator sees (error, log line, metric, audit row).

use authplane_core::dpop::{Es256Signer, ProofClaims};
use serde_json::{Value, json};

use crate::helpers::*;

/// The token endpoint's URL as the issuer names it (what `htu` must be).
const HTU: &str = "http://localhost:9000/oauth/token";

fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64
}

fn jti() -> String {
    let mut b = [0u8; 12];
    aws_lc_rs::rand::fill(&mut b).unwrap();
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn proof(key: &Es256Signer) -> String {
    key.sign(&ProofClaims { htm: "POST", htu: HTU, iat: now(), jti: &jti(), access_token: None, nonce: None }).unwrap()
}

struct Answer {
    status: u16,
    body: Value,
    nonce: Option<String>,
}

async fn token_with(app: &TestApp, form: &[(&str, &str)], proofs: &[&str]) -> Answer {
    let mut req = app.http.post(format!("{}/oauth/token", app.public)).form(form);
    for p in proofs {
        req = req.header("DPoP", *p);
    }
    let res = req.send().await.unwrap();
    let status = res.status().as_u16();
    let nonce = res.headers().get("dpop-nonce").map(|v| v.to_str().unwrap().to_owned());
    Answer { status, body: res.json().await.unwrap_or(Value::Null), nonce }
}

fn cc_form(me: &(String, String)) -> Vec<(&str, &str)> {
    vec![("grant_type", "client_credentials"), ("client_id", &me.0), ("client_secret", &me.1)]
}

async fn rejected(app: &TestApp, reason: &str) -> f64 {
    app.metric(&format!("authplane_dpop_proofs_rejected_total{{reason=\"{reason}\"}}")).await
}

#[tokio::test]
async fn client_credentials_with_a_proof_gets_a_bound_token_that_introspection_shows() {
    let app = spawn_app().await;
    let me = app.confidential_client(&["client_credentials"]).await;
    let key = Es256Signer::generate().unwrap();
    let a = token_with(&app, &cc_form(&me), &[&proof(&key)]).await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.body["token_type"], "DPoP");
    let at = a.body["access_token"].as_str().unwrap();
    assert_eq!(jwt_part(at, 1)["cnf"]["jkt"], key.jkt());
    assert_eq!(app.metric("authplane_dpop_proofs_validated_total").await, 1.0);
    let i = app.introspect(&me, at).await;
    assert_eq!((i["active"].as_bool(), i["token_type"].as_str()), (Some(true), Some("DPoP")));
    assert_eq!(i["cnf"]["jkt"], key.jkt());
    // Without a proof the same client still gets a bearer token: DPoP is opt-in.
    let (s, v) = app.token(&cc_form(&me)).await;
    assert_eq!((s, v["token_type"].as_str()), (200, Some("Bearer")));
    assert!(jwt_part(v["access_token"].as_str().unwrap(), 1).get("cnf").is_none());
}

#[tokio::test]
async fn a_replayed_proof_is_refused_with_reason_log_metric_and_audit_row() {
    let app = spawn_app().await;
    let me = app.confidential_client(&["client_credentials"]).await;
    let key = Es256Signer::generate().unwrap();
    let p = proof(&key);
    assert_eq!(token_with(&app, &cc_form(&me), &[&p]).await.status, 200);
    let a = token_with(&app, &cc_form(&me), &[&p]).await;
    assert_eq!((a.status, a.body["error"].as_str()), (400, Some("invalid_dpop_proof")), "{}", a.body);
    assert!(a.body["error_description"].as_str().unwrap().contains("jti"), "{}", a.body);
    assert_eq!(rejected(&app, "replay").await, 1.0);
    eventually(5, "the step-8 line names the DPoP rule", || async {
        app.logs().iter().any(|l| {
            l.contains("msg=\"token issuance failed\" error=ErrDpopReplay code=invalid_dpop_proof")
                && l.contains(&format!("client_id={}", me.0))
        })
    })
    .await;
    let mut row = Value::Null;
    for _ in 0..50 {
        let (_, v) = app.admin_json(reqwest::Method::GET, "/admin/audit?type=dpop_proof_rejected", None).await;
        row = v["events"][0].clone();
        if !row.is_null() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(row["client_id"], me.0.as_str(), "{row}");
    assert_eq!(row["detail"]["error"], "ErrDpopReplay");
    assert_eq!(row["detail"]["dpop_reason"], "replay");
}

#[tokio::test]
async fn the_same_proof_sent_concurrently_succeeds_exactly_once() {
    let app = spawn_app().await;
    let me = app.confidential_client(&["client_credentials"]).await;
    let key = Es256Signer::generate().unwrap();
    let p = proof(&key);
    let form = cc_form(&me);
    let proofs = [p.as_str()];
    let answers = futures_util::future::join_all((0..8).map(|_| token_with(&app, &form, &proofs))).await;
    let ok = answers.iter().filter(|a| a.status == 200).count();
    assert_eq!(ok, 1, "{:?}", answers.iter().map(|a| (a.status, a.body.to_string())).collect::<Vec<_>>());
    assert!(answers.iter().filter(|a| a.status != 200).all(|a| a.body["error"] == "invalid_dpop_proof"));
    assert_eq!(rejected(&app, "replay").await, 7.0);
}

#[tokio::test]
async fn each_broken_rule_is_refused_with_its_reason() {
    let app = spawn_app().await;
    let me = app.confidential_client(&["client_credentials"]).await;
    let key = Es256Signer::generate().unwrap();
    let t = now();
    let claims = |htm, htu, iat| ProofClaims { htm, htu, iat, jti: "", access_token: None, nonce: None };
    let mut jwk_with_d = key.public_jwk().clone();
    jwk_with_d["d"] = json!("AAAA");
    let body = |iat: i64| json!({"jti": jti(), "htm": "POST", "htu": HTU, "iat": iat});
    let cases: Vec<(&str, String)> = vec![
        (
            "htu_mismatch",
            key.sign(&ProofClaims { jti: &jti(), ..claims("POST", "http://localhost:9000/oauth/revoke", t) }).unwrap(),
        ),
        ("htm_mismatch", key.sign(&ProofClaims { jti: &jti(), ..claims("GET", HTU, t) }).unwrap()),
        ("iat", key.sign(&ProofClaims { jti: &jti(), ..claims("POST", HTU, t - 120) }).unwrap()),
        ("iat", key.sign(&ProofClaims { jti: &jti(), ..claims("POST", HTU, t + 120) }).unwrap()),
        ("alg", key.sign_raw(&json!({"typ": "dpop+jwt", "alg": "HS256", "jwk": key.public_jwk()}), &body(t)).unwrap()),
        ("malformed", key.sign_raw(&json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": jwk_with_d}), &body(t)).unwrap()),
        ("malformed", key.sign_raw(&json!({"typ": "JWT", "alg": "ES256", "jwk": key.public_jwk()}), &body(t)).unwrap()),
        ("malformed", "not-a-jwt".into()),
    ];
    for (reason, p) in &cases {
        let before = rejected(&app, reason).await;
        let a = token_with(&app, &cc_form(&me), &[p]).await;
        assert_eq!((a.status, a.body["error"].as_str()), (400, Some("invalid_dpop_proof")), "{reason}: {}", a.body);
        assert_eq!(rejected(&app, reason).await, before + 1.0, "{reason}");
    }
    // A signature by another key than the header's.
    let other = Es256Signer::generate().unwrap();
    let forged =
        other.sign_raw(&json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": key.public_jwk()}), &body(t)).unwrap();
    let a = token_with(&app, &cc_form(&me), &[&forged]).await;
    assert_eq!(a.body["error"], "invalid_dpop_proof");
    assert_eq!(rejected(&app, "signature").await, 1.0);
    // Two DPoP headers.
    let a = token_with(&app, &cc_form(&me), &[&proof(&key), &proof(&key)]).await;
    assert_eq!(a.body["error"], "invalid_dpop_proof", "{}", a.body);
    assert_eq!(app.metric("authplane_dpop_proofs_validated_total").await, 0.0, "nothing was accepted");
}

#[tokio::test]
async fn a_dpop_jkt_code_and_a_public_clients_refresh_token_are_bound_to_the_key() {
    let app = spawn_app().await;
    let key = Es256Signer::generate().unwrap();
    let other = Es256Signer::generate().unwrap();
    let code = Browser::new(&app).code_for(&[("dpop_jkt", key.jkt())]).await;
    let exchange = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("code_verifier", VERIFIER),
        ("client_id", "test-client"),
        ("redirect_uri", REDIRECT),
    ];
    // RFC 9449 §10: without a proof, or with another key, the code is refused and not spent.
    let a = token_with(&app, &exchange, &[]).await;
    assert_eq!((a.status, a.body["error"].as_str()), (400, Some("invalid_grant")), "{}", a.body);
    let a = token_with(&app, &exchange, &[&proof(&other)]).await;
    assert_eq!(a.body["error"], "invalid_grant", "{}", a.body);
    assert_eq!(rejected(&app, "key_mismatch").await, 2.0);
    let a = token_with(&app, &exchange, &[&proof(&key)]).await;
    assert_eq!((a.status, a.body["token_type"].as_str()), (200, Some("DPoP")), "{}", a.body);
    assert_eq!(jwt_part(a.body["access_token"].as_str().unwrap(), 1)["cnf"]["jkt"], key.jkt());
    let rt = a.body["refresh_token"].as_str().unwrap().to_owned();

    let refresh = [("grant_type", "refresh_token"), ("refresh_token", rt.as_str()), ("client_id", "test-client")];
    for proofs in [vec![], vec![proof(&other)]] {
        let p: Vec<&str> = proofs.iter().map(String::as_str).collect();
        let a = token_with(&app, &refresh, &p).await;
        assert_eq!((a.status, a.body["error"].as_str()), (400, Some("invalid_grant")), "{}", a.body);
        assert!(a.body["error_description"].as_str().unwrap().contains("DPoP key"), "{}", a.body);
    }
    // The stolen token's failures did not spend it or revoke the family.
    let a = token_with(&app, &refresh, &[&proof(&key)]).await;
    assert_eq!((a.status, a.body["token_type"].as_str()), (200, Some("DPoP")), "{}", a.body);
    let rt2 = a.body["refresh_token"].as_str().unwrap();
    let a = token_with(
        &app,
        &[("grant_type", "refresh_token"), ("refresh_token", rt2), ("client_id", "test-client")],
        &[&proof(&key)],
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
}

#[tokio::test]
async fn a_bad_dpop_jkt_at_authorize_is_refused() {
    let app = spawn_app().await;
    let b = Browser::new(&app);
    match b.authorize(&[("dpop_jkt", "short")]).await {
        Landing::Client(_, q) => {
            assert_eq!(q["error"], "invalid_request");
            assert!(q["error_description"].contains("dpop_jkt"), "{q:?}");
        }
        other => panic!("expected an error redirect, got {other:?}"),
    }
}

#[tokio::test]
async fn dpop_bound_clients_and_dpop_required_resources_need_a_proof() {
    let app = spawn_with(|dir, db| Spawn {
        config: Some(
            base_config(dir, db)
                .replace(
                    "    scopes: [tools/read, tools/write]\n",
                    "    scopes: [tools/read, tools/write]\n  - resource: http://localhost:8081/mcp\n    scopes: [files/read]\n    dpop_required: true\n",
                )
                .replace(
                    "clients:\n",
                    "clients:\n  - client_id: bound\n    token_endpoint_auth_method: client_secret_post\n    client_secret_sha256: 2bb80d537b1da3e38bd30361aa855686bde0eacd7162fef6a25fe97bf527a25b\n    grant_types: [client_credentials]\n    allowed_resources: [http://localhost:8080/mcp, http://localhost:8081/mcp]\n    dpop_bound_access_tokens: true\n",
                ),
        ),
        env: vec![],
    })
    .await;
    // The client's secret is "secret" (its SHA-256 is in the config above).
    let form = |resource| {
        vec![
            ("grant_type", "client_credentials"),
            ("client_id", "bound"),
            ("client_secret", "secret"),
            ("resource", resource),
        ]
    };
    let a = token_with(&app, &form("http://localhost:8080/mcp"), &[]).await;
    assert_eq!((a.status, a.body["error"].as_str()), (400, Some("invalid_dpop_proof")), "{}", a.body);
    assert!(a.body["error_description"].as_str().unwrap().contains("dpop_bound_access_tokens"), "{}", a.body);
    let key = Es256Signer::generate().unwrap();
    let a = token_with(&app, &form("http://localhost:8081/mcp"), &[&proof(&key)]).await;
    assert_eq!((a.status, a.body["token_type"].as_str()), (200, Some("DPoP")), "{}", a.body);

    // A public client asking for the dpop_required resource without a proof.
    let code = Browser::new(&app).code_for(&[("resource", "http://localhost:8081/mcp")]).await;
    let (s, v) = app.exchange(&code).await;
    assert_eq!((s, v["error"].as_str()), (400, Some("invalid_dpop_proof")), "{v}");
    assert!(v["error_description"].as_str().unwrap().contains("dpop_required"), "{v}");
    // The code was not spent: the same exchange with a proof works.
    let a = token_with(
        &app,
        &[
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
            ("code_verifier", VERIFIER),
            ("client_id", "test-client"),
            ("redirect_uri", REDIRECT),
        ],
        &[&proof(&key)],
    )
    .await;
    assert_eq!((a.status, a.body["token_type"].as_str()), (200, Some("DPoP")), "{}", a.body);
}

#[tokio::test]
async fn with_nonces_on_the_first_proof_gets_use_dpop_nonce_and_the_retry_passes() {
    let app =
        spawn_with_extra("oauth:\n  dpop_nonce: true\n  dpop_nonce_secret: 0123456789abcdef0123456789abcdef\n").await;
    let me = app.confidential_client(&["client_credentials"]).await;
    let key = Es256Signer::generate().unwrap();
    let a = token_with(&app, &cc_form(&me), &[&proof(&key)]).await;
    assert_eq!((a.status, a.body["error"].as_str()), (400, Some("use_dpop_nonce")), "{}", a.body);
    let nonce = a.nonce.expect("a DPoP-Nonce header with use_dpop_nonce");
    assert_eq!(rejected(&app, "nonce").await, 1.0);
    let with = |n: &str| {
        key.sign(&ProofClaims { htm: "POST", htu: HTU, iat: now(), jti: &jti(), access_token: None, nonce: Some(n) })
            .unwrap()
    };
    let a = token_with(&app, &cc_form(&me), &[&with("not-a-nonce-we-issued")]).await;
    assert_eq!(a.body["error"], "use_dpop_nonce");
    assert_eq!(a.nonce.as_deref(), Some(nonce.as_str()), "the current nonce again");
    let a = token_with(&app, &cc_form(&me), &[&with(&nonce)]).await;
    assert_eq!((a.status, a.body["token_type"].as_str()), (200, Some("DPoP")), "{}", a.body);
}

#[tokio::test]
async fn every_rejection_reason_is_registered_at_zero() {
    let app = spawn_app().await;
    let text = app.http.get(format!("{}/metrics", app.admin)).send().await.unwrap().text().await.unwrap();
    for r in authplane_core::dpop::Reason::ALL {
        let line = format!("authplane_dpop_proofs_rejected_total{{reason=\"{}\"}} 0", r.label());
        assert!(text.lines().any(|l| l == line), "{line} missing");
    }
    assert!(text.lines().any(|l| l == "authplane_dpop_proofs_validated_total 0"));
}
