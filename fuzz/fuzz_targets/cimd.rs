//! Client ID Metadata Documents: the bytes an https `client_id` URL returned,
//! and the `Cache-Control` that says how long to keep them.
//!
//! Properties: an accepted document names its own URL, has at least one
//! redirect URI, all registrable, and no client authentication; the client
//! made from it is public with the user grants only and keeps every
//! redirect URI; the cache lifetime stays within [60 s, 1 day].
#![no_main]

use authplane_core::config::{GrantType, TokenEndpointAuthMethod};
use authplane_core::redirect::RedirectUri;
use authplane_server::oauth::cimd::{max_age, parse_document};

const URL: &str = "https://app.example.com/client.json";

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    // Input: `cache-control \n document`.
    let split = data.iter().position(|&b| b == b'\n').unwrap_or(0);
    let (cc, body) = data.split_at(split);
    let ttl = max_age(std::str::from_utf8(cc).ok());
    assert!((60..=86_400).contains(&ttl), "{ttl}");

    let Ok(doc) = parse_document(body, URL) else { return };
    assert_eq!(doc.client_id, URL);
    assert!(!doc.redirect_uris.is_empty());
    assert!(matches!(doc.token_endpoint_auth_method.as_deref(), None | Some("none")));
    let uris = doc.redirect_uris.clone();
    let c = doc.into_client_config();
    assert_eq!(c.token_endpoint_auth_method, TokenEndpointAuthMethod::None);
    assert!(c.client_secret_sha256.is_none());
    assert_eq!(c.grant_types, vec![GrantType::AuthorizationCode, GrantType::RefreshToken]);
    let kept: Vec<&str> = c.redirect_uris.iter().map(RedirectUri::as_str).collect();
    assert_eq!(kept, uris.iter().map(String::as_str).collect::<Vec<_>>(), "a redirect URI was dropped");
});
