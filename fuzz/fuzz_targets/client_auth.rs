//! Client authentication at the token, revocation and introspection
//! endpoints: the `Authorization: Basic` header (RFC 6749 §2.3.1, RFC 7617)
//! and the form's `client_id` / `client_secret`.
//!
//! Properties: credentials encoded the RFC 6749 way come back exactly (round
//! trip); a confidential client never authenticates without presenting its
//! own secret; a public client never authenticates with a secret; a header
//! and a form secret together are always refused.
#![no_main]

use authplane_core::Secret;
use authplane_core::config::{ClientConfig, GrantType, TokenEndpointAuthMethod};
use authplane_server::oauth::client_auth::{Presented, presented, verify};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;

const SECRET: &str = "s3cret-of-the-confidential-client";

fn client(method: TokenEndpointAuthMethod) -> ClientConfig {
    ClientConfig {
        client_id: "c1".into(),
        client_name: None,
        token_endpoint_auth_method: method,
        client_secret_sha256: method.is_confidential().then(|| authplane_server::random::sha256_hex(SECRET.as_bytes())),
        redirect_uris: vec![],
        grant_types: vec![GrantType::ClientCredentials],
        allowed_resources: vec![],
        allowed_scopes: vec![],
        dpop_bound_access_tokens: false,
        broker_upstreams: vec![],
    }
}

fn form_encode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

fn check_verify(p: &Presented) {
    let basic = client(TokenEndpointAuthMethod::ClientSecretBasic);
    let ok = verify(&basic, p).is_ok();
    let right = p.secret.as_ref().is_some_and(|s| s.expose() == SECRET);
    assert_eq!(ok, right, "a confidential client authenticated without its secret (or failed with it)");
    let public = client(TokenEndpointAuthMethod::None);
    assert_eq!(verify(&public, p).is_ok(), p.secret.is_none(), "public client and a secret");
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    // Input: `header \0 form_client_id \0 form_secret` (missing parts are absent).
    let Ok(text) = std::str::from_utf8(data) else { return };
    let mut parts = text.splitn(3, '\0');
    let header = parts.next();
    let form_id = parts.next().filter(|s| !s.is_empty());
    let form_secret = parts.next();

    if let Ok(p) = presented(header, form_id, form_secret) {
        if p.via_basic {
            assert!(form_secret.is_none(), "Basic and client_secret together were accepted");
            assert!(p.secret.is_some());
        } else {
            assert_eq!(Some(p.client_id.as_str()), form_id);
        }
        check_verify(&p);
    }

    // Round trip: any id and secret, encoded as RFC 6749 §2.3.1 says, come back.
    if let Some((id, secret)) = text.split_once('\0') {
        let secret = secret.replace('\0', "");
        let raw = format!("{}:{}", form_encode(id), form_encode(&secret));
        let h = format!("Basic {}", STANDARD.encode(raw));
        let p = presented(Some(&h), None, None).expect("well-formed Basic credentials");
        assert_eq!(p.client_id, id);
        assert_eq!(p.secret.as_ref().map(Secret::expose).map(String::as_str), Some(secret.as_str()));
        assert!(p.via_basic);
        check_verify(&p);
    }
});
