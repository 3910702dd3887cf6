use crate::helpers::*;

#[tokio::test]
async fn metadata_issuer_scopes_and_jwks_match_the_checklist() {
    let app = spawn_app().await;
    for path in ["/.well-known/oauth-authorization-server", "/.well-known/openid-configuration"] {
        let res = app.get(path).await;
        assert_eq!(res.status(), 200, "{path}");
        assert_eq!(res.headers()["access-control-allow-origin"], "*", "CORS on {path}");
        let m: serde_json::Value = res.json().await.unwrap();
        assert_eq!(m["issuer"], "http://localhost:9000");
        assert_eq!(m["jwks_uri"], "http://localhost:9000/.well-known/jwks.json");
        assert_eq!(m["scopes_supported"], serde_json::json!(["tools/read", "tools/write"]));
        assert_eq!(m["response_types_supported"], serde_json::json!(["code"]));
        // Every advertised endpoint is served.
        for ep in [
            "authorization_endpoint",
            "token_endpoint",
            "registration_endpoint",
            "revocation_endpoint",
            "introspection_endpoint",
        ] {
            let path =
                m[ep].as_str().unwrap_or_else(|| panic!("{ep} advertised")).trim_start_matches("http://localhost:9000");
            let status = app.http.post(format!("{}{path}", app.public)).send().await.unwrap().status();
            assert_ne!(status, 404, "{ep} is advertised but {path} is not served");
        }
        assert_eq!(m["code_challenge_methods_supported"], serde_json::json!(["S256"]));
        assert_eq!(m["authorization_response_iss_parameter_supported"], true);
        assert_eq!(m["client_id_metadata_document_supported"], true);
        // RFC 9449 §5.1: asymmetric algorithms only.
        assert_eq!(
            m["dpop_signing_alg_values_supported"],
            serde_json::json!(["ES256", "ES384", "EdDSA", "Ed25519", "RS256", "PS256"])
        );
    }
    let res = app.get("/.well-known/jwks.json").await;
    assert_eq!(res.headers()["access-control-allow-origin"], "*");
    let jwks: serde_json::Value = res.json().await.unwrap();
    let keys = jwks["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 1);
    let k = &keys[0];
    assert_eq!(
        (k["kty"].as_str(), k["crv"].as_str(), k["alg"].as_str(), k["use"].as_str()),
        (Some("EC"), Some("P-256"), Some("ES256"), Some("sig"))
    );
    assert!(k.get("d").is_none(), "no private member in JWKS");
    // The key file on disk is named by the same kid.
    let kid = k["kid"].as_str().unwrap();
    assert!(app.key_dir().join(format!("{kid}.json")).exists());
}

#[tokio::test]
async fn cors_preflight_is_answered_for_discovery() {
    let app = spawn_app().await;
    for path in ["/.well-known/oauth-authorization-server", "/.well-known/jwks.json"] {
        let res = app
            .http
            .request(reqwest::Method::OPTIONS, format!("{}{path}", app.public))
            .header("origin", "http://localhost:6274")
            .header("access-control-request-method", "GET")
            .header("access-control-request-headers", "mcp-protocol-version")
            .send()
            .await
            .unwrap();
        assert!(res.status().is_success(), "{path}: {}", res.status());
        assert_eq!(res.headers()["access-control-allow-origin"], "*");
        assert!(res.headers()["access-control-allow-methods"].to_str().unwrap().contains("GET"));
    }
}

#[tokio::test]
async fn an_issuer_with_a_path_is_served_at_every_well_known_variant() {
    let app = spawn_with(|dir, db| {
        let cfg =
            base_config(dir, db).replace("issuer: http://localhost:9000", "issuer: http://localhost:9000/tenant-a");
        Spawn { config: Some(cfg), env: vec![] }
    })
    .await;
    for path in [
        "/.well-known/oauth-authorization-server/tenant-a",
        "/.well-known/openid-configuration/tenant-a",
        "/tenant-a/.well-known/openid-configuration",
        "/tenant-a/.well-known/oauth-authorization-server",
        // MCP-CLIENTS.md quirk 1: clients that drop the path.
        "/.well-known/oauth-authorization-server",
        "/.well-known/openid-configuration",
    ] {
        let (s, m) = app.get_json(path).await;
        assert_eq!(s, 200, "{path}");
        assert_eq!(m["issuer"], "http://localhost:9000/tenant-a", "{path}");
    }
    for path in
        ["/.well-known/oauth-authorization-server/tenant-b", "/tenant-b/.well-known/openid-configuration", "/nope"]
    {
        let (s, v) = app.get_json(path).await;
        assert_eq!(s, 404, "{path}");
        assert_eq!(v["error"], "not_found");
    }
}
