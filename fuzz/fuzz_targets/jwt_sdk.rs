//! The SDK's access-token verification (what an MCP server runs on every
//! request): compact JWS and header rules (RFC 8725, RFC 9068), the JWKS
//! document, the ES256 signature, then `iss`, `aud`, `exp`/`nbf`/`iat`.
//!
//! Properties: verification never succeeds without the key (arbitrary
//! tokens, edited tokens, another key's JWKS, and any JWKS the input makes
//! up that lacks our public key are all refused); a token minted by the AS
//! verifies, and whatever verifies has our issuer and our resource.
#![no_main]

#[path = "common.rs"]
mod common;

use std::sync::OnceLock;

use authplane_sdk::{ProtectedResource, verify_with_jwks};
use authplane_server::oauth::jwt::mint;
use common::{ISSUER, NOW, RESOURCE, access_claims, keys, mutate};

struct Fixture {
    resource: ProtectedResource,
    jwks: Vec<u8>,
    other_jwks: Vec<u8>,
    token: String,
    /// Our public key's coordinates.
    xy: (String, String),
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let k = keys();
        let claims = access_claims();
        let jwks = k.ours.jwks(NOW);
        let key = &jwks["keys"][0];
        let xy = (key["x"].as_str().unwrap_or_default().to_owned(), key["y"].as_str().unwrap_or_default().to_owned());
        Fixture {
            resource: ProtectedResource::new(RESOURCE, ISSUER).expect("resource"),
            jwks: serde_json::to_vec(&jwks).expect("jwks"),
            other_jwks: serde_json::to_vec(&k.other.jwks(NOW)).expect("jwks"),
            token: mint(&k.ours, &claims, NOW).expect("mint"),
            xy,
        }
    })
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let f = fixture();
    let verify = |jwks: &[u8], t: &str| verify_with_jwks(&f.resource, jwks, t, NOW, 30);
    assert!(verify(&f.jwks, &f.token).is_ok(), "the AS's own token is refused");
    let Some((&mode, rest)) = data.split_first() else { return };
    match mode % 4 {
        0 => {
            let t = String::from_utf8_lossy(rest);
            assert!(verify(&f.jwks, &t).is_err(), "an input verified without the key: {t}");
        }
        1 => {
            let t = mutate(&f.token, rest);
            if let Ok(c) = verify(&f.jwks, &t) {
                assert_eq!(t, f.token, "an edited token verified: {c:?}");
            }
            assert!(verify(&f.other_jwks, &t).is_err(), "verified with another key");
        }
        2 => {
            // A JWKS made up by the input: it verifies our token only if it
            // carries our public key.
            if verify(rest, &f.token).is_ok() {
                let v: serde_json::Value = serde_json::from_slice(rest).expect("a JWKS that verified is JSON");
                let has_ours = v["keys"].as_array().is_some_and(|ks| {
                    ks.iter().any(|k| k["x"].as_str() == Some(&f.xy.0) && k["y"].as_str() == Some(&f.xy.1))
                });
                assert!(has_ours, "a JWKS without our key verified our token");
            }
        }
        _ => {
            // Any payload signed by our key: what verifies names our issuer
            // and resource and is not expired.
            let signer = keys().ours.signer(NOW).expect("signer");
            let t = signer.sign_compact("at+jwt", rest).expect("sign");
            if let Ok(c) = verify(&f.jwks, &t) {
                assert_eq!(c.iss, ISSUER);
                assert!(c.exp + 30 > NOW, "expired token accepted");
                let ours = authplane_core::ResourceUri::parse(RESOURCE).expect("resource");
                assert!(c.aud.iter().any(|a| ours.is_same_resource(a)), "wrong audience accepted: {:?}", c.aud);
            }
            assert!(verify(&f.other_jwks, &t).is_err());
        }
    }
});
