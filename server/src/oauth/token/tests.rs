//! The grants as functions: a real SQLite store and signing key, a fixed
//! clock and counted token ids (`oauth::testing`), so that each rule is
//! asserted on exact values. The black-box suite (`tests/api`) covers the
//! same rules through HTTP.

use super::{GrantResult, RequestIds, authorization_code, client_credentials, refresh_token};
use crate::oauth::Kind;
use crate::oauth::jwt;
use crate::oauth::testing::{Fixture, RESOURCE, T0, form, kind};

fn ids() -> RequestIds {
    RequestIds { request_id: Some("r_test".into()), trace_id: Some("4bf92f3577b34da6a3ce929d0e0e4736".into()) }
}

async fn redeem(fx: &Fixture, client: &str, code: &str, verifier: &str, now: i64) -> GrantResult {
    let f = form(&[("grant_type", "authorization_code"), ("code", code), ("code_verifier", verifier)]);
    authorization_code::exchange(&fx.deps, &fx.client(client), &f, None, &ids(), now).await
}

async fn refresh(
    fx: &Fixture,
    token: &str,
    scope: Option<&str>,
    now: i64,
) -> Result<super::TokenResponse, crate::oauth::Error> {
    let mut pairs = vec![("grant_type", "refresh_token"), ("refresh_token", token)];
    if let Some(s) = scope {
        pairs.push(("scope", s));
    }
    refresh_token::exchange(&fx.deps, &fx.client("app"), &form(&pairs), None, &ids(), now).await.result
}

#[tokio::test]
async fn a_code_redeems_once_for_an_audience_bound_token_with_the_clock_and_ids_given() {
    let fx = Fixture::new("").await;
    let (code, verifier) = fx.code("app", "tools/read", T0 + 60).await;
    let outcome = redeem(&fx, "app", &code, &verifier, T0 + 5).await;
    let t = outcome.result.unwrap();
    assert_eq!((t.token_type, t.scope.as_str(), t.expires_in), ("Bearer", "tools/read", 3600));
    assert!(t.refresh_token.is_some(), "the client may refresh");
    assert_eq!(outcome.resource.as_deref(), Some(RESOURCE));
    assert_eq!(outcome.user_id.as_deref(), Some("user-1"));

    let claims = jwt::verify_own(&fx.deps.keys, &t.access_token, T0 + 5).unwrap();
    assert_eq!(claims.iss, "https://as.example");
    assert_eq!(claims.sub, "user-1");
    assert_eq!(claims.aud, vec![RESOURCE.to_owned()]);
    assert_eq!(claims.client_id, "app");
    assert_eq!((claims.iat, claims.exp), (T0 + 5, T0 + 5 + 3600), "times come from the `now` passed in");
    assert_eq!(claims.jti, "id-1", "the jti comes from the id source");
    assert!(claims.cnf.is_none());

    let issued = fx.audit("token_issued").await;
    assert_eq!(issued.len(), 1);
    assert_eq!(issued[0].occurred_at_ms, T0 * 1000, "audit time comes from the clock");
    assert_eq!(issued[0].trace_id.as_deref(), Some("4bf92f3577b34da6a3ce929d0e0e4736"));
    assert_eq!(issued[0].user_id.as_deref(), Some("user-1"));
}

#[tokio::test]
async fn a_replayed_code_is_refused_and_revokes_what_it_issued() {
    let fx = Fixture::new("").await;
    let (code, verifier) = fx.code("app", "tools/read", T0 + 60).await;
    let first = redeem(&fx, "app", &code, &verifier, T0 + 1).await.result.unwrap();
    let again = redeem(&fx, "app", &code, &verifier, T0 + 2).await;
    assert_eq!(again.user_id.as_deref(), Some("user-1"), "the log line names whose grant was replayed");
    assert_eq!(kind(again.result), Kind::CodeReplay);
    let revoked = fx.audit("token_revoked").await;
    assert_eq!(revoked.len(), 1);
    assert!(revoked[0].detail.contains("code_replay"), "{}", revoked[0].detail);
    // The first exchange's refresh token died with its family.
    assert_eq!(kind(refresh(&fx, first.refresh_token.as_deref().unwrap(), None, T0 + 3).await), Kind::InvalidGrant);
}

#[tokio::test]
async fn a_code_is_refused_when_expired_for_another_client_or_with_the_wrong_verifier() {
    let fx = Fixture::new("").await;
    let (code, verifier) = fx.code("app", "tools/read", T0 + 60).await;
    assert_eq!(
        kind(redeem(&fx, "app", &code, &verifier, T0 + 60).await.result),
        Kind::InvalidGrant,
        "expires_at is exclusive"
    );
    let (code, verifier) = fx.code("app", "tools/read", T0 + 60).await;
    assert_eq!(kind(redeem(&fx, "other-app", &code, &verifier, T0 + 1).await.result), Kind::InvalidGrant);
    assert_eq!(kind(redeem(&fx, "app", &code, "not-the-verifier", T0 + 1).await.result), Kind::InvalidPkce);
    // None of the refusals spent the code: its client still redeems it.
    assert!(redeem(&fx, "app", &code, &verifier, T0 + 1).await.result.is_ok());
    assert_eq!(kind(redeem(&fx, "app", "no-such-code", "v", T0 + 1).await.result), Kind::InvalidGrant);
}

#[tokio::test]
async fn a_changed_redirect_uri_is_refused() {
    let fx = Fixture::new("").await;
    let (code, verifier) = fx.code("app", "tools/read", T0 + 60).await;
    let f = form(&[
        ("grant_type", "authorization_code"),
        ("code", &code),
        ("code_verifier", &verifier),
        ("redirect_uri", "http://127.0.0.1/other"),
    ]);
    let r = authorization_code::exchange(&fx.deps, &fx.client("app"), &f, None, &ids(), T0 + 1).await.result;
    assert_eq!(kind(r), Kind::RedirectUriChanged);
}

#[tokio::test]
async fn refresh_rotates_and_a_spent_token_after_the_reuse_interval_revokes_the_family() {
    let fx = Fixture::new("refresh_reuse_interval: 10s").await;
    let (code, verifier) = fx.code("app", "tools/read tools/write", T0 + 60).await;
    let first = redeem(&fx, "app", &code, &verifier, T0).await.result.unwrap();
    let r1 = first.refresh_token.unwrap();

    let second = refresh(&fx, &r1, Some("tools/read"), T0 + 100).await.unwrap();
    let r2 = second.refresh_token.unwrap();
    assert_ne!(r2, r1, "rotated");
    assert_eq!(second.scope, "tools/read", "narrowed on request");
    let claims = jwt::verify_own(&fx.deps.keys, &second.access_token, T0 + 100).unwrap();
    assert_eq!((claims.iat, claims.jti.as_str()), (T0 + 100, "id-2"));

    // Within the interval: the same successor (racing MCP sessions).
    let raced = refresh(&fx, &r1, None, T0 + 105).await.unwrap();
    assert_eq!(raced.refresh_token.as_deref(), Some(r2.as_str()));
    // After it: reuse, and every token of the grant is revoked.
    assert_eq!(kind(refresh(&fx, &r1, None, T0 + 111).await), Kind::RefreshReuse);
    assert_eq!(kind(refresh(&fx, &r2, None, T0 + 112).await), Kind::InvalidGrant);
    let revoked = fx.audit("token_revoked").await;
    assert_eq!(revoked.len(), 1);
    assert!(revoked[0].detail.contains("refresh_reuse"));
    assert_eq!(fx.audit("token_refreshed").await.len(), 2);
}

#[tokio::test]
async fn refresh_cannot_widen_the_grant_or_outlive_the_family() {
    let fx = Fixture::new("refresh_reuse_interval: 0s").await;
    let (code, verifier) = fx.code("app", "tools/read", T0 + 60).await;
    let r1 = redeem(&fx, "app", &code, &verifier, T0).await.result.unwrap().refresh_token.unwrap();
    assert_eq!(kind(refresh(&fx, &r1, Some("tools/write"), T0 + 1).await), Kind::InvalidScope);
    let mut pairs = vec![("grant_type", "refresh_token"), ("refresh_token", r1.as_str())];
    pairs.push(("resource", "https://elsewhere.example/mcp"));
    let r = refresh_token::exchange(&fx.deps, &fx.client("app"), &form(&pairs), None, &ids(), T0 + 1).await;
    assert_eq!(r.resource.as_deref(), Some(RESOURCE), "the log line names the granted resource");
    assert_eq!(kind(r.result), Kind::InvalidTarget);
    // Refused requests did not rotate it; the family's absolute expiry (the
    // default refresh_token_ttl, 30 days) ends it.
    let ttl = fx.cfg.oauth.refresh_token_ttl.as_secs() as i64;
    assert!(refresh(&fx, &r1, None, T0 + ttl - 1).await.is_ok());
    let fx = Fixture::new("").await;
    let (code, verifier) = fx.code("app", "tools/read", T0 + 60).await;
    let r1 = redeem(&fx, "app", &code, &verifier, T0).await.result.unwrap().refresh_token.unwrap();
    assert_eq!(kind(refresh(&fx, &r1, None, T0 + ttl).await), Kind::InvalidGrant);
}

#[tokio::test]
async fn another_clients_refresh_token_is_refused_without_revoking_it() {
    let fx = Fixture::new("").await;
    let (code, verifier) = fx.code("app", "tools/read", T0 + 60).await;
    let r1 = redeem(&fx, "app", &code, &verifier, T0).await.result.unwrap().refresh_token.unwrap();
    let f = form(&[("grant_type", "refresh_token"), ("refresh_token", &r1)]);
    let r = refresh_token::exchange(&fx.deps, &fx.client("other-app"), &f, None, &ids(), T0 + 1).await.result;
    assert_eq!(kind(r), Kind::InvalidGrant);
    assert!(refresh(&fx, &r1, None, T0 + 2).await.is_ok());
}

#[tokio::test]
async fn client_credentials_gives_a_machine_token_only_for_allowed_resources() {
    let fx = Fixture::new("").await;
    let f = form(&[("grant_type", "client_credentials"), ("resource", RESOURCE)]);
    let outcome = client_credentials::exchange(&fx.deps, &fx.client("machine"), &f, None, &ids(), T0).await;
    assert!(outcome.user_id.is_none());
    let t = outcome.result.unwrap();
    assert!(t.refresh_token.is_none());
    assert_eq!(t.scope, "tools/read", "the resource's default scopes");
    assert_eq!(outcome.resource.as_deref(), Some(RESOURCE));
    let claims = jwt::verify_own(&fx.deps.keys, &t.access_token, T0).unwrap();
    assert_eq!((claims.sub.as_str(), claims.client_id.as_str(), claims.jti.as_str()), ("machine", "machine", "id-1"));
    assert_eq!(fx.audit("token_issued").await[0].occurred_at_ms, T0 * 1000);

    // A public client, and a confidential one without allowed_resources.
    let r = client_credentials::exchange(&fx.deps, &fx.client("app"), &f, None, &ids(), T0).await.result;
    assert_eq!(kind(r), Kind::UnauthorizedClient);
    let mut no_list = fx.client("machine");
    no_list.allowed_resources.clear();
    let r = client_credentials::exchange(&fx.deps, &no_list, &f, None, &ids(), T0).await.result;
    assert_eq!(kind(r), Kind::UnauthorizedClient);
}

#[tokio::test]
async fn the_token_service_authenticates_the_client_before_any_grant() {
    use base64::Engine;
    let fx = Fixture::new("").await;
    let basic = |secret: &str| {
        format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("machine:{secret}")))
    };
    let exchange = |auth: String| {
        let fx = &fx;
        async move {
            let f = form(&[("grant_type", "client_credentials"), ("resource", RESOURCE)]);
            let request = super::TokenRequest { form: f, authorization: Some(&auth), dpop: &[], addr: None };
            super::exchange(&fx.deps, request, &ids(), T0).await
        }
    };
    let (r, outcome) = exchange(basic("wrong")).await;
    assert_eq!(kind(r), Kind::InvalidClient);
    assert_eq!(outcome.client_id.as_deref(), Some("machine"));
    assert!(outcome.resource.is_none(), "no grant ran");
    let failed = fx.audit("token_failed").await;
    assert_eq!(failed.len(), 1, "a refused request leaves one audit row");
    assert_eq!(failed[0].client_id.as_deref(), Some("machine"));
    assert_eq!(failed[0].trace_id.as_deref(), Some("4bf92f3577b34da6a3ce929d0e0e4736"));
    assert!(failed[0].detail.contains("ErrInvalidClient"), "{}", failed[0].detail);
    let (r, outcome) = exchange(basic("machine-secret")).await;
    assert!(r.is_ok());
    assert_eq!(outcome.grant_type, Some(authplane_core::config::GrantType::ClientCredentials));
}

#[tokio::test]
async fn an_unreadable_stored_grant_is_a_server_error_naming_the_column_not_an_empty_grant() {
    use sea_orm::ConnectionTrait;
    let fx = Fixture::new("").await;
    let (code, verifier) = fx.code("app", "tools/read", T0 + 60).await;
    let r1 = redeem(&fx, "app", &code, &verifier, T0).await.result.unwrap().refresh_token.unwrap();
    fx.deps.db.execute_unprepared("UPDATE token_families SET resources = 'not json'").await.unwrap();
    let e = refresh(&fx, &r1, None, T0 + 1).await.unwrap_err();
    assert_eq!(e.kind, Kind::ServerError);
    let (name, detail) = *e.cause.expect("the cause is kept for the log");
    assert_eq!(name, "ErrCorruptRow");
    assert!(detail.contains("token_families.resources"), "{detail}");
    assert!(!e.description.contains("token_families"), "the client is not told about tables");
}
