//! The authorization request (RFC 6749 §4.1.1, OAuth 2.1 §4.1.1) from the raw
//! query or form, against a registered public client.
//!
//! Properties: an error is sent back to a redirect URI only if that URI
//! matches a registered one (an open redirector is never made); an accepted
//! request has a registered redirect URI, an S256 challenge, and resources
//! and scopes within what the client and the registry allow.
#![no_main]

use std::sync::OnceLock;

use authplane_core::ResourceUri;
use authplane_core::config::{ClientConfig, GrantType, OAuthConfig, ResourceConfig, TokenEndpointAuthMethod};
use authplane_core::redirect::RedirectUri;
use authplane_server::http::ui::parse_params;
use authplane_server::oauth::authorize::{Failure, validate};

struct Fixture {
    client: ClientConfig,
    registry: Vec<ResourceConfig>,
    cfg: OAuthConfig,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| Fixture {
        client: ClientConfig {
            client_id: "app".into(),
            client_name: None,
            token_endpoint_auth_method: TokenEndpointAuthMethod::None,
            client_secret_sha256: None,
            redirect_uris: ["https://app.example.com/cb", "http://127.0.0.1:8765/callback", "com.example.app:/oauth"]
                .into_iter()
                .map(|u| RedirectUri::parse(u).expect("redirect"))
                .collect(),
            grant_types: vec![GrantType::AuthorizationCode, GrantType::RefreshToken],
            allowed_resources: vec![],
            allowed_scopes: vec![],
            dpop_bound_access_tokens: false,
            broker_upstreams: vec![],
        },
        registry: vec![
            ResourceConfig {
                resource: ResourceUri::parse("https://mcp.example.com/mcp").expect("resource"),
                name: None,
                scopes: vec!["tools/read".into(), "tools/write".into()],
                default_scopes: Some(vec!["tools/read".into()]),
                dpop_required: false,
            },
            ResourceConfig {
                resource: ResourceUri::parse("https://other.example.com").expect("resource"),
                name: None,
                scopes: vec!["files".into()],
                default_scopes: None,
                dpop_required: false,
            },
        ],
        cfg: OAuthConfig::default(),
    })
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let f = fixture();
    let Ok(p) = parse_params(data) else { return };
    let client = (p.client_id.as_deref() == Some("app")).then_some(&f.client);
    let registered = |u: &str| f.client.redirect_uris.iter().any(|r| r.matches(u));
    match validate(&p, client, &f.registry, &f.cfg) {
        Ok((v, grant)) => {
            assert!(registered(&v.redirect_uri), "accepted unregistered {}", v.redirect_uri);
            assert_eq!(p.code_challenge_method.as_deref(), Some("S256"));
            assert_eq!(v.code_challenge.len(), 43);
            for r in &v.resources {
                assert!(f.registry.iter().any(|x| x.resource.as_str() == r), "unregistered resource {r}");
            }
            let all: Vec<&String> = f.registry.iter().flat_map(|r| &r.scopes).collect();
            for s in &grant.scopes {
                assert!(all.contains(&s) || s == "offline_access", "scope {s} granted");
            }
        }
        Err(Failure::Redirect { redirect_uri, .. }) => {
            assert!(registered(&redirect_uri), "error redirected to unregistered {redirect_uri}");
            assert!(client.is_some());
        }
        Err(Failure::Page(_)) => {}
    }
});
