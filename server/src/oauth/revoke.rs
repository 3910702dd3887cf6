//! Revocation (RFC 7009) and introspection (RFC 7662).

use sea_orm::TransactionTrait;
use serde::Serialize;

use super::error::Error;
use super::jwt;
use super::token::RequestIds;
use crate::oauth::Deps;
use crate::random::sha256_hex;
use crate::store::audit::{self, AuditEvent};
use crate::store::oauth as rows;

/// Revokes a refresh token (its whole family) or an access token (by `jti`)
/// of `client_id`. Unknown tokens succeed silently (RFC 7009 §2.2).
#[tracing::instrument(name = "oauth.revoke", level = "debug", skip_all, fields(authplane.layer = "service", client_id = %client_id))]
pub async fn revoke(
    deps: &Deps,
    client_id: &str,
    token: &str,
    hint: Option<&str>,
    ids: &RequestIds,
    now: i64,
) -> Result<(), Error> {
    let as_refresh = || async {
        let Some(row) = rows::get_refresh(&deps.db, &sha256_hex(token.as_bytes())).await? else {
            return Ok::<bool, Error>(false);
        };
        let Some(family) = rows::get_family(&deps.db, &row.family_id).await? else { return Ok(false) };
        if family.client_id != client_id {
            return Err(not_yours());
        }
        let txn = deps.db.begin().await?;
        rows::revoke_family(&txn, &family.id, now).await?;
        audit::record(&txn, deps.clock.now_ms(), event(&family.user_id, client_id, ids, "refresh_token")).await?;
        txn.commit().await?;
        Ok(true)
    };
    let as_access = || async {
        let Some(claims) = jwt::verify_own(&deps.keys, token, now) else { return Ok::<bool, Error>(false) };
        if claims.client_id != client_id {
            return Err(not_yours());
        }
        let txn = deps.db.begin().await?;
        rows::revoke_access(&txn, &claims.jti, client_id, claims.exp, now).await?;
        audit::record(&txn, deps.clock.now_ms(), event(&claims.sub, client_id, ids, "access_token")).await?;
        txn.commit().await?;
        Ok(true)
    };
    // A JWT-shaped token (or the hint) is tried as an access token first.
    let access_first = hint == Some("access_token") || token.contains('.');
    let mut done = access_first && as_access().await?;
    if !done {
        done = as_refresh().await?;
    }
    if !done && !access_first {
        done = as_access().await?;
    }
    if !done {
        tracing::debug!(client_id, "revocation of an unknown token ignored");
    }
    Ok(())
}

/// RFC 7009 §2.1: a token issued to another client is refused, not revoked.
fn not_yours() -> Error {
    Error::new(super::error::Kind::UnauthorizedClient, "the token was not issued to this client")
}

fn event(user: &str, client_id: &str, ids: &RequestIds, kind: &str) -> AuditEvent {
    AuditEvent {
        event_type: "token_revoked",
        outcome: "success",
        user_id: Some(user.to_owned()),
        client_id: Some(client_id.to_owned()),
        request_id: ids.request_id.clone(),
        trace_id: ids.trace_id.clone(),
        detail: serde_json::json!({"reason": "client_request", "token_type": kind}),
        ..Default::default()
    }
}

#[derive(Debug, Serialize, Default)]
pub struct Introspection {
    pub active: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sub: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub aud: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exp: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub iat: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jti: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_type: Option<&'static str>,
    /// RFC 9449 §6.2: the key a DPoP-bound access token is bound to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cnf: Option<jwt::Confirmation>,
}

/// RFC 7662 §2.2: `{"active": false}` for anything not currently valid.
#[tracing::instrument(name = "oauth.introspect", level = "debug", skip_all, fields(authplane.layer = "service"))]
pub async fn introspect(deps: &Deps, token: &str, now: i64) -> Result<Introspection, Error> {
    const SKEW: i64 = 30;
    if let Some(c) = jwt::verify_own(&deps.keys, token, now) {
        let cfg = deps.config.load();
        if c.iss != cfg.server.issuer || c.exp + SKEW <= now {
            return Ok(Introspection::default());
        }
        if let Some(row) = rows::get_access(&deps.db, &c.jti).await? {
            let family_revoked = match &row.family_id {
                Some(f) => rows::get_family(&deps.db, f).await?.is_none_or(|f| f.revoked_at.is_some()),
                None => false,
            };
            if row.revoked_at.is_some() || family_revoked {
                return Ok(Introspection::default());
            }
        }
        return Ok(Introspection {
            active: true,
            scope: Some(c.scope),
            client_id: Some(c.client_id),
            sub: Some(c.sub),
            aud: Some(c.aud),
            iss: Some(c.iss),
            exp: Some(c.exp),
            iat: Some(c.iat),
            jti: Some(c.jti),
            token_type: Some(if c.cnf.is_some() { "DPoP" } else { "Bearer" }),
            cnf: c.cnf,
        });
    }
    if let Some(row) = rows::get_refresh(&deps.db, &sha256_hex(token.as_bytes())).await?
        && row.rotated_at.is_none()
        && let Some(f) = rows::get_family(&deps.db, &row.family_id).await?
        && f.revoked_at.is_none()
        && f.expires_at > now
    {
        return Ok(Introspection {
            active: true,
            scope: Some(f.scope),
            client_id: Some(f.client_id),
            sub: Some(f.user_id),
            aud: Some(crate::store::json_column("token_families.resources", &f.resources)?),
            iss: Some(deps.config.load().server.issuer.clone()),
            exp: Some(f.expires_at),
            iat: Some(row.created_at),
            token_type: Some("refresh_token"),
            ..Default::default()
        });
    }
    Ok(Introspection::default())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oauth::Kind;
    use crate::oauth::testing::{Fixture, T0, form, kind};
    use crate::oauth::token::authorization_code;

    /// A user grant of `app`: (access token, refresh token).
    async fn grant(fx: &Fixture) -> (String, String) {
        let (code, verifier) = fx.code("app", "tools/read", T0 + 60).await;
        let f = form(&[("grant_type", "authorization_code"), ("code", &code), ("code_verifier", &verifier)]);
        let t = authorization_code::exchange(&fx.deps, &fx.client("app"), &f, None, &RequestIds::default(), T0)
            .await
            .result
            .unwrap();
        (t.access_token, t.refresh_token.unwrap())
    }

    #[tokio::test]
    async fn revoking_a_refresh_token_ends_its_whole_grant() {
        let fx = Fixture::new("").await;
        let (access, refresh) = grant(&fx).await;
        let before = introspect(&fx.deps, &access, T0 + 1).await.unwrap();
        assert!(before.active);
        assert_eq!(
            (before.sub.as_deref(), before.jti.as_deref(), before.token_type),
            (Some("user-1"), Some("id-1"), Some("Bearer"))
        );
        assert_eq!(introspect(&fx.deps, &refresh, T0 + 1).await.unwrap().token_type, Some("refresh_token"));

        revoke(&fx.deps, "app", &refresh, None, &RequestIds::default(), T0 + 2).await.unwrap();
        assert!(!introspect(&fx.deps, &refresh, T0 + 3).await.unwrap().active);
        assert!(!introspect(&fx.deps, &access, T0 + 3).await.unwrap().active, "the family's access token too");
        let rows = fx.audit("token_revoked").await;
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].occurred_at_ms, T0 * 1000);
    }

    #[tokio::test]
    async fn an_access_token_is_revoked_alone_and_only_by_its_client() {
        let fx = Fixture::new("").await;
        let (access, refresh) = grant(&fx).await;
        let r = revoke(&fx.deps, "other-app", &access, None, &RequestIds::default(), T0 + 1).await;
        assert_eq!(kind(r), Kind::UnauthorizedClient);
        let r = revoke(&fx.deps, "other-app", &refresh, None, &RequestIds::default(), T0 + 1).await;
        assert_eq!(kind(r), Kind::UnauthorizedClient);
        assert!(introspect(&fx.deps, &access, T0 + 1).await.unwrap().active, "a refused revocation changes nothing");

        revoke(&fx.deps, "app", &access, Some("access_token"), &RequestIds::default(), T0 + 2).await.unwrap();
        assert!(!introspect(&fx.deps, &access, T0 + 3).await.unwrap().active);
        assert!(introspect(&fx.deps, &refresh, T0 + 3).await.unwrap().active, "the refresh token lives on");
        // RFC 7009 §2.2: an unknown token is not an error.
        revoke(&fx.deps, "app", "no-such-token", None, &RequestIds::default(), T0 + 4).await.unwrap();
        assert_eq!(fx.audit("token_revoked").await.len(), 1);
    }

    #[tokio::test]
    async fn introspection_follows_the_clock_it_is_given() {
        let fx = Fixture::new("").await;
        let (access, _) = grant(&fx).await;
        // exp = T0 + 3600; accepted up to 30 s of skew past it.
        assert!(introspect(&fx.deps, &access, T0 + 3600 + 29).await.unwrap().active);
        assert!(!introspect(&fx.deps, &access, T0 + 3600 + 30).await.unwrap().active);
    }
}
